"""Pair-window features, vectorised: transactions of every closing window at once, grouped by (window, pair).

Rows are extracted from each ``ModbusBatch`` when it arrives (``extract``) and kept until their window closes, so
that exact statistics (p95 latency, distinct addresses, inter-arrival std) need no mergeable partial aggregates;
the state is the rows of the open windows only. ``pair_matrix`` then computes the PAIR_FEATURES columns (except
the TCP ones, which come from the flow cells) for all the closing (window, pair) groups with a few sorts and
bincounts. The semantics of every feature are in ``otsentry.contracts.schema``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from otsentry.arrays import ranges
from otsentry.collectors.events import ModbusBatch
from otsentry.contracts.flags import FLAG_BITS, FLAG_ORPHAN_RESPONSE, FLAG_UNANSWERED, MALFORMED_MASK
from otsentry.contracts.schema import (ABSENT, BIT_READ_CODES, DIAG_LISTEN_ONLY, DIAG_RESTART, PAIR_FEATURES,
                                       RANGE_CODES, READ_CODES, REGISTER_READ_CODES, TRACKED_EXCEPTION_CODES,
                                       TRACKED_FUNCTION_CODES, WRITE_ADDRESS_CODES, WRITE_CODES, WRITE_VALUE_CODES)
from otsentry.features.columns import Cols, count, distinct, masked_reduce, seg_reduce
from otsentry.features.values import ValueState

__all__ = ["COL", "TxStore", "ValueJob", "extract", "pair_matrix"]

COL = {name: i for i, name in enumerate(PAIR_FEATURES)}
_TABLE = np.full(256, -1, dtype=np.int64)  # value table of a read code: coils, discrete inputs, holding, input
_TABLE[[1, 2, 3, 23, 4]] = [0, 1, 2, 2, 3]


def _code_columns(codes: tuple[int, ...]) -> np.ndarray:
    """Code (0-255) -> column offset among the tracked codes, ``len(codes)`` for the "other" column."""
    table = np.full(256, len(codes), dtype=np.int64)
    table[list(codes)] = np.arange(len(codes))
    return table


_FC_COLS, _EXC_COLS = _code_columns(TRACKED_FUNCTION_CODES), _code_columns(TRACKED_EXCEPTION_CODES)


def _code_set(codes: frozenset[int]) -> np.ndarray:
    table = np.zeros(257, dtype=bool)  # index 256: anything outside 0-255
    table[sorted(codes)] = True
    return table


_SETS: dict[frozenset[int], np.ndarray] = {}


def _isin(values: np.ndarray, codes: frozenset[int]) -> np.ndarray:
    """Membership of function codes in a code set, by table lookup (np.isin sorts)."""
    table = _SETS.get(codes)
    if table is None:
        table = _SETS[codes] = _code_set(codes)
    return table[np.where((values >= 0) & (values < 256), values, 256)]


def extract(batch: ModbusBatch, pk: np.ndarray, window_ns: int) -> tuple[Cols, np.ndarray]:
    """Transactions of a batch as columns, and the values array their read values are in (``voff``/``rcnt``).

    ``pk`` is each row's pair key (ip pair id << 8 | unit). Write values are reduced to their min/max here.
    """
    ts = batch.ts_ns
    has_req, has_resp = batch.req_frame >= 0, batch.resp_frame >= 0
    fc, vcount = batch.fc, batch.val_count
    bits = _isin(fc, BIT_READ_CODES)
    read = (bits | _isin(fc, REGISTER_READ_CODES)) & (batch.exc < 0) & has_resp & (batch.addr >= 0) & (vcount > 0)
    rcnt = np.where(read, vcount, 0)
    rcnt = np.where(bits & (batch.qty >= 0), np.minimum(rcnt, batch.qty), rcnt)  # bit reads come padded to bytes
    wsel = np.flatnonzero(_isin(fc, WRITE_VALUE_CODES) & has_req & (vcount > 0))
    wmin, wmax = np.zeros(len(fc), dtype=np.int64), np.zeros(len(fc), dtype=np.int64)
    has_w = np.zeros(len(fc), dtype=bool)
    has_w[wsel] = True
    if len(wsel):
        wn = vcount[wsel]
        written = batch.values[ranges(batch.val_start[wsel], wn)]
        at = np.cumsum(wn) - wn
        wmin[wsel], wmax[wsel] = np.minimum.reduceat(written, at), np.maximum.reduceat(written, at)
    tx = Cols({
        "widx": ts // window_ns, "pk": pk, "ts": ts, "req_ts": batch.req_ts_ns, "resp_ts": batch.resp_ts_ns,
        "has_req": has_req, "has_resp": has_resp, "fc": fc, "exc": batch.exc, "subfn": batch.subfn,
        "addr": batch.addr, "qty": batch.qty, "flags": batch.flags,
        "first_frame": np.where(has_req, batch.req_frame, batch.resp_frame),
        "last_frame": np.maximum(batch.req_frame, batch.resp_frame),
        "rtable": np.where(rcnt > 0, _TABLE[np.clip(fc, 0, 255)], -1), "rcnt": rcnt,
        "voff": batch.val_start, "has_w": has_w, "wmin": wmin, "wmax": wmax,
    })
    return tx, batch.values


class TxStore:
    """Transactions of the open windows and the values their reads point into (re-packed as windows close).

    Batches are kept as a list and joined once when windows close: a live capture keeps a whole window (seconds of
    a busy port, millions of rows) open, and joining at every batch would cost time quadratic in the window's rows.
    """

    def __init__(self) -> None:
        self._parts: list[Cols] = []
        self._rows = 0
        self._max_widx: int | None = None
        self._pools: list[np.ndarray] = []
        self._pooled = 0

    def __len__(self) -> int:
        return self._rows

    @property
    def tx(self) -> Cols | None:
        """The open transactions as one table."""
        if len(self._parts) > 1:
            self._parts = [Cols.concat(self._parts)]
        return self._parts[0] if self._parts else None

    def add(self, tx: Cols, values: np.ndarray) -> None:
        if not len(tx):
            return
        tx.data["voff"] = tx["voff"] + self._pooled
        self._parts.append(tx)
        self._rows += len(tx)
        top = int(tx["widx"].max())
        self._max_widx = top if self._max_widx is None else max(self._max_widx, top)
        self._pools.append(values)
        self._pooled += len(values)

    def max_widx(self) -> int | None:
        return self._max_widx if self._rows else None

    def take(self, upto: int) -> tuple[Cols, np.ndarray] | None:
        """Remove and return the transactions of windows below ``upto`` with the values they index."""
        if not self._rows or self._min_below(upto) is False:
            return None
        tx = self.tx
        assert tx is not None
        done = tx["widx"] < upto
        if not done.any():
            return None
        closed = tx.select(done)
        pool = self._pools[0] if len(self._pools) == 1 else np.concatenate(self._pools)
        if done.all():
            self._parts, self._rows, self._max_widx, self._pools, self._pooled = [], 0, None, [], 0
        else:
            rest = tx.select(~done)
            kept = pool[ranges(rest["voff"], rest["rcnt"])]
            rest.data["voff"] = np.cumsum(rest["rcnt"]) - rest["rcnt"]
            self._parts, self._rows, self._pools, self._pooled = [rest], len(rest), [kept], len(kept)
        return closed, pool

    def _min_below(self, upto: int) -> bool:
        """Could any open row be below ``upto``? (cheap: each part's first row is its earliest window or close)"""
        return any(int(p["widx"].min()) < upto for p in self._parts)


def pair_matrix(t: Cols, pool: np.ndarray, values: ValueState | None,
                frontier_ns: int) -> tuple[Cols, np.ndarray, ValueJob | None]:
    """Features of every (window, pair) group of ``t``: (key columns per group, matrix in PAIR_FEATURES order, and
    the register-value job when ``values`` is None: its columns are then left for ``ValueJob.apply``).

    Groups come sorted by (window, pair key); TCP columns are left at 0 for the caller to fill. Rows stay in
    arrival order, which depends on chunking: every reduction is therefore order-independent (counts, min/max,
    integer sums) or sorts its rows first (latency, inter-arrival), so the result is the same for any chunking.
    """
    group_w, group_pk, g = _groups(t["widx"], t["pk"])
    n = len(group_w)
    f = np.zeros((n, len(PAIR_FEATURES)))

    def put(name: str, value: np.ndarray) -> None:
        f[:, COL[name]] = value

    fc, exc, addr, qty, flags = t["fc"], t["exc"], t["addr"], t["qty"], t["flags"]
    put("requests", count(g, n, t["has_req"]))
    put("responses", count(g, n, t["has_resp"]))
    put("transactions", count(g, n))
    _code_counts(f, COL["fc_" + str(TRACKED_FUNCTION_CODES[0])], _FC_COLS, g, fc, n)
    put("fc_distinct", _distinct_codes(g, fc, n))
    is_exc = exc >= 0
    put("exceptions", count(g, n, is_exc))
    _code_counts(f, COL["exc_" + str(TRACKED_EXCEPTION_CODES[0])], _EXC_COLS, g[is_exc], exc[is_exc], n)
    reads, writes = count(g, n, _isin(fc, READ_CODES)), count(g, n, _isin(fc, WRITE_CODES))
    put("reads", reads)
    put("writes", writes)
    put("write_ratio", np.divide(writes, reads + writes, out=np.zeros(n), where=reads + writes > 0))
    diag = fc == 8
    restart, listen = diag & (t["subfn"] == DIAG_RESTART), diag & (t["subfn"] == DIAG_LISTEN_ONLY)
    put("diag_restart", count(g, n, restart))
    put("diag_listen_only", count(g, n, listen))
    put("diag_other", count(g, n, diag & ~restart & ~listen))

    has_addr = addr >= 0
    end = np.where(_isin(fc, RANGE_CODES) & (qty >= 1), addr + qty - 1, addr)
    lo = masked_reduce(np.minimum, addr, has_addr, g, n, ABSENT)
    hi = masked_reduce(np.maximum, end, has_addr, g, n, ABSENT)
    put("addr_distinct", _distinct_small(g[has_addr], addr[has_addr], n))
    put("addr_min", lo)
    put("addr_max", hi)
    put("addr_span", np.where(lo >= 0, hi - lo + 1, 0))
    written = has_addr & _isin(fc, WRITE_ADDRESS_CODES)
    put("write_addr_min", masked_reduce(np.minimum, addr, written, g, n, ABSENT))
    put("write_addr_max", masked_reduce(np.maximum, end, written, g, n, ABSENT))
    has_qty = qty >= 0
    n_qty = count(g, n, has_qty)
    put("quantity_mean", np.divide(count(g, n, np.where(has_qty, qty, 0)), n_qty, out=np.zeros(n), where=n_qty > 0))
    put("quantity_max", masked_reduce(np.maximum, qty, has_qty, g, n, 0.0))

    _interarrival(f, g[t["has_req"]], t["ts"][t["has_req"]], n)
    _latency(f, t, g, n)
    put("unanswered", count(g, n, (flags & FLAG_BITS[FLAG_UNANSWERED]) > 0))
    put("orphan_responses", count(g, n, (flags & FLAG_BITS[FLAG_ORPHAN_RESPONSE]) > 0))
    put("malformed", count(g, n, (flags & MALFORMED_MASK) > 0))
    for name in ("value_min", "value_max"):
        put(name, ABSENT)  # no register read in the window
    job = ValueJob.of(t, pool, g, n, frontier_ns)
    if job is not None and values is not None:
        job.apply(f, values)
        job = None
    has_w = t["has_w"]
    put("write_value_min", masked_reduce(np.minimum, t["wmin"], has_w, g, n, ABSENT))
    put("write_value_max", masked_reduce(np.maximum, t["wmax"], has_w, g, n, ABSENT))

    keys = Cols({
        "widx": group_w, "pk": group_pk,
        "first_frame": seg_reduce(np.minimum, t["first_frame"], g, n, 0).astype(np.int64),
        "last_frame": seg_reduce(np.maximum, t["last_frame"], g, n, 0).astype(np.int64),
    })
    return keys, f, job


def _groups(widx: np.ndarray, pk: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(window, pair key) groups sorted by window then key: (window of each, key of each, group of each row).

    One bincount when the key space is small (a few open windows times the pair keys seen), else np.unique.
    """
    w0, p0 = int(widx.min()), int(pk.min())
    span, width = int(widx.max()) - w0 + 1, int(pk.max()) - p0 + 1
    if span * width <= 4 * len(pk) + (1 << 20):
        key = (widx - w0) * width + (pk - p0)
        present = np.bincount(key, minlength=span * width) > 0
        cells = np.flatnonzero(present)
        return w0 + cells // width, p0 + cells % width, (np.cumsum(present) - 1)[key]
    uw, wi = np.unique(widx, return_inverse=True)
    up, pi = np.unique(pk, return_inverse=True)
    cells, g = np.unique(wi.ravel() * len(up) + pi.ravel(), return_inverse=True)
    return uw[cells // len(up)], up[cells % len(up)], g.ravel()


def _distinct_codes(g: np.ndarray, codes: np.ndarray, n: int) -> np.ndarray:
    """Distinct codes (0-255) per group with one bincount; other values fall back to a sort."""
    if n * 256 <= 4 * len(codes) + (1 << 20) and (len(codes) == 0 or (codes.min() >= 0 and codes.max() < 256)):
        seen = np.bincount(g * 256 + codes, minlength=n * 256).reshape(n, 256)
        return np.count_nonzero(seen, axis=1).astype(np.float64)
    return distinct(g, codes, n)


def _code_counts(f: np.ndarray, first_col: int, columns: np.ndarray, g: np.ndarray, codes: np.ndarray,
                 n: int) -> None:
    """Counts per tracked code into the contiguous columns starting at ``first_col``, the rest in "other"."""
    width = int(columns.max()) + 1
    col = np.where((codes >= 0) & (codes < 256), columns[np.clip(codes, 0, 255)], width - 1)
    f[:, first_col : first_col + width] = np.bincount(g * width + col, minlength=n * width).reshape(n, width)


def _distinct_small(g: np.ndarray, values: np.ndarray, n: int) -> np.ndarray:
    """Distinct values per group, through one integer key when values fit in 20 bits."""
    if len(values) and values.min() >= 0 and values.max() < 1 << 20 and n < 1 << 40:
        keys = np.unique((g << 20) | values)
        return count(keys >> 20, n)
    return distinct(g, values, n)


def _by_group_then(g: np.ndarray, key: np.ndarray) -> np.ndarray:
    """Order of rows by (group, integer key); rows with equal keys are interchangeable for the callers."""
    k0 = int(key.min()) if len(key) else 0
    if len(key) == 0 or (int(key.max()) - k0 < 1 << 40 and int(g.max()) < 1 << 22):
        return np.argsort((g << 40) | (key - k0))
    return np.lexsort((key, g))


def _interarrival(f: np.ndarray, g: np.ndarray, ts: np.ndarray, n: int) -> None:
    """Mean/std/cv of the gaps between consecutive requests of a group, summed in (group, time) order."""
    order = _by_group_then(g, ts)
    g, ts = g[order], ts[order]
    same = g[1:] == g[:-1]
    dg = g[1:][same]
    gaps = (ts[1:] - ts[:-1])[same] / 1e9
    k = count(dg, n)
    mean = np.divide(count(dg, n, gaps), k, out=np.zeros(n), where=k > 0)
    var = np.divide(count(dg, n, (gaps - mean[dg]) ** 2), k, out=np.zeros(n), where=k > 0)
    std = np.sqrt(var)
    f[:, COL["interarrival_mean_s"]] = mean
    f[:, COL["interarrival_std_s"]] = std
    f[:, COL["interarrival_cv"]] = np.divide(std, mean, out=np.zeros(n), where=mean > 0)


def _latency(f: np.ndarray, t: Cols, g: np.ndarray, n: int) -> None:
    """Response latency in ms over answered requests: mean, p95 (nearest rank), max; summed in sorted order."""
    ok = t["has_req"] & t["has_resp"]
    if not ok.any():
        return
    lat_ns = t["resp_ts"][ok] - t["req_ts"][ok]
    gl = g[ok]
    order = _by_group_then(gl, lat_ns)
    gl, lat = gl[order], lat_ns[order] / 1e6
    k = count(gl, n)
    f[:, COL["latency_mean_ms"]] = np.divide(count(gl, n, lat), k, out=np.zeros(n), where=k > 0)
    ki = k.astype(np.int64)
    has = np.flatnonzero(ki > 0)
    last = np.cumsum(ki) - 1
    f[has, COL["latency_max_ms"]] = lat[last[has]]
    rank = np.ceil(0.95 * ki[has]).astype(np.int64) - 1
    f[has, COL["latency_p95_ms"]] = lat[last[has] - ki[has] + 1 + rank]


@dataclass
class ValueJob:
    """The register-value columns of a batch of pair windows, left to whoever holds the ``ValueState``.

    Why a job: tracking values is the one stateful part of the pair features, and a quarter of their cost; ``run
    --jobs 2`` lets the scoring process do it (the state lives there), so the decoding process, the slower one,
    does less. Applied in window order to one ``ValueState``, jobs give exactly what in-place tracking gives.
    """

    reads: Cols  # the read transactions: pk, rtable, addr, rcnt, voff (into pool), ts, last_frame
    pool: np.ndarray
    group: np.ndarray  # window group of each read
    n: int  # groups
    frontier_ns: int

    @staticmethod
    def of(t: Cols, pool: np.ndarray, g: np.ndarray, n: int, frontier_ns: int) -> "ValueJob | None":
        rows = np.flatnonzero(t["rcnt"] > 0)
        if not len(rows):
            return None
        reads = Cols({name: t[name][rows] for name in ("pk", "rtable", "addr", "rcnt", "voff", "ts", "last_frame")})
        return ValueJob(reads, pool, g[rows], n, frontier_ns)

    def apply(self, f: np.ndarray, values: ValueState, order: np.ndarray | None = None) -> None:
        """Fill the value columns of ``f`` (rows: groups, or ``f[i]`` = group ``order[i]``) and advance ``values``."""
        for name, column in self._columns(values).items():
            f[:, COL[name]] = column if order is None else column[order]

    def _columns(self, values: ValueState) -> dict[str, np.ndarray]:
        reads, g, n = self.reads, self.group, self.n
        per_tx = values.update(reads, self.pool, self.frontier_ns)
        regs = reads["rtable"] >= 2
        k = count(g, n, np.where(regs, reads["rcnt"], 0))
        out = {"values_count": k,
               "value_min": masked_reduce(np.minimum, per_tx["vmin"], regs, g, n, ABSENT),
               "value_max": masked_reduce(np.maximum, per_tx["vmax"], regs, g, n, ABSENT)}
        out["value_range"] = np.where(k > 0, out["value_max"] - out["value_min"], 0)
        for name, sel in (("value_change_rate", regs), ("bit_change_rate", ~regs)):
            denom = count(g, n, np.where(sel, per_tx["n_cmp"], 0))
            changed = count(g, n, np.where(sel, per_tx["n_chg"], 0))
            out[name] = np.divide(changed, denom, out=np.zeros(n), where=denom > 0)
            if name == "value_change_rate":
                out["values_compared"] = denom
        out["replayed_reads"] = count(g, n, regs & (per_tx["replay"] > 0))
        return out