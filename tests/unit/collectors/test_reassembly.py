"""TCP reassembly of Modbus/TCP streams: Wireshark-compatible framing on hand-made segments."""

from __future__ import annotations

import struct

from hypothesis import given, settings
from hypothesis import strategies as st

from otsentry.collectors.reassembly import StreamState, feed_segment, finish_stream, flush


def adu(tid: int, pdu: bytes, unit: int = 1, pid: int = 0) -> bytes:
    return struct.pack(">HHHB", tid, pid, len(pdu) + 1, unit) + pdu


READ = bytes([3, 0, 0, 0, 10])


def feed_all(segments, state=None):
    state = state or StreamState()
    out = []
    for i, (seq, payload) in enumerate(segments):
        out += feed_segment(state, seq, False, payload, i + 1, i)
    return state, out


def test_several_adus_in_one_segment():
    data = adu(1, READ) + adu(2, READ) + adu(3, READ)
    _, out = feed_all([(1000, data)])
    assert [a.transaction_id for a in out] == [1, 2, 3]
    assert all(a.pdu == READ and not a.truncated for a in out)


def test_adu_split_over_segments_completes_in_last_frame():
    data = adu(5, READ) + adu(6, READ)
    _, out = feed_all([(0, data[:3]), (3, data[3:13]), (13, data[13:])])
    assert [(a.transaction_id, a.frame) for a in out] == [(5, 2), (6, 3)]


def test_retransmission_dropped_and_counted():
    a = adu(1, READ)
    state, out = feed_all([(0, a), (0, a), (len(a), adu(2, READ))])
    assert [x.transaction_id for x in out] == [1, 2]
    assert state.retransmissions == 1


def test_partial_overlap_is_trimmed():
    a, b = adu(1, READ), adu(2, READ)
    state, out = feed_all([(0, a), (len(a) - 4, a[-4:] + b)])
    assert [x.transaction_id for x in out] == [1, 2]


def test_midstream_start_waits_for_an_adu_boundary():
    a, b = adu(1, READ), adu(2, READ)
    state, out = feed_all([(100, a[5:]), (100 + len(a) - 5, b)])
    assert [x.transaction_id for x in out] == [2]
    assert state.skipped_bytes == len(a) - 5


def test_gap_drops_pending_partial_as_truncated():
    a, b = adu(1, READ), adu(2, READ)
    state, out = feed_all([(0, a[:9]), (50, b)])
    assert out == [] and state.held_bytes == len(b)  # held: the hole may still be filled
    out = finish_stream(state, 3, 3)
    assert [(x.transaction_id, x.truncated) for x in out] == [(1, True), (2, False)]
    assert state.gaps == 1 and state.gap_bytes == 50 - 9


def test_non_modbus_payload_is_skipped_not_decoded():
    state, out = feed_all([(0, b"GET / HTTP/1.1\r\n\r\n")])
    out += finish_stream(state, 2, 2)  # held until then: it might have been the middle of a reordered start
    assert out == [] and state.skipped_bytes == 18 and state.gaps == 0


def test_midstream_start_sent_out_of_order_is_anchored_at_its_first_bytes():
    """No SYN seen, the stream's first ADU arrives last-first: the earliest bytes are where the stream starts."""
    a, b = adu(1, READ), adu(2, READ)
    state, out = feed_all([(100 + 9, a[9:]), (100 + 4, a[4:9]), (100, a[:4]), (100 + len(a), b)])
    assert [x.transaction_id for x in out] == [1, 2] and state.skipped_bytes == 0 and state.gaps == 0


def test_syn_sets_sequence_and_wraparound():
    state = StreamState()
    assert feed_segment(state, 2**32 - 1, True, b"", 1, 0) == []
    assert state.next_seq == 0 and state.saw_syn
    a = adu(9, READ)
    out = feed_segment(state, 0, False, a, 2, 1)
    assert [x.transaction_id for x in out] == [9]


def test_flush_reports_pending_adu_truncated():
    state, out = feed_all([(0, adu(1, READ)[:10])])
    assert out == []
    rest = flush(state, 9, 9)
    assert len(rest) == 1 and rest[0].truncated and rest[0].transaction_id == 1


@settings(max_examples=200, deadline=1000)
@given(st.lists(st.tuples(st.integers(0, 2**32 - 1), st.binary(max_size=300)), max_size=30))
def test_random_segments_never_raise_and_buffer_stays_bounded(segments):
    state, out = feed_all(segments)
    assert len(state.buffer) <= 6 + 0xFFFF
    for a in out:
        assert len(a.pdu) >= 1 or a.truncated


@settings(max_examples=100, deadline=1000)
@given(st.lists(st.binary(min_size=1, max_size=20), min_size=1, max_size=8), st.data())
def test_any_segmentation_gives_the_same_adus(pdus, data):
    stream = b"".join(adu(i, bytes([3]) + p) for i, p in enumerate(pdus))
    cuts = sorted(data.draw(st.sets(st.integers(1, len(stream) - 1), max_size=6)))
    bounds = [0, *cuts, len(stream)]
    segments = [(bounds[i], stream[bounds[i] : bounds[i + 1]]) for i in range(len(bounds) - 1)]
    _, out = feed_all(segments)
    # Wireshark's rule: a segment that starts at an ADU boundary must look like Modbus/TCP; our ADUs always do.
    assert [a.transaction_id for a in out] == list(range(len(pdus)))
    assert [a.pdu[1:] for a in out] == pdus


# -- out of order, duplicates, overlaps: what the PLC's stack rebuilds -----------------------------------------------

from otsentry.collectors.reassembly import (  # noqa: E402  (kept beside the tests that need them)
    OVERLAP_CONFLICT, ReassemblyLimits, skip_if_acked,
)

ISN = 5000


def feed_stream(segments, limits=None, syn=True):
    """Feed (offset, bytes) pieces of one direction after its SYN (sequence numbers from ISN + 1)."""
    state = StreamState()
    out = []
    if syn:
        out += feed_segment(state, ISN, True, b"", 0, 0)
    for i, (off, data) in enumerate(segments):
        out += feed_segment(state, (ISN + 1 + off) % 2**32, False, data, i + 1, i, limits or ReassemblyLimits())
    out += finish_stream(state, len(segments) + 1, len(segments) + 1)
    return state, out


@settings(max_examples=200, deadline=None)
@given(st.lists(st.binary(min_size=1, max_size=20), min_size=1, max_size=8), st.data())
def test_any_segmentation_order_and_duplication_gives_the_same_adus(pdus, data):
    stream = b"".join(adu(i, bytes([3]) + p) for i, p in enumerate(pdus))
    cuts = sorted(data.draw(st.sets(st.integers(1, len(stream) - 1), max_size=8)))
    bounds = [0, *cuts, len(stream)]
    pieces = [(bounds[i], stream[bounds[i] : bounds[i + 1]]) for i in range(len(bounds) - 1)]
    dups = data.draw(st.lists(st.sampled_from(pieces), max_size=4))  # retransmissions, anywhere
    order = data.draw(st.permutations(pieces + dups))
    state, out = feed_stream(order)
    assert [a.transaction_id for a in out] == list(range(len(pdus)))
    assert [a.pdu[1:] for a in out] == pdus and not any(a.truncated for a in out)
    assert state.gaps == 0 and state.overlap_conflicts == 0 and not state.held


@settings(max_examples=200, deadline=None)
@given(st.lists(st.binary(min_size=1, max_size=20), min_size=1, max_size=6), st.data())
def test_consistent_overlaps_in_any_order_give_the_same_adus(pdus, data):
    stream = b"".join(adu(i, bytes([3]) + p) for i, p in enumerate(pdus))
    n = len(stream)
    covering = [(0, stream[: n // 2 + 1]), (n // 2, stream[n // 2 :])]
    extra = data.draw(st.lists(st.tuples(st.integers(0, n - 1), st.integers(1, 12)), max_size=5))
    pieces = covering + [(a, stream[a : a + k]) for a, k in extra]
    state, out = feed_stream(data.draw(st.permutations(pieces)))
    assert [a.pdu[1:] for a in out] == pdus
    assert state.overlap_conflicts == 0


def test_reversed_segments_are_put_back_in_order():
    a = adu(1, bytes([6, 0, 100, 0x07, 0xD0]))  # write register 100 := 2000
    state, out = feed_stream([(9, a[9:]), (4, a[4:9]), (0, a[:4])])
    assert [(x.transaction_id, x.pdu) for x in out] == [(1, a[7:])]
    assert state.out_of_order == 2 and state.held_peak == len(a) - 4 and state.gaps == 0
    assert out[0].frame == 3  # delivered when the hole was filled, as the PLC could read it


def test_conflicting_overlap_keeps_the_first_bytes_and_is_noted():
    a = adu(1, bytes([6, 0, 100, 0x07, 0xD0]))
    forged = bytes(x ^ 0xFF for x in a[6:10])
    state, out = feed_stream([(0, a[:10]), (6, forged), (10, a[10:])])
    assert [x.pdu for x in out] == [a[7:]]
    assert state.overlap_conflicts == 1
    assert [n[0] for n in state.notes] == [OVERLAP_CONFLICT]


def test_conflicting_overlap_between_held_segments_is_noted():
    a = adu(1, bytes([6, 0, 100, 0x07, 0xD0]))
    state, out = feed_stream([(6, a[6:]), (4, a[4:6] + b"\xAA\xBB"), (0, a[:4])])
    assert [x.pdu for x in out] == [a[7:]]  # the bytes seen first (held) win
    assert state.overlap_conflicts == 1


def test_a_hole_is_given_up_when_the_peer_acknowledges_past_it():
    a, b = adu(1, READ), adu(2, READ)
    state = StreamState()
    feed_segment(state, ISN, True, b"", 0, 0)
    assert feed_segment(state, ISN + 1 + len(a), False, b, 2, 2) == []  # a was lost by the capture
    assert skip_if_acked(state, ISN + 1, 3, 3) == []  # the receiver still waits for it: keep waiting
    out = skip_if_acked(state, ISN + 1 + len(a) + len(b), 4, 4)
    assert [x.transaction_id for x in out] == [2] and state.gaps == 1 and state.gap_bytes == len(a)


def test_held_bytes_are_bounded_and_time_out():
    a, b = adu(1, READ), adu(2, READ)
    tight = ReassemblyLimits(max_held_bytes=len(b) * 2, ooo_timeout_s=1.0)
    state, out = feed_stream([(100 + 20 * k, b) for k in range(5)], tight)  # five segments past a 100-byte hole
    assert len(state.held) <= 2 and state.gaps >= 2
    state = StreamState()
    feed_segment(state, ISN, True, b"", 0, 0)
    feed_segment(state, ISN + 1 + 50, False, a, 1, 0, tight)
    late = feed_segment(state, ISN + 1 + 50 + len(a), False, b, 2, int(2e9), tight)  # 2 s later: given up
    assert [x.transaction_id for x in late] == [1, 2] and state.gaps == 1


def test_far_ahead_segment_is_a_gap_not_something_to_wait_for():
    state, out = feed_stream([(0, adu(1, READ)), (10 << 20, adu(2, READ))])
    assert [x.transaction_id for x in out] == [1, 2] and state.gaps == 1 and state.held_peak == 0
