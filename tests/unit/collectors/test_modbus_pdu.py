"""Golden-bytes and property tests for the Modbus PDU decoder and the Zeek-compatible names.

Most byte strings are the examples of the Modbus Application Protocol Specification v1.1b3 (section 6), written
as hex with spaces between fields so that a reader can check them against the spec.
"""

from __future__ import annotations

import struct
from datetime import timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from otsentry.collectors.modbus_names import (
    ZEEK_FUNCTION_CODES,
    exception_name,
    function_name,
    zeek_func_name,
)
from otsentry.collectors.modbus_pdu import FUNCTIONS, decode_pdu
from otsentry.collectors.types import DecodedPdu
from otsentry.contracts.flags import FLAG_LENGTH_MISMATCH, FLAG_MALFORMED_PDU, FLAG_RESERVED_FUNCTION

M, L, R = FLAG_MALFORMED_PDU, FLAG_LENGTH_MISMATCH, FLAG_RESERVED_FUNCTION
PUBLIC_CODES = (1, 2, 3, 4, 5, 6, 7, 8, 11, 12, 15, 16, 17, 20, 21, 22, 23, 24, 43)
REQ, RESP = True, False


def pdu(fc: int, *, flags: tuple[str, ...] = (), **fields: object) -> DecodedPdu:
    """Expected DecodedPdu, values as a tuple and flags as names."""
    if "values" in fields:
        fields["values"] = tuple(fields["values"])  # type: ignore[arg-type]
    return DecodedPdu(function_code=fc, flags=frozenset(flags), **fields)  # type: ignore[arg-type]


def h(text: str) -> bytes:
    return bytes.fromhex(text)


def obj(object_id: int, text: str) -> str:
    """One device identification object as hex: id, length, ASCII value."""
    raw = text.encode("ascii")
    return f"{object_id:02x} {len(raw):02x} {raw.hex()}"


REGS_125 = "03 fa " + struct.pack(">125H", *range(1000, 1125)).hex()
DEVICE_ID_BASIC = "2b 0e 01 01 00 00 03 " + " ".join(
    [obj(0, "Company identification"), obj(1, "Product code XX"), obj(2, "V2.11")]
)
DEVICE_ID_REGULAR_MORE = "2b 0e 02 82 ff 05 02 " + " ".join([obj(3, "http://vendor.example"), obj(4, "Pump ctl")])

# (id, hex, is_request, expected)
GOLDEN = [
    # FC 1 read coils (spec 6.1): 19 coils from 20 (address 19)
    ("fc1-req", "01 0013 0013", REQ, pdu(1, start_address=19, quantity=19)),
    ("fc1-resp", "01 03 cd 6b 05", RESP,
     pdu(1, values=[1, 0, 1, 1, 0, 0, 1, 1] + [1, 1, 0, 1, 0, 1, 1, 0] + [1, 0, 1, 0, 0, 0, 0, 0])),
    ("fc1-exc", "81 02", RESP, pdu(1, exception_code=2)),
    # FC 2 read discrete inputs (6.2)
    ("fc2-req", "02 00c4 0016", REQ, pdu(2, start_address=196, quantity=22)),
    ("fc2-resp", "02 03 ac db 35", RESP,
     pdu(2, values=[0, 0, 1, 1, 0, 1, 0, 1] + [1, 1, 0, 1, 1, 0, 1, 1] + [1, 0, 1, 0, 1, 1, 0, 0])),
    ("fc2-exc", "82 02", RESP, pdu(2, exception_code=2)),
    # FC 3 read holding registers (6.3), and the spec's maximum of 125 registers in one response
    ("fc3-req", "03 006b 0003", REQ, pdu(3, start_address=107, quantity=3)),
    ("fc3-resp", "03 06 022b 0000 0064", RESP, pdu(3, values=[555, 0, 100])),
    ("fc3-req-125", "03 0000 007d", REQ, pdu(3, start_address=0, quantity=125)),
    ("fc3-resp-125", REGS_125, RESP, pdu(3, values=range(1000, 1125))),
    ("fc3-exc", "83 02", RESP, pdu(3, exception_code=2)),
    # FC 4 read input registers (6.4)
    ("fc4-req", "04 0008 0001", REQ, pdu(4, start_address=8, quantity=1)),
    ("fc4-resp", "04 02 000a", RESP, pdu(4, values=[10])),
    ("fc4-exc", "84 02", RESP, pdu(4, exception_code=2)),
    # FC 5 write single coil (6.5): the response is an echo
    ("fc5-req-on", "05 00ac ff00", REQ, pdu(5, start_address=172, values=[1])),
    ("fc5-req-off", "05 00ac 0000", REQ, pdu(5, start_address=172, values=[0])),
    ("fc5-resp", "05 00ac ff00", RESP, pdu(5, start_address=172, values=[1])),
    ("fc5-exc", "85 03", RESP, pdu(5, exception_code=3)),
    # FC 6 write single register (6.6)
    ("fc6-req", "06 0001 0003", REQ, pdu(6, start_address=1, values=[3])),
    ("fc6-resp", "06 0001 0003", RESP, pdu(6, start_address=1, values=[3])),
    ("fc6-exc", "86 02", RESP, pdu(6, exception_code=2)),
    # FC 7 read exception status (6.7)
    ("fc7-req", "07", REQ, pdu(7)),
    ("fc7-resp", "07 6d", RESP, pdu(7, values=[0x6D])),
    ("fc7-exc", "87 04", RESP, pdu(7, exception_code=4)),
    # FC 8 diagnostics (6.8): sub-function and data words
    ("fc8-00-return-query-data-req", "08 0000 a537", REQ, pdu(8, sub_function=0, values=[0xA537])),
    ("fc8-00-return-query-data-resp", "08 0000 a537", RESP, pdu(8, sub_function=0, values=[0xA537])),
    ("fc8-00-several-words", "08 0000 0102 0304", REQ, pdu(8, sub_function=0, values=[0x0102, 0x0304])),
    ("fc8-01-restart-comms-clear-log", "08 0001 ff00", REQ, pdu(8, sub_function=1, values=[0xFF00])),
    ("fc8-01-restart-comms-resp", "08 0001 0000", RESP, pdu(8, sub_function=1, values=[0])),
    ("fc8-04-force-listen-only", "08 0004 0000", REQ, pdu(8, sub_function=4, values=[0])),
    ("fc8-0a-clear-counters-req", "08 000a 0000", REQ, pdu(8, sub_function=10, values=[0])),
    ("fc8-0a-clear-counters-resp", "08 000a 0000", RESP, pdu(8, sub_function=10, values=[0])),
    ("fc8-exc", "88 01", RESP, pdu(8, exception_code=1)),
    # FC 11 get comm event counter (6.9): status, event count
    ("fc11-req", "0b", REQ, pdu(11)),
    ("fc11-resp", "0b ffff 0108", RESP, pdu(11, values=[0xFFFF, 0x108])),
    ("fc11-exc", "8b 01", RESP, pdu(11, exception_code=1)),
    # FC 12 get comm event log (6.10): status, event count, message count, events
    ("fc12-req", "0c", REQ, pdu(12)),
    ("fc12-resp", "0c 08 0000 0108 0121 20 00", RESP, pdu(12, values=[0, 0x108, 0x121, 0x20, 0x00])),
    ("fc12-exc", "8c 01", RESP, pdu(12, exception_code=1)),
    # FC 15 write multiple coils (6.11): 10 coils from address 19
    ("fc15-req", "0f 0013 000a 02 cd 01", REQ,
     pdu(15, start_address=19, quantity=10, values=[1, 0, 1, 1, 0, 0, 1, 1, 1, 0])),
    ("fc15-resp", "0f 0013 000a", RESP, pdu(15, start_address=19, quantity=10)),
    ("fc15-exc", "8f 01", RESP, pdu(15, exception_code=1)),
    # FC 16 write multiple registers (6.12)
    ("fc16-req", "10 0001 0002 04 000a 0102", REQ, pdu(16, start_address=1, quantity=2, values=[10, 258])),
    ("fc16-resp", "10 0001 0002", RESP, pdu(16, start_address=1, quantity=2)),
    ("fc16-exc", "90 02", RESP, pdu(16, exception_code=2)),
    # FC 17 report server id (6.13): byte count, server id, run indicator, device specific data
    ("fc17-req", "11", REQ, pdu(17)),
    ("fc17-resp", "11 05 01 ff 41 42 43", RESP, pdu(17, values=[1, 0xFF, 0x41, 0x42, 0x43])),
    ("fc17-exc", "91 01", RESP, pdu(17, exception_code=1)),
    # FC 20 read file record (6.14): two sub-requests (file 4 record 1 length 2, file 3 record 9 length 2)
    ("fc20-req", "14 0e 06 0004 0001 0002 06 0003 0009 0002", REQ, pdu(20, quantity=4, values=[4, 1, 2, 3, 9, 2])),
    ("fc20-resp", "14 0c 05 06 0dfe 0020 05 06 33cd 0040", RESP, pdu(20, values=[0x0DFE, 0x20, 0x33CD, 0x40])),
    ("fc20-exc", "94 02", RESP, pdu(20, exception_code=2)),
    # FC 21 write file record (6.15): file 4 record 7, three words; the response is an echo
    ("fc21-req", "15 0d 06 0004 0007 0003 06af 04be 100d", REQ,
     pdu(21, quantity=3, values=[4, 7, 3, 0x06AF, 0x04BE, 0x100D])),
    ("fc21-resp", "15 0d 06 0004 0007 0003 06af 04be 100d", RESP,
     pdu(21, quantity=3, values=[4, 7, 3, 0x06AF, 0x04BE, 0x100D])),
    ("fc21-exc", "95 02", RESP, pdu(21, exception_code=2)),
    # FC 22 mask write register (6.16)
    ("fc22-req", "16 0004 00f2 0025", REQ, pdu(22, start_address=4, values=[0xF2, 0x25])),
    ("fc22-resp", "16 0004 00f2 0025", RESP, pdu(22, start_address=4, values=[0xF2, 0x25])),
    ("fc22-exc", "96 02", RESP, pdu(22, exception_code=2)),
    # FC 23 read/write multiple registers (6.17): read 6 from 3, write 3 at 14
    ("fc23-req", "17 0003 0006 000e 0003 06 00ff 00ff 00ff", REQ,
     pdu(23, start_address=3, quantity=6, values=[255, 255, 255])),
    ("fc23-resp", "17 0c 00fe 0acd 0001 0003 000d 00ff", RESP, pdu(23, values=[0xFE, 0xACD, 1, 3, 0xD, 0xFF])),
    ("fc23-exc", "97 02", RESP, pdu(23, exception_code=2)),
    # FC 24 read FIFO queue (6.18): pointer 0x04DE; byte count (2 bytes), FIFO count, values
    ("fc24-req", "18 04de", REQ, pdu(24, start_address=0x04DE)),
    ("fc24-resp", "18 0006 0002 01b8 1284", RESP, pdu(24, quantity=2, values=[440, 4740])),
    ("fc24-exc", "98 03", RESP, pdu(24, exception_code=3)),
    # FC 43 / MEI 14 read device identification (6.21)
    ("fc43-14-req", "2b 0e 01 00", REQ, pdu(43, sub_function=14, values=[1, 0])),
    ("fc43-14-resp-basic", DEVICE_ID_BASIC, RESP, pdu(43, sub_function=14, quantity=3, values=[0, 1, 2])),
    ("fc43-14-resp-more-follows", DEVICE_ID_REGULAR_MORE, RESP, pdu(43, sub_function=14, quantity=2, values=[3, 4])),
    ("fc43-14-resp-no-objects", "2b 0e 04 01 00 00 00", RESP, pdu(43, sub_function=14, quantity=0)),
    ("fc43-exc", "ab 01", RESP, pdu(43, exception_code=1)),
    # FC 43 / MEI 13 CANopen general reference (6.20) and a reserved MEI type: the MEI type only
    ("fc43-13-req", "2b 0d 00 01 02 03", REQ, pdu(43, sub_function=13)),
    ("fc43-13-resp", "2b 0d 00 01 02 03", RESP, pdu(43, sub_function=13)),
    ("fc43-mei-reserved", "2b 05 01 02", REQ, pdu(43, sub_function=5)),
]


@pytest.mark.parametrize(("hex_pdu", "is_request", "expected"), [g[1:] for g in GOLDEN], ids=[g[0] for g in GOLDEN])
def test_golden(hex_pdu: str, is_request: bool, expected: DecodedPdu) -> None:
    assert decode_pdu(h(hex_pdu), is_request) == expected


def test_golden_covers_every_public_code_in_both_directions_and_as_exception() -> None:
    seen = {(h(g[1])[0], g[2]) for g in GOLDEN}
    for code in PUBLIC_CODES:
        assert {(code, REQ), (code, RESP), (code | 0x80, RESP)} <= seen, code


def test_public_table_is_exactly_the_spec_codes_with_zeek_names() -> None:
    assert sorted(FUNCTIONS) == list(PUBLIC_CODES)
    for code, spec in FUNCTIONS.items():
        assert spec.name == ZEEK_FUNCTION_CODES[code] == function_name(code)


USER_DEFINED = list(range(65, 73)) + list(range(100, 111))
RESERVED_SAMPLE = USER_DEFINED + [0, 9, 10, 13, 14, 18, 19, 25, 28, 40, 41, 90, 91, 125, 126, 127]


@pytest.mark.parametrize("code", RESERVED_SAMPLE)
@pytest.mark.parametrize("is_request", [REQ, RESP])
def test_reserved_and_user_defined_codes_keep_only_the_code(code: int, is_request: bool) -> None:
    assert decode_pdu(bytes([code]) + h("0102 0304 ff"), is_request) == pdu(code, flags=(R,))
    assert decode_pdu(bytes([code]), is_request) == pdu(code, flags=(R,))


def test_every_non_public_code_is_reserved() -> None:
    for code in set(range(128)) - set(PUBLIC_CODES):
        assert decode_pdu(bytes([code, 0, 0, 0, 1]), REQ).flags == {R}


# (id, hex, is_request, expected): short PDUs, byte counts that disagree, values out of the spec's range.
ODD = [
    ("empty", "", REQ, pdu(0, flags=(M,))),
    ("empty-resp", "", RESP, pdu(0, flags=(M,))),
    ("exception-without-code", "83", RESP, pdu(3, flags=(M,))),
    ("exception-trailing-bytes", "83 02 00", RESP, pdu(3, exception_code=2, flags=(L,))),
    ("exception-in-request", "83 02", REQ, pdu(3, exception_code=2, flags=(M,))),
    ("exception-unknown-code-fuzz-72", "9c 01", RESP, pdu(28, exception_code=1, flags=(R,))),
    ("exception-0x80", "80 01", RESP, pdu(0, exception_code=1, flags=(R,))),
    ("fc3-req-only-fc", "03", REQ, pdu(3, flags=(M,))),
    ("fc3-req-one-byte", "03 00", REQ, pdu(3, flags=(M,))),
    ("fc3-req-no-quantity", "03 006b", REQ, pdu(3, start_address=107, flags=(M,))),
    ("fc3-req-trailing", "03 006b 0003 00", REQ, pdu(3, start_address=107, quantity=3, flags=(L,))),
    ("fc3-req-qty-0-not-flagged", "03 0000 0000", REQ, pdu(3, start_address=0, quantity=0)),
    ("fc3-req-qty-2000-not-flagged", "03 0000 07d0", REQ, pdu(3, start_address=0, quantity=2000)),
    ("fc3-resp-no-count", "03", RESP, pdu(3, flags=(M,))),
    ("fc3-resp-short-data", "03 06 022b", RESP, pdu(3, values=[555], flags=(L,))),
    ("fc3-resp-extra-data", "03 02 022b 0000", RESP, pdu(3, values=[555], flags=(L,))),
    ("fc3-resp-odd-count", "03 05 022b 0000 00", RESP, pdu(3, values=[555, 0], flags=(M,))),
    ("fc1-resp-short", "01 02 ff", RESP, pdu(1, values=[1] * 8, flags=(L,))),
    ("fc1-resp-zero-count", "01 00", RESP, pdu(1)),
    ("fc5-bad-coil-value", "05 00ac 1234", REQ, pdu(5, start_address=172, values=[0x1234], flags=(M,))),
    ("fc5-no-value", "05 00ac", REQ, pdu(5, start_address=172, flags=(M,))),
    ("fc6-short", "06 0001 00", RESP, pdu(6, start_address=1, flags=(M,))),
    ("fc7-req-trailing", "07 00", REQ, pdu(7, flags=(L,))),
    ("fc7-resp-empty", "07", RESP, pdu(7, flags=(M,))),
    ("fc8-odd-data", "08 0000 a5", REQ, pdu(8, sub_function=0, flags=(M,))),
    ("fc8-no-sub-function", "08 00", REQ, pdu(8, flags=(M,))),
    ("fc11-resp-short", "0b 0000", RESP, pdu(11, values=[0], flags=(M,))),
    ("fc12-resp-count-disagrees", "0c 09 0000 0108 0121 20 00", RESP,
     pdu(12, values=[0, 0x108, 0x121, 0x20, 0], flags=(L,))),
    ("fc15-count-disagrees-with-qty", "0f 0013 000a 01 cd", REQ,
     pdu(15, start_address=19, quantity=10, values=[1, 0, 1, 1, 0, 0, 1, 1], flags=(L,))),
    ("fc15-no-count", "0f 0013 000a", REQ, pdu(15, start_address=19, quantity=10, flags=(M,))),
    ("fc16-count-disagrees-with-qty", "10 0001 0003 04 000a 0102", REQ,
     pdu(16, start_address=1, quantity=3, values=[10, 258], flags=(L,))),
    ("fc16-data-short", "10 0001 0002 04 000a", REQ, pdu(16, start_address=1, quantity=2, values=[10], flags=(L,))),
    ("fc16-resp-trailing", "10 0001 0002 00", RESP, pdu(16, start_address=1, quantity=2, flags=(L,))),
    ("fc17-resp-short", "11 05 01 ff", RESP, pdu(17, values=[1, 0xFF], flags=(L,))),
    ("fc20-req-bad-ref-type", "14 07 05 0004 0001 0002", REQ, pdu(20, quantity=2, values=[4, 1, 2], flags=(M,))),
    ("fc20-req-partial-sub-request", "14 09 06 0004 0001 0002 06 00", REQ,
     pdu(20, quantity=2, values=[4, 1, 2], flags=(M,))),
    ("fc20-req-count-disagrees", "14 0e 06 0004 0001 0002", REQ, pdu(20, quantity=2, values=[4, 1, 2], flags=(L,))),
    ("fc20-resp-overrun", "14 06 07 06 0dfe 0020", RESP, pdu(20, values=[0x0DFE, 0x20], flags=(L,))),
    ("fc21-req-record-overrun", "15 0b 06 0004 0007 0003 06af", REQ,
     pdu(21, quantity=3, values=[4, 7, 3, 0x06AF], flags=(L,))),
    ("fc23-write-count-disagrees", "17 0003 0006 000e 0002 06 00ff 00ff 00ff", REQ,
     pdu(23, start_address=3, quantity=6, values=[255] * 3, flags=(L,))),
    ("fc24-fifo-count-disagrees", "18 0006 0003 01b8 1284", RESP, pdu(24, quantity=3, values=[440, 4740], flags=(L,))),
    ("fc24-byte-count-disagrees", "18 0008 0002 01b8 1284", RESP, pdu(24, quantity=2, values=[440, 4740], flags=(L,))),
    ("fc43-14-fewer-objects", "2b 0e 01 01 00 00 02 " + obj(0, "ABC"), RESP,
     pdu(43, sub_function=14, quantity=2, values=[0], flags=(L,))),
    ("fc43-14-object-overrun", "2b 0e 01 01 00 00 01 00 05 4142", RESP,
     pdu(43, sub_function=14, quantity=1, values=[0], flags=(L,))),
    ("fc43-14-trailing", "2b 0e 01 01 00 00 01 " + obj(0, "A") + " 00", RESP,
     pdu(43, sub_function=14, quantity=1, values=[0], flags=(L,))),
    ("fc43-14-short-header", "2b 0e 01", RESP, pdu(43, sub_function=14, flags=(M,))),
    ("fc43-14-req-short", "2b 0e 01", REQ, pdu(43, sub_function=14, values=[1], flags=(M,))),
    ("fc43-no-mei", "2b", REQ, pdu(43, flags=(M,))),
]


@pytest.mark.parametrize(("hex_pdu", "is_request", "expected"), [o[1:] for o in ODD], ids=[o[0] for o in ODD])
def test_malformed_and_mismatched(hex_pdu: str, is_request: bool, expected: DecodedPdu) -> None:
    assert decode_pdu(h(hex_pdu), is_request) == expected


def test_accepts_other_bytes_like_inputs() -> None:
    raw = h(REGS_125)
    expected = decode_pdu(raw, RESP)
    assert decode_pdu(bytearray(raw), RESP) == expected
    assert decode_pdu(memoryview(raw), RESP) == expected


# ---- properties ---------------------------------------------------------------------------------------------

ALL_FLAGS = frozenset({M, L, R})
DEADLINE = timedelta(milliseconds=50)


def check_invariants(raw: bytes, decoded: DecodedPdu) -> None:
    assert isinstance(decoded, DecodedPdu)
    assert decoded.flags <= ALL_FLAGS
    assert all(isinstance(v, int) for v in decoded.values)
    if raw:
        assert decoded.function_code == raw[0] & 0x7F
    else:
        assert decoded.function_code == 0 and M in decoded.flags


@settings(max_examples=2000, deadline=DEADLINE)
@given(raw=st.binary(max_size=300), is_request=st.booleans())
def test_random_bytes_never_raise(raw: bytes, is_request: bool) -> None:
    check_invariants(raw, decode_pdu(raw, is_request))


@settings(max_examples=300, deadline=DEADLINE)
@given(
    code=st.sampled_from(PUBLIC_CODES),
    exception_bit=st.sampled_from([0, 0, 0, 0x80]),
    body=st.binary(max_size=300),
    is_request=st.booleans(),
)
def test_random_bodies_behind_public_codes_never_raise(
    code: int, exception_bit: int, body: bytes, is_request: bool
) -> None:
    raw = bytes([code | exception_bit]) + body
    check_invariants(raw, decode_pdu(raw, is_request))


@settings(max_examples=100, deadline=DEADLINE)
@given(mei=st.sampled_from([13, 14, 0, 255]), body=st.binary(max_size=260), is_request=st.booleans())
def test_random_mei_bodies_never_raise(mei: int, body: bytes, is_request: bool) -> None:
    raw = bytes([43, mei]) + body
    decoded = decode_pdu(raw, is_request)
    check_invariants(raw, decoded)
    assert decoded.sub_function == mei


@settings(max_examples=200, deadline=DEADLINE)
@given(code=st.sampled_from([3, 4, 23]), regs=st.lists(st.integers(0, 0xFFFF), max_size=127))
def test_register_responses_round_trip_beyond_123(code: int, regs: list[int]) -> None:
    raw = bytes([code, 2 * len(regs)]) + struct.pack(f">{len(regs)}H", *regs)
    assert decode_pdu(raw, RESP) == pdu(code, values=regs)


@settings(max_examples=200, deadline=DEADLINE)
@given(address=st.integers(0, 0xFFFF), coils=st.lists(st.integers(0, 1), min_size=1, max_size=1968))
def test_write_multiple_coils_round_trip(address: int, coils: list[int]) -> None:
    packed = sum(bit << i for i, bit in enumerate(coils)).to_bytes((len(coils) + 7) // 8, "little")
    raw = struct.pack(">BHHB", 15, address, len(coils), len(packed)) + packed
    assert decode_pdu(raw, REQ) == pdu(15, start_address=address, quantity=len(coils), values=coils)


@settings(max_examples=100, deadline=DEADLINE)
@given(fifo=st.lists(st.integers(0, 0xFFFF), max_size=200))
def test_fifo_responses_round_trip_past_a_one_byte_count(fifo: list[int]) -> None:
    raw = struct.pack(">BHH", 24, 2 + 2 * len(fifo), len(fifo)) + struct.pack(f">{len(fifo)}H", *fifo)
    assert decode_pdu(raw, RESP) == pdu(24, quantity=len(fifo), values=fifo)


# ---- Zeek names ------------------------------------------------------------------------------------------

ZEEK_FUNC = [
    (0x01, "READ_COILS"),
    (0x03, "READ_HOLDING_REGISTERS"),
    (0x11, "REPORT_SLAVE_ID"),
    (0x2B, "ENCAP_INTERFACE_TRANSPORT"),
    (0x5A, "PROGRAM_UNITY"),
    (0x5B, "OBJECT_MESSAGING"),
    (0x7F, "REPORT_LOCAL_ADDRESS"),
    (0x81, "READ_COILS_EXCEPTION"),
    (0x83, "READ_HOLDING_REGISTERS_EXCEPTION"),
    (0x88, "DIAGNOSTICS_EXCEPTION"),
    (0x89, "PROGRAM_484_EXCEPTION"),
    (0x98, "READ_FIFO_QUEUE_EXCEPTION"),
    (0xAB, "ENCAP_INTERFACE_TRANSPORT_EXCEPTION"),
    (0xDB, "OBJECT_MESSAGING_EXCEPTION"),
    # rows of Zeek's own baseline iti-bro_modbus_fuzz-72.modbus.log: unknown codes and their exceptions
    (0x1D, "unknown-29"),
    (0x21, "unknown-33"),
    (0x47, "unknown-71"),
    (0x9C, "unknown-156"),
    (0xA0, "unknown-160"),
    (0xAF, "unknown-175"),
    (0xB3, "unknown-179"),
    (0x00, "unknown-0"),
    (0x80, "unknown-128"),
    (0xFF, "REPORT_LOCAL_ADDRESS_EXCEPTION"),
    (0xFE, "PROGRAM_584_984_2_EXCEPTION"),
    (0xF0, "unknown-240"),
]


@pytest.mark.parametrize(("raw", "name"), ZEEK_FUNC)
def test_zeek_func_name(raw: int, name: str) -> None:
    assert zeek_func_name(raw) == name
    assert function_name(raw) == name


@pytest.mark.parametrize(
    ("code", "name"),
    [
        (1, "ILLEGAL_FUNCTION"),
        (2, "ILLEGAL_DATA_ADDRESS"),
        (3, "ILLEGAL_DATA_VALUE"),
        (4, "SLAVE_DEVICE_FAILURE"),
        (5, "ACKNOWLEDGE"),
        (6, "SLAVE_DEVICE_BUSY"),
        (7, "unknown-7"),
        (8, "MEMORY_PARITY_ERROR"),
        (10, "GATEWAY_PATH_UNAVAILABLE"),
        (11, "GATEWAY_TARGET_DEVICE_FAILED_TO_RESPOND"),
        (0, "unknown-0"),
        (255, "unknown-255"),
    ],
)
def test_exception_name(code: int, name: str) -> None:
    assert exception_name(code) == name


def test_zeek_row_for_an_exception_to_an_unknown_code() -> None:
    """What a modbus.log writer does with decode_pdu's output: func from the raw byte, exception by name."""
    raw = h("9c 01")
    decoded = decode_pdu(raw, RESP)
    assert (zeek_func_name(raw[0]), exception_name(decoded.exception_code or 0)) == ("unknown-156", "ILLEGAL_FUNCTION")


def test_names_are_importable_from_the_decoder_module() -> None:
    from otsentry.collectors import modbus_pdu

    assert modbus_pdu.function_name is function_name
    assert modbus_pdu.zeek_func_name is zeek_func_name
    assert modbus_pdu.exception_name is exception_name
