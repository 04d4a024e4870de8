"""ICSNPP-S7comm's cotp.log, s7comm.log, s7comm_read_szl.log, s7comm_upload_download.log, s7comm_known_devices.log
and s7comm_plus.log: the plugin's btest baselines reproduced row for row (ts and uid
aside), with the one difference explained; the plugin's parsing choices pinned on built bytes; arbitrary bytes
never raising."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import given, settings, strategies as st

from otsentry.cli import main
from otsentry.collectors.zeek_s7_rows import cotp_payload, read_szl_row, s7comm_row, s7plus_row, upload_download_row
from tests.helpers import SHARED_ICS_PCAPS, capture_params

BASELINES = sorted(p for p in SHARED_ICS_PCAPS.glob("icsnpp-s7comm*.pcap") if Path(f"{p}.s7comm.log").exists())
# snap7.pcap, frames 6 and 7: the first part of a two-part Read SZL answer (PDU reference 2) and the client's
# request for the second part (reference 3, the response method 0x12 with a 4-byte data unit and no SZL id). The
# plugin writes no row for either (its Read_SZL record does not parse them, and the header event goes with it;
# its s7comm_read_szl.log lacks them too); otsentry writes both.
NOT_IN_ICSNPP = {"icsnpp-s7comm-snap7.pcap": [
    ["F", "134.217.61.211", "102", "134.217.61.131", "51212", "7", "User-Data", "2", "0x84",
     "Response: CPU Functions", "0x01", "Read SZL", "No error", "0x00"],
    ["T", "134.217.61.131", "51212", "134.217.61.211", "102", "7", "User-Data", "3", "0x44",
     "Request: CPU Functions", "0x01", "Read SZL", "No error", "0x00"]]}


def _rows(log: Path) -> list[list[str]]:
    return [line.split("\t")[2:] for line in log.read_text().splitlines() if line and not line.startswith("#")]


@pytest.mark.parametrize("path", capture_params(BASELINES))
def test_zeek_dir_reproduces_icsnpp_s7comm_logs(tmp_path: Path, path: Path) -> None:
    result = CliRunner().invoke(main, ["inspect", "--summary", "--zeek-dir", str(tmp_path), str(path)])
    assert result.exit_code == 0, result.output
    ours, theirs = _rows(tmp_path / "s7comm.log"), _rows(Path(f"{path}.s7comm.log"))
    extra = NOT_IN_ICSNPP.get(path.name, [])
    assert [r[4:] for r in ours if r[4:] in extra] == extra
    assert [r for r in ours if r[4:] not in extra] == theirs and theirs
    plus = Path(f"{path}.s7comm_plus.log")
    assert _rows(tmp_path / "s7comm_plus.log") == (_rows(plus) if plus.exists() else [])
    cotp = _rows(Path(f"{path}.cotp.log"))  # every COTP TPDU: connection, data, segments
    assert _rows(tmp_path / "cotp.log") == cotp and len(cotp) >= 24
    szl = Path(f"{path}.s7comm_read_szl.log")  # snap7 only: the plugin's other tests do not write this log
    if szl.exists():
        assert _rows(tmp_path / "s7comm_read_szl.log") == _rows(szl) and len(_rows(szl)) == 9
    known = Path(f"{path}.s7comm_known_devices.log")  # s7ident only: the CPU its tool identified
    if known.exists():
        assert _rows(tmp_path / "s7comm_known_devices.log") == _rows(known) and len(_rows(known)) == 1
    updown = Path(f"{path}.s7comm_upload_download.log")  # snap7 only, as above
    if updown.exists():
        assert _rows(tmp_path / "s7comm_upload_download.log") == _rows(updown) and len(_rows(updown)) == 25


def test_baselines_present() -> None:
    assert len(BASELINES) == 3
    plus = SHARED_ICS_PCAPS / "icsnpp-s7commplus-s7comm_plus.pcap.s7comm_plus.log"
    assert len(_rows(plus)) == 121


def _pdu(rosctr: int, reference: bytes, params: bytes, data: bytes = b"", error: bytes = b"") -> bytes:
    return (bytes([0x32, rosctr, 0, 0]) + reference + len(params).to_bytes(2, "big") + len(data).to_bytes(2, "big")
            + error + params + data)


def test_job_and_ack_rows() -> None:
    # PLC Control naming its PI service; the PDU reference is read byte-swapped (01 00 -> 1)
    pi = bytes([0x28, 0, 0, 0, 0, 0, 0, 0xFD, 0, 0, 9]) + b"P_PROGRAM"
    assert s7comm_row(_pdu(1, b"\x01\x00", pi)) == (
        "1", "Job-Request", "1", "0x28", "PLC Control", "P_PROGRAM", "PLC Start / Stop", "-", "-")
    assert s7comm_row(_pdu(1, b"\x00\x02", b"\x29" + b"\x00" * 5 + b"\x09P_PROGRAM")) == (
        "1", "Job-Request", "512", "0x29", "PLC Stop", "-", "-", "-", "-")
    # an ACK-Data without parameters has no function; its error class is named
    assert s7comm_row(_pdu(3, b"\x05\x00", b"", b"\xff\x04\x00\x00", error=b"\x85\x01")) == (
        "3", "ACK-Data", "5", "-", "-", "-", "-", "Error on supplies", "0x01")
    assert s7comm_row(_pdu(2, b"\x05\x00", b"\x05", error=b"\x00\x00"))[:5] == (
        "2", "ACK", "5", "0x05", "Write Variable")
    assert s7comm_row(_pdu(8, b"\x00\x00", b"\x04")) is None and s7comm_row(b"\x32\x01") is None


def test_user_data_rows() -> None:
    head = bytes([0x00, 0x01, 0x12])
    request = head + bytes([4, 0x11, 0x43, 0x03, 0x00])
    assert s7comm_row(_pdu(7, b"\x0b\x00", request)) == (
        "7", "User-Data", "11", "0x43", "Request: Block Functions", "0x03", "Get Block Info", "-", "-")
    response = head + bytes([8, 0x12, 0x83, 0x03, 0x01, 0x00, 0x00, 0xD2, 0x09])
    assert s7comm_row(_pdu(7, b"\x0b\x00", response))[7:] == ("Parameter Error", "0xd209")
    push = head + bytes([8, 0x12, 0x04, 0x03, 0x01, 0x00, 0x00, 0x00, 0x00])
    assert s7comm_row(_pdu(7, b"\x00\x00", push))[3:9] == (
        "0x04", "Push: CPU Functions", "0x03", "Diagnostic Message", "No error", "0x00")
    odd = head + bytes([4, 0x11, 0x26, 0x01, 0x00])  # group 6 has no subfunction table; type 2 is not defined
    assert s7comm_row(_pdu(7, b"\x00\x00", odd))[3:7] == ("0x26", "Unknown: PBC BSEND-BRECV", "0x01", "-")


def test_s7plus_rows() -> None:
    v3 = bytes([0x72, 0x03, 0x00, 0x40, 0x20]) + b"\xaa" * 32
    assert s7plus_row(v3 + bytes([0x31, 0x00, 0x00, 0x04, 0xF2])) == ("3", "0x31", "Request", "0x04f2", "Set Variable")
    assert s7plus_row(v3 + bytes([0x33, 0x00, 0x00, 0x05, 0x6B])) == ("3", "0x33", "Notification", "-", "-")
    assert s7plus_row(v3 + bytes([0x32, 0, 0, 0x09, 0x99]))[3:] == ("0x0999", "Unknown s7comm-plus function-0x0999")
    assert s7plus_row(bytes([0x72, 0x01, 0x00, 0x10, 0x31, 0, 0, 4, 0xCA])) is None  # V1: no digest, reads short


def test_cotp_payload() -> None:
    assert cotp_payload(bytes([3, 0, 0, 9, 2, 0xF0, 0x80, 0x32, 0x01])) == b"\x32\x01"
    assert cotp_payload(bytes([3, 0, 0, 22, 17, 0xE0]) + b"\x00" * 16) == b""
    assert cotp_payload(b"\x03\x00") == b""


@settings(max_examples=400, deadline=None)
@given(st.sampled_from([1, 2, 3, 7, 9]), st.binary(min_size=2, max_size=2), st.binary(max_size=40),
       st.binary(max_size=12))
def test_arbitrary_s7comm_never_raises(rosctr: int, reference: bytes, params: bytes, tail: bytes) -> None:
    row = s7comm_row(_pdu(rosctr, reference, params, tail))
    assert row is None or (len(row) == 9 and all("\t" not in f and "\n" not in f for f in row[:5]))


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=64))
def test_arbitrary_s7plus_and_units_never_raise(data: bytes) -> None:
    row = s7plus_row(b"\x72" + data)
    assert row is None or len(row) == 5
    cotp_payload(data)


def test_read_szl_rows() -> None:
    """A request names the list by its id's low octet; the follow-up request and a partial answer give no row."""
    params = bytes([0x00, 0x01, 0x12, 0x04, 0x11, 0x44, 0x01, 0x00])
    request = _pdu(7, b"\x05\x00", params, bytes([0xFF, 0x09, 0x00, 0x04, 0x04, 0x24, 0x00, 0x00]))
    assert read_szl_row(request) == ("5", "Request", "0x0424", "Modes", "0x0000", "0xff", "Success")
    assert read_szl_row(_pdu(7, b"\x05\x00", params, bytes([0xFF, 0x09, 0x00, 0x00]))) is None
    answer = bytes([0x00, 0x01, 0x12, 0x08, 0x12, 0x84, 0x01, 0x01, 0x00, 0x00, 0x00, 0x00])
    records = bytes([0xFF, 0x09, 0x00, 0x0C, 0x00, 0x11, 0x00, 0x00, 0x00, 0x02, 0x00, 0x02]) + b"\x01\x02" * 2
    assert read_szl_row(_pdu(7, b"\x01\x00", answer, records))[:2] == ("1", "Response")
    assert read_szl_row(_pdu(7, b"\x01\x00", answer, records[:-2])) is None  # one record of two: a first part
    assert read_szl_row(_pdu(1, b"\x01\x00", params)) is None  # not User-Data


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=80))
def test_read_szl_row_never_raises(data: bytes) -> None:
    row = read_szl_row(b"\x32\x07" + data)
    assert row is None or len(row) == 7


def test_block_download_rows(tmp_path: Path) -> None:
    """A DB1 download (no baseline upstream): read as the plugin's parser reads the upload it was tested on — the
    Job names the block file, the Download Block acknowledgements their data lengths, the others nothing."""
    path = SHARED_ICS_PCAPS / "iti-s7comm-s7comm_downloading_block_db1.pcap"
    result = CliRunner().invoke(main, ["inspect", "--summary", "--zeek-dir", str(tmp_path), str(path)])
    assert result.exit_code == 0, result.output
    rows = [r[9:] for r in _rows(tmp_path / "s7comm_upload_download.log")]
    assert rows[:2] == [["Job-Request", "14", "Request Download", "0x00", "0", "-", "_0A00001P", "Data Block", "00001",
                         "Passive"], ["ACK-Data", "14", "Request Download"] + ["-"] * 7]
    assert [r[2] for r in rows].count("Download Block") == 6 and rows[-1][2] == "Download Ended"
    assert [r[5] for r in rows if r[0] == "ACK-Data" and r[2] == "Download Block"] == ["222", "222", "56"]


def test_upload_download_row_golden() -> None:
    start = _pdu(1, b"\x08\x00", bytes([0x1D, 0x00, 0x00, 0x00, 0, 0, 0, 0, 9]) + b"_0B00000A")
    assert upload_download_row(start) == ("Job-Request", "8", "Start Upload", "0x00", "0", "-", "_0B00000A",
                                          "System Data Block", "00000", "Active")
    ack = bytes([0x32, 3, 0, 0, 8, 0, 0, 16, 0, 0, 0, 0, 0x1D, 0x00, 0x01, 0x00, 0, 0, 0, 7, 7]) + b"0000216"
    assert upload_download_row(ack)[3:6] == ("0x00", "7", "216")  # the block length is ASCII
    assert upload_download_row(_pdu(1, b"\x08\x00", bytes([0x04, 1]))) is None  # a read: not this log
    assert upload_download_row(start[:-3]) is None  # the file name cut short


@settings(max_examples=300, deadline=None)
@given(st.sampled_from([b"\x32\x01", b"\x32\x03"]), st.binary(max_size=60))
def test_upload_download_row_never_raises(head: bytes, data: bytes) -> None:
    row = upload_download_row(head + data)
    assert row is None or len(row) == 10
