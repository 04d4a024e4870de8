"""Property-based tests: every parser and framer on arbitrary bytes, DNP3 transport reassembly on any split."""

from __future__ import annotations

from hypothesis import given, settings, strategies as st

from otsentry.collectors.ics.dnp3_app import parse_fragment
from otsentry.collectors.ics.dnp3_link import parse_link
from otsentry.collectors.ics.dnp3_transport import MAX_FRAGMENT, TransportReassembler
from otsentry.collectors.ics.enip import parse_encapsulation
from otsentry.collectors.ics.framing import FRAMES, StreamFramer
from otsentry.collectors.ics.iec104 import parse_apdu
from otsentry.collectors.ics.s7comm import parse_s7comm, parse_s7plus, split_cotp
from otsentry.contracts.events import OPERATION_CLASSES
from otsentry.synth.ics_frames import apdu_i, apdu_u, dnp3_frames, enip, tpkt_dt

junk = st.binary(max_size=600)


def _ok(msg) -> None:
    assert msg.operation_class in OPERATION_CLASSES
    assert isinstance(msg.operation_name, str) and msg.operation_name


@settings(max_examples=300, deadline=None)
@given(junk)
def test_dnp3_parsers_never_raise(data: bytes) -> None:
    parse_link(data)
    _ok(parse_fragment(data, 1, 2, 1, 0))


@settings(max_examples=300, deadline=None)
@given(st.binary(min_size=6, max_size=300), st.booleans())
def test_iec104_parser_never_raises(data: bytes, from_client: bool) -> None:
    _ok(parse_apdu(b"\x68" + bytes([len(data)]) + data, from_client, 1, 0))
    _ok(parse_apdu(data, from_client, 1, 0))  # any bytes at all, start octet or not


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=24), st.booleans())
def test_tiny_units_are_malformed_messages(data: bytes, from_client: bool) -> None:
    """The framers never yield these, but the parsers are total: a unit too short is a malformed message."""
    if len(data) < 6 or b"\x68" not in data:
        assert "malformed" in parse_apdu(data, from_client, 1, 0).flags
    if len(data) < 24:
        assert parse_encapsulation(data, from_client, 1, 0).flags == ("malformed",)


@settings(max_examples=300, deadline=None)
@given(junk)
def test_s7_parsers_never_raise(data: bytes) -> None:
    split_cotp(b"\x03\x00" + data)
    _ok(parse_s7comm(b"\x32" + data, 1, 0))
    _ok(parse_s7plus(b"\x72" + data, 1, 0))


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400), st.booleans())
def test_enip_parser_never_raises(data: bytes, from_client: bool) -> None:
    _ok(parse_encapsulation(data, from_client, 1, 0))
    _ok(parse_encapsulation(enip(0x006F, data), from_client, 1, 0))


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(sorted(FRAMES)), st.lists(junk, max_size=8))
def test_framers_account_for_every_byte(name: str, pieces: list[bytes]) -> None:
    """Units out + bytes skipped + bytes still buffered = bytes in; the buffer never exceeds one unit."""
    framer = StreamFramer(FRAMES[name])
    out: list = []
    skipped = sum(framer.feed(p, 1, 0, out) for p in pieces)
    assert sum(len(u.data) for u in out) + skipped + len(framer.buffer) == sum(len(p) for p in pieces)
    assert len(framer.buffer) <= 24 + 65535


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(["dnp3", "iec104", "tpkt", "enip"]), min_size=1, max_size=6), st.data())
def test_framers_cut_units_at_any_segmentation(kinds: list[str], data) -> None:
    """Valid units of one protocol, concatenated and cut anywhere, come out whole and in order."""
    name = kinds[0]
    make = {"dnp3": lambda i: dnp3_frames(bytes([0xC0 | i % 16, 1, 60, 1, 6]))[0], "iec104": lambda i: apdu_u(0x43)
            if i % 2 else apdu_i(45, 6, i, b"\x01\x00\x00\x01"), "tpkt": lambda i: tpkt_dt(b"\x32\x01" + bytes(i)),
            "enip": lambda i: enip(0x0065, bytes(i))}[name]
    units = [make(i) for i in range(len(kinds))]
    stream = b"".join(units)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=10)))
    framer, out, prev = StreamFramer(FRAMES[name]), [], 0
    for cut in cuts + [len(stream)]:
        assert framer.feed(stream[prev:cut], 1, 0, out) == 0
        prev = cut
    assert [u.data for u in out] == units and not framer.buffer


@settings(max_examples=200, deadline=None)
@given(st.binary(min_size=2, max_size=3000), st.integers(1, 249), st.integers(0, 63))
def test_dnp3_transport_rebuilds_any_split(fragment: bytes, segment: int, seq: int) -> None:
    reassembler = TransportReassembler()
    frames = dnp3_frames(fragment, seq=seq, segment=segment)
    done = [reassembler.feed((0, 3, 4), parse_link(f).data) for f in frames]
    assert done[:-1] == [None] * (len(frames) - 1) and done[-1] == fragment
    assert reassembler.counts.fragments == 1 and reassembler.counts.dropped_segments == 0


@settings(max_examples=200, deadline=None)
@given(st.binary(min_size=600, max_size=2000), st.data())
def test_dnp3_transport_drops_a_fragment_with_a_lost_or_reordered_segment(fragment: bytes, data) -> None:
    frames = dnp3_frames(fragment, segment=100)
    lost = data.draw(st.integers(1, len(frames) - 1))  # not the first: a lost FIR leaves nothing to rebuild
    order = [f for i, f in enumerate(frames) if i != lost]
    reassembler = TransportReassembler()
    done = [reassembler.feed((0, 3, 4), parse_link(f).data) for f in order]
    assert all(d is None for d in done)  # never a fragment with a hole in it
    c = reassembler.counts
    assert c.dropped_segments + c.dropped_fragments >= 1 or lost == len(frames) - 1
    reassembler.close()
    assert reassembler.counts.fragments == 0 and reassembler.pending_bytes == 0


def test_dnp3_transport_memory_is_bounded() -> None:
    reassembler = TransportReassembler()
    head = 0x40
    for i in range(200):  # FIR, then segments that never FIN
        reassembler.feed((0, 3, 4), bytes([head | i & 0x3F]) + bytes(249))
        head = 0
    assert reassembler.counts.too_long == 1 and reassembler.pending_bytes <= MAX_FRAGMENT


def test_a_new_connection_drops_the_old_partial_unit() -> None:
    """A SYN on the same ports: the framer's partial TPKT of the old connection is not glued to the new bytes."""
    from otsentry.collectors.reassembly import StreamState, feed_segment
    from otsentry.synth.ics_frames import s7_job

    state = StreamState(framer=StreamFramer(FRAMES["tpkt"]))
    job = tpkt_dt(s7_job(bytes([0x29, 0, 0, 0, 0, 0, 9]) + b"P_PROGRAM", ref=7))
    assert feed_segment(state, 100, True, b"", 1, 0) == []
    partial = feed_segment(state, 101, False, job[:10], 2, 0)
    assert partial == []
    out = feed_segment(state, 5000, True, b"", 3, 0) + feed_segment(state, 5001, False, job, 4, 0)
    whole = [u for u in out if not u.truncated]
    assert [u.data for u in whole] == [job] and all(u.data == job[:10] for u in out if u.truncated)
