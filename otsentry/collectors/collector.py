"""The collector: capture chunks in, ModbusBatch and FlowEvents out.

Per chunk: decode link/IP/TCP headers with numpy, account flows, then frame Modbus ADUs per TCP stream
(vectorised fast path for streams whose segments each carry exactly one ADU in order; the general reassembler for
the rest), decode PDUs and pair requests with responses.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Iterable, Iterator, Protocol, Sequence

import numpy as np

from otsentry.collectors import fastpath
from otsentry.collectors.chunks import Chunk
from otsentry.collectors.defrag import DefragLimits, Defragmenter, parse_fragment
from otsentry.collectors.events import ConnTable, ModbusBatch
from otsentry.collectors.flows import FlowGroups, FlowTable, group_flows
from otsentry.collectors.halves import HalfBatch, HalfBuilder
from otsentry.collectors.ics.decoder import IcsDecoder
from otsentry.collectors.ics.found import FoundServers
from otsentry.collectors.ics.link import count_link_protocols
from otsentry.collectors.ics.message import KeptMessage
from otsentry.collectors.modbus_pdu import decode_pdu_cached as decode_pdu
from otsentry.collectors.packets import (RAW_IP, PacketFields, Packets, addr_to_str, decode_packet_py, decode_packets,
                                         network_offset)
from otsentry.collectors.pairing import Pairer
from otsentry.collectors.reassembly import (LIMITS, SEQ_MOD, UNDECODED, RawAdu, ReassemblyLimits, StreamState,
                                            feed_segment, finish_stream, flush, skip_gap, skip_if_acked)
from otsentry.collectors.stats import (DEFRAG_STATS, SUMMARY_KEYS, CollectorStats, add_stream_counts,
                                      merge_stream_counts, stream_counts, summary)
from otsentry.collectors.types import Conn
from otsentry.contracts.flags import (FLAG_BAD_PROTOCOL_ID, FLAG_BITS, FLAG_MIDSTREAM, FLAG_TRUNCATED, MALFORMED_MASK,
                                      flags_to_mask)
from otsentry.contracts.events import OperationEvent
from otsentry.contracts.network import ACK, SYN, transport_name
from otsentry.records import EvasionNote, FlowEvent, PacketLoss

__all__ = ["CollectedBatch", "Collector", "CollectorConfig", "CollectorStats", "DEFRAG_STATS", "PacketObserver",
    "STALL_BYTES", "SUMMARY_KEYS", "collect_chunks", "summary"]

STALL_BYTES = 1024  # undecodable bytes on a Modbus port, without one ADU, before the stream is noted as stalled


@dataclass(frozen=True)
class CollectorConfig:
    server_ports: frozenset[int] = frozenset({502})
    pairing_timeout_s: float = 5.0
    flow_idle_timeout_s: float = 120.0
    flow_active_timeout_s: float = 300.0
    fast_path: bool = True
    reassembly: ReassemblyLimits = LIMITS
    max_held_total_bytes: int = 64 << 20  # out-of-order bytes held over all streams (memory bound)
    defrag: DefragLimits = DefragLimits()
    keep_messages: bool = False  # OT protocol messages in each batch too, not only operations (Zeek logs)
    # A conversation's decoder state (reassembly, framing, connection id) is released this long after it closed
    # (RST, or FIN both ways; late retransmissions still find it) or without a packet (Suricata's TCP "closed" and
    # "established" defaults): a sensor's memory follows the connections alive, not every one it ever saw. One
    # that comes back after that is a new connection, picked up mid-stream. One that never carried payload (a scan,
    # a SYN flood) holds nothing worth keeping: it is released as soon as its flow is reported (closed or idle).
    stream_closed_timeout_s: float = 60.0
    stream_idle_timeout_s: float = 600.0
    # Name flows by their first payloads and decode a protocol found off its port (Zeek's dynamic protocol
    # detection, ``ics.signatures``); False: by port only (``server_ports`` and the OT protocols' ports).
    payload_detection: bool = True


@dataclass(frozen=True)
class CollectedBatch:
    modbus: ModbusBatch
    flows: list[FlowEvent]
    notes: tuple[EvasionNote, ...] = ()  # evasion evidence seen in this batch
    loss: PacketLoss | None = None  # packets the capture lost while this batch was read (live capture)
    # DNP3, IEC 104, S7 and EtherNet/IP operations (collectors.ics), in the order they completed; built when read
    operations: Sequence[OperationEvent] = ()
    messages: tuple[KeptMessage, ...] = ()  # their messages, with CollectorConfig.keep_messages
    services: tuple[tuple[str, int, str, str], ...] = ()  # (server ip, port, transport, protocol) named by payload

    def with_loss(self, ts: float, kernel_drops: int, interface_drops: int) -> "CollectedBatch":
        return replace(self, loss=PacketLoss(ts, kernel_drops, interface_drops))


class PacketObserver(Protocol):
    """Sees every chunk's decoded packets and flow grouping (e.g. per-window flow features); must not modify them."""

    def observe(self, p: Packets, g: FlowGroups) -> None: ...


class Collector:
    """Stateful over one capture (or one live interface): feed chunks in order, then ``finish()``."""

    def __init__(self, config: CollectorConfig | None = None, observers: Sequence[PacketObserver] = ()) -> None:
        self.config = config or CollectorConfig()
        self.observers = tuple(observers)
        self.conns = ConnTable()
        self.stats = CollectorStats()
        self._ports = np.array(sorted(self.config.server_ports), dtype=np.int64)
        # Server port lookup by port number: a gather per packet instead of np.isin's sort.
        self._port_table = np.zeros(65536, dtype=bool)
        self._port_table[[q for q in self.config.server_ports if 0 <= q < 65536]] = True
        self._streams: dict[int, StreamState] = {}
        self._holding: set[int] = set()  # streams with out-of-order bytes held (the fast path leaves them alone)
        self._defrag = Defragmenter(self.config.defrag)
        self.notes: list[EvasionNote] = []  # evasion evidence, in the order seen (consumers drain it)
        self._flows = FlowTable(self.config.server_ports, self.config.flow_idle_timeout_s,
                                self.config.flow_active_timeout_s, self.config.stream_idle_timeout_s,
                                self.config.stream_closed_timeout_s)
        self._ended_counts = stream_counts()  # reassembly counts of the streams released
        self._found_modbus = FoundServers()  # Modbus/TCP servers found by their payload off the configured ports
        # Released connections stay resolvable past the pairing timeout (their unanswered requests) and a minute.
        self._conn_grace_ns = int((self.config.pairing_timeout_s + 60.0) * 1e9)
        self._pairer = Pairer(self.config.pairing_timeout_s)
        self._ics = IcsDecoder(self.conns, self.config.pairing_timeout_s, self.config.reassembly,
                               self.config.keep_messages, self.config.max_held_total_bytes, self.config.fast_path)
        self.stats.protocols = self._ics.counts
        self._last_frame = 0
        self._last_ts_ns = 0

    def process(self, chunk: Chunk) -> CollectedBatch:
        n = len(chunk)
        if n == 0:
            return CollectedBatch(ModbusBatch.empty(), [])
        p = decode_packets(chunk)
        odd = np.flatnonzero((p.ipver != 0) & ~p.l4_ok)  # fragments (and damaged headers): rare
        if len(odd):
            chunk, p = self._fragments(chunk, p, odd)
        self.stats.packets += n
        not_ip = np.flatnonzero(p.ipver == 0)
        if len(not_ip):  # GOOSE, SV, PROFINET RT...: counted by EtherType
            count_link_protocols(chunk, not_ip, self._ics.counts)
        self.conns.drop_due(self._last_ts_ns)  # the previous batches are done with: their ended connections go
        t0, t1 = float(p.ts_ns.min()) / 1e9, float(p.ts_ns.max()) / 1e9
        self.stats.first_ts = t0 if self.stats.first_ts is None else min(self.stats.first_ts, t0)
        self.stats.last_ts = t1 if self.stats.last_ts is None else max(self.stats.last_ts, t1)
        self._last_frame = int(p.frame[-1])
        self._last_ts_ns = int(p.ts_ns.max())
        groups = group_flows(p)
        for observer in self.observers:
            observer.observe(p, groups)
        flows = self._flows.update(p, groups, chunk.buf if self.config.payload_detection else None)
        services = []
        for key, orig_is_a, service in self._flows.drain_named():
            if service == "modbus":
                self._modbus_found(key, orig_is_a)
            else:
                self._ics.decode_as(key, orig_is_a, service)
            proto, hi, lo, port = (key[0], *key[4:7]) if orig_is_a else key[:4]
            services.append((addr_to_str(hi, lo), port, transport_name(proto), service))
        parts = self._modbus_halves(chunk, p, groups)
        ended = self._flows.drain_ended()  # conversations closed or long idle: their state goes below
        modbus_ended = self._ended_ids(ended, ot=False)
        if modbus_ended:
            part = self._end_modbus(list(modbus_ended.values()))
            if len(part):
                parts.append(part)
        for part in parts:
            self._count_halves(part)
        events = self._pairer.push(parts, self._last_ts_ns)
        operations = self._ics.process(chunk, p)
        ot_ended = self._ended_ids(ended, ot=True)  # after decoding: the OT decoder interns its connections as it goes
        if ot_ended:
            operations = operations.plus(self._ics.end(ot_ended))
        self._take_ics_notes()
        for key in (*modbus_ended, *ot_ended):
            self.conns.release(key, self._last_ts_ns + self._conn_grace_ns)
        return self._account(CollectedBatch(events, flows, self._drain_notes(), operations=operations,
                                            messages=self._ics.drain_messages(), services=tuple(services)))

    def _finish_stream(self, builder: HalfBuilder, sid: int, state: StreamState) -> None:
        """What a stream still holds comes out (held bytes past their holes, a partial ADU as truncated)."""
        for adu in finish_stream(state, self._last_frame, self._last_ts_ns):
            self._add_adu(builder, sid, state, adu)
        self._take_notes(sid, state)

    def _ended_ids(self, ended: list[tuple], ot: bool) -> dict[tuple, int]:
        """Connection-table key -> id of the ended conversations' connections: the Modbus path's, or with ``ot``
        the OT decoder's (see ``_conn_keys``)."""
        get = self.conns.get
        return {k: cid for key in ended for k in _conn_keys(key, ot) if (cid := get(k)) is not None}

    def _end_modbus(self, cids: list[int]) -> HalfBatch:
        """Release the Modbus streams of ended connections: what they still held comes out as at the end of a
        capture (partial ADUs truncated, held bytes past their holes), their counts are kept."""
        builder = HalfBuilder()
        for cid in cids:
            for sid in (2 * cid, 2 * cid + 1):
                state = self._streams.pop(sid, None)
                if state is None:
                    continue
                self._finish_stream(builder, sid, state)
                self._holding.discard(sid)
                add_stream_counts(self._ended_counts, state)
        return builder.build()

    def finish(self) -> CollectedBatch:
        """End of capture: flush partial ADUs, unanswered requests and open flows."""
        builder = HalfBuilder()
        for sid, state in self._streams.items():
            self._finish_stream(builder, sid, state)
        self._holding.clear()
        self._defrag.close()
        for name, value in self.reassembly_counts().items():
            setattr(self.stats, name, getattr(self.stats, name) + value if name != "tcp_held_peak_bytes"
                    else max(self.stats.tcp_held_peak_bytes, value))
        halves = builder.build()
        self._count_halves(halves)
        batch = ModbusBatch.concat([self._pairer.push(halves, self._last_ts_ns), self._pairer.flush()]) \
            if len(halves) else self._pairer.flush()
        operations = tuple(self._ics.finish())
        self._take_ics_notes()
        return self._account(CollectedBatch(batch, self._flows.flush(), self._drain_notes(), operations=operations,
                                            messages=self._ics.drain_messages()))

    def reassembly_counts(self) -> dict[str, int]:
        """Stream-level counts so far (summed into ``stats`` by ``finish``; a live sensor reads them as it goes)."""
        c = dict(self._ended_counts)
        merge_stream_counts(c, self._ics.ended_counts)
        for st in (*self._streams.values(), *self._ics.streams.values()):
            add_stream_counts(c, st)
        for name, value in self._defrag.stats.to_dict().items():
            c[DEFRAG_STATS[name]] = value
        return c

    @property
    def open_streams(self) -> int:
        """Stream directions whose reassembly state is kept (Modbus and the other OT protocols): the ones of the
        connections alive, and of those ended less than ``stream_closed_timeout_s`` / ``stream_idle_timeout_s`` ago."""
        return len(self._streams) + len(self._ics.streams)

    @property
    def fragments_pending(self) -> int:
        return self._defrag.pending

    # -- internals -------------------------------------------------------------------------------------------
    def _drain_notes(self) -> tuple[EvasionNote, ...]:
        notes, self.notes = tuple(self.notes), []
        return notes

    def _take_ics_notes(self) -> None:
        """Evasion notes of OT streams, taken after every batch (as the Modbus path's after every segment)."""
        for sid in sorted(self._ics.noted):
            self._take_notes(sid, self._ics.stream(sid))
        self._ics.noted.clear()

    def _take_notes(self, sid: int, state: StreamState) -> None:
        if state.notes:
            c = self.conns.conns[sid // 2]
            ends = ((c.client_ip, c.client_port), (c.server_ip, c.server_port))
            (sip, sport), (dip, dport) = ends if sid % 2 == 0 else ends[::-1]
            self.notes.extend(EvasionNote(kind, frame, ts, sip, sport, dip, dport, size)
                              for kind, frame, ts, size in state.notes)
            del state.notes[:]

    def _fragments(self, chunk: Chunk, p: Packets, rows: np.ndarray) -> tuple[Chunk, Packets]:
        """Reassemble the chunk's IP fragments: a completed datagram replaces its last fragment (as a raw IP
        record appended to the buffer); the other fragments it absorbed are no longer packets of their own."""
        defrag = self._defrag
        if defrag.pending:
            defrag.expire(int(p.ts_ns[rows[0]]))
        whole: list[tuple[int, bytes]] = []
        absorbed: list[int] = []
        for i in rows.tolist():
            data = chunk.data(i)
            l3 = network_offset(data, int(chunk.linktype[i]))
            frag = parse_fragment(data, l3) if l3 is not None else None
            if frag is None:
                continue
            ts = int(p.ts_ns[i])
            datagram = defrag.add(frag, ts)
            for kind, size in defrag.notes:
                src = addr_to_str(int(p.src_hi[i]), int(p.src_lo[i]))
                dst = addr_to_str(int(p.dst_hi[i]), int(p.dst_lo[i]))
                self.notes.append(EvasionNote(kind, int(p.frame[i]), ts, src, 0, dst, 0, size))
            if datagram is None:
                absorbed.append(i)
            else:
                whole.append((i, datagram))
        if not whole and not absorbed:
            return chunk, p
        offset, caplen, wirelen, linktype = (a.copy() for a in (chunk.offset, chunk.caplen, chunk.wirelen,
                                                                 chunk.linktype))
        at = len(chunk.buf)
        for i, datagram in whole:
            offset[i], caplen[i], wirelen[i], linktype[i] = at, len(datagram), len(datagram), RAW_IP[0]
            fields = decode_packet_py(datagram, RAW_IP[0])
            for name, value in zip(PacketFields._fields, fields):
                getattr(p, name)[i] = value
            p.payload_off[i] += at
            at += len(datagram)
        for i in absorbed:
            p.ipver[i], p.proto[i], p.l4_ok[i] = 0, 0, False
        buf = chunk.buf + b"".join(d for _, d in whole) if whole else chunk.buf
        chunk = Chunk(buf, offset, caplen, wirelen, chunk.ts_ns, linktype, chunk.first_frame)
        return chunk, replace(p, wirelen=wirelen)

    def _sweep_held(self, builder: HalfBuilder) -> None:
        """Holes open longer than the timeout, and the memory bound over all streams: give up on the oldest."""
        limit_ns = self.config.reassembly.ooo_timeout_s * 1e9
        now = self._last_ts_ns
        for sid in sorted(self._holding):
            state = self._streams[sid]
            if now - state.held_since_ns > limit_ns:
                self._skip(builder, sid, state)
        while self._holding and sum(self._streams[s].held_bytes for s in self._holding) \
                > self.config.max_held_total_bytes:
            sid = min(self._holding, key=lambda s: (self._streams[s].held_since_ns, s))
            self._skip(builder, sid, self._streams[sid])

    def _skip(self, builder: HalfBuilder, sid: int, state: StreamState) -> None:
        out: list[RawAdu] = []
        while state.held:
            skip_gap(state, self._last_frame, self._last_ts_ns, out)
        for adu in out:
            self._add_adu(builder, sid, state, adu)
        self._take_notes(sid, state)
        self._holding.discard(sid)


    def _account(self, out: CollectedBatch) -> CollectedBatch:
        ev = out.modbus
        self.stats.transactions += len(ev)
        self.stats.unanswered += int(((ev.flags & FLAG_BITS["unanswered"]) > 0).sum())
        self.stats.orphan_responses += int(((ev.flags & FLAG_BITS["orphan_response"]) > 0).sum())
        self.stats.flows += len(out.flows)
        return out

    def _count_halves(self, h: HalfBatch) -> None:
        """ADU counts: complete ADUs only, as tshark counts them; partial ones are ``truncated_adus``."""
        truncated = (h.flags & FLAG_BITS[FLAG_TRUNCATED]) > 0
        whole = ~truncated
        self.stats.truncated_adus += int(truncated.sum())
        self.stats.modbus_adus += int(whole.sum())
        req = int((h.from_client & whole).sum())
        self.stats.modbus_requests += req
        self.stats.modbus_responses += int(whole.sum()) - req
        self.stats.exceptions += int((h.exc >= 0).sum())
        self.stats.malformed += int(((h.flags & MALFORMED_MASK) > 0).sum())

    def _modbus_found(self, key: tuple, orig_is_a: bool) -> None:
        """A flow's payload is Modbus/TCP: off the configured ports, decode its server from now on."""
        proto, a, b = key[0], key[1:4], key[4:7]
        if proto == 6 and a[2] not in self.config.server_ports and b[2] not in self.config.server_ports:
            self._found_modbus.add((6, *(b if orig_is_a else a)), "modbus")

    def _not_found(self, p: Packets, rows: np.ndarray) -> np.ndarray:
        """Of ``rows`` (on a found server's port number, no configured port), those not to or from a found server."""
        cols = np.stack([p.src_hi[rows], p.src_lo[rows], p.sport[rows].astype(np.uint64), p.dst_hi[rows],
                         p.dst_lo[rows], p.dport[rows].astype(np.uint64)], axis=1)
        ends, inv = np.unique(cols, axis=0, return_inverse=True)
        get = self._found_modbus.get
        ours = np.array([get((6, d_hi, d_lo, dport)) is not None or get((6, s_hi, s_lo, sport)) is not None
                         for s_hi, s_lo, sport, d_hi, d_lo, dport in ends.tolist()], dtype=bool)
        return rows[~ours[inv.reshape(-1)]]

    def _conn_ids(self, g: FlowGroups, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Connection id and direction (True = client to server) of the IP packets at ``rows`` (over g.mask).

        The client is the sender when the receiver's port is a Modbus server port (or the receiver a server found
        by its payload), else the receiver.
        """
        ports = self.config.server_ports
        found = self._found_modbus.get if len(self._found_modbus) else None
        a_to_b = g.a_is_src[rows]
        grp = g.inv[rows]
        used = np.unique(grp)
        table = np.zeros((len(g.first), 2, 2), dtype=np.int64)  # [group, sent by a?] -> (conn id, from client)
        key_rows = g.key_rows[used].tolist()
        for j, (_, ahi, alo, aport, bhi, blo, bport) in zip(used.tolist(), key_rows):
            for sent_by_a in (0, 1):
                src, dst = ((ahi, alo, aport), (bhi, blo, bport)) if sent_by_a else ((bhi, blo, bport), (ahi, alo, aport))
                from_client = dst[2] in ports or (found is not None and found((6, *dst)) is not None
                                                  and src[2] not in ports)
                cli, srv = (src, dst) if from_client else (dst, src)
                key = (*cli, *srv)
                cid = self.conns.intern(
                    key, lambda c=cli, s=srv: Conn(addr_to_str(c[0], c[1]), c[2], addr_to_str(s[0], s[1]), s[2])
                )
                table[j, sent_by_a] = (cid, from_client)
        pair = table[grp, a_to_b.astype(np.int64)]
        return pair[:, 0], pair[:, 1].astype(bool)

    def _modbus_halves(self, chunk: Chunk, p: Packets, g: FlowGroups) -> list[HalfBatch]:
        """The chunk's decoded ADUs as parts in pairing order (fast path, then general path): the pairer
        concatenates them once, with the requests carried over from the previous chunk."""
        on_port = self._port_table[p.sport] | self._port_table[p.dport]
        modbus = p.l4_ok & (p.proto == 6) & on_port
        if len(self._found_modbus):
            found = self._found_modbus.tcp_ports
            extra = np.flatnonzero(p.l4_ok & (p.proto == 6) & ~on_port & (found[p.sport] | found[p.dport]))
            if len(extra):
                modbus[extra] = True
                modbus[self._not_found(p, extra)] = False
        idx = np.flatnonzero(modbus)
        if len(idx) == 0:
            if not self._holding:
                return []
            builder = HalfBuilder()
            self._sweep_held(builder)
            held = builder.build()
            return [held] if len(held) else []
        conn, from_client = self._conn_ids(g, np.flatnonzero(modbus[g.mask]))
        stream = conn * 2 + (~from_client)
        builder = HalfBuilder()
        buf = chunk.buf
        snapped = chunk.caplen < chunk.wirelen  # cut by the capture's snap length (not a bogus IP length)
        holding, limits = self._holding, self.config.reassembly
        has_ack = (p.tcp_flags[idx] & ACK) > 0
        peer_acks: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
        acked = {sid: 0 for sid in holding}  # per holding stream: acks up to this frame were checked

        def slow_segment(k: int) -> None:
            i = int(idx[k])
            sid = int(stream[k])
            state = self._streams.get(sid)
            if state is None:
                state = self._streams[sid] = StreamState()
            off, plen, wire = int(p.payload_off[i]), int(p.payload_len[i]), int(p.payload_wire_len[i])
            seq = int(p.seq[i])
            frame, ts = int(p.frame[i]), int(p.ts_ns[i])
            if state.held:
                check_acks(sid, state, frame)
            flags = int(p.tcp_flags[i])
            syn = bool(flags & SYN)
            for adu in feed_segment(state, seq, syn, buf[off : off + plen], frame, ts, limits):
                self._add_adu(builder, sid, state, adu)
            if plen < wire and snapped[i]:  # the capture cut this segment short: what is pending can never complete
                for adu in flush(state, frame, ts):
                    self._add_adu(builder, sid, state, adu)
                state.next_seq = (seq + (1 if syn else 0) + wire) % SEQ_MOD
            if state.held:
                holding.add(sid)
                acked[sid] = frame
            else:
                holding.discard(sid)
            if state.skipped_bytes - state.skipped_mark >= STALL_BYTES:
                state.notes.append((UNDECODED, frame, ts, state.skipped_bytes - state.skipped_mark))
                state.skipped_mark = state.skipped_bytes
            if state.notes:
                self._take_notes(sid, state)

        def check_acks(sid: int, state: StreamState, before: int) -> None:
            """Acknowledgments by the peer in this chunk, in capture order, up to frame ``before``: one past the
            hole means the capture lost the hole's bytes (read from the columns, so the order in which streams
            are walked does not matter)."""
            rows = peer_acks.get(sid)
            if rows is None:
                sel = np.flatnonzero((stream == (sid ^ 1)) & has_ack)
                rows = peer_acks[sid] = (idx[sel], p.frame[idx[sel]], p.ack[idx[sel]])
            pk, frames, acks = rows
            lo, hi = np.searchsorted(frames, [acked.get(sid, 0) + 1, before])
            for j in range(int(lo), int(hi)):
                out = skip_if_acked(state, int(acks[j]), int(frames[j]), int(p.ts_ns[pk[j]]))
                for adu in out:
                    self._add_adu(builder, sid, state, adu)
                if state.notes:
                    self._take_notes(sid, state)
                if not state.held:
                    holding.discard(sid)
                    return
            acked[sid] = before - 1

        if self.config.fast_path:
            fast = fastpath.run(chunk, p, idx, conn, from_client, stream, self._streams, slow_segment)
        else:
            fast = []
            for k in range(len(idx)):
                slow_segment(k)
        for sid in sorted(holding):  # acknowledgments after the stream's last segment of the chunk
            check_acks(sid, self._streams[sid], int(p.frame[-1]) + 1)
        if holding:
            self._sweep_held(builder)
        slow = builder.build()
        # Not re-sorted by frame: pairing orders by (key, frame), and the output is ordered by frame.
        return fast + [slow] if len(slow) else fast

    def _add_adu(self, builder: HalfBuilder, sid: int, state: StreamState, adu: RawAdu) -> None:
        from_client = sid % 2 == 0
        state.skipped_mark = state.skipped_bytes
        pdu = decode_pdu(adu.pdu, from_client)
        mask = flags_to_mask(pdu.flags)
        if adu.protocol_id != 0:
            mask |= FLAG_BITS[FLAG_BAD_PROTOCOL_ID]
        if adu.truncated:
            mask |= FLAG_BITS[FLAG_TRUNCATED]
        if not state.saw_syn:
            mask |= FLAG_BITS[FLAG_MIDSTREAM]
        builder.add(adu.frame, adu.ts_ns, sid // 2, from_client, adu.transaction_id, adu.unit_id,
                    pdu.function_code, pdu.exception_code, pdu.sub_function, pdu.start_address, pdu.quantity,
                    pdu.values, mask)


def _conn_keys(key: tuple, ot: bool) -> tuple[tuple, ...]:
    """The connection-table keys a conversation (a flow key) may have: the OT decoder's (protocol, client,
    server), or the Modbus path's (client, server), TCP only; the flow key does not say which end is the client."""
    proto, ahi, alo, aport, bhi, blo, bport = key
    if ot:
        return (key, (proto, bhi, blo, bport, ahi, alo, aport))
    return ((ahi, alo, aport, bhi, blo, bport), (bhi, blo, bport, ahi, alo, aport)) if proto == 6 else ()


def collect_chunks(chunks: Iterable[Chunk], config: CollectorConfig | None = None,
                   collector: Collector | None = None) -> Iterator[CollectedBatch]:
    """Run a collector over chunks in order, ending with its final flush."""
    col = collector or Collector(config)
    for chunk in chunks:
        yield col.process(chunk)
    yield col.finish()
