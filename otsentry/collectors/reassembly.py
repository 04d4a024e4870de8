"""Per-direction TCP stream reassembly for Modbus/TCP: what the PLC's stack rebuilds, framed as Wireshark frames it.

Segments are put back in sequence order before framing, because that is what the receiving PLC's TCP/IP stack
does; a sensor that frames segments in capture order can be blinded by sending them out of order (Ptacek & Newsham,
1998). The policy, written once here:

* **out of order**: a segment ahead of the next expected byte is held (bounded per direction by
  ``ReassemblyLimits``) until the hole before it is filled; then the held bytes are delivered in order, as of the
  frame that filled the hole (that is when the PLC could read them);
* **overlaps**: the first bytes seen for a sequence offset win (delivered or held), later copies only fill holes.
  Overlapping bytes that *differ* are counted in ``overlap_conflicts`` and noted (``StreamState.notes``): the
  decoded content may then differ from what a PLC with another overlap policy reads, which is an evasion attempt
  in itself (Suricata's ``STREAM_REASSEMBLY_OVERLAP_DIFFERENT_DATA``). Only the last ``TAIL_BYTES`` delivered
  bytes can be compared; older retransmissions are counted as retransmissions;
* **holes that never fill** (the capture lost a segment) end as a gap: when the peer acknowledges data past the
  hole (``skip_if_acked``: the receiver has bytes we never saw), when the held bytes exceed their bounds, after
  ``ooo_timeout_s`` of capture time, or at the end of the capture. The pending partial ADU is then flushed as
  truncated and framing restarts at the first held segment (a new dissection, see below).

The framing rules follow what Wireshark's Modbus/TCP dissector does, so that ADU counts can be checked against
tshark (``-o tcp.reassemble_out_of_order:TRUE``) on any capture:

* at the start of each dissection (a segment that does not continue a pending ADU, or the bytes left after a
  completed one) the data must look like Modbus/TCP: at least 8 bytes, protocol id 0, MBAP length >= 2;
  otherwise the segment is not Modbus (counted as skipped bytes);
* from there, ADUs are cut by their MBAP length (6 + length bytes) without re-checking; an ADU that runs past the
  segment waits for the following segments;
* retransmitted data (already seen) is dropped and counted; a gap drops the pending partial ADU, flagged
  truncated, and restarts at the next segment (a resynchronisation at the next segment that starts with a valid
  MBAP header).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from otsentry.collectors.mbap import (FUNCTION, LENGTH, LENGTH_BASE, MIN_ADU, MIN_LENGTH, PROTOCOL_ID, TID, UNIT,
                                      adu_size, looks_like_mbtcp)
from otsentry.collectors.overlap import first_bytes_win

__all__ = ["Framer", "GAP", "LIMITS", "OVERLAP_CONFLICT", "RawAdu", "ReassemblyLimits", "SEQ_MOD", "StreamState", "TAIL_BYTES",
    "UNDECODED", "feed_segment", "finish_stream", "flush", "skip_gap", "skip_if_acked"]

SEQ_MOD = 1 << 32


class Framer(Protocol):
    """Cuts another protocol's units out of the in-order bytes of one direction (``collectors.ics.framing``).

    The ordering, overlap and gap policy above is the same for every protocol; only the framing differs.
    """

    def starts(self, data: bytes) -> bool: ...

    def feed(self, data: bytes, frame: int, ts_ns: int, out: list[Any]) -> int:
        """Frame ``data`` (appending units to ``out``); return the bytes that were not the protocol's."""

    def flush(self, frame: int, ts_ns: int) -> list[Any]:
        """The pending partial unit, if any, as truncated; the framer starts afresh."""


@dataclass(slots=True)
class RawAdu:
    """A framed ADU: MBAP fields plus the PDU bytes (function code first)."""

    frame: int
    ts_ns: int
    transaction_id: int
    protocol_id: int
    length: int
    unit_id: int
    pdu: bytes
    truncated: bool = False


@dataclass(frozen=True, slots=True)
class ReassemblyLimits:
    """Bounds of the out-of-order buffer of one direction (the collector also bounds the sum over streams)."""

    max_held_bytes: int = 256 << 10  # bytes held ahead of a hole
    max_held_segments: int = 512
    max_ahead: int = 1 << 20  # a segment further ahead than this is a gap now, not something to wait for
    ooo_timeout_s: float = 30.0  # capture time a hole may stay open

    def __post_init__(self) -> None:
        if min(self.max_held_bytes, self.max_held_segments, self.max_ahead) <= 0 or self.ooo_timeout_s <= 0:
            raise ValueError("reassembly limits must be positive")


LIMITS = ReassemblyLimits()
TAIL_BYTES = 2048  # delivered bytes kept to compare retransmissions with (overlap conflicts)
OVERLAP_CONFLICT = "overlap_conflict"
GAP = "gap"  # a hole given up: bytes of the stream the sensor never saw
UNDECODED = "undecoded"  # bytes on a Modbus port that are not Modbus/TCP, with no ADU since (a stalled decoder)


@dataclass(slots=True)
class StreamState:
    """Reassembly state of one direction of one connection."""

    next_seq: int | None = None  # next expected sequence number; None until the first segment
    buffer: bytearray = field(default_factory=bytearray)  # bytes of an ADU still incomplete
    need: int = 0  # total length of the pending ADU (0 while only a partial MBAP header is buffered)
    verify: bool = False  # the buffered header starts a new dissection: check it looks like Modbus/TCP
    retransmissions: int = 0
    skipped_bytes: int = 0  # payload on a Modbus port that did not look like Modbus/TCP
    gaps: int = 0
    gap_bytes: int = 0  # sequence space never seen (lost by the capture, or not sent)
    truncated_fragments: int = 0  # partial ADUs dropped before their function code arrived
    saw_syn: bool = False
    held: list[tuple[int, bytes]] = field(default_factory=list)  # (seq, bytes) ahead of a hole, arrival order
    held_bytes: int = 0
    held_since_ns: int = 0  # capture time of the oldest held segment
    held_peak: int = 0  # high-water mark of held_bytes
    out_of_order: int = 0  # segments that arrived ahead of a hole
    overlaps: int = 0  # segments overlapping earlier bytes with the same content
    overlap_conflicts: int = 0  # ... with different content
    tail: bytes = b""  # the last delivered bytes, ending at tail_end
    tail_end: int = -1
    skipped_mark: int = 0  # skipped_bytes when the last ADU came out (or the last stall was noted)
    tentative: bool = False  # held[0] is a stream start guessed without a SYN (see _anchor)
    notes: list[tuple[str, int, int, int]] = field(default_factory=list)  # (kind, frame, ts_ns, bytes) to report
    framer: Framer | None = None  # another protocol's framing of the same ordered bytes (None: Modbus/TCP)

    @property
    def aligned(self) -> bool:
        """True when no partial ADU is pending and nothing is held (the fast path may take over)."""
        return not self.buffer and not self.held


def _adu_from(data: bytes, frame: int, ts_ns: int, truncated: bool = False) -> RawAdu:
    return RawAdu(
        frame=frame,
        ts_ns=ts_ns,
        transaction_id=data[TID] << 8 | data[TID + 1],
        protocol_id=data[PROTOCOL_ID] << 8 | data[PROTOCOL_ID + 1],
        length=data[LENGTH] << 8 | data[LENGTH + 1],
        unit_id=data[UNIT] if len(data) > UNIT else 0,
        pdu=bytes(data[FUNCTION:]),
        truncated=truncated,
    )


def feed_segment(
    state: StreamState, seq: int, syn: bool, payload: bytes, frame: int, ts_ns: int,
    limits: ReassemblyLimits = LIMITS,
) -> list[RawAdu]:
    """Feed one TCP segment of this direction; return the ADUs it completes (in order)."""
    out: list[RawAdu] = []
    if state.held and ts_ns - state.held_since_ns > limits.ooo_timeout_s * 1e9:
        skip_gap(state, frame, ts_ns, out)
    if syn:
        if state.held or state.buffer:  # a new connection on the same ports: what was pending is lost
            out.extend(_drop_held(state, frame, ts_ns))
        if state.framer is not None:  # another protocol's partial unit belongs to the old connection too
            out.extend(state.framer.flush(frame, ts_ns))
        state.tentative = False
        state.next_seq = (seq + 1) % SEQ_MOD
        state.saw_syn = True
        state.buffer.clear()
        state.need = 0
        state.tail, state.tail_end = b"", -1
        if not payload:
            return out
        seq = (seq + 1) % SEQ_MOD
    if not payload:
        return out
    if state.next_seq is None:
        state.next_seq = seq
        if not _starts_unit(state, payload):  # a capture that starts inside the stream, or its start arrives later
            return _anchor(state, seq, payload, ts_ns)
    delta = (seq - state.next_seq) % SEQ_MOD
    if state.tentative:
        if delta >= SEQ_MOD // 2 and SEQ_MOD - delta <= limits.max_ahead:  # earlier bytes: the stream starts there
            state.next_seq = seq
            if not _starts_unit(state, payload):
                return _anchor(state, seq, payload, ts_ns)
            delta = 0
        state.tentative = False
        if delta:  # the stream goes on after the tentative start: frame it as it is
            _drain(state, frame, ts_ns, out)
            delta = (seq - state.next_seq) % SEQ_MOD
    if delta >= SEQ_MOD // 2 and SEQ_MOD - delta > limits.max_ahead:  # far behind: no retransmission of ours
        out.extend(_drop_held(state, frame, ts_ns))  # the stream restarted elsewhere (as Zeek sees it)
        _gap(state, 0, frame, ts_ns, out)
        state.next_seq = seq
        delta = 0
    if delta >= SEQ_MOD // 2:  # starts before the next expected byte: retransmission or overlap
        behind = SEQ_MOD - delta
        _compare_tail(state, behind, payload, frame, ts_ns)
        if behind >= len(payload):
            state.retransmissions += 1
            return out
        payload = payload[behind:]
    elif delta > limits.max_ahead:  # too far ahead to be a hole worth waiting for: a gap now
        out.extend(_drop_held(state, frame, ts_ns))
        _gap(state, delta, frame, ts_ns, out)
        state.next_seq = seq
    elif delta:
        _hold(state, delta, seq, payload, frame, ts_ns, limits, out)
        return out
    _deliver(state, payload, frame, ts_ns, out)
    if state.held:
        _drain(state, frame, ts_ns, out)
    return out


def _anchor(state: StreamState, seq: int, payload: bytes, ts_ns: int) -> list[RawAdu]:
    """Without a SYN, a first segment that does not start an ADU may be the middle of the stream's first bytes sent
    out of order: hold it at the stream's start, tentatively, until the next segment says which it is."""
    state.tentative = True
    if not state.held:
        state.held_since_ns = ts_ns
    state.held.append((seq, payload))
    state.held_bytes += len(payload)
    state.held_peak = max(state.held_peak, state.held_bytes)
    return []


def skip_if_acked(state: StreamState, ack: int, frame: int, ts_ns: int) -> list[RawAdu]:
    """The peer acknowledged up to ``ack``: if that is past a hole, the capture lost the hole's bytes."""
    if not state.held or state.next_seq is None:
        return []
    if 0 < (ack - state.next_seq) % SEQ_MOD < SEQ_MOD // 2:
        out: list[RawAdu] = []
        skip_gap(state, frame, ts_ns, out)
        return out
    return []


def skip_gap(state: StreamState, frame: int, ts_ns: int, out: list[RawAdu]) -> None:
    """Give up on the hole before the held bytes: flush the pending ADU, resume at the first held segment."""
    if not state.held or state.next_seq is None:
        return
    nxt = state.next_seq
    state.tentative = False
    first = min((s - nxt) % SEQ_MOD for s, _ in state.held)
    if first:
        _gap(state, first, frame, ts_ns, out)
        state.next_seq = (nxt + first) % SEQ_MOD
    _drain(state, frame, ts_ns, out)


def _gap(state: StreamState, size: int, frame: int, ts_ns: int, out: list[RawAdu]) -> None:
    state.gaps += 1
    state.gap_bytes += size
    _note(state, GAP, frame, ts_ns, size)
    state.tail, state.tail_end = b"", -1
    out.extend(flush(state, frame, ts_ns))


def _drop_held(state: StreamState, frame: int, ts_ns: int) -> list[RawAdu]:
    """Deliver what is held (as after a gap), then forget the stream position (a SYN or a far jump follows)."""
    out: list[RawAdu] = []
    while state.held:
        skip_gap(state, frame, ts_ns, out)
    return out


def _note(state: StreamState, kind: str, frame: int, ts_ns: int, size: int) -> None:
    if len(state.notes) < 64:  # the collector drains them after each segment; bounded anyway
        state.notes.append((kind, frame, ts_ns, size))


def _compare_tail(state: StreamState, behind: int, payload: bytes, frame: int, ts_ns: int) -> None:
    """Compare the part of ``payload`` that lies before next_seq with the delivered bytes still in the tail."""
    if state.tail_end != state.next_seq or not state.tail:
        return
    tail = state.tail
    lo = max(0, behind - len(tail))  # payload offsets [lo, hi) are in the tail
    hi = min(behind, len(payload))
    if lo >= hi:
        return
    at = len(tail) - behind
    if payload[lo:hi] != tail[at + lo : at + hi]:
        state.overlap_conflicts += 1
        _note(state, OVERLAP_CONFLICT, frame, ts_ns, hi - lo)
    elif hi - lo < len(payload):
        state.overlaps += 1


def _hold(state: StreamState, delta: int, seq: int, payload: bytes, frame: int, ts_ns: int,
          limits: ReassemblyLimits, out: list[RawAdu]) -> None:
    """Keep a segment that arrived ahead of a hole; held bytes seen first win over later copies."""
    nxt = state.next_seq or 0
    pieces, overlaps = first_bytes_win(delta, payload, (((s - nxt) % SEQ_MOD, data) for s, data in state.held))
    for same, size in overlaps:
        if same:
            state.overlaps += 1
        else:
            state.overlap_conflicts += 1
            _note(state, OVERLAP_CONFLICT, frame, ts_ns, size)
    if not pieces:
        state.retransmissions += 1
        return
    if not state.held:
        state.held_since_ns = ts_ns
    state.out_of_order += 1
    for a, part in pieces:
        state.held.append(((nxt + a) % SEQ_MOD, part))
        state.held_bytes += len(part)
    state.held_peak = max(state.held_peak, state.held_bytes)
    while state.held and (state.held_bytes > limits.max_held_bytes or len(state.held) > limits.max_held_segments):
        skip_gap(state, frame, ts_ns, out)


def _drain(state: StreamState, frame: int, ts_ns: int, out: list[RawAdu]) -> None:
    """Deliver held segments that now start at (or before) the next expected byte, in sequence order."""
    while state.held:
        nxt = state.next_seq or 0
        best, best_rel = -1, SEQ_MOD
        for i, (s, data) in enumerate(state.held):
            rel = (s - nxt) % SEQ_MOD
            if rel >= SEQ_MOD // 2:
                rel -= SEQ_MOD  # behind: deliverable (trimmed)
            if rel < best_rel:
                best, best_rel = i, rel
        if best_rel > 0:
            return
        s, data = state.held.pop(best)
        state.held_bytes -= len(data)
        if best_rel < 0:
            behind = -best_rel
            _compare_tail(state, behind, data, frame, ts_ns)
            if behind >= len(data):
                continue
            data = data[behind:]
        _deliver(state, data, frame, ts_ns, out)
    state.held_since_ns = 0


def _deliver(state: StreamState, payload: bytes, frame: int, ts_ns: int, out: list[RawAdu]) -> None:
    """In-order bytes: frame them, and remember the last of them for overlap comparisons."""
    state.next_seq = ((state.next_seq or 0) + len(payload)) % SEQ_MOD
    if len(payload) >= TAIL_BYTES:
        state.tail = bytes(payload[-TAIL_BYTES:])
    else:
        state.tail = (state.tail + payload)[-TAIL_BYTES:] if state.tail_end == (state.next_seq - len(payload)) % SEQ_MOD \
            else bytes(payload)
    state.tail_end = state.next_seq
    if state.framer is not None:
        state.skipped_bytes += state.framer.feed(payload, frame, ts_ns, out)
    else:
        _consume(state, payload, frame, ts_ns, out)


def _starts_unit(state: StreamState, payload: bytes) -> bool:
    """Does this segment start a protocol data unit (an MBAP header, or what the stream's framer expects)?"""
    return state.framer.starts(payload) if state.framer is not None else looks_like_mbtcp(payload)


def _consume(state: StreamState, payload: bytes, frame: int, ts_ns: int, out: list[RawAdu]) -> None:
    pos = 0
    n = len(payload)
    if state.buffer:
        buf = state.buffer
        if not state.need:  # only part of the MBAP header so far
            if len(buf) < LENGTH_BASE:
                take = min(LENGTH_BASE - len(buf), n)
                buf += payload[:take]
                pos = take
                if len(buf) < LENGTH_BASE:
                    return
            if state.verify and (buf[PROTOCOL_ID] or buf[PROTOCOL_ID + 1]
                                 or (buf[LENGTH] << 8 | buf[LENGTH + 1]) < MIN_LENGTH):
                state.skipped_bytes += len(buf) + n - pos
                buf.clear()
                state.verify = False
                return
            state.verify = False
            state.need = adu_size(buf[LENGTH] << 8 | buf[LENGTH + 1])
        take = min(state.need - len(buf), n - pos)
        buf += payload[pos : pos + take]
        pos += take
        if len(buf) < state.need:
            return
        _emit(state, bytes(buf), frame, ts_ns, out)
        buf.clear()
        state.need = 0
        if pos >= n:
            return
    # A new dissection starts here: Wireshark checks the heuristic once, then cuts ADUs by length.
    # Unlike Wireshark, a boundary segment shorter than 8 bytes is buffered and checked once the header is in
    # (Wireshark gives up on it), so a header split over two segments is not lost.
    if n - pos < MIN_ADU and _header_so_far_ok(payload[pos:]):
        state.buffer += payload[pos:]
        state.verify = True
        return
    if not looks_like_mbtcp(payload, pos):
        state.skipped_bytes += n - pos
        return
    while pos < n:
        if n - pos < LENGTH_BASE:
            state.buffer += payload[pos:]
            return
        need = adu_size(payload[pos + LENGTH] << 8 | payload[pos + LENGTH + 1])
        if n - pos < need:
            state.buffer += payload[pos:]
            state.need = need
            return
        _emit(state, payload[pos : pos + need], frame, ts_ns, out)
        pos += need


def _emit(state: StreamState, data: bytes, frame: int, ts_ns: int, out: list[RawAdu]) -> None:
    """An ADU whose MBAP length leaves no room for a function code is framing noise, not an ADU (as in tshark)."""
    if len(data) < MIN_ADU:
        state.skipped_bytes += len(data)
        return
    out.append(_adu_from(data, frame, ts_ns))


def _header_so_far_ok(head: bytes) -> bool:
    """Could these first bytes (fewer than MIN_ADU) still start a Modbus/TCP ADU?"""
    if len(head) >= PROTOCOL_ID + 2 and (head[PROTOCOL_ID] or head[PROTOCOL_ID + 1]):
        return False
    return len(head) < LENGTH_BASE or (head[LENGTH] << 8 | head[LENGTH + 1]) >= MIN_LENGTH


def finish_stream(state: StreamState, frame: int, ts_ns: int) -> list[RawAdu]:
    """End of the capture: held bytes are delivered past their holes, then the pending partial ADU is flushed."""
    out = _drop_held(state, frame, ts_ns)
    out.extend(flush(state, frame, ts_ns))
    return out


def flush(state: StreamState, frame: int, ts_ns: int) -> list[RawAdu]:
    """Drop a pending partial ADU (end of stream or a gap); reported as truncated when its function code is in.
    A stream with another protocol's framer hands its partial unit back the same way (``Framer.flush``)."""
    if state.framer is not None:
        return state.framer.flush(frame, ts_ns)
    data = bytes(state.buffer)
    state.buffer.clear()
    state.need = 0
    state.verify = False
    if len(data) < MIN_ADU:
        if data:
            state.truncated_fragments += 1
        return []
    return [_adu_from(data, frame, ts_ns, truncated=True)]
