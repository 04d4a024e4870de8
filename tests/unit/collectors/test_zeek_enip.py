"""ICSNPP-ENIP's enip.log, cip.log, cip_identity.log and cip_io.log: the plugin's btest baselines reproduced row for row (ts
and uid aside, as btest masks them), the plugin's parsing quirks pinned on built bytes, and arbitrary bytes never
raising."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import given, settings, strategies as st

from otsentry.cli import main
from otsentry.collectors.zeek_enip_rows import cip_io_row, cip_rows, enip_row, identity_rows
from tests.helpers import SHARED_ICS_PCAPS, capture_params

LOGS = ("enip", "cip", "cip_identity")
BASELINES = sorted(p for p in SHARED_ICS_PCAPS.glob("icsnpp-enip-*") if p.suffix in (".pcap", ".pcapng")
                   and Path(f"{p}.enip.log").exists())


def _rows(log: Path) -> list[list[str]]:
    return [line.split("\t")[2:] for line in log.read_text().splitlines() if line and not line.startswith("#")]


@pytest.mark.parametrize("path", capture_params(BASELINES))
def test_zeek_dir_reproduces_icsnpp_enip_logs(tmp_path: Path, path: Path) -> None:
    result = CliRunner().invoke(main, ["inspect", "--summary", "--zeek-dir", str(tmp_path), str(path)])
    assert result.exit_code == 0, result.output
    compared = 0
    for name in LOGS:
        baseline = Path(f"{path}.{name}.log")
        ours = _rows(tmp_path / f"{name}.log")
        if baseline.exists():
            assert ours == _rows(baseline), name
            compared += len(ours)
        else:
            assert ours == [], name  # the plugin wrote no rows there either (its btest keeps no empty log)
    assert compared > 0
    header = (tmp_path / "cip.log").read_text().splitlines()
    assert header[4] == "#path\tcip" and len(header[6].split("\t")) == 1 + 23


def test_enip_cip_example_counts() -> None:
    assert len(BASELINES) == 3
    example = SHARED_ICS_PCAPS / "icsnpp-enip-enip_cip_example.pcap"
    assert len(_rows(Path(f"{example}.cip.log"))) == 1158 and len(_rows(Path(f"{example}.enip.log"))) == 269
    assert len(_rows(Path(f"{example}.cip_io.log"))) == 398  # class 1 I/O on UDP 2222, both directions


def _unit(command: int, body: bytes, status: int = 0) -> bytes:
    return struct.pack("<HHII8sI", command, len(body), 0x11223344, status, b"\x01" * 8, 0) + body


def _rr(cip: bytes, connected: int | None = None) -> bytes:
    """A SendRRData (unconnected item) or SendUnitData (connected item with this sequence count)."""
    if connected is None:
        items = struct.pack("<HHHH", 0, 0, 0xB2, len(cip)) + cip
        return _unit(0x6F, struct.pack("<IHH", 0, 0, 2) + items)
    data = struct.pack("<H", connected) + cip
    items = struct.pack("<HHI", 0xA1, 4, 7) + struct.pack("<HH", 0xB1, len(data)) + data
    return _unit(0x70, struct.pack("<IHH", 0, 0, 2) + items)


def test_enip_row_fields() -> None:
    row = enip_row(_unit(0x65, b"\x01\x00\x00\x00", status=0x69))
    assert row == ("0x65", "Register Session", "4", "0x11223344", "Unsupported Protocol Version",
                   "0x0101010101010101", "0x00000000")
    assert enip_row(_unit(0x99, b""))[1] == "unknown"
    assert enip_row(_unit(0x70, b"", status=0x42))[4] == "Unknown ENIP Status-0x42"
    assert enip_row(b"\x70\x00" * 5) is None


def test_request_path_as_the_plugin_reads_it() -> None:
    # Get_Attribute_Single class 0x01 (8-bit), instance 0x0102 (16-bit, pad byte), attribute 5
    (row,) = cip_rows(_rr(bytes([0x0E, 4, 0x20, 0x01, 0x25, 0x00, 0x02, 0x01, 0x30, 0x05])))
    assert row == ("-", "request", "0x0e", "Get Attributes Single", "-", "-", "-", "-", "0x01", "Identity",
                   "0x102", "0x05")
    # a 32-bit instance: the plugin shifts its third byte by 13 (0x00010000 reads as 0x2000)
    (row,) = cip_rows(_rr(bytes([0x01, 4, 0x20, 0x00, 0x26, 0x00, 0x00, 0x00, 0x01, 0x00])))
    assert row[8:] == ("0x00", "(empty)", "0x2000", "-")
    # reading stops at the first segment that is not logical (a port segment here)
    (row,) = cip_rows(_rr(bytes([0x05, 2, 0x01, 0x00, 0x20, 0x01])))
    assert row[2:4] == ("0x05", "Reset") and row[8:] == ("-", "-", "-", "-")


def test_response_status_and_extended_status() -> None:
    (row,) = cip_rows(_rr(bytes([0xD4, 0x00, 0x01, 0x02, 0x01, 0x00]), connected=9))
    assert row == ("9", "response", "0x54", "Forward Open", "0x01", "Connection Failure", "0x0100",
                   "Connection in use or duplicate Forward Open", "-", "-", "-", "-")
    (row,) = cip_rows(_rr(bytes([0x8E, 0x00, 0x99, 0x00])))
    assert row[4:8] == ("0x99", "Unknown CIP Status-0x99", "-", "-")


def test_multiple_service_packet_rows() -> None:
    embedded = [bytes([0x0E, 0x02, 0x20, 0x01, 0x30, 0x07]), bytes([0x4C, 0x01, 0x20, 0x6B])]
    offsets = [2 + 2 * len(embedded)]
    offsets.append(offsets[0] + len(embedded[0]))
    request = bytes([0x0A, 0x02, 0x20, 0x02, 0x24, 0x01]) + struct.pack("<3H", 2, *offsets) + b"".join(embedded)
    rows = cip_rows(_rr(request, connected=5))
    assert [(r[0], r[2], r[8], r[10], r[11]) for r in rows] == [
        ("5", "0x0a", "0x02", "0x01", "-"), ("5", "0x0e", "0x01", "-", "0x07"), ("5", "0x4c", "0x6b", "-", "-")]
    replies = [bytes([0x8E, 0, 0, 0, 7]), bytes([0xCC, 0, 0x05, 0])]
    offsets = [2 + 2 * len(replies), 2 + 2 * len(replies) + len(replies[0])]
    response = bytes([0x8A, 0x00, 0x1E, 0x00]) + struct.pack("<3H", 2, *offsets) + b"".join(replies)
    rows = cip_rows(_rr(response, connected=5))
    assert [(r[1], r[2], r[4], r[5]) for r in rows] == [
        ("response", "0x0a", "0x1e", "Embedded Service Error"), ("response", "0x0e", "0x00", "Success"),
        ("response", "0x4c", "0x05", "Path Destination Unknown")]


def test_identity_row() -> None:
    name = b"PLC\tA\\1"
    item = (struct.pack("<H", 1) + struct.pack(">hHI8x", 2, 44818, 0x0A000001)
            + struct.pack("<HHHBBHI", 1, 14, 55, 20, 11, 0x0060, 0xC0FFEE) + bytes([len(name)]) + name + b"\x03")
    unit = _unit(0x63, struct.pack("<HHH", 1, 0x0C, len(item)) + item)
    assert identity_rows(unit) == [("1", "10.0.0.1", "44818", "1", "Rockwell Automation/Allen-Bradley", "14",
                                    "Programmable Logic Controller", "55", "20.11", "0x0060", "0x00c0ffee",
                                    "PLC\\x09A\\x5c1", "0x0003")]
    assert cip_rows(unit) == [] and identity_rows(_rr(b"\x01\x00")) == []


@settings(max_examples=300, deadline=None)
@given(st.sampled_from([0x63, 0x6F, 0x70, 0x65, 0x00]), st.binary(max_size=120))
def test_arbitrary_bodies_never_raise(command: int, body: bytes) -> None:
    unit = _unit(command, body)
    assert enip_row(unit) is not None
    for row in cip_rows(unit):
        assert len(row) == 12 and all("\t" not in f and "\n" not in f for f in row)
    for row in identity_rows(unit):
        assert len(row) == 13 and all("\t" not in f and "\n" not in f for f in row)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=80), st.one_of(st.none(), st.integers(0, 0xFFFF)))
def test_arbitrary_cip_never_raises(cip: bytes, connected: int | None) -> None:
    for row in cip_rows(_rr(cip, connected)):
        assert row[1] in ("request", "response") and len(row) == 12


def test_cip_io_row() -> None:
    datagram = bytes.fromhex("0200" "0280" "0800" "03064b00" "db943f00" "b100" "0600" "a587e80f0300")
    assert cip_io_row(datagram) == ("0x004b0603", "4166875", "6", "a587e80f0300")
    assert cip_io_row(datagram[:12]) is None  # no connected data item
    assert cip_io_row(b"") is None


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=60))
def test_arbitrary_io_datagrams_never_raise(data: bytes) -> None:
    row = cip_io_row(data)
    assert row is None or len(row) == 4
