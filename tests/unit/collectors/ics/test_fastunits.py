"""What the fast path reads of a unit over arrays is what the decoder and the parsers read, byte for byte.

Property: for any bytes (golden units of every protocol, mutated at random), a unit ``classify`` accepts is one
``UnitDecoder`` makes the same message of (protocol, request, error status, name, key, malformed flag, CRC
errors), and the parser run on the bytes the fast path keeps gives that message again. The DNP3 object-header
walk over arrays is checked against ``walk_objects`` on generated headers.
"""

from __future__ import annotations

import random
import struct

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from otsentry.collectors.ics.counts import ProtocolCounts
from otsentry.collectors.ics.dnp3_objects import walk_objects
from otsentry.collectors.ics.fast_dnp3 import walk_malformed
from otsentry.collectors.ics.fastunits import NAMES, PROTOCOLS, classify, key_columns, message_of
from otsentry.collectors.ics.message import Pdu
from otsentry.collectors.ics.units import UnitDecoder
from otsentry.synth.ics_frames import (apdu_i, apdu_s, apdu_u, cip_request, cip_rr, dnp3_app, dnp3_frames, enip,
                                       s7_job, s7_szl, tpkt_dt)
from otsentry.synth.ics_traffic import EXCHANGES

FRAMER = {"dnp3": "dnp3", "iec104": "iec104", "s7comm": "tpkt", "enip": "enip"}
FRAGMENTS = (dnp3_app(1, 0x01, b"\x3c\x02\x06\x3c\x03\x06\x3c\x04\x06\x3c\x01\x06"),
             dnp3_app(2, 0x81, b"\x01\x02\x00\x00\x03\x81\x81\x01\x01", iin=0x0000),
             dnp3_app(3, 0x81, b"", iin=0x0004), dnp3_app(4, 0x0D), dnp3_app(5, 0x82, b"", iin=0x8000),
             dnp3_app(6, 0x05, b"\x0c\x01\x28\x01\x00\x03\x00" + bytes([0x41, 1]) + bytes(9)),
             dnp3_app(7, 0x02, b"\x32\x01\x07\x01" + bytes(6)),
             dnp3_app(8, 0x81, b"\x1e\x05\x00\x00\x01" + bytes(10), iin=0x0100),
             dnp3_app(9, 0x00), dnp3_app(9, 0x14, b"\x3c\x02\x06"))


def _seeds() -> list[tuple[str, bytes]]:
    rng = random.Random(11)
    out = []
    for protocol, exchange in EXCHANGES.items():
        for i in range(12):
            out.extend((FRAMER[protocol], unit) for unit in exchange(i, rng))
    out += [("iec104", apdu_u(0x07)), ("iec104", apdu_u(0x83)), ("iec104", apdu_s(5)),
            ("iec104", apdu_i(102, 6, 1, b"\x05\x00\x00")), ("iec104", apdu_i(1, 5, 1, b"\x05\x00\x00\x01")),
            ("iec104", apdu_i(45, 47, 1, b"\x05\x00\x00\x01", negative=True)),
            ("iec104", apdu_i(13, 3, 7, b"\x01\x00\x00" + struct.pack("<f", 1.5) + b"\0", count=0x82)),
            ("tpkt", tpkt_dt(s7_job(b"\x04\x01" + bytes(12), ref=9, rosctr=3) + b"\x0a")),
            ("tpkt", tpkt_dt(s7_job(b"\xf0\x00\x00\x01\x00\x01\x01\xe0"))),
            ("tpkt", tpkt_dt(s7_szl(0x11, 3))),
            ("enip", enip(0x65, b"\x01\x00\x00\x00")), ("enip", enip(0x63)),
            ("enip", enip(0x6F, cip_rr(cip_request(0x4C, b"\x91\x03abc\x00", b"\x01\x00")))),
            ("enip", enip(0x6F, cip_rr(bytes([0xCC, 0, 0x05, 0])))),
            ("enip", enip(0x70, struct.pack("<IHH", 0, 0, 2) + struct.pack("<HHI", 0xA1, 4, 7)
                          + struct.pack("<HHH", 0xB1, 10, 3) + bytes([0x0E, 3, 0x20, 1, 0x24, 1, 0x30, 7])))]
    for fragment in FRAGMENTS:
        out.append(("dnp3", dnp3_frames(fragment, from_master=fragment[1] < 0x80)[0]))
    return out


SEEDS = _seeds()


def _check(framer: str, data: bytes, from_client: bool) -> bool:
    u8 = np.frombuffer(data + bytes(32), dtype=np.uint8)[: len(data)] if data else np.zeros(1, np.uint8)
    if not data:
        return False
    got = classify(framer, u8, np.array([0]), np.array([len(data)]), np.array([from_client]))
    if not got.ok[0]:
        return False
    counts: dict[str, ProtocolCounts] = {}
    msgs = UnitDecoder(counts).decode(framer, 0 if from_client else 1, from_client, Pdu(data, 7, 99))
    makes = True if got.message is None else bool(got.message[0])
    assert len(msgs) == (1 if makes else 0)
    if got.crc_errors is not None:
        assert counts["dnp3"].crc_errors == int(got.crc_errors[0])
    if not makes:
        return True
    msg = msgs[0]
    assert msg.protocol == PROTOCOLS[int(got.protocol[0])]
    assert msg.request == bool(got.request[0])
    assert (msg.status is not None) == bool(got.error[0])
    assert msg.operation_name == NAMES[int(got.name[0])]
    assert (msg.key is not None) == bool(got.keyed[0])
    if msg.key is not None:
        assert key_columns(msg.protocol, msg.key) == tuple(int(x) for x in got.key[0])
    assert ("malformed" in msg.flags) == (got.malformed is not None and bool(got.malformed[0]))
    assert "truncated" not in msg.flags
    if got.buf is None:
        kept, stations = data, (0, 0)
    else:
        at, n = int(got.at[0]), int(got.length[0])
        kept, stations = got.buf[at : at + n].tobytes(), tuple(int(x) for x in got.stations[0])
    assert message_of(int(got.protocol[0]), kept, from_client, 7, 99, *stations) == msg
    return True


def test_every_seed_is_read_over_arrays():
    accepted = sum(_check(framer, unit, client) for framer, unit in SEEDS for client in (True, False))
    assert accepted >= len(SEEDS)  # each seed read at least from one side


@given(st.integers(0, len(SEEDS) - 1), st.booleans(),
       st.lists(st.tuples(st.integers(0, 300), st.integers(0, 255)), max_size=4), st.integers(0, 12))
@settings(max_examples=3000, deadline=None)
def test_mutated_units_agree_with_the_decoder(seed, from_client, changes, cut):
    framer, unit = SEEDS[seed]
    data = bytearray(unit)
    for pos, value in changes:
        data[pos % len(data)] = value
    data = data[: len(data) - cut] if cut < len(data) else data
    _check(framer, bytes(data), from_client)


@given(st.sampled_from(FRAGMENTS), st.lists(st.tuples(st.integers(0, 300), st.integers(0, 255)), max_size=4),
       st.integers(0, 6), st.booleans())
@settings(max_examples=2000, deadline=None)
def test_mutated_dnp3_fragments_agree_with_the_decoder(fragment, changes, cut, from_master):
    """Fragments changed before framing (CRCs right): the application layer and the object walk are exercised."""
    data = bytearray(fragment)
    for pos, value in changes:
        if data:
            data[pos % len(data)] = value
    data = data[: max(0, len(data) - cut)]
    _check("dnp3", dnp3_frames(bytes(data), from_master=from_master)[0], from_master)


_HEADER = st.tuples(st.sampled_from([0, 1, 2, 10, 12, 20, 30, 32, 41, 50, 60, 70, 110, 120, 3, 255]),
                    st.integers(0, 8),
                    st.sampled_from([0x00, 0x01, 0x02, 0x06, 0x07, 0x08, 0x09, 0x0B, 0x17, 0x28, 0x39, 0x5B, 0x0A,
                                     0x71, 0x03, 0x04, 0x05, 0x18]),
                    st.binary(max_size=12))


@given(st.lists(_HEADER, max_size=6), st.booleans(), st.integers(0, 4))
@settings(max_examples=3000, deadline=None)
def test_object_walk_over_arrays_equals_walk_objects(headers, with_data, cut):
    data = b"".join(bytes([g, v, q]) + rest for g, v, q, rest in headers)
    data = data[: max(0, len(data) - cut)]
    buf = np.frombuffer(b"\xc1\x81\x00\x00" + data + bytes(8), dtype=np.uint8)
    decided, malformed = walk_malformed(buf, np.array([0]), np.array([4 + len(data)]), np.array([4]),
                                        np.array([with_data]))
    if decided[0]:
        assert bool(malformed[0]) == walk_objects(b"\xc1\x81\x00\x00" + data, 4, with_data).malformed
