"""Connection summaries (FlowEvent) for every TCP/UDP/other IP conversation, aggregated with numpy per chunk.

Flows are reported when they close (RST, or FIN in both directions), after ``idle_timeout_s`` without packets,
every ``active_timeout_s`` for long-lived connections (a Modbus poller never closes; the SOC still wants to see it),
and at the end of the capture. Timeouts run on the capture clock, so a replay gives the same flows as live capture.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

from otsentry.collectors.grouping import group_columns
from otsentry.collectors.packets import Packets, addr_to_str
from otsentry.collectors.ics.signatures import WEAK, guess_protocol
from otsentry.contracts.network import ACK, FIN, PSH, RST, SYN, URG, transport_name
from otsentry.records import FlowEvent

__all__ = ["FlowGroups", "FlowTable", "group_flows"]

LOOKS = 8  # payloads of a flow tested against the signatures before it is left unnamed
_FLAG_LETTERS = ((SYN, "S"), (ACK, "A"), (FIN, "F"), (RST, "R"), (PSH, "P"), (URG, "U"))


@dataclass(slots=True)
class _Flow:
    key: tuple  # (proto, a_hi, a_lo, a_port, b_hi, b_lo, b_port) with a < b
    orig_is_a: bool
    first_ns: int
    last_ns: int
    report_start_ns: int
    pkts: list  # [a->b, b->a]
    bytes: list
    flags: int = 0
    syn: int = 0
    rst: int = 0
    fin_dirs: int = 0  # bit 0: a sent FIN, bit 1: b sent FIN
    fin: int = 0
    retrans: int = 0
    service: str = ""  # what its payload was recognised as (ics.signatures)
    looked: int = 0  # payloads tested so far
    data: bool = False  # it carried payload (else no decoder holds anything of it: a scan, a SYN flood)


@dataclass(frozen=True)
class FlowGroups:
    """The IP packets of a chunk grouped by conversation; shared by flow accounting and Modbus connections.

    The key columns are kept apart: the collector only needs each group's key (``key_rows``), and writing every
    packet's key into one (n, 7) array cost more than the grouping itself; ``keys`` builds it when asked.
    """

    mask: np.ndarray  # which packets are IP (rows below are over these)
    columns: tuple[np.ndarray, ...]  # 7 uint64 columns: proto, a_hi, a_lo, a_port, b_hi, b_lo, b_port, a < b
    a_is_src: np.ndarray  # bool: the packet goes a -> b
    first: np.ndarray  # first row of each group
    inv: np.ndarray  # group of each row

    @cached_property
    def keys(self) -> np.ndarray:
        """(n, 7) uint64 key of every row."""
        return np.stack(self.columns, axis=1) if len(self.inv) else np.empty((0, 7), dtype=np.uint64)

    @cached_property
    def key_rows(self) -> np.ndarray:
        """(groups, 7) uint64 key of each group (``keys[first]``)."""
        if not len(self.first):
            return np.empty((0, 7), dtype=np.uint64)
        return np.stack([c[self.first] for c in self.columns], axis=1)


def group_flows(p: Packets) -> FlowGroups:
    m = p.ipver != 0
    proto = p.proto[m].astype(np.uint64)
    ports_ok = p.l4_ok[m] & ((p.proto[m] == 6) | (p.proto[m] == 17))
    sport = np.where(ports_ok, p.sport[m], 0).astype(np.uint64)
    dport = np.where(ports_ok, p.dport[m], 0).astype(np.uint64)
    shi, slo, dhi, dlo = p.src_hi[m], p.src_lo[m], p.dst_hi[m], p.dst_lo[m]
    a_is_src = (shi < dhi) | ((shi == dhi) & ((slo < dlo) | ((slo == dlo) & (sport <= dport))))
    columns = (
        proto,
        np.where(a_is_src, shi, dhi).astype(np.uint64, copy=False),
        np.where(a_is_src, slo, dlo).astype(np.uint64, copy=False),
        np.where(a_is_src, sport, dport),
        np.where(a_is_src, dhi, shi).astype(np.uint64, copy=False),
        np.where(a_is_src, dlo, slo).astype(np.uint64, copy=False),
        np.where(a_is_src, dport, sport),
    )
    first, inv = group_columns(columns)
    return FlowGroups(m, columns, a_is_src, first, inv)


class FlowTable:
    def __init__(
        self,
        modbus_ports: frozenset[int],
        idle_timeout_s: float = 120.0,
        active_timeout_s: float = 300.0,
        end_idle_s: float = 600.0,
        end_closed_s: float = 60.0,
    ) -> None:
        self.modbus_ports = modbus_ports
        self.idle_ns = int(idle_timeout_s * 1e9)
        self.active_ns = int(active_timeout_s * 1e9)
        self.end_idle_ns = max(int(end_idle_s * 1e9), self.idle_ns)
        self.end_closed_ns = int(end_closed_s * 1e9)
        self._flows: dict[tuple, _Flow] = {}
        self._quiet: dict[tuple, int] = {}  # flows reported (closed or idle), not yet ended: key -> when they end
        self._ended: list[tuple] = []
        self._named: list[tuple[tuple, bool, str]] = []  # (key, originator is a, service) named since drained

    def drain_named(self) -> list[tuple[tuple, bool, str]]:
        """(key, originator is a, service) of the flows their payload named since the last call."""
        out, self._named = self._named, []
        return out

    def drain_ended(self) -> list[tuple]:
        """Keys of the conversations that ended since the last call: ``end_closed_s`` after they closed (RST, or
        FIN both ways: late retransmissions still belong to them), or ``end_idle_s`` without a packet. A packet in
        between makes them go on. Their decoders' state can go (see ``Collector``)."""
        out, self._ended = self._ended, []
        return out

    def __len__(self) -> int:
        return len(self._flows)

    def update(self, p: Packets, g: "FlowGroups | None" = None, buf: bytes | None = None) -> list[FlowEvent]:
        """Account one chunk of packets; return the flows that closed or timed out by its end. With the chunk's
        ``buf``, the first payloads of each flow (``LOOKS``, the first of each direction per chunk) are tested
        against the OT protocols' signatures, whatever the port."""
        g = g or group_flows(p)
        if g is None or len(g.inv) == 0:
            return []
        m, a_is_src, first, inv = g.mask, g.a_is_src, g.first, g.inv
        k = len(first)
        ts = p.ts_ns[m]
        flags = p.tcp_flags[m].astype(np.int64) * (p.proto[m] == 6)
        wl = p.wirelen[m]
        dir_b = (~a_is_src).astype(np.int64)  # 0: a->b, 1: b->a
        slot = inv * 2 + dir_b
        pkts = np.bincount(slot, minlength=2 * k).reshape(k, 2)
        byts = np.bincount(slot, weights=wl, minlength=2 * k).reshape(k, 2)
        first_ts = np.full(k, np.iinfo(np.int64).max)
        np.minimum.at(first_ts, inv, ts)
        last_ts = np.zeros(k, dtype=np.int64)
        np.maximum.at(last_ts, inv, ts)
        flag_or = np.zeros(k, dtype=np.int64)
        np.bitwise_or.at(flag_or, inv, flags)
        syn = np.bincount(inv, weights=(flags & SYN) > 0, minlength=k)
        rst = np.bincount(inv, weights=(flags & RST) > 0, minlength=k)
        fin = np.bincount(slot, weights=(flags & FIN) > 0, minlength=2 * k).reshape(k, 2)
        pure_syn = (flags & (SYN | ACK)) == SYN
        syn_first = np.full(k, -1)
        if pure_syn.any():
            ids, idx = np.unique(inv[pure_syn], return_index=True)
            syn_first[ids] = np.flatnonzero(pure_syn)[idx]
        retrans = self._retransmissions(p, m, inv, dir_b, k)
        data = np.bincount(inv, weights=p.payload_len[m] > 0, minlength=k) > 0

        key_rows = g.key_rows
        unnamed: list[tuple[int, _Flow]] = []  # flows still to be recognised by their payload
        for j in range(k):
            key = tuple(int(x) for x in key_rows[j])
            flow = self._flows.get(key)
            if flow is None:
                opener = syn_first[j] if syn_first[j] >= 0 else first[j]
                flow = _Flow(key, bool(a_is_src[opener]), int(first_ts[j]), 0, int(first_ts[j]), [0, 0], [0, 0])
                self._flows[key] = flow
                if self._quiet:
                    self._quiet.pop(key, None)  # back from idle: the same conversation goes on
            flow.last_ns = max(flow.last_ns, int(last_ts[j]))
            flow.pkts[0] += int(pkts[j, 0])
            flow.pkts[1] += int(pkts[j, 1])
            flow.bytes[0] += int(byts[j, 0])
            flow.bytes[1] += int(byts[j, 1])
            flow.flags |= int(flag_or[j])
            flow.syn += int(syn[j])
            flow.rst += int(rst[j])
            flow.fin += int(fin[j, 0] + fin[j, 1])
            flow.fin_dirs |= (fin[j, 0] > 0) | ((fin[j, 1] > 0) << 1)
            flow.retrans += int(retrans[j])
            flow.data = flow.data or bool(data[j])
            if flow.looked < LOOKS and (not flow.service or flow.service in WEAK):
                unnamed.append((j, flow))
        if unnamed and buf is not None:
            wanted = np.zeros(k, dtype=bool)
            wanted[[j for j, _ in unnamed]] = True
            firsts = self._first_payloads(p, m, inv, dir_b, wanted)
            for j, flow in unnamed:
                if j in firsts:
                    self._recognise(flow, p, buf, firsts[j])
        return self._expire(int(ts.max()))

    @staticmethod
    def _first_payloads(p: Packets, m: np.ndarray, inv: np.ndarray, dir_b: np.ndarray,
                        wanted: np.ndarray) -> dict[int, list[int]]:
        """Group -> the packets (chunk rows, in capture order) carrying its first two payloads in each direction
        (a connection request and its data, a request and its answer), for the ``wanted`` groups."""
        rows = np.flatnonzero(p.l4_ok[m] & (p.payload_len[m] > 0) & wanted[inv])
        if not len(rows):
            return {}
        slot = inv[rows] * 2 + dir_b[rows]
        order = np.argsort(slot, kind="stable")
        ordered = slot[order]
        pos = np.arange(len(order))
        starts = np.maximum.accumulate(np.where(np.r_[True, ordered[1:] != ordered[:-1]], pos, 0))
        keep = np.sort(order[pos - starts < 2])
        out: dict[int, list[int]] = {}
        for group, row in zip((slot[keep] // 2).tolist(), np.flatnonzero(m)[rows[keep]].tolist()):
            out.setdefault(group, []).append(row)
        return out

    def _recognise(self, flow: _Flow, p: Packets, buf: bytes, rows: list[int]) -> None:
        transport = transport_name(flow.key[0])
        for row in rows:
            if flow.looked >= LOOKS:
                return
            flow.looked += 1
            off = int(p.payload_off[row])
            name = guess_protocol(transport, buf[off : off + int(p.payload_len[row])])
            if name is not None and (not flow.service or flow.service in WEAK):
                flow.service = name
                self._named.append((flow.key, flow.orig_is_a, name))
                if name not in WEAK:
                    return

    @staticmethod
    def _retransmissions(p: Packets, m: np.ndarray, inv: np.ndarray, dir_b: np.ndarray, k: int) -> np.ndarray:
        """TCP data segments whose (direction, sequence number) was already seen in this chunk."""
        seg = m.copy()
        seg[m] = (p.proto[m] == 6) & p.l4_ok[m] & (p.payload_wire_len[m] > 0)
        sel = seg[m]
        if not sel.any():
            return np.zeros(k, dtype=np.int64)
        flow = inv[sel].astype(np.uint64)
        key = (flow << np.uint64(33)) | (dir_b[sel].astype(np.uint64) << np.uint64(32)) | p.seq[seg].astype(np.uint64)
        # Every occurrence of a key but its first is a retransmission; the flow is in the key's top bits, so a
        # plain sort finds them (np.unique's first-occurrence indices need a slower stable argsort).
        key.sort()
        dup = key[1:] == key[:-1]
        return np.bincount((key[1:][dup] >> np.uint64(33)).astype(np.int64), minlength=k)

    def _expire(self, now_ns: int) -> list[FlowEvent]:
        out = []
        for key, flow in list(self._flows.items()):
            closed = flow.rst > 0 or flow.fin_dirs == 3
            if closed or now_ns - flow.last_ns > self.idle_ns:
                out.append(self._event(flow))
                del self._flows[key]
                if flow.data:
                    self._quiet[key] = flow.last_ns + (self.end_closed_ns if closed else self.end_idle_ns)
                else:  # nothing was decoded of it: its state (a connection id, an empty stream) can go now
                    self._ended.append(key)
            elif now_ns - flow.report_start_ns > self.active_ns:
                out.append(self._event(flow))
                self._flows[key] = _Flow(key, flow.orig_is_a, flow.last_ns, flow.last_ns, now_ns, [0, 0], [0, 0],
                                         service=flow.service, looked=flow.looked, data=flow.data)
        if self._quiet:
            gone = [key for key, end in self._quiet.items() if now_ns > end]
            for key in gone:
                del self._quiet[key]
            self._ended.extend(gone)
        return out

    def flush(self) -> list[FlowEvent]:
        """End of capture: report every flow still open."""
        out = [self._event(f) for f in self._flows.values() if f.pkts[0] + f.pkts[1]]
        self._flows.clear()
        self._quiet.clear()
        self._ended.clear()
        return out

    def _event(self, f: _Flow) -> FlowEvent:
        proto, ahi, alo, aport, bhi, blo, bport = f.key
        a, b = (addr_to_str(ahi, alo), aport), (addr_to_str(bhi, blo), bport)
        o, r = (0, 1) if f.orig_is_a else (1, 0)
        (oip, oport), (rip, rport) = (a, b) if f.orig_is_a else (b, a)
        return FlowEvent(
            ts_first=f.first_ns / 1e9,
            ts_last=f.last_ns / 1e9,
            orig_ip=oip,
            orig_port=oport,
            resp_ip=rip,
            resp_port=rport,
            transport=transport_name(proto),
            packets_orig=f.pkts[o],
            packets_resp=f.pkts[r],
            bytes_orig=f.bytes[o],
            bytes_resp=f.bytes[r],
            tcp_flags="".join(letter for bit, letter in _FLAG_LETTERS if f.flags & bit),
            syn=f.syn,
            rst=f.rst,
            fin=f.fin,
            retransmissions=f.retrans,
            modbus=proto == 6 and (aport in self.modbus_ports or bport in self.modbus_ports),
            service=f.service,
        )
