"""Per-direction TCP stream reassembly for Modbus/TCP, with Wireshark-compatible framing.

The framing rules follow what Wireshark's Modbus/TCP dissector does, so that ADU counts can be checked against
tshark on any capture:

* at the start of each dissection (a segment that does not continue a pending ADU, or the bytes left after a
  completed one) the data must look like Modbus/TCP: at least 8 bytes, protocol id 0, MBAP length >= 2;
  otherwise the segment is not Modbus (counted as skipped bytes);
* from there, ADUs are cut by their MBAP length (6 + length bytes) without re-checking; an ADU that runs past the
  segment waits for the following segments;
* retransmitted data (already seen) is dropped and counted; a gap (lost segment, or a capture that starts inside a
  connection) drops the pending partial ADU, flagged truncated, and restarts at the new segment.
"""

from __future__ import annotations

from dataclasses import dataclass, field

MBAP_LEN = 7  # transaction id, protocol id, length, unit id
MAX_ADU = 6 + 0xFFFF  # the MBAP length field bounds how much we ever buffer
SEQ_MOD = 1 << 32


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
    truncated_fragments: int = 0  # partial ADUs dropped before their function code arrived
    saw_syn: bool = False

    @property
    def aligned(self) -> bool:
        """True when no partial ADU is pending (the fast path may take over)."""
        return not self.buffer


def looks_like_mbtcp(data: bytes | memoryview, offset: int = 0) -> bool:
    """Wireshark's heuristic for the start of Modbus/TCP data."""
    if len(data) - offset < 8:
        return False
    if data[offset + 2] or data[offset + 3]:
        return False
    return (data[offset + 4] << 8 | data[offset + 5]) >= 2


def _adu_from(data: bytes, frame: int, ts_ns: int, truncated: bool = False) -> RawAdu:
    return RawAdu(
        frame=frame,
        ts_ns=ts_ns,
        transaction_id=data[0] << 8 | data[1],
        protocol_id=data[2] << 8 | data[3],
        length=data[4] << 8 | data[5],
        unit_id=data[6] if len(data) > 6 else 0,
        pdu=bytes(data[7:]),
        truncated=truncated,
    )


def feed_segment(
    state: StreamState, seq: int, syn: bool, payload: bytes, frame: int, ts_ns: int
) -> list[RawAdu]:
    """Feed one TCP segment of this direction; return the ADUs it completes (in order)."""
    out: list[RawAdu] = []
    if syn:
        state.next_seq = (seq + 1) % SEQ_MOD
        state.saw_syn = True
        state.buffer.clear()
        state.need = 0
        if not payload:
            return out
        seq = (seq + 1) % SEQ_MOD
    if not payload:
        return out
    if state.next_seq is not None:
        delta = (seq - state.next_seq) % SEQ_MOD
        if delta >= SEQ_MOD // 2:  # segment starts before what we have seen: retransmission or overlap
            behind = SEQ_MOD - delta
            if behind >= len(payload):
                state.retransmissions += 1
                return out
            payload = payload[behind:]
            seq = state.next_seq
        elif delta:  # a gap: the pending partial ADU can never complete
            state.gaps += 1
            out.extend(flush(state, frame, ts_ns))
    state.next_seq = (seq + len(payload)) % SEQ_MOD
    _consume(state, payload, frame, ts_ns, out)
    return out


def _consume(state: StreamState, payload: bytes, frame: int, ts_ns: int, out: list[RawAdu]) -> None:
    pos = 0
    n = len(payload)
    if state.buffer:
        buf = state.buffer
        if not state.need:  # only part of the MBAP header so far
            if len(buf) < 6:
                take = min(6 - len(buf), n)
                buf += payload[:take]
                pos = take
                if len(buf) < 6:
                    return
            if state.verify and (buf[2] or buf[3] or (buf[4] << 8 | buf[5]) < 2):
                state.skipped_bytes += len(buf) + n - pos
                buf.clear()
                state.verify = False
                return
            state.verify = False
            state.need = 6 + (buf[4] << 8 | buf[5])
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
    if n - pos < 8 and _header_so_far_ok(payload[pos:]):
        state.buffer += payload[pos:]
        state.verify = True
        return
    if not looks_like_mbtcp(payload, pos):
        state.skipped_bytes += n - pos
        return
    while pos < n:
        if n - pos < 6:
            state.buffer += payload[pos:]
            return
        need = 6 + (payload[pos + 4] << 8 | payload[pos + 5])
        if n - pos < need:
            state.buffer += payload[pos:]
            state.need = need
            return
        _emit(state, payload[pos : pos + need], frame, ts_ns, out)
        pos += need


def _emit(state: StreamState, data: bytes, frame: int, ts_ns: int, out: list[RawAdu]) -> None:
    """An ADU whose MBAP length leaves no room for a function code is framing noise, not an ADU (as in tshark)."""
    if len(data) < 8:
        state.skipped_bytes += len(data)
        return
    out.append(_adu_from(data, frame, ts_ns))


def _header_so_far_ok(head: bytes) -> bool:
    """Could these first bytes (fewer than 8) still start a Modbus/TCP ADU?"""
    if len(head) >= 4 and (head[2] or head[3]):
        return False
    return len(head) < 6 or (head[4] << 8 | head[5]) >= 2


def flush(state: StreamState, frame: int, ts_ns: int) -> list[RawAdu]:
    """Drop a pending partial ADU (end of stream or a gap); reported as truncated when its function code is in."""
    data = bytes(state.buffer)
    state.buffer.clear()
    state.need = 0
    state.verify = False
    if len(data) < 8:
        if data:
            state.truncated_fragments += 1
        return []
    return [_adu_from(data, frame, ts_ns, truncated=True)]
