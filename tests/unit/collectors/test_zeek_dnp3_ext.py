"""ICSNPP-DNP3's dnp3_control.log and dnp3_objects.log: the plugin's baselines reproduced row for row (ts and uid
aside), the quirks of Zeek's DNP3 grammar it inherits pinned on built fragments, arbitrary bytes never raising."""

from __future__ import annotations

import struct
from pathlib import Path

from click.testing import CliRunner
from hypothesis import given, settings, strategies as st

from otsentry.cli import main
from otsentry.collectors.zeek_dnp3_rows import dnp3_extended_rows
from tests.helpers import SHARED_ICS_PCAPS

EXAMPLE = SHARED_ICS_PCAPS / "icsnpp-dnp3-dnp3_example.pcap"


def _rows(log: Path) -> list[list[str]]:
    return [line.split("\t")[2:] for line in log.read_text().splitlines() if line and not line.startswith("#")]


def test_zeek_dir_reproduces_icsnpp_dnp3_logs(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["inspect", "--summary", "--zeek-dir", str(tmp_path), str(EXAMPLE)])
    assert result.exit_code == 0, result.output
    for name, rows in (("dnp3_control", 534), ("dnp3_objects", 503)):
        theirs = _rows(Path(f"{EXAMPLE}.{name}.log"))
        assert _rows(tmp_path / f"{name}.log") == theirs and len(theirs) == rows, name


def _crob(code: int, on: int = 500, status: int = 0) -> bytes:
    return struct.pack("<BBIIB", code, 1, on, 0, status)


def test_control_rows() -> None:
    select = bytes([0xC1, 0x03, 12, 1, 0x28]) + struct.pack("<HH", 1, 8) + _crob(0x41)
    (row,) = dnp3_extended_rows(select, True).control
    assert row == ("Control Relay Output Block", "SELECT", "8", "Close", "Pulse On", "F", "1", "500", "0", "-")
    answer = bytes([0xC1, 0x81, 0, 0, 12, 1, 0x28]) + struct.pack("<HH", 1, 8) + _crob(0x81 | 0x20, status=5)
    (row,) = dnp3_extended_rows(answer, False).control
    assert row[3:6] == ("Trip", "Pulse On", "T") and row[-1] == "Latch Off"  # the plugin's name for status 5
    ranged = bytes([0xC1, 0x05, 12, 1, 0x00, 3, 3]) + _crob(0x03)  # a start-stop range: no prefix, no index
    assert dnp3_extended_rows(ranged, True).control[0][1:3] == ("DIRECT_OPERATE", "-")


def test_object_rows_follow_zeeks_grammar() -> None:
    read = bytes([0xC0, 0x01, 60, 2, 0x06, 60, 1, 0x06, 30, 2, 0x00, 0, 9])
    assert dnp3_extended_rows(read, True).objects == [("READ", "Class 1 Data", "-", "-", "-"),
                                                      ("READ", "Class 0 Data", "-", "-", "-"),
                                                      ("READ", "16-Bit Analog Input", "-", "-", "-")]
    # a response: packed bits (10 points in 2 octets), then a two-octet count read big-endian as its low bound
    answer = bytes([0xC0, 0x81, 0, 0, 1, 1, 0x00, 0, 9, 0xFF, 0x03, 30, 2, 0x28]) + struct.pack("<H", 1) + \
        struct.pack("<H", 7) + bytes([1, 0x10, 0]) + bytes([60, 1, 0x06])
    assert dnp3_extended_rows(answer, False).objects == [
        ("RESPONSE", "Single-bit Binary Input", "10", "0", "9"), ("RESPONSE", "16-Bit Analog Input", "1", "256", "0"),
        ("RESPONSE", "Class 0 Data", "0", "65535", "65535")]
    unsolicited = answer[:1] + b"\x82" + answer[2:]
    assert dnp3_extended_rows(unsolicited, False).objects == []  # the plugin logs RESPONSE objects only
    unknown = bytes([0xC0, 0x81, 0, 0, 0x6E, 9, 0x00, 0, 0, 1, 60, 1, 0x06])
    assert dnp3_extended_rows(unknown, False).objects == []  # an object of unknown size ends the walk


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=120), st.booleans())
def test_arbitrary_fragments_never_raise(data: bytes, is_orig: bool) -> None:
    rows = dnp3_extended_rows(data, is_orig)
    assert all(len(r) == 10 for r in rows.control) and all(len(r) == 5 for r in rows.objects)
