"""What the fast path's units do to the decoder's state: streams advanced, protocols counted, requests paired.

``advance_streams`` leaves each fast stream's reassembly state as the general path would (next byte expected,
last bytes delivered, a SYN's restart); ``fast_operations`` counts the units' messages in ``ProtocolCounts``,
pairs them (``fastpair``) with the requests the pairer carried from earlier chunks, hands requests left open
back to the pairer and returns the chunk's operations, to be built when read (``lazy``).
"""

from __future__ import annotations

from typing import Iterator, NamedTuple

import numpy as np

from otsentry.collectors.ics.counts import ProtocolCounts
from otsentry.collectors.ics.fastpair import pair
from otsentry.collectors.ics.fastpath import FAST_FRAMERS
from otsentry.collectors.ics.fastunits import LINK_COUNTS, NAMES, PROTOCOLS, UnitClasses, message_of
from otsentry.collectors.ics.framing import FRAMES, StreamFramer
from otsentry.collectors.ics.lazy import LazyOperations
from otsentry.collectors.ics.message import Message
from otsentry.collectors.ics.pairing import OperationPairer, operation_event
from otsentry.collectors.packets import Packets
from otsentry.collectors.reassembly import SEQ_MOD, TAIL_BYTES, StreamState
from otsentry.collectors.types import Conn
from otsentry.contracts.events import OperationEvent

__all__ = ["FramedUnits", "advance_streams", "fast_operations"]

_FIELDS = ("seg", "unit", "at", "size", "buffer", "protocol", "request", "error", "name", "keyed", "key",
           "malformed", "stations")


class FramedUnits(NamedTuple):
    """One framer's units of the fast connections: their segment (a row of ``cand``), offset and size in the
    chunk's buffer, and what ``fastunits.classify`` read of them (``kept`` selects these among its rows)."""

    seg: np.ndarray
    off: np.ndarray
    size: np.ndarray
    units: UnitClasses
    kept: np.ndarray
    framer: str


def advance_streams(streams: dict[int, StreamState], p: Packets, cand: np.ndarray, fast: np.ndarray,
                    sid: np.ndarray, fid: np.ndarray, data: np.ndarray, syn: np.ndarray, seq: np.ndarray,
                    plen: np.ndarray, u8: np.ndarray) -> Iterator[tuple[int, str]]:
    """Advance the state of the fast streams (rows ``fast`` of ``cand``); yields (stream, framer) of each."""
    names = list(FAST_FRAMERS)
    rows = np.flatnonzero(fast)
    order = rows[np.argsort(sid[rows], kind="stable")]
    s = sid[order]
    ends = np.flatnonzero(np.append(s[1:] != s[:-1], True))
    starts = np.append(0, ends[:-1] + 1)
    for start, end in zip(starts.tolist(), ends.tolist()):
        run = order[start : end + 1]
        stream, name = int(s[end]), names[int(fid[run[0]])]
        yield stream, name
        state = streams.get(stream)
        if state is None:
            state = streams[stream] = StreamState(framer=StreamFramer(FRAMES[name]))
        run = run[data[run]]
        if not len(run):
            continue
        if syn[run[0]]:  # the stream starts (again) here: a SYN is only ever a run's first row
            state.saw_syn, state.tail, state.tail_end = True, b"", -1
            state.next_seq = (int(seq[run[0]]) + 1) % SEQ_MOD
            run = run[1:]
            if not len(run):
                continue
        first_seq, last = int(seq[run[0]]), int(run[-1])
        tail, kept = [], 0
        for k in run[::-1].tolist():  # the last bytes delivered, for comparing retransmissions with
            off = int(p.payload_off[cand[k]])
            tail.append(u8[off : off + int(plen[k])].tobytes())
            kept += int(plen[k])
            if kept >= TAIL_BYTES:
                break
        if kept < TAIL_BYTES and state.tail_end == first_seq:
            tail.append(state.tail)
        state.tail = b"".join(reversed(tail))[-TAIL_BYTES:]
        state.next_seq = state.tail_end = (int(seq[last]) + int(plen[last])) % SEQ_MOD


def _messages(parts: list[FramedUnits], u8: np.ndarray, counts: dict[str, ProtocolCounts]) \
        -> tuple[dict[str, np.ndarray], list[np.ndarray]]:
    """The units that complete a message, in capture then byte order, as columns; link frames counted."""
    buffers = [u8]  # where message bytes are: the chunk's buffer, DNP3 fragments without their CRCs
    fields: dict[str, list[np.ndarray]] = {n: [] for n in _FIELDS}
    for seg, off, size, units, kept, framer in parts:
        if framer in LINK_COUNTS:  # every TPKT unit is a COTP TPDU, every DNP3 unit a link frame
            counts.setdefault(LINK_COUNTS[framer], ProtocolCounts()).link_frames += len(seg)
        if units.crc_errors is not None:
            counts.setdefault("dnp3", ProtocolCounts()).crc_errors += int(units.crc_errors[kept].sum())
        mm = kept if units.message is None else kept & units.message
        keep = mm[kept]
        n = int(keep.sum())
        fields["seg"].append(seg[keep])
        fields["unit"].append(off[keep])
        if units.buf is None:
            fields["at"].append(off[keep])
            fields["size"].append(size[keep])
        else:
            fields["at"].append(units.at[mm])
            fields["size"].append(units.length[mm])
            buffers.append(units.buf)
        fields["buffer"].append(np.full(n, len(buffers) - 1, dtype=np.int64))
        for name in ("protocol", "request", "error", "name", "keyed", "key"):
            fields[name].append(getattr(units, name)[mm])
        fields["malformed"].append(np.zeros(n, dtype=bool) if units.malformed is None else units.malformed[mm])
        fields["stations"].append(np.zeros((n, 2), dtype=np.int64) if units.stations is None
                                  else units.stations[mm])
    cols = {n: np.concatenate(fields[n]) for n in _FIELDS}
    order = np.lexsort((cols["unit"], cols["seg"]))
    return {n: c[order] for n, c in cols.items()}, buffers


def _count(m: dict[str, np.ndarray], counts: dict[str, ProtocolCounts]) -> None:
    for pi, protocol in enumerate(PROTOCOLS):
        sel = m["protocol"] == pi
        n = int(sel.sum())
        if not n:
            continue
        c = counts.setdefault(protocol, ProtocolCounts())
        request = m["request"][sel]
        req = int(request.sum())
        c.messages += n
        c.requests += req
        c.responses += n - req
        c.errors += int((m["error"][sel] & ~request).sum())
        c.malformed += int(m["malformed"][sel].sum())
        ids, k = np.unique(m["name"][sel], return_counts=True)
        for i, times in zip(ids.tolist(), k.tolist()):
            c.functions[NAMES[i]] = c.functions.get(NAMES[i], 0) + times


def fast_operations(p: Packets, cand: np.ndarray, cid: np.ndarray, from_client: np.ndarray,
                    parts: list[FramedUnits], carried: list, u8: np.ndarray, counts: dict[str, ProtocolCounts],
                    pairer: OperationPairer, conns: dict[int, Conn],
                    out: list[OperationEvent]) -> LazyOperations | None:
    """Count and pair the fast connections' messages. ``carried`` are the pairer's open requests of these
    connections, (pairer key, entry, key columns), oldest first; operations that involve one of them are built
    now (into ``out``), the others are returned, to be built when read."""
    if not parts:
        pairer.put_back([(key, entry) for key, entry, _ in carried], counts, out)
        return None
    m, buffers = _messages(parts, u8, counts)
    _count(m, counts)
    proto, request, off, size, which, stations = (m[n] for n in ("protocol", "request", "at", "size", "buffer",
                                                                  "stations"))
    ucid, ufc = cid[m["seg"]], from_client[m["seg"]]
    rows = cand[m["seg"]]
    frame, ts = p.frame[rows], p.ts_ns[rows]
    ref = np.flatnonzero(m["keyed"])
    u64 = np.uint64
    carried_cols = [np.array(col, dtype=u64) for col in zip(*(
        (key[0], PROTOCOLS.index(entry[1].protocol), *cols) for key, entry, cols in carried))] if carried else []
    res = pair(ref, request[ref], [ucid[ref].astype(u64), proto[ref].astype(u64), *m["key"][ref].T], carried_cols)

    def message(i: int) -> Message:
        start = int(off[i])
        return message_of(int(proto[i]), buffers[int(which[i])][start : start + int(size[i])].tobytes(),
                          bool(ufc[i]), int(frame[i]), int(ts[i]), int(stations[i, 0]), int(stations[i, 1]))

    old_lost = res.unanswered[res.unanswered < 0].tolist()
    for pi, protocol in enumerate(PROTOCOLS):  # unanswered and orphans, per protocol
        lost = int((proto[res.unanswered[res.unanswered >= 0]] == pi).sum()) + sum(
            1 for r in old_lost if carried[-1 - r][1][1].protocol == protocol)
        orphans = int((proto[res.orphans] == pi).sum())
        if lost or orphans:
            c = counts.setdefault(protocol, ProtocolCounts())
            c.unanswered += lost
            c.orphan_responses += orphans
    for r, s in zip(res.request.tolist(), res.response.tolist()):
        if r < 0:  # a request of an earlier chunk, answered in this one
            conn, msg, transport = carried[-1 - r][1]
            out.append(operation_event(conn, msg, message(s), (), transport))
    for r in old_lost:
        conn, msg, transport = carried[-1 - r][1]
        out.append(operation_event(conn, msg, None, ("unanswered",), transport))
    left = []
    for r in res.open.tolist():
        if r < 0:
            left.append(carried[-1 - r][:2])
        else:
            msg = message(r)
            left.append(((int(ucid[r]), msg.protocol, msg.key), (conns[int(ucid[r])], msg, "tcp")))
    pairer.put_back(left, counts, out)
    answered = res.request >= 0
    new_lost = res.unanswered[res.unanswered >= 0]
    req = np.concatenate([res.request[answered], new_lost])
    resp = np.concatenate([res.response[answered], np.full(len(new_lost), -1, dtype=np.int64)])
    if not len(req):
        return None
    used = np.unique(ucid[req])
    return LazyOperations(buffers, which, off, size, frame, ts, ufc, proto, stations,
                          [conns[c] for c in used.tolist()], np.searchsorted(used, ucid[req]), req, resp)
