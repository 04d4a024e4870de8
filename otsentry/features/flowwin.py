"""Per-window flow accounting: a collector observer that counts packets of every conversation per time window.

Why an observer: the collector's ``FlowEvent``s are reported when a flow closes or every few minutes, which cannot
give per-window numbers; the observer sees each chunk's packets and flow grouping (``FlowGroups``) as the collector
decodes them and reduces them to *cells*, one per (conversation, window) present in the chunk, with numpy only.
The ``Windower`` drains the cells and merges them into flow windows keyed by (window, originator ip, responder ip,
responder port, transport), and into the TCP features of pair windows.

Orientation (who is the originator) must be the same in every window of a conversation, so it is decided per
conversation, not per packet: the sender of a pure SYN when one is seen (remembered across chunks), otherwise the
peer of a Modbus server port, otherwise the side with the higher port (ephemeral ports are high; a tie goes to the
lower address). A conversation first seen mid-stream therefore still gets the service port as ``resp_port``.

Retransmissions: a TCP data segment that brings no new bytes, i.e. whose end (seq + length) is not past the
highest end already seen in its direction (the classic sequence-number test; a reordered old segment counts too).
The highest end per (conversation, direction) is carried across chunks, so the count does not depend on where
chunks are cut (``flows.py`` counts repeats of a sequence number within a chunk; both agree on real retransmissions).
State is bounded: orientation and sequence state of a conversation idle for ``idle_timeout_s`` is dropped.
Conversations are keyed by a 64-bit hash of their 5-tuple across chunks (see ``columns.hash_rows``).

Only IP packets are counted (ARP and other non-IP frames are not conversations); ICMP and other protocols without
ports get port 0. Bytes are lengths on the wire (frame ``wirelen``), as in ``FlowEvent``.
"""

from __future__ import annotations

import numpy as np

from otsentry.collectors.flows import FlowGroups
from otsentry.collectors.grouping import stable_order
from otsentry.collectors.packets import Packets
from otsentry.contracts.network import ACK, FIN, RST, SYN
from otsentry.contracts.schema import FLOW_FEATURES
from otsentry.features.columns import (Cols, distinct, group_starts, hash_rows, lookup, merge_state, pick, runs_to_ids,
                                       signed32)

__all__ = ["FlowWindowObserver", "PAIR_TCP", "flow_rows", "pair_tcp"]

_DIR_SALT = np.uint64(0xD1B54A32D192ED03)
_NO_PRIOR = -(1 << 40)


class FlowWindowObserver:
    """Collector observer (``observe(p, g)``) accumulating per (conversation, window) cells until drained."""

    def __init__(self, window_s: float = 10.0, server_ports: frozenset[int] = frozenset({502}),
                 idle_timeout_s: float = 300.0) -> None:
        if window_s <= 0:
            raise ValueError(f"window_s must be positive, got {window_s}")
        self.window_ns = int(round(window_s * 1e9))
        self.server_ports = np.array(sorted(server_ports), dtype=np.uint64)
        self.idle_ns = int(idle_timeout_s * 1e9)
        self.max_ts_ns: int | None = None
        self.packets = 0
        self._cells: list[Cols] = []
        empty_u64, empty_i64 = np.empty(0, dtype=np.uint64), np.empty(0, dtype=np.int64)
        self._orient_keys = empty_u64
        self._orient = {"orig_is_a": np.empty(0, dtype=bool), "ts": empty_i64}
        self._seq_keys = empty_u64
        self._seq = {"end": empty_i64, "ts": empty_i64}

    def drain(self) -> Cols | None:
        """Cells accumulated since the last drain (None when there are none)."""
        out = Cols.concat(self._cells)
        self._cells = []
        return out

    def observe(self, p: Packets, g: FlowGroups) -> None:
        m = g.mask
        n = len(g.inv)
        if n == 0:
            return
        ts = p.ts_ns[m]
        now = int(ts.max())
        self.max_ts_ns = now if self.max_ts_ns is None else max(self.max_ts_ns, now)
        self.packets += n
        inv, a_is_src = g.inv, g.a_is_src
        key_rows = g.keys[g.first]
        k = len(key_rows)
        proto = p.proto[m]
        flags = np.where(proto == 6, p.tcp_flags[m], 0).astype(np.int64)
        wirelen = p.wirelen[m].astype(np.int64)
        frame = p.frame[m]
        flow_h = hash_rows(key_rows)
        last_seen = np.zeros(k, dtype=np.int64)
        np.maximum.at(last_seen, inv, ts)

        orig_is_a = self._orientation(key_rows, flow_h, inv, a_is_src, flags, last_seen)
        from_orig = a_is_src == orig_is_a[inv]
        data = (proto == 6) & p.l4_ok[m] & (p.payload_wire_len[m] > 0)
        retrans = self._retransmissions(flow_h, inv, a_is_src, data, p.seq[m], p.payload_wire_len[m], ts)
        self._evict(now)

        cell_group, cell_w, cinv = _cells(inv, ts // self.window_ns, k)
        c = len(cell_group)

        def total(weights: np.ndarray | None = None) -> np.ndarray:
            return np.bincount(cinv, weights=weights, minlength=c).astype(np.int64)

        packets, packets_orig = total(), total(from_orig)
        nbytes, bytes_orig = total(wirelen), total(wirelen * from_orig)
        first_ts = np.full(c, np.iinfo(np.int64).max)
        np.minimum.at(first_ts, cinv, ts)
        last_ts = np.zeros(c, dtype=np.int64)
        np.maximum.at(last_ts, cinv, ts)
        first_frame = np.full(c, np.iinfo(np.int64).max)
        np.minimum.at(first_frame, cinv, frame)
        last_frame = np.zeros(c, dtype=np.int64)
        np.maximum.at(last_frame, cinv, frame)
        kr = key_rows[cell_group]
        oa = orig_is_a[cell_group]
        self._cells.append(Cols({
            "widx": cell_w,
            "flow": flow_h[cell_group],
            "proto": kr[:, 0].astype(np.int64),
            "orig_hi": np.where(oa, kr[:, 1], kr[:, 4]),
            "orig_lo": np.where(oa, kr[:, 2], kr[:, 5]),
            "resp_hi": np.where(oa, kr[:, 4], kr[:, 1]),
            "resp_lo": np.where(oa, kr[:, 5], kr[:, 2]),
            "resp_port": np.where(oa, kr[:, 6], kr[:, 3]).astype(np.int64),
            "packets_orig": packets_orig,
            "packets_resp": packets - packets_orig,
            "bytes_orig": bytes_orig,
            "bytes_resp": nbytes - bytes_orig,
            "syn": total((flags & SYN) > 0),
            "rst": total((flags & RST) > 0),
            "fin": total((flags & FIN) > 0),
            "retrans": total(retrans),
            "first_ts": first_ts,
            "last_ts": last_ts,
            "first_frame": first_frame,
            "last_frame": last_frame,
        }))

    # -- internals -----------------------------------------------------------------------------------------------

    def _orientation(self, key_rows: np.ndarray, flow_h: np.ndarray, inv: np.ndarray, a_is_src: np.ndarray,
                     flags: np.ndarray, last_seen: np.ndarray) -> np.ndarray:
        """Per conversation of the chunk: True when endpoint a (the lower one) is the originator."""
        a_port, b_port = key_rows[:, 3], key_rows[:, 6]
        a_srv, b_srv = np.isin(a_port, self.server_ports), np.isin(b_port, self.server_ports)
        orient = np.where(a_srv != b_srv, b_srv, a_port >= b_port)
        found, idx = lookup(self._orient_keys, flow_h)
        if found.any():
            orient = np.where(found, self._orient["orig_is_a"][idx], orient)
            self._orient["ts"][idx[found]] = np.maximum(self._orient["ts"][idx[found]], last_seen[found])
        pure_syn = np.flatnonzero((flags & (SYN | ACK)) == SYN)
        if len(pure_syn):
            groups, first = np.unique(inv[pure_syn], return_index=True)
            orient[groups] = a_is_src[pure_syn[first]]
            self._orient_keys, self._orient = merge_state(
                self._orient_keys, self._orient, flow_h[groups],
                {"orig_is_a": orient[groups], "ts": last_seen[groups]})
        return orient

    def _retransmissions(self, flow_h: np.ndarray, inv: np.ndarray, a_is_src: np.ndarray, data: np.ndarray,
                         seq: np.ndarray, length: np.ndarray, ts: np.ndarray) -> np.ndarray:
        """Per packet: a TCP data segment ending at or before the highest end seen in its direction."""
        out = np.zeros(len(data), dtype=bool)
        rows = np.flatnonzero(data)
        if not len(rows):
            return out
        direction = inv[rows] * 2 + a_is_src[rows]
        order = stable_order(direction)  # capture order within each direction
        rows, direction = rows[order], direction[order]
        s = seq[rows].astype(np.int64)
        end = s + length[rows].astype(np.int64)
        starts = group_starts(direction)
        gid = runs_to_ids(starts, len(rows))
        with np.errstate(over="ignore"):
            keys = flow_h[inv[rows[starts]]] ^ (a_is_src[rows[starts]].astype(np.uint64) * _DIR_SALT)
        found, idx = lookup(self._seq_keys, keys)
        base = np.where(found, pick(self._seq["end"], idx, found, 0), s[starts])
        rel = signed32(end - base[gid])
        offset = gid << 34  # keeps each direction's running maximum apart
        v = rel + offset
        v[starts] = np.maximum(v[starts], np.where(found, 0, _NO_PRIOR) + offset[starts])
        running = np.maximum.accumulate(v)
        prior = np.empty(len(v), dtype=np.int64)
        prior[1:] = running[:-1] - offset[1:]
        prior[starts] = np.where(found, 0, _NO_PRIOR)
        out[rows] = rel <= prior
        last = np.append(starts[1:], len(v)) - 1
        last_ts = np.zeros(len(keys), dtype=np.int64)
        np.maximum.at(last_ts, gid, ts[rows])
        new_end = (base + running[last] - offset[last]) & 0xFFFFFFFF
        self._seq_keys, self._seq = merge_state(self._seq_keys, self._seq, keys, {"end": new_end, "ts": last_ts})
        return out

    def _evict(self, now_ns: int) -> None:
        """Forget conversations idle for longer than the idle timeout (bounded state on a long live capture)."""
        horizon = now_ns - self.idle_ns
        for attr, state_attr in (("_orient_keys", "_orient"), ("_seq_keys", "_seq")):
            state = getattr(self, state_attr)
            keep = state["ts"] >= horizon
            if not keep.all():
                setattr(self, attr, getattr(self, attr)[keep])
                setattr(self, state_attr, {name: col[keep] for name, col in state.items()})


def _cells(inv: np.ndarray, widx: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(conversation, window) cells present: (group of each cell, window of each cell, cell of each packet)."""
    w0 = int(widx.min())
    span = int(widx.max()) - w0 + 1
    if span * k <= 4 * len(inv) + 4096:  # dense: one bincount, no sort
        ck = inv * span + (widx - w0)
        present = np.bincount(ck, minlength=span * k) > 0
        cells = np.flatnonzero(present)
        cinv = (np.cumsum(present) - 1)[ck]
        return cells // span, w0 + cells % span, cinv
    uw, winv = np.unique(widx, return_inverse=True)
    cells, cinv = np.unique(inv * len(uw) + winv.ravel(), return_inverse=True)
    return cells // len(uw), uw[cells % len(uw)], cinv.ravel()


_SUMS = ("packets_orig", "packets_resp", "bytes_orig", "bytes_resp", "syn", "rst", "fin", "retrans")


def _grouped(cells: Cols, keys: tuple[str, ...]) -> tuple[Cols, np.ndarray, np.ndarray]:
    """Cells sorted by ``keys``: (sorted cells, first row of each group, group of each row)."""
    order = np.lexsort(tuple(cells[k] for k in reversed(keys)))
    s = cells.select(order)
    starts = group_starts(*(s[k] for k in keys))
    return s, starts, runs_to_ids(starts, len(s))


def flow_rows(cells: Cols, server_ports: frozenset[int]) -> tuple[Cols, np.ndarray]:
    """Flow windows from closed cells: (key columns per window, feature matrix in FLOW_FEATURES order).

    Rows come sorted by (window, originator, responder, responder port, protocol number).
    """
    keys = ("widx", "orig_hi", "orig_lo", "resp_hi", "resp_lo", "resp_port", "proto")
    s, starts, gid = _grouped(cells, keys)
    n_groups = len(starts)
    sums = {name: np.add.reduceat(s[name], starts).astype(np.float64) for name in _SUMS}
    first_ts = np.minimum.reduceat(s["first_ts"], starts)
    last_ts = np.maximum.reduceat(s["last_ts"], starts)
    out = s.select(starts)
    out.data["first_frame"] = np.minimum.reduceat(s["first_frame"], starts)
    out.data["last_frame"] = np.maximum.reduceat(s["last_frame"], starts)
    ports = np.array(sorted(server_ports), dtype=np.int64)
    features = {
        "packets": sums["packets_orig"] + sums["packets_resp"],
        "bytes": sums["bytes_orig"] + sums["bytes_resp"],
        "packets_orig": sums["packets_orig"],
        "packets_resp": sums["packets_resp"],
        "bytes_orig": sums["bytes_orig"],
        "bytes_resp": sums["bytes_resp"],
        "connections": distinct(gid, s["flow"], n_groups),
        "tcp_syn": sums["syn"],
        "tcp_rst": sums["rst"],
        "tcp_fin": sums["fin"],
        "retransmissions": sums["retrans"],
        "duration_s": (last_ts - first_ts) / 1e9,
        "modbus": ((out["proto"] == 6) & np.isin(out["resp_port"], ports)).astype(np.float64),
    }
    return out, np.column_stack([features[name] for name in FLOW_FEATURES])


PAIR_TCP = ("tcp_syn", "tcp_rst", "tcp_retransmissions", "tcp_connections", "tcp_packets", "tcp_bytes")


def pair_tcp(cells: Cols, server_ports: frozenset[int]) -> tuple[Cols, np.ndarray]:
    """TCP features of Modbus connections per (window, client, server): (key columns, matrix in PAIR_TCP order).

    Summed over every connection from the client to a Modbus server port of the server in the window.
    """
    ports = np.array(sorted(server_ports), dtype=np.int64)
    tcp = cells.select((cells["proto"] == 6) & np.isin(cells["resp_port"], ports))
    if not len(tcp):
        return tcp, np.empty((0, len(PAIR_TCP)))
    keys = ("widx", "orig_hi", "orig_lo", "resp_hi", "resp_lo")
    s, starts, gid = _grouped(tcp, keys)

    def total(*names: str) -> np.ndarray:
        return sum(np.add.reduceat(s[name], starts) for name in names)

    cols = (total("syn"), total("rst"), total("retrans"), distinct(gid, s["flow"], len(starts)),
            total("packets_orig", "packets_resp"), total("bytes_orig", "bytes_resp"))
    return s.select(starts), np.column_stack(cols).astype(np.float64)
