"""The OT protocol decoder of the collector: packets on DNP3, IEC 104, S7 and EtherNet/IP ports in, operations out.

TCP streams go through the same reassembly as Modbus (``collectors.reassembly``: segments in sequence order,
first bytes win on overlaps, holes end as gaps after a timeout or at the end of the capture), with the
protocol's framer; UDP datagrams are framed one by one. Out-of-order bytes are bounded as on the Modbus path:
a hole open longer than the timeout is given up at the end of each batch even when its stream is quiet, and the
oldest holes are given up while the streams hold more than ``max_held_total_bytes`` between them. Framed units become messages (``units``), requests
and responses are paired into ``OperationEvent``s (``pairing``), and every protocol is counted.

TCP connections whose segments in a chunk are all whole units in order, with nothing pending, take the fast path
instead (``fastpath``: framed, read, counted and paired over arrays, the same results); the others go through the
loop above, segment by segment, in capture order. ``process`` returns the chunk's operations as ``Operations``.
"""

from __future__ import annotations

import numpy as np

from otsentry.collectors.chunks import Chunk
from otsentry.collectors.events import ConnTable
from otsentry.collectors.grouping import group_columns
from otsentry.collectors.ics.counts import ProtocolCounts
from otsentry.collectors.ics.fastops import FramedUnits, advance_streams, fast_operations
from otsentry.collectors.ics.fastpath import FAST_FRAMERS, frame_segments, stream_breaks
from otsentry.collectors.ics.fastunits import PROTOCOLS, classify, key_columns
from otsentry.collectors.ics.found import FRAMER_OF_SERVICE, FoundServers
from otsentry.collectors.ics.framing import FRAMES, StreamFramer
from otsentry.collectors.ics.lazy import LazyOperations, Operations
from otsentry.collectors.ics.message import KeptMessage, Message, Pdu
from otsentry.collectors.ics.pairing import OperationPairer, to_group
from otsentry.collectors.ics.ports import DECODED_TCP, DECODED_UDP
from otsentry.collectors.ics.s7comm import cotp_message
from otsentry.collectors.ics.units import UnitDecoder
from otsentry.collectors.packets import Packets, addr_to_str
from otsentry.collectors.stats import add_stream_counts, stream_counts
from otsentry.collectors.reassembly import LIMITS, SEQ_MOD, ReassemblyLimits, StreamState, feed_segment, \
    finish_stream, flush, skip_gap
from otsentry.collectors.types import Conn
from otsentry.contracts.events import OperationEvent
from otsentry.contracts.network import SYN

__all__ = ["IcsDecoder"]


def _aligned(state: StreamState, seq: int | None) -> bool:
    """Nothing pending in this direction and its next segment starts at ``seq`` (None: a SYN, which restarts
    the stream wherever it was): the fast path may go on."""
    return (not state.held and not state.buffer and not state.tentative
            and (state.framer is None or not state.framer.buffer)
            and (seq is None or state.next_seq is None or state.next_seq == seq))


def _table(ports) -> np.ndarray:
    t = np.zeros(65536, dtype=bool)
    t[list(ports)] = True
    return t


_TCP, _UDP = _table(DECODED_TCP), _table(DECODED_UDP)


class IcsDecoder:
    """Stateful over one capture, beside the Modbus path of ``Collector`` (sharing its connection table)."""

    def __init__(self, conns: ConnTable, pairing_timeout_s: float = 5.0,
                 limits: ReassemblyLimits = LIMITS, keep_messages: bool = False,
                 max_held_total_bytes: int = 64 << 20, fast_path: bool = True) -> None:
        self.conns = conns
        self.fast_path = fast_path  # connections in the common case framed, read and paired over arrays
        self.max_held_total_bytes = max_held_total_bytes
        self._holding: set[int] = set()  # streams with out-of-order bytes held
        self.noted: set[int] = set()  # streams with evasion notes for the collector to take
        self.keep_messages = keep_messages
        self._messages: list[KeptMessage] = []
        self.limits = limits
        self.counts: dict[str, ProtocolCounts] = {}
        self.streams: dict[int, StreamState] = {}  # sid = conn id * 2 + (0 from the client, 1 from the server)
        self._framer_of: dict[int, str] = {}  # conn id -> framer name
        self._transport_of: dict[int, str] = {}  # conn id -> "tcp" / "udp"
        self._units = UnitDecoder(self.counts)
        self._pairer = OperationPairer(pairing_timeout_s)
        self._udp_framers = {name: StreamFramer(spec) for name, spec in FRAMES.items()}
        self._last = (0, 0)
        self._routes: dict[tuple, tuple[int, bool, str]] = {}  # sender 7-tuple -> (conn id, from client, framer)
        self._ending: dict[int, StreamState] = {}  # streams ended with notes not yet taken (see stream)
        self.ended_counts = stream_counts()  # reassembly counts of the streams ended
        self.found = FoundServers()  # servers of a decoded protocol on another port (``decode_as``)

    def process(self, chunk: Chunk, p: Packets) -> Operations:
        tcp_ports, udp_ports = _TCP[p.sport] | _TCP[p.dport], _UDP[p.sport] | _UDP[p.dport]
        if len(self.found):
            tcp_ports |= self.found.tcp_ports[p.sport] | self.found.tcp_ports[p.dport]
            udp_ports |= self.found.udp_ports[p.sport] | self.found.udp_ports[p.dport]
        tcp, udp = (p.proto == 6) & tcp_ports, (p.proto == 17) & udp_ports
        rows = np.flatnonzero(p.l4_ok & (tcp | udp))
        out: list[OperationEvent] = []
        if len(p):
            self._last = (int(p.frame[-1]), int(p.ts_ns.max()))
        if len(rows) == 0:
            if self._holding:  # a quiet stream's hole still times out
                self._sweep_held(out)
            self._pairer.expire(self._last[1], self.counts, out)  # requests left unanswered still come out
            return Operations(out)
        lazy: list[LazyOperations] = []
        if self.fast_path and not self.keep_messages and not self._pairer.has_groups:
            rows = self._fast(chunk, p, rows, out, lazy)
        buf, snapped = chunk.buf, chunk.caplen < chunk.wirelen
        cols = [getattr(p, n)[rows].tolist() for n in ("proto", "src_hi", "src_lo", "sport", "dst_hi", "dst_lo",
                                                         "dport", "seq", "tcp_flags", "payload_off", "payload_len",
                                                         "payload_wire_len", "frame", "ts_ns")]
        cut = snapped[rows].tolist()
        for (proto, shi, slo, sport, dhi, dlo, dport, seq, flags, off, plen, wire, frame, ts), short in \
                zip(zip(*cols), cut):
            route = self._routes.get((proto, shi, slo, sport, dhi, dlo, dport))
            if route is None:
                route = self._route(proto, shi, slo, sport, dhi, dlo, dport)
                if route is None:  # on a found server's port number, but another host
                    continue
            cid, from_client, name = route
            sid = cid * 2 + (0 if from_client else 1)
            payload = buf[off : off + plen]
            if proto == 17:
                framer = self._udp_framers.get(name)
                if framer is None:  # EtherNet/IP class 1 I/O: counted, not decoded (kept for cip_io.log)
                    self._units.decode(name, sid, from_client, Pdu(payload, frame, ts))
                    if self.keep_messages:
                        io = Message("cip_io", frame, ts, from_client, 0, "io", "other")
                        self._messages.append(KeptMessage(self.conns.conns[cid], io, from_client, bytes(payload)))
                    continue
                units, skipped = framer.datagram(payload, frame, ts)
                if skipped:
                    self._units.skipped(name, skipped)
            else:
                units = self._segment(sid, name, seq, flags, payload, frame, ts, plen < wire and short, wire)
            self._transport_of[cid] = "tcp" if proto == 6 else "udp"
            self._decode(name, cid, sid, from_client, units, out)
        if self._holding:
            self._sweep_held(out)
        self._pairer.expire(self._last[1], self.counts, out)
        return Operations(out, lazy)

    def _fast(self, chunk: Chunk, p: Packets, rows: np.ndarray, out: list[OperationEvent],
              lazy: list[LazyOperations]) -> np.ndarray:
        """Take the TCP connections in the common case (``fastpath``) over arrays; return the rows left for the
        general path: every row of every other connection, in capture order."""
        cand = rows[p.proto[rows] == 6]
        if not len(cand):
            return rows
        cid, from_client, fid = self._tcp_routes(p, cand)
        known = cid >= 0
        plen, wire = p.payload_len[cand].astype(np.int64), p.payload_wire_len[cand].astype(np.int64)
        syn = (p.tcp_flags[cand] & SYN) > 0
        data = (plen > 0) | (wire > 0) | syn
        seq = p.seq[cand].astype(np.int64)
        u8 = np.frombuffer(chunk.buf, dtype=np.uint8)
        good = ~data  # pure acknowledgments change nothing
        framed = []
        for f, framer in enumerate(FAST_FRAMERS):
            sel = np.flatnonzero(known & (fid == f) & data & ~syn & (plen == wire))
            if len(sel):
                whole, seg, off, size = frame_segments(framer, u8, p.payload_off[cand[sel]].astype(np.int64),
                                                       plen[sel])
                good[sel[whole]] = True
                units = classify(framer, u8, off, size, from_client[sel[seg]])
                good[sel[seg[~units.ok]]] = False
                framed.append((sel[seg], off, size, units, framer))
        opening = syn & (plen == 0) & (wire == 0)  # a handshake segment: fast when it starts its stream's run
        good |= opening
        sid = cid * 2 + ~from_client
        bad = set(cid[known & ~(good & (fid >= 0))].tolist())
        d = np.flatnonzero(known & data)
        broken, firsts = stream_breaks(sid[d], seq[d], plen[d] + syn[d])  # a SYN takes one sequence number
        bad.update((broken // 2).tolist())
        later = np.ones(len(d), dtype=bool)
        later[firsts] = False
        bad.update((sid[d[later & opening[d]]] // 2).tolist())  # a SYN after data: a new connection, general path
        for s, first_seq, starts in zip(sid[d[firsts]].tolist(), seq[d[firsts]].tolist(),
                                        opening[d[firsts]].tolist()):
            state = self.streams.get(s)
            if state is not None and not _aligned(state, None if starts else first_seq):
                bad.add(s // 2)
        conns = self.conns.conns
        cids = {c for c in np.unique(cid[known]).tolist()
                if c not in bad and self._units.idle(c) and not to_group(conns[c].server_ip)}
        carried, back = [], []
        for key, entry in self._pairer.take(cids):
            cols = key_columns(entry[1].protocol, entry[1].key) if entry[1].protocol in PROTOCOLS else None
            if cols is None:
                cids.discard(key[0])
            carried.append((key, entry, cols))
        back = [(key, entry) for key, entry, _ in carried if key[0] not in cids]
        carried = [c for c in carried if c[0][0] in cids]
        self._pairer.put_back(back, self.counts, out)
        if not cids:
            return rows
        fast = known & np.isin(cid, np.fromiter(cids, dtype=np.int64, count=len(cids)))
        for stream, name in advance_streams(self.streams, p, cand, fast, sid, fid, data, syn, seq, plen, u8):
            self._framer_of[stream // 2] = name
            self._transport_of[stream // 2] = "tcp"
        parts = [FramedUnits(seg[m], off[m], size[m], units, m, framer) for seg, off, size, units, framer in framed
                 if (m := fast[seg]).any()]
        ops = fast_operations(p, cand, cid, from_client, parts, carried, u8, self.counts, self._pairer,
                              self.conns.conns, out)
        if ops is not None:
            lazy.append(ops)
        return rows[~np.isin(rows, cand[fast], assume_unique=True)]

    def _tcp_routes(self, p: Packets, cand: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Connection id (-1: not ours), sent by the client, and fast framer (index, -1: none) of each row; routes
        are made in the order senders first appear, as the general path makes them."""
        cols = [getattr(p, n)[cand] for n in ("src_hi", "src_lo", "sport", "dst_hi", "dst_lo", "dport")]
        first, group = group_columns([c.astype(np.uint64) for c in cols])
        table = np.full((len(first), 3), -1, dtype=np.int64)
        framers = {name: f for f, name in enumerate(FAST_FRAMERS)}
        keys = list(zip(*(c[first].tolist() for c in cols)))
        for j in np.argsort(first).tolist():
            key = keys[j]
            route = self._routes.get((6, *key))
            if route is None:
                route = self._route(6, *key)
            if route is not None:
                table[j] = route[0], route[1], framers.get(route[2], -1)
        per_row = table[group]
        return per_row[:, 0], per_row[:, 1] == 1, per_row[:, 2]

    def _sweep_held(self, out: list[OperationEvent]) -> None:
        """Holes open longer than the timeout, and the memory bound over all OT streams: give up on the oldest."""
        limit_ns = self.limits.ooo_timeout_s * 1e9
        now = self._last[1]
        for sid in sorted(self._holding):
            state = self.streams[sid]
            if not state.held or now - state.held_since_ns > limit_ns:
                self._give_up(sid, state, out)
        while self._holding and sum(self.streams[s].held_bytes for s in self._holding) > self.max_held_total_bytes:
            sid = min(self._holding, key=lambda s: (self.streams[s].held_since_ns, s))
            self._give_up(sid, self.streams[sid], out)

    def _give_up(self, sid: int, state: StreamState, out: list[OperationEvent]) -> None:
        frame, ts = self._last
        units: list = []
        while state.held:
            skip_gap(state, frame, ts, units)
        self._holding.discard(sid)
        if state.notes:
            self.noted.add(sid)
        self._decode(self._framer_of[sid // 2], sid // 2, sid, sid % 2 == 0, units, out)

    def drain_messages(self) -> tuple[KeptMessage, ...]:
        """The messages decoded since the last call (``keep_messages``), in decoding order."""
        out, self._messages = tuple(self._messages), []
        return out

    def decode_as(self, key: tuple, orig_is_a: bool, service: str) -> bool:
        """A flow (its FlowTable key and originator) was named ``service`` by its payload: when that is a decoded
        protocol away from its port, decode its server from now on. True when the server is new."""
        framer = FRAMER_OF_SERVICE.get(service)
        proto, a, b = key[0], key[1:4], key[4:7]
        table = DECODED_TCP if proto == 6 else DECODED_UDP if proto == 17 else None
        if framer is None or table is None or table.get(a[2]) == framer or table.get(b[2]) == framer:
            return False
        server = b if orig_is_a else a
        return self.found.add((proto, *server), framer)

    def _route(self, proto: int, shi: int, slo: int, sport: int, dhi: int, dlo: int,
               dport: int) -> tuple[int, bool, str] | None:
        """(connection id, sent by the client, framer) of a sender's packets, computed once per sender; None
        for a packet that only shares a found server's port number."""
        table = DECODED_TCP if proto == 6 else DECODED_UDP
        to_found = self.found.get((proto, dhi, dlo, dport)) if len(self.found) else None
        from_found = self.found.get((proto, shi, slo, sport)) if len(self.found) and to_found is None else None
        if to_found is not None or from_found is not None:
            from_client, name = to_found is not None, to_found or from_found
        elif dport in table or sport in table:
            from_client = dport in table
            if from_client and sport in table and \
                    self.conns.get((proto, dhi, dlo, dport, shi, slo, sport)) is not None:
                from_client = False  # both ends on the protocol's port (DNP3 20000 <-> 20000): first sender is client
            name = table[dport] if from_client else table[sport]
        else:
            return None
        cli, srv = ((shi, slo, sport), (dhi, dlo, dport)) if from_client else ((dhi, dlo, dport), (shi, slo, sport))
        cid = self.conns.intern((proto, *cli, *srv), lambda: Conn(addr_to_str(cli[0], cli[1]), cli[2],
                                                                addr_to_str(srv[0], srv[1]), srv[2]))
        route = self._routes[(proto, shi, slo, sport, dhi, dlo, dport)] = (cid, from_client, name)
        return route

    def end(self, ended: dict[tuple, int]) -> list[OperationEvent]:
        """Release the state of ended connections (connection-table key -> id; closed or long idle): their streams
        are finished as at the end of a capture (partial units truncated, held bytes past their holes), their
        counts kept; open requests stay with the pairer, which reports them unanswered after its timeout."""
        out: list[OperationEvent] = []
        for (proto, chi, clo, cport, shi, slo, sport), cid in ended.items():
            for sid in (2 * cid, 2 * cid + 1):
                state = self.streams.pop(sid, None)
                if state is None:
                    continue
                self._finish_stream(sid, state, out)
                if state.notes:
                    self._ending[sid] = state
                self._holding.discard(sid)
                add_stream_counts(self.ended_counts, state)
            self._units.end(cid)
            self._framer_of.pop(cid, None)
            self._transport_of.pop(cid, None)
            # a connection's routes are its two senders: the key itself, and the key's ends swapped
            self._routes.pop((proto, chi, clo, cport, shi, slo, sport), None)
            self._routes.pop((proto, shi, slo, sport, chi, clo, cport), None)
        return out

    def _finish_stream(self, sid: int, state: StreamState, out: list[OperationEvent]) -> None:
        frame, ts = self._last
        self._decode(self._framer_of[sid // 2], sid // 2, sid, sid % 2 == 0, finish_stream(state, frame, ts), out)
        if state.notes:
            self.noted.add(sid)

    def stream(self, sid: int) -> StreamState:
        """A stream with notes to take (``noted``): live, or ended by ``end`` since the notes were last taken."""
        state = self.streams.get(sid)
        return state if state is not None else self._ending.pop(sid)

    def finish(self) -> list[OperationEvent]:
        out: list[OperationEvent] = []
        for sid, state in self.streams.items():
            self._finish_stream(sid, state, out)
        self._holding.clear()
        self._units.close()
        self._pairer.flush(self.counts, out)
        return out

    def _segment(self, sid: int, name: str, seq: int, flags: int, payload: bytes, frame: int, ts: int,
                 cut: bool, wire: int) -> list:
        state = self.streams.get(sid)
        if state is None:
            state = self.streams[sid] = StreamState(framer=StreamFramer(FRAMES[name]))
            self._framer_of[sid // 2] = name
        syn = bool(flags & SYN)
        skipped = state.skipped_bytes
        units = feed_segment(state, seq, syn, payload, frame, ts, self.limits)
        if state.skipped_bytes != skipped:
            self._units.skipped(name, state.skipped_bytes - skipped)
        if cut:  # the capture cut this segment short: what is pending can never complete
            units.extend(flush(state, frame, ts))
            state.next_seq = (seq + (1 if syn else 0) + wire) % SEQ_MOD
        if state.held:
            self._holding.add(sid)
        if state.notes:
            self.noted.add(sid)
        return units

    def _decode(self, name: str, cid: int, sid: int, from_client: bool, units: list, out: list) -> None:
        conn, transport = self.conns.conns[cid], self._transport_of.get(cid, "tcp")
        for unit in units:
            if self.keep_messages and name == "tpkt":  # every COTP TPDU, for cotp.log
                tpdu = cotp_message(unit.data, from_client, unit.frame, unit.ts_ns)
                if tpdu is not None:
                    self._messages.append(KeptMessage(conn, tpdu, from_client, unit.data))
            for msg in self._units.decode(name, sid, from_client, unit):
                if self.keep_messages:  # DNP3 logs read the application fragment, the others the framed unit
                    data = self._units.fragment if name == "dnp3" else unit.data
                    self._messages.append(KeptMessage(conn, msg, from_client, data))
                self._pairer.push(cid, conn, msg, self.counts[msg.protocol], out, transport)
