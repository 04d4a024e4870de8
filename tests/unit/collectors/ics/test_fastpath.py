"""The OT fast path gives what the general path gives: counts, operations, their order, on any segmentation.

The general path (reassembly, framer, parser, pairer, one segment at a time) is the reference: every capture here
is decoded both ways (``CollectorConfig(fast_path=False)``) and in small chunks, so that connections go back and
forth between the two paths and requests are carried from one chunk to the next.
"""

from __future__ import annotations

import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from otsentry.collectors.collector import CollectorConfig
from otsentry.collectors.source import CaptureRun
from otsentry.synth.frames import Direction, Link
from otsentry.synth.ics_traffic import EXCHANGES, PORTS, PROTOCOLS, write_ics_capture
from otsentry.synth.pcapwriter import PcapWriter
from tests.helpers import capture_params, shared_ics_pcaps

ACK, PSH, SYN = 0x10, 0x08, 0x02


def _decode(path, chunk_bytes=None, **kw):
    run = CaptureRun(path, CollectorConfig(**kw))
    if chunk_bytes:
        run.chunk_bytes = chunk_bytes
    ops, deferred = [], 0
    for batch in run:
        deferred += getattr(batch.operations, "deferred", 0)
        ops.extend(batch.operations)
    return ops, run.stats.protocols, deferred


def _same_both_ways(path, chunk_bytes=None) -> int:
    fast, fast_counts, deferred = _decode(path, chunk_bytes)
    slow, slow_counts, none = _decode(path, chunk_bytes, fast_path=False)
    assert none == 0
    assert fast == slow  # field for field, in the same order
    assert fast_counts == slow_counts
    return deferred


@pytest.mark.parametrize("path", capture_params(shared_ics_pcaps()))
@pytest.mark.parametrize("chunk_bytes", [None, 3000])
def test_shared_captures_same_on_both_paths(path, chunk_bytes):
    _same_both_ways(path, chunk_bytes)


def test_shared_captures_take_the_fast_path():
    """Not a vacuous equality: the polling parts of the public captures do go the fast way."""
    taken = {p.name: _decode(p, 3000)[2] for p in shared_ics_pcaps()}
    assert taken["icsnpp-dnp3-dnp3_example.pcap"] > 100
    assert taken["parsitects-iec104-iec104.pcap"] > 5
    assert sum(taken.values()) > 300


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_generated_polling_same_and_fast(tmp_path, protocol):
    path = tmp_path / f"{protocol}.pcap"
    write_ics_capture(path, protocol, 4000)
    deferred = _same_both_ways(path)
    ops, counts, _ = _decode(path)
    assert deferred == len(ops) == 2000  # every exchange went the fast way, none was built until read
    assert _same_both_ways(path, 5000) > 1500  # chunk boundaries: requests carried over, then answered
    small, small_counts, _ = _decode(path, 5000)
    key = lambda op: (op.request_frame, op.response_frame)
    assert sorted(small, key=key) == sorted(ops, key=key)
    assert small_counts == counts


def _write(path, protocol: str, segments: list[tuple[bool, int, bytes, int]]) -> None:
    """Segments (from the client?, sequence offset in its direction, payload, TCP flags) in capture order."""
    link = Link()
    out = Direction("10.0.0.8", "10.0.0.3", 40000, PORTS[protocol], link)
    back = Direction("10.0.0.3", "10.0.0.8", PORTS[protocol], 40000, link.reverse())
    with PcapWriter(path) as writer:
        for i, (client, offset, payload, flags) in enumerate(segments):
            seq, ack = (1000 + offset, 5000) if client else (5000 + offset, 1000)
            writer.write(1_700_000_000 * 10**9 + i * 1_000_000, (out if client else back).tcp(
                seq, ack, flags, payload, ident=i))


@st.composite
def _conversations(draw):
    """A poll of one protocol, cut into segments at random, with handshakes, retransmissions and swaps."""
    protocol = draw(st.sampled_from(PROTOCOLS))
    rng = random.Random(draw(st.integers(0, 2**16)))
    streams = {True: b"", False: b""}
    segments: list[tuple[bool, int, bytes, int]] = []
    handshake = draw(st.booleans())
    rare = draw(st.sampled_from([0, 6, 30]))  # one unit in ``rare`` cut (0: none)
    if handshake:
        segments += [(True, -1, b"", SYN), (False, -1, b"", SYN | ACK)]
    for i in range(draw(st.integers(1, 30))):
        request, answer = EXCHANGES[protocol](i, rng)
        for client, data in ((True, request), (False, answer)):
            cuts: list[int] = []  # most units are whole segments (the fast path's case), some are cut
            if rare and draw(st.integers(0, rare - 1)) == 0:
                cuts = sorted(draw(st.lists(st.integers(1, max(1, len(data) - 1)), min_size=1, max_size=2,
                                            unique=True)))
            start = len(streams[client])
            streams[client] += data
            bounds = [0, *cuts, len(data)]
            for a, b in zip(bounds, bounds[1:]):
                segments.append((client, start + a, data[a:b], ACK | PSH))
    for _ in range(draw(st.integers(0, 3)) if rare else 0):
        k = draw(st.integers(0, len(segments) - 1))
        action = draw(st.sampled_from(["retransmit", "swap", "drop", "ack"]))
        if action == "retransmit":
            segments.insert(k + 1, segments[k])
        elif action == "swap" and k + 1 < len(segments):
            segments[k], segments[k + 1] = segments[k + 1], segments[k]
        elif action == "drop" and len(segments) > 1:
            del segments[k]
        elif action == "ack":
            client = segments[k][0]
            segments.insert(k + 1, (not client, len(streams[not client]), b"", ACK))
    return protocol, segments, draw(st.sampled_from([None, 600, 2000]))


@given(_conversations())
@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                  HealthCheck.too_slow])
def test_any_segmentation_same_on_both_paths(tmp_path, conversation):
    protocol, segments, chunk_bytes = conversation
    path = tmp_path / "c.pcap"
    _write(path, protocol, segments)
    _same_both_ways(path, chunk_bytes)


def test_segmentations_exercise_both_paths(tmp_path):
    """The generator above gives conversations the fast path takes in part, and ones it leaves."""
    deferred = []

    @given(_conversations())
    @settings(max_examples=60, deadline=None, database=None, derandomize=True)
    def run(conversation):
        protocol, segments, chunk_bytes = conversation
        path = tmp_path / "e.pcap"
        _write(path, protocol, segments)
        deferred.append(_decode(path, chunk_bytes)[2])

    run()
    assert sum(d > 0 for d in deferred) >= 20 and sum(d == 0 for d in deferred) >= 10


def test_a_request_answered_in_the_next_chunk(tmp_path):
    """The chunk ends between a request and its answer: the fast path carries the request over."""
    path = tmp_path / "s7.pcap"
    write_ics_capture(path, "s7comm", 200)
    ops, counts, _ = _decode(path, 1111)  # an odd chunk size cuts some exchanges in two
    assert len(ops) == 100 and all(op.latency_s is not None for op in ops)
    assert counts["s7comm"].unanswered == 0 and counts["s7comm"].orphan_responses == 0


def test_unanswered_and_orphans_counted_as_the_pairer_does(tmp_path):
    """Requests without answers (another request of the same key follows) and answers without requests."""
    rng = random.Random(3)
    segments, offsets = [], {True: 0, False: 0}
    for i in range(40):
        request, answer = EXCHANGES["enip"](i % 7, rng)  # sender contexts repeat: keys repeat
        for client, data in ((True, request), (False, answer)):
            if (client and i % 5 == 0) or (not client and i % 3 == 0):
                continue
            segments.append((client, offsets[client], data, ACK | PSH))
            offsets[client] += len(data)
    path = tmp_path / "enip.pcap"
    _write(path, "enip", segments)
    assert _same_both_ways(path) > 0
    _, counts, _ = _decode(path)
    assert counts["enip"].unanswered > 0 and counts["enip"].orphan_responses > 0


def test_dnp3_crc_error_counted_not_decoded(tmp_path):
    rng = random.Random(5)
    segments, offsets = [], {True: 0, False: 0}
    for i in range(10):
        request, answer = EXCHANGES["dnp3"](i, rng)
        if i == 4:
            answer = answer[:20] + bytes([answer[20] ^ 0xFF]) + answer[21:]  # a data block's byte, not its CRC
        for client, data in ((True, request), (False, answer)):
            segments.append((client, offsets[client], data, ACK | PSH))
            offsets[client] += len(data)
    path = tmp_path / "dnp3.pcap"
    _write(path, "dnp3", segments)
    assert _same_both_ways(path) == 9
    ops, counts, _ = _decode(path)
    assert counts["dnp3"].crc_errors == 1 and counts["dnp3"].link_frames == 20 and counts["dnp3"].messages == 19
    assert counts["dnp3"].unanswered == 1 and sum(op.latency_s is None for op in ops) == 1


def test_operations_are_built_when_read(tmp_path):
    path = tmp_path / "iec104.pcap"
    write_ics_capture(path, "iec104", 400)
    batches = list(CaptureRun(path, CollectorConfig()))
    ops = [b.operations for b in batches if len(b.operations)]
    assert ops and ops[0].deferred == len(ops[0]) == 200  # counted, not built
    first = list(ops[0])
    assert ops[0].deferred == 0 and first == list(ops[0]) and ops[0] == tuple(first)
    frames = [op.response_frame or op.request_frame for op in first]
    assert frames == sorted(frames)  # in the order they completed
    assert ops[0].plus(()) is ops[0]
