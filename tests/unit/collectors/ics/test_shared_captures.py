"""The public OT captures of ``../shared/data/pcaps-ics``: every one is read without an error, and the message
counts of each protocol agree with tshark's on the same file (run here, not read from a file), with the one
difference explained below; ICSNPP's and Zeek's logs agree where they are the reference."""

from __future__ import annotations

import subprocess
from functools import lru_cache
from pathlib import Path

import pytest

from otsentry.collectors.collector import CollectorConfig
from otsentry.collectors.source import decode_capture
from tests.helpers import SHARED_ICS_PCAPS, capture_params, require_tool, shared_ics_pcaps, shared_pcaps

# protocol -> the tshark field that occurs once per message (``-E occurrence=a`` counts every occurrence)
TSHARK_FIELDS = {"dnp3": "dnp3.al.func", "iec104": "iec60870_104.apdulen", "s7comm": "s7comm.header.rosctr",
                 "enip": "enip.command"}
# Wireshark does not rebuild a DNP3 fragment whose transport sequence wraps from 63 to 0 (frames 17-18, 113-114,
# 209-210 and 809-810 of this capture: FIR with sequence 63, FIN with 0); IEEE 1815 counts modulo 64, and Zeek
# rebuilds them too (ICSNPP's dnp3.log has 368 reply rows, our 368 responses).
KNOWN = {("icsnpp-dnp3-dnp3_example.pcap", "dnp3"): 4}
# S7comm-plus: tshark 4.0 has no dissector; the README counts the COTP payloads that start with 0x72.
S7PLUS = {"icsnpp-s7commplus-s7comm_plus.pcap": 121, "iti-s7commplus-S7-1200-Uploading-OB1-TIAV12.pcap": 88,
          "iti-s7commplus-s7-1200-hmi.pcap": 24}
ZEEK_DNP3 = sorted(p for p in SHARED_ICS_PCAPS.glob("*.pcap") if Path(f"{p}.dnp3.log").exists())


@lru_cache(maxsize=None)
def decoded(path: Path):
    run = decode_capture(path, CollectorConfig())
    operations = [op for batch in run for op in batch.operations]
    return run.stats, operations


def tshark_counts(path: Path) -> dict[str, int]:
    """One tshark run per capture: the occurrences of each protocol's field."""
    tshark = require_tool("tshark")
    fields = [a for f in TSHARK_FIELDS.values() for a in ("-e", f)]
    out = subprocess.run([tshark, "-r", str(path), "-T", "fields", *fields, "-E", "occurrence=a",
                          "-E", "aggregator=,"], capture_output=True, text=True, timeout=120, check=True).stdout
    counts = dict.fromkeys(TSHARK_FIELDS, 0)
    for line in out.splitlines():
        for protocol, column in zip(TSHARK_FIELDS, line.split("\t")):
            counts[protocol] += len([v for v in column.split(",") if v])
    return counts


@pytest.mark.parametrize("path", capture_params(shared_ics_pcaps() + shared_pcaps()))
def test_every_capture_is_read_and_counts_agree_with_tshark(path: Path) -> None:
    """The Modbus captures too: two of them carry S7comm, S7comm-plus and EtherNet/IP traffic."""
    stats, operations = decoded(path)
    assert stats.packets > 0
    theirs = tshark_counts(path)
    for protocol in TSHARK_FIELDS:
        ours = stats.protocols[protocol].messages if protocol in stats.protocols else 0
        assert ours == theirs[protocol] + KNOWN.get((path.name, protocol), 0), protocol
    if path.name in S7PLUS:
        assert stats.protocols["s7commplus"].messages == S7PLUS[path.name]
    for op in operations:  # every operation names its protocol and endpoints
        assert op.protocol in stats.protocols and op.server_port in (20000, 2404, 102, 44818)


def _zeek_rows(log: Path) -> list[list[str]]:
    return [line.split("\t") for line in log.read_text().splitlines() if line and not line.startswith("#")]


@pytest.mark.skipif(not SHARED_ICS_PCAPS.exists(), reason="no ../shared")
def test_dnp3_example_replies_match_icsnpp_rows() -> None:
    path = SHARED_ICS_PCAPS / "icsnpp-dnp3-dnp3_example.pcap"
    stats, operations = decoded(path)
    rows = _zeek_rows(Path(f"{path}.dnp3.log"))
    assert stats.protocols["dnp3"].responses == len(rows) == 368
    # Zeek logs a request only with the reply that follows it; we pair by application sequence instead.
    paired = {op.operation_name for op in operations if op.response_frame is not None}
    assert paired == {r[6] for r in rows if r[6] != "-"}


@pytest.mark.skipif(not SHARED_ICS_PCAPS.exists(), reason="no ../shared")
def test_zeek_dnp3_requests_match_zeek_rows() -> None:
    """zeek/zeek's dnp3.pcap: every request function Zeek logs is one of ours, and the attacks are there."""
    path = SHARED_ICS_PCAPS / "zeek-dnp3-dnp3.pcap"
    _, operations = decoded(path)
    ours = {op.operation_name for op in operations}
    zeek = {r[6] for r in _zeek_rows(Path(f"{path}.dnp3.log")) if r[6] != "-"}
    # Application confirms acknowledge a response; they are counted, not operations of their own.
    assert zeek - {"CONFIRM"} <= ours and "CONFIRM" not in ours and {"COLD_RESTART", "WARM_RESTART", "DISABLE_UNSOLICITED", "STOP_APPL"} <= ours


@pytest.mark.skipif(not SHARED_ICS_PCAPS.exists(), reason="no ../shared")
def test_s7_plc_stop_and_download_are_operations() -> None:
    _, snap7 = decoded(SHARED_ICS_PCAPS / "icsnpp-s7comm-snap7.pcap")
    assert any(op.operation == 0x29 and op.latency_s is not None for op in snap7)  # PLC STOP, answered
    _, download = decoded(SHARED_ICS_PCAPS / "iti-s7comm-s7comm_downloading_block_db1.pcap")
    names = {op.operation_name for op in download}
    assert {"REQUEST_DOWNLOAD", "DOWNLOAD_BLOCK", "DOWNLOAD_ENDED"} <= names


@pytest.mark.skipif(not SHARED_ICS_PCAPS.exists(), reason="no ../shared")
def test_iec104_commands_pair_with_their_confirmations() -> None:
    _, operations = decoded(SHARED_ICS_PCAPS / "parsitects-iec104-iec104.pcap")
    commands = [op for op in operations if op.operation_class == "control"]
    assert commands and all(op.response_frame is not None for op in commands)
    assert {"C_SC_NA_1", "C_DC_NA_1", "C_RC_NA_1", "C_SE_NA_1"} <= {op.operation_name for op in commands}


@pytest.mark.skipif(not SHARED_ICS_PCAPS.exists(), reason="no ../shared")
def test_cip_stop_is_a_control_operation() -> None:
    _, operations = decoded(SHARED_ICS_PCAPS / "iti-enip-cip_stop_plc.pcap")
    assert [(op.operation_name, op.operation_class) for op in operations] == [("Stop", "control")]


def _rows(log: Path) -> list[list[str]]:
    """A Zeek log's rows without ts and uid (btest masks them)."""
    return [line.split("\t")[2:] for line in log.read_text().splitlines() if line and not line.startswith("#")]


@pytest.mark.parametrize("path", capture_params(ZEEK_DNP3))
def test_zeek_dir_dnp3_log_reproduces_zeek(tmp_path: Path, path: Path) -> None:
    """``inspect --zeek-dir`` writes Zeek's dnp3.log rows, in Zeek's order; the only difference: a request never
    answered is written when Zeek removes its connection (mid-capture), by otsentry at the end."""
    from click.testing import CliRunner

    from otsentry.cli import main

    result = CliRunner().invoke(main, ["inspect", "--summary", "--zeek-dir", str(tmp_path), str(path)])
    assert result.exit_code == 0, result.output
    ours, zeek = _rows(tmp_path / "dnp3.log"), _rows(Path(f"{path}.dnp3.log"))
    if path.name == "zeek-dnp3-dnp3.pcap":
        unanswered = [r for r in zeek if r[5] == "-"]
        assert len(unanswered) == 2 and ours[-2:] == unanswered and sorted(ours) == sorted(zeek)
    else:
        assert ours == zeek
    assert (tmp_path / "modbus.log").read_text().startswith("#separator")
