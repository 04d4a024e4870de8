"""Tumbling feature windows, streamed as they close: pair windows (Modbus) and flow windows (every conversation).

Windows are aligned to multiples of ``window_s`` on the epoch clock: window ``i`` is ``[i*w, (i+1)*w)``, so a
transaction exactly on a boundary belongs to the later window. A transaction belongs to the window of its start
(``ModbusBatch.ts_ns``: the request, else the response); a packet to the window of its own timestamp.

Closing: the watermark is the largest event time seen (packets and transactions) minus ``lateness_s``; a window
closes, and is returned by ``push``, once the watermark reaches its end. Only open windows are kept (their rows,
so statistics such as p95 latency and distinct addresses are exact), plus small bounded state: the last register
values for the change rates and per-conversation TCP state in the observer. ``lateness_s`` must cover the
collector's pairing timeout: an unanswered request is reported that long after it started.

Late data: a transaction or packet whose window has already closed is dropped, counted in ``stats`` and logged
(once as a warning, then at debug level); reopening a window would emit it twice. With timestamps out of order by
less than ``lateness_s`` the windows do not depend on how the capture was chunked; beyond that, which events are
late can depend on the chunking.

Not emitted: windows without traffic. A pair that stops polling produces no window at all, not a window of zeros;
silence shows as the pair's (and its flow's) windows disappearing, which a consumer detects by comparing the pairs
of consecutive windows (the policy baseline's "missing pair" check), not by reading features.

Sensor windows (``otsentry.features.sensorwin``) come from the collector's evasion notes and capture losses, OT
windows (``otsentry.features.otwin``) from its DNP3, IEC 104, S7 and EtherNet/IP operations.

Output order, deterministic: by window start, then kind ("flow", "ot", "pair", "sensor"), then key (addresses numerically,
then unit id / responder port and IP protocol number).
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from dataclasses import dataclass
from typing import Iterable

import numpy as np

from otsentry.collectors.collector import CollectedBatch
from otsentry.collectors.events import ConnTable, ModbusBatch
from otsentry.collectors.packets import addr_from_str
from otsentry.contracts.network import transport_name
from otsentry.contracts.schema import FLOW_FEATURES, PAIR_FEATURES
from otsentry.features.closed import ClosedWindows, FlowBlock, PairBlock
from otsentry.features.columns import Cols, hash_rows, lookup
from otsentry.features.flowwin import PAIR_TCP, FlowWindowObserver, flow_rows, pair_tcp
from otsentry.features.pairs import COL, TxStore, extract, pair_matrix
from otsentry.features.otwin import OtWindows
from otsentry.features.sensorwin import SensorWindows
from otsentry.features.values import MAX_VALUES, VALUE_TTL_S, ValueState
from otsentry.records import FeatureWindow

__all__ = ["Windower", "WindowerStats", "to_matrix"]

log = logging.getLogger(__name__)

_TCP_COLS = [COL[name] for name in PAIR_TCP]
MAX_SERVICES = 65536  # responders whose payload-named protocol is remembered (the oldest forgotten first)


@dataclass
class WindowerStats:
    pair_windows: int = 0
    flow_windows: int = 0
    sensor_windows: int = 0
    ot_windows: int = 0
    late_transactions: int = 0  # dropped: their window had already closed
    late_packets: int = 0


class Windower:
    """Events in (``push`` per collector batch), closed FeatureWindows out; ``flush()`` at the end of the capture.

    ``observer`` must be given to the Collector (``Collector(config, observers=[windower.observer])``) for flow
    windows and the TCP features of pair windows; without it, pair windows are still produced with TCP features 0.
    """

    def __init__(self, window_s: float = 10.0, lateness_s: float = 5.0, *,
                 server_ports: frozenset[int] = frozenset({502}), value_ttl_s: float = VALUE_TTL_S,
                 max_values: int = MAX_VALUES, defer_values: bool = False) -> None:
        if not window_s > 0:
            raise ValueError(f"window_s must be positive, got {window_s}")
        if not lateness_s >= 0:
            raise ValueError(f"lateness_s must be >= 0, got {lateness_s}")
        self.window_s = window_s
        self.lateness_s = lateness_s
        self.server_ports = frozenset(server_ports)
        self.window_ns = int(round(window_s * 1e9))
        self.lateness_ns = int(round(lateness_s * 1e9))
        self.observer = FlowWindowObserver(window_s, self.server_ports)
        self.stats = WindowerStats()
        self._values = ValueState(value_ttl_s, max_values)
        self.defer_values = defer_values  # leave register values to ClosedWindows.complete (see pairs.ValueJob)
        self._tx = TxStore()
        self._cell_parts: list[Cols] = []  # flow cells of the open windows, joined when windows close
        self._cell_rows = 0
        self._cell_max: int | None = None
        self._open_from: int | None = None  # windows below this index are closed
        self._max_ts: int | None = None
        self._warned = False
        self._conn_pair: dict[int, int] = {}  # connection id -> ip pair id (ended connections pruned)
        self._pair_ids: dict[tuple[str, str], int] = {}
        self._pairs: list[tuple[str, str, tuple[int, int], tuple[int, int]]] = []  # ip pair id -> names, numbers
        self._addr_table = np.empty((0, 4), dtype=np.uint64)
        self._sensor = SensorWindows(self.window_ns)
        self._services: OrderedDict[tuple[int, int, int, str], str] = OrderedDict()  # responder -> payload's protocol
        self._ot = OtWindows(self.window_ns)

    @property
    def open_rows(self) -> int:
        """Rows held for the open windows (bounded by the traffic of window_s + lateness_s)."""
        return len(self._tx) + self._cell_rows

    def push(self, batch: CollectedBatch, conns: ConnTable) -> list[FeatureWindow]:
        """Add one collector batch; return the windows it closed. ``batch.flows`` is not used (see flowwin)."""
        return self.push_closed(batch, conns).windows()

    def tick(self, now_s: float) -> list[FeatureWindow]:
        """Advance the clock without traffic (live capture gone quiet): close the windows ``now_s`` has passed."""
        return self.tick_closed(now_s).windows()

    def tick_closed(self, now_s: float) -> ClosedWindows:
        """``tick``, with the closed windows still as columns."""
        now = int(round(now_s * 1e9))
        self._max_ts = now if self._max_ts is None else max(self._max_ts, now)
        return self._close((self._max_ts - self.lateness_ns) // self.window_ns)

    def flush(self) -> list[FeatureWindow]:
        """End of capture: close every open window."""
        return self.flush_closed().windows()

    def push_closed(self, batch: CollectedBatch, conns: ConnTable) -> ClosedWindows:
        """``push``, with the closed windows still as columns (``.windows()`` makes the objects)."""
        self._add_modbus(batch.modbus, conns)
        for ip, port, transport, service in batch.services:
            self._services[(*addr_from_str(ip), port, transport)] = service
            if len(self._services) > MAX_SERVICES:
                self._services.popitem(last=False)
        self._add_cells()
        if batch.notes or batch.loss is not None:
            self._sensor.add(batch.notes, batch.loss, self._open_from)
        if batch.operations:
            self._ot.add(batch.operations, self._open_from)
            self._see(max(int(op.ts * 1e9) for op in batch.operations))
        if self._max_ts is None:
            return ClosedWindows()
        return self._close((self._max_ts - self.lateness_ns) // self.window_ns)

    def flush_closed(self) -> ClosedWindows:
        """``flush``, with the closed windows still as columns."""
        self._add_cells()
        ends = [w + 1 for w in (self._tx.max_widx(), self._cells_max_widx(), self._sensor.max_widx(),
                                self._ot.max_widx()) if w is not None]
        return self._close(max(ends)) if ends else ClosedWindows()

    def _cells_max_widx(self) -> int | None:
        return self._cell_max if self._cell_rows else None

    # -- input ---------------------------------------------------------------------------------------------------

    def _add_modbus(self, batch: ModbusBatch, conns: ConnTable) -> None:
        if not len(batch):
            return
        pk = (self._pair_of(batch.conn, conns) << 8) | (batch.unit & 0xFF)
        tx, pool = extract(batch, pk, self.window_ns)
        self._see(int(batch.ts_ns.max()))
        late = self._late_mask(tx)
        if late is not None and late.any():
            self.stats.late_transactions += int(late.sum())
            self._warn_late(f"{int(late.sum())} transaction(s)")
            tx = tx.select(~late)  # their values stay in the pool until it is re-packed
        self._tx.add(tx, pool)

    def _add_cells(self) -> None:
        cells = self.observer.drain()
        if self.observer.max_ts_ns is not None:
            self._see(self.observer.max_ts_ns)
        if cells is None:
            return
        late = self._late_mask(cells)
        if late is not None and late.any():
            packets = int((cells["packets_orig"][late] + cells["packets_resp"][late]).sum())
            self.stats.late_packets += packets
            self._warn_late(f"{packets} packet(s)")
            cells = cells.select(~late)
        if not len(cells):
            return
        self._cell_parts.append(cells)  # joined once when windows close (a live window holds many batches)
        self._cell_rows += len(cells)
        top = int(cells["widx"].max())
        self._cell_max = top if self._cell_max is None else max(self._cell_max, top)

    def _late_mask(self, table: Cols) -> np.ndarray | None:
        return None if self._open_from is None else table["widx"] < self._open_from

    def _see(self, ts_ns: int) -> None:
        self._max_ts = ts_ns if self._max_ts is None else max(self._max_ts, ts_ns)

    def _warn_late(self, what: str) -> None:
        level = logging.DEBUG if self._warned else logging.WARNING
        self._warned = True
        log.log(level, "%s older than the closed windows dropped (lateness %.3g s); see Windower.stats",
                what, self.lateness_s)

    def _pair_of(self, conn: np.ndarray, conns: ConnTable) -> np.ndarray:
        """The (client ip, server ip) pair id of each row's connection."""
        ids, inv = np.unique(conn, return_inverse=True)
        pids = np.empty(len(ids), dtype=np.int64)
        for i, cid in enumerate(ids.tolist()):
            pid = self._conn_pair.get(cid)
            if pid is None:
                c = conns.conns[cid]
                key = (c.client_ip, c.server_ip)
                pid = self._pair_ids.get(key)
                if pid is None:
                    pid = self._pair_ids[key] = len(self._pairs)
                    self._pairs.append((c.client_ip, c.server_ip, addr_from_str(c.client_ip),
                                        addr_from_str(c.server_ip)))
                self._conn_pair[cid] = pid
            pids[i] = pid
        if len(self._conn_pair) > 2 * len(conns) + 4096:  # connections ended: forget them as the table did
            self._conn_pair = {cid: pid for cid, pid in self._conn_pair.items() if cid in conns}
        return pids[inv]

    # -- output --------------------------------------------------------------------------------------------------

    def _take_cells(self, upto: int) -> Cols | None:
        """Remove and return the pending cells of windows below ``upto``."""
        if not self._cell_rows or not any(int(p["widx"].min()) < upto for p in self._cell_parts):
            return None
        cells = Cols.concat(self._cell_parts)
        assert cells is not None
        done = cells["widx"] < upto
        closed = cells.select(done)
        if done.all():
            self._cell_parts, self._cell_rows, self._cell_max = [], 0, None
        else:
            rest = cells.select(~done)
            self._cell_parts, self._cell_rows = [rest], len(rest)
        return closed

    def _close(self, upto: int) -> ClosedWindows:
        if self._open_from is not None and upto <= self._open_from:
            return ClosedWindows()
        self._open_from = upto
        txs, cells = self._tx.take(upto), self._take_cells(upto)
        closed = ClosedWindows()
        if cells is not None:
            keys, matrix = flow_rows(cells, self.server_ports)
            closed.flows = FlowBlock(self.window_ns, keys, matrix, self._named(keys))
            self.stats.flow_windows += len(closed.flows)
        if txs is not None:
            closed.pairs = self._pair_block(*txs, cells, upto * self.window_ns)
            self.stats.pair_windows += len(closed.pairs)
        if len(self._sensor):
            closed.sensors = self._sensor.take(upto)
            self.stats.sensor_windows += len(closed.sensors)
        if len(self._ot):
            closed.ot = self._ot.take(upto)
            self.stats.ot_windows += len(closed.ot)
        return closed

    def _named(self, keys: dict[str, np.ndarray]) -> tuple[str, ...]:
        """The payload-named protocol of each flow row's responder ("" where none), or () when nothing is named."""
        if not self._services or not len(keys["resp_port"]):
            return ()
        cols = [keys[k].tolist() for k in ("resp_hi", "resp_lo", "resp_port", "proto")]
        return tuple(self._services.get((hi, lo, port, transport_name(proto)), "") for hi, lo, port, proto in zip(*cols))

    def _pair_block(self, tx: Cols, pool: np.ndarray, cells: Cols | None, frontier_ns: int) -> PairBlock:
        """Pair windows sorted by (window, client address, server address, unit id)."""
        keys, matrix, job = pair_matrix(tx, pool, None if self.defer_values else self._values, frontier_ns)
        ip_pair, unit = keys["pk"] >> 8, keys["pk"] & 0xFF
        addrs = self._pair_addrs()[ip_pair]  # (client hi, client lo, server hi, server lo) per window
        if cells is not None:
            self._join_tcp(matrix, keys["widx"], addrs, cells)
        order = np.lexsort((unit, addrs[:, 3], addrs[:, 2], addrs[:, 1], addrs[:, 0], keys["widx"]))
        return PairBlock(self.window_ns, keys["widx"][order], ip_pair[order], unit[order], keys["first_frame"][order],
                         keys["last_frame"][order], matrix[order], self._pairs, job, None if job is None else order)

    def _pair_addrs(self) -> np.ndarray:
        """Numeric addresses of every ip pair, as the packet columns hold them (rebuilt when pairs were added)."""
        if len(self._addr_table) != len(self._pairs):
            self._addr_table = np.array([(*c, *s) for _, _, c, s in self._pairs], dtype=np.uint64).reshape(-1, 4)
        return self._addr_table

    def _join_tcp(self, matrix: np.ndarray, widx: np.ndarray, addrs: np.ndarray, cells: Cols) -> None:
        """Fill the TCP columns of pair windows from the Modbus-port flow cells of the same (window, client, server)."""
        tcp_keys, tcp_values = pair_tcp(cells, self.server_ports)
        if not len(tcp_values):
            return
        tcp_cols = np.column_stack([tcp_keys[k].astype(np.uint64) for k in
                                    ("widx", "orig_hi", "orig_lo", "resp_hi", "resp_lo")])
        pair_cols = np.column_stack([widx.astype(np.uint64), addrs])
        h_tcp, h_pair = hash_rows(tcp_cols), hash_rows(pair_cols)
        order = np.argsort(h_tcp)
        found, idx = lookup(h_tcp[order], h_pair)
        rows = order[idx]
        found &= (tcp_cols[rows] == pair_cols).all(axis=1)  # exact, whatever the hash
        matrix[np.ix_(np.flatnonzero(found), _TCP_COLS)] = tcp_values[rows[found]]


def to_matrix(windows: Iterable[FeatureWindow], kind: str = "pair") -> np.ndarray:
    """Feature matrix of the windows of ``kind`` ("pair" or "flow"): rows in input order, columns in schema order.

    Windows of the other kind are skipped, so a mixed stream can be passed as is.
    """
    if kind not in ("pair", "flow"):
        raise ValueError(f"kind must be 'pair' or 'flow', got {kind!r}")
    width = len(PAIR_FEATURES if kind == "pair" else FLOW_FEATURES)
    rows = [w.values for w in windows if w.kind == kind]
    if not rows:
        return np.empty((0, width), dtype=np.float64)
    matrix = np.asarray(rows, dtype=np.float64)
    if matrix.shape[1] != width:
        raise ValueError(f"{kind} windows carry {matrix.shape[1]} values, the schema has {width}")
    return matrix
