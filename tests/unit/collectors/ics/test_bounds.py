"""Memory bounds of the OT path, whatever the peers send: DNP3 fragments in progress per connection, out-of-order
bytes held over all OT streams, holes of quiet streams, and evasion notes reported as they happen."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from otsentry.collectors.chunks import chunk_from_packets
from otsentry.collectors.collector import Collector, CollectorConfig, collect_chunks
from otsentry.collectors.ics.dnp3_transport import MAX_FRAGMENT, MAX_OPEN, TransportReassembler
from otsentry.synth.frames import Direction, Link
from otsentry.synth.ics_frames import apdu_u

ACK, PSH, SYN = 0x10, 0x08, 0x02
_S = 1_000_000_000


def test_forged_link_addresses_cannot_open_unbounded_fragments() -> None:
    reassembler = TransportReassembler()
    for i in range(5000):  # FIR without FIN, each from another forged source address
        reassembler.feed((0, i, 4), bytes([0x40]) + bytes(200))
    assert len(reassembler._open) == MAX_OPEN  # noqa: SLF001 - the bound itself is what is tested
    assert reassembler.counts.evicted == 5000 - MAX_OPEN == reassembler.counts.dropped_fragments
    assert reassembler.pending_bytes == MAX_OPEN * 200
    # the newest sequences are the ones kept: one of them still completes
    assert reassembler.feed((0, 4999, 4), bytes([0x80 | 1]) + b"end") == bytes(200) + b"end"


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 40), st.integers(0, 255), st.integers(0, 300)), max_size=300))
def test_every_fragment_started_is_completed_dropped_or_open(segments) -> None:
    reassembler = TransportReassembler()
    started = 0
    for key, head, size in segments:
        started += bool(head & 0x40)
        reassembler.feed((0, key, 1), bytes([head]) + bytes(size))
        assert len(reassembler._open) <= MAX_OPEN  # noqa: SLF001
        assert reassembler.pending_bytes <= MAX_OPEN * MAX_FRAGMENT
    c = reassembler.counts
    assert c.fragments + c.dropped_fragments + len(reassembler._open) == started  # noqa: SLF001


def _held_streams(connections: int, hole: int, ts0: int) -> list[tuple[int, int, bytes]]:
    """IEC 104 connections (SYN seen) whose client sends 100 TESTFRs after a hole of ``hole`` bytes (never filled)."""
    records = []
    for i in range(connections):
        out = Direction(f"127.0.1.{1 + i % 200}", "127.0.0.2", 40000 + i, 2404, Link())
        records.append((ts0 + i * 1000, 1, out.tcp(999, 0, SYN)))
        records.append((ts0 + i * 1000 + 1, 1, out.tcp(1000 + hole, 1, ACK | PSH, apdu_u(0x43) * 100)))
    return records


def test_ot_streams_share_the_collectors_held_bytes_bound() -> None:
    """50 streams each hold 600 bytes after a hole; the collector keeps at most 6,000 held over all of them."""
    config = CollectorConfig(max_held_total_bytes=6000)
    col = Collector(config)
    records = _held_streams(50, 100, 10 * _S)
    batch = col.process(chunk_from_packets(records, 1))
    held = sum(s.held_bytes for s in col._ics.streams.values())  # noqa: SLF001 - the bound is what is tested
    assert 0 < held <= 6000
    gaps = [n for n in batch.notes if n.kind == "gap"]
    assert len(gaps) >= 40 and all(n.dst_port == 2404 and n.nbytes == 100 for n in gaps)  # noted at once
    final = col.finish()
    counts = col.stats.protocols["iec104"]
    assert counts.messages == 50 * 100  # every APDU decoded: none lost to the bound, only the hole is
    assert len(gaps) + len([n for n in final.notes if n.kind == "gap"]) == 50


def test_a_quiet_streams_hole_times_out_while_others_talk() -> None:
    """One stream holds bytes after a hole and goes quiet; 40 s later (timeout 30 s) the hole is given up in the
    batch that sees other traffic, not only when the capture ends."""
    quiet = _held_streams(1, 100, 10 * _S)
    other = Direction("127.0.0.9", "127.0.0.3", 40999, 2404, Link())
    later = [(50 * _S, 1, other.tcp(1000, 1, ACK | PSH, apdu_u(0x43)))]
    col = Collector(CollectorConfig())
    batches = list(collect_chunks([chunk_from_packets(quiet, 1), chunk_from_packets(later, 3)], collector=col))
    assert [n.kind for n in batches[0].notes] == []
    assert [n.kind for n in batches[1].notes] == ["gap"] and not batches[2].notes
    assert col.stats.protocols["iec104"].messages == 100 + 1  # the held APDUs decoded after the hole


def test_bytes_that_frame_no_unit_are_counted_per_protocol() -> None:
    """Junk before a DNP3 start octet in a UDP datagram (the frame after it is read), and before a TPKT header in
    an S7 stream (no sync octets to find the next unit by: the segment's rest is skipped)."""
    from otsentry.synth.ics_frames import dnp3_app, dnp3_frames, s7_job, tpkt_dt

    link = Link()
    udp = Direction("127.0.0.5", "127.0.0.6", 40001, 20000, link)
    frame = dnp3_frames(dnp3_app(1, 0x01, bytes([60, 1, 6])))[0]
    tcp = Direction("127.0.0.7", "127.0.0.8", 40002, 102, link)
    job = tpkt_dt(s7_job(bytes([0x04, 0])))
    records = [(_S, 1, udp.udp(b"\xde\xad\xbe" + frame)),
               (_S + 1, 1, tcp.tcp(999, 0, SYN)),
               (_S + 2, 1, tcp.tcp(1000, 1, ACK | PSH, b"\xff\xff\xff\xff\xff" + job))]
    col = Collector(CollectorConfig())
    list(collect_chunks([chunk_from_packets(records, 1)], collector=col))
    dnp3, cotp = col.stats.protocols["dnp3"], col.stats.protocols["cotp"]
    assert (dnp3.messages, dnp3.skipped_bytes) == (1, 3)
    assert "s7comm" not in col.stats.protocols  # TPKT has no sync octets: the segment's rest is skipped, counted
    assert cotp.skipped_bytes == 5 + len(job)
