"""IP fragment reassembly: any order, duplicates, overlaps, bounds, IPv4 and IPv6, and the collector on top of it."""

from __future__ import annotations

import struct

from hypothesis import given, settings
from hypothesis import strategies as st

from otsentry.collectors.capture import chunk_from_packets
from otsentry.collectors.collector import Collector, CollectorConfig
from otsentry.collectors.defrag import (
    FRAGMENT_OVERLAP_CONFLICT, TINY_FRAGMENT, DefragLimits, Defragmenter, parse_fragment,
)
from otsentry.synth.frames import ethernet, ipv4, ipv6, tcp

CLI, SRV = "10.0.0.5", "10.0.0.9"
MAC_A, MAC_B = "02:00:00:00:00:01", "02:00:00:00:00:02"


def fragments_v4(datagram: bytes, cuts: list[int]) -> list[bytes]:
    """Split an IPv4 datagram's payload at ``cuts`` (multiples of 8) into fragment packets (header repeated)."""
    ihl = (datagram[0] & 15) * 4
    head, payload = datagram[:ihl], datagram[ihl:]
    bounds = [0, *cuts, len(payload)]
    out = []
    for i in range(len(bounds) - 1):
        a, b = bounds[i], bounds[i + 1]
        h = bytearray(head)
        struct.pack_into(">H", h, 2, ihl + b - a)
        struct.pack_into(">H", h, 6, (a // 8) | (0x2000 if b < len(payload) else 0))
        out.append(bytes(h) + payload[a:b])
    return out


def fragments_v6(packet: bytes, cuts: list[int], ident: int = 7) -> list[bytes]:
    """Split an IPv6 packet (no extension headers) into fragments with a fragment header each."""
    nh, payload = packet[6], packet[40:]
    bounds = [0, *cuts, len(payload)]
    out = []
    for i in range(len(bounds) - 1):
        a, b = bounds[i], bounds[i + 1]
        frag = struct.pack(">BBHI", nh, 0, (a // 8) << 3 | (1 if b < len(payload) else 0), ident)
        h = bytearray(packet[:40])
        struct.pack_into(">H", h, 4, 8 + b - a)
        h[6] = 44
        out.append(bytes(h) + frag + payload[a:b])
    return out


def write_request(value: int, tid: int = 9) -> bytes:
    pdu = bytes([6]) + struct.pack(">HH", 100, value)
    return struct.pack(">HHHB", tid, 0, len(pdu) + 1, 1) + pdu


def v4_segment(payload: bytes, seq: int = 1001, ident: int = 77) -> bytes:
    return ipv4(CLI, SRV, 6, tcp(CLI, SRV, 40000, 502, seq, 5001, 0x18, payload), ident=ident, dont_fragment=False)


def add_all(defrag: Defragmenter, packets: list[bytes]) -> list[bytes]:
    done = []
    for i, pkt in enumerate(packets):
        frag = parse_fragment(pkt, 0)
        assert frag is not None
        whole = defrag.add(frag, i)
        if whole is not None:
            done.append(whole)
    return done


@settings(max_examples=200, deadline=None)
@given(st.binary(min_size=9, max_size=400), st.data())
def test_any_fragmentation_order_and_duplication_rebuilds_the_datagram_v4(payload, data):
    datagram = v4_segment(payload)
    body = len(datagram) - 20
    cuts = sorted(data.draw(st.sets(st.integers(1, (body - 1) // 8).map(lambda k: 8 * k), min_size=1, max_size=8)))
    frags = fragments_v4(datagram, cuts)
    frags += data.draw(st.lists(st.sampled_from(frags), max_size=3))  # duplicates
    order = data.draw(st.permutations(frags))
    defrag = Defragmenter()
    done = add_all(defrag, order)
    assert len(done) >= 1
    rebuilt = done[0]
    assert rebuilt[20:] == datagram[20:] and struct.unpack(">H", rebuilt[2:4])[0] == len(datagram)
    assert struct.unpack(">H", rebuilt[6:8])[0] == 0  # no longer a fragment
    assert defrag.stats.overlap_conflicts == 0


@settings(max_examples=100, deadline=None)
@given(st.binary(min_size=9, max_size=300), st.data())
def test_any_fragmentation_order_rebuilds_the_packet_v6(payload, data):
    packet = ipv6("fd00::5", "fd00::9", 6, tcp("fd00::5", "fd00::9", 40000, 502, 1001, 5001, 0x18, payload))
    body = len(packet) - 40
    cuts = sorted(data.draw(st.sets(st.integers(1, (body - 1) // 8).map(lambda k: 8 * k), min_size=1, max_size=6)))
    defrag = Defragmenter()
    done = add_all(defrag, data.draw(st.permutations(fragments_v6(packet, cuts))))
    assert done == [packet]


def test_conflicting_overlap_keeps_the_first_bytes_and_is_noted():
    datagram = v4_segment(write_request(2000))
    first, second = fragments_v4(datagram, [16])
    forged = bytearray(second)
    forged[20] ^= 0xFF  # the same offset, other content
    defrag = Defragmenter()
    assert add_all(defrag, [second]) == []
    frag = parse_fragment(bytes(forged), 0)
    assert defrag.add(frag, 1) is None and defrag.notes == [(FRAGMENT_OVERLAP_CONFLICT, len(frag.payload))]
    assert add_all(defrag, [first])[0][20:] == datagram[20:]
    assert defrag.stats.overlap_conflicts == 1


def test_tiny_fragments_are_noted_and_bounds_hold():
    datagram = v4_segment(write_request(2000))
    defrag = Defragmenter(DefragLimits(max_bytes_per_host=64, timeout_s=1.0))
    frags = fragments_v4(datagram, [8, 16, 24])
    add_all(defrag, frags[:1])
    assert defrag.notes == [(TINY_FRAGMENT, 8)] and defrag.stats.tiny == 1
    # a host holding more than its bound loses its oldest datagrams, counted
    for ident in range(20):
        pkt = fragments_v4(v4_segment(b"x" * 40, ident=ident), [16])[0]
        defrag.add(parse_fragment(pkt, 0), 10)
    assert defrag.pending_bytes <= 64 and defrag.stats.dropped >= 1
    assert defrag.expire(int(5e9)) == defrag.stats.expired >= 1 and defrag.pending == 0


def test_oversized_datagram_is_dropped_not_rebuilt():
    head = bytearray(v4_segment(b"")[:20])
    struct.pack_into(">H", head, 2, 20 + 16)
    struct.pack_into(">H", head, 6, 8189)  # offset 65512: past 65,535 with its 16 bytes
    defrag = Defragmenter()
    assert defrag.add(parse_fragment(bytes(head) + b"y" * 16, 0), 0) is None and defrag.stats.dropped == 1


def test_not_fragments_are_not_parsed():
    assert parse_fragment(v4_segment(b"abc"), 0) is None  # DF, offset 0: a whole packet
    atomic = ipv6("fd00::5", "fd00::9", 44, struct.pack(">BBHI", 6, 0, 0, 1) + b"z" * 20)
    assert parse_fragment(atomic, 0) is None  # RFC 6946 atomic fragment
    assert parse_fragment(b"\x45" + b"\0" * 10, 0) is None


# -- the collector: fragments of a Modbus write decode as the write ---------------------------------------------------


def session(request: bytes, fragment_cuts: list[int] | None, reverse: bool) -> list[bytes]:
    frames = [
        ethernet(MAC_B, MAC_A, 0x0800, ipv4(CLI, SRV, 6, tcp(CLI, SRV, 40000, 502, 1000, 0, 0x02))),
        ethernet(MAC_A, MAC_B, 0x0800, ipv4(SRV, CLI, 6, tcp(SRV, CLI, 502, 40000, 5000, 1001, 0x12))),
    ]
    datagram = v4_segment(request)
    pieces = fragments_v4(datagram, fragment_cuts) if fragment_cuts else [datagram]
    if reverse:
        pieces = pieces[::-1]
    frames += [ethernet(MAC_B, MAC_A, 0x0800, p) for p in pieces]
    answer = ipv4(SRV, CLI, 6, tcp(SRV, CLI, 502, 40000, 5001, 1001 + len(request), 0x18, request))
    frames.append(ethernet(MAC_A, MAC_B, 0x0800, answer))
    return frames


def decode(frames: list[bytes]):
    col = Collector(CollectorConfig())
    chunk = chunk_from_packets([(1_700_000_000_000_000_000 + i * 1000, 1, f) for i, f in enumerate(frames)], 1)
    batches = [col.process(chunk), col.finish()]
    events = [e for b in batches for e in b.modbus.events(col.conns)]
    return events, [n for b in batches for n in b.notes], col.stats


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 0xFFFF), st.data())
def test_fragmented_write_decodes_like_the_whole_one(value, data):
    request = write_request(value)
    body = 20 + len(request)
    cuts = sorted(data.draw(st.sets(st.integers(1, (body - 1) // 8).map(lambda k: 8 * k), min_size=1, max_size=4)))
    whole, _, _ = decode(session(request, None, False))
    frag, notes, stats = decode(session(request, cuts, data.draw(st.booleans())))
    key = lambda e: (e.transaction_id, e.function_code, e.start_address, e.values, e.exception_code, e.flags)  # noqa: E731
    assert [key(e) for e in frag] == [key(e) for e in whole] and whole[0].values == (value,)
    assert stats.ip_fragments == len(cuts) + 1 and stats.ip_reassembled == 1
    assert all(n.kind == TINY_FRAGMENT and n.src_ip == CLI and n.dst_ip == SRV for n in notes)


def test_fragments_of_a_write_are_not_a_new_service():
    """The misleading "new service on TCP" of a sensor that does not reassemble: no flow to port 0 any more."""
    col = Collector(CollectorConfig())
    frames = session(write_request(2000), [8, 16, 24], reverse=True)
    chunk = chunk_from_packets([(1_700_000_000_000_000_000 + i * 1000, 1, f) for i, f in enumerate(frames)], 1)
    flows = col.process(chunk).flows + col.finish().flows
    assert [(f.orig_ip, f.resp_ip, f.resp_port, f.transport) for f in flows] == [(CLI, SRV, 502, "tcp")]


def reordered_session(requests: list[bytes], cuts: list[list[int]], order: list[int]) -> list[bytes]:
    """A handshake, then every request cut into segments, all segments sent in ``order``, then the answers."""
    frames = session(b"", None, False)[:2]
    segs, seq = [], 1001
    for req, cut in zip(requests, cuts):
        bounds = [0, *cut, len(req)]
        for a, b in zip(bounds, bounds[1:]):
            segs.append(ethernet(MAC_B, MAC_A, 0x0800, v4_segment(req[a:b], seq=seq + a)))
        seq += len(req)
    frames += [segs[i] for i in order]
    ack, sseq = seq, 5001
    for req in requests:  # the server echoes each write, acknowledging everything
        frames.append(ethernet(MAC_A, MAC_B, 0x0800, ipv4(SRV, CLI, 6, tcp(SRV, CLI, 502, 40000, sseq, ack, 0x18, req))))
        sseq += len(req)
    return frames


@settings(max_examples=80, deadline=None)
@given(st.lists(st.integers(0, 0xFFFF), min_size=1, max_size=4), st.data())
def test_reordered_segments_decode_like_the_stream_on_both_paths(values, data):
    requests = [write_request(v, tid=i) for i, v in enumerate(values)]
    cuts = [sorted(data.draw(st.sets(st.integers(1, len(r) - 1), max_size=3))) for r in requests]
    n = sum(len(c) + 1 for c in cuts)
    order = data.draw(st.permutations(range(n)))
    frames = reordered_session(requests, cuts, order)
    expected = [(i, (v,)) for i, v in enumerate(values)]
    for fast in (True, False):
        col = Collector(CollectorConfig(fast_path=fast))
        chunk = chunk_from_packets([(1_700_000_000_000_000_000 + i * 1000, 1, f) for i, f in enumerate(frames)], 1)
        events = [e for b in (col.process(chunk), col.finish()) for e in b.modbus.events(col.conns)]
        assert sorted((e.transaction_id, e.values) for e in events) == expected
        assert all(e.response_frame is not None for e in events)  # every request paired with its echo
        assert col.stats.tcp_gaps == 0 and col.stats.tcp_overlap_conflicts == 0
