"""Register values read: per-transaction statistics and change against the previous read, with bounded state.

Approximation (chosen for speed: one comparison per value, no per-address sort of millions of values): the
"previous value" of a value is the one at the same position in the previous read of the same *block*, i.e. the
same pair (client ip, server ip, unit), table (coils, discrete inputs, holding or input registers) and requested
range (start address and count), in transaction start-time order. That is exactly the previous value of the
address for a poller reading fixed blocks, the case this feature is for; reads of a different block overlapping
the address are not compared. A block read for the first time, or last read more than ``ttl_s`` before, has no
previous value and is left out of the rate's denominator. At most ``max_values`` values are remembered (about 8
bytes each), the blocks read least recently dropped first (only this cap, far above a plant's register count, can
make a result depend on how the capture was chunked). Block identity is a 64-bit hash of its key.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from otsentry.features.columns import Cols, group_starts, hash_rows, lookup, merge_state, pick, ranges


def rows_of(pool: np.ndarray, starts: np.ndarray, c: int) -> np.ndarray:
    """The (len(starts), c) matrix of pool[s : s + c] for each start: row copies of a sliding view, no index matrix."""
    if c == 1:
        return pool[starts][:, None]
    return sliding_window_view(pool, c)[starts]


def _block_time_order(bk: np.ndarray, cnt: np.ndarray, ts: np.ndarray, frame: np.ndarray) -> np.ndarray:
    """Reads by (count, block, time, frame): one integer sort when the key fits and has no ties, else lexsort."""
    blocks, inv = np.unique(bk, return_inverse=True)
    inv = inv.ravel()
    block_cnt = np.zeros(len(blocks), dtype=np.int64)
    block_cnt[inv] = cnt
    rank = np.empty(len(blocks), dtype=np.int64)
    rank[np.lexsort((blocks, block_cnt))] = np.arange(len(blocks))
    t0 = int(ts.min())
    if int(ts.max()) - t0 < 1 << 40 and len(blocks) < 1 << 22:
        key = (rank[inv] << 40) | (ts - t0)
        order = np.argsort(key)  # keys are unique when accepted below, so stability does not matter
        k = key[order]
        if not (k[1:] == k[:-1]).any():
            return order
    return np.lexsort((frame, ts, rank[inv]))


class ValueState:
    """Last values of every read block, across windows."""

    def __init__(self, ttl_s: float = 3600.0, max_values: int = 1 << 22) -> None:
        self.ttl_ns = int(ttl_s * 1e9)
        self.max_values = max_values
        self.keys = np.empty(0, dtype=np.uint64)
        self.state = {"off": np.empty(0, dtype=np.int64), "cnt": np.empty(0, dtype=np.int64),
                      "ts": np.empty(0, dtype=np.int64)}
        self.pool = np.empty(0, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.keys)

    def update(self, reads: Cols, pool: np.ndarray, frontier_ns: int) -> dict[str, np.ndarray]:
        """Per read transaction (in ``reads`` order): n_cmp, n_chg, vmin, vmax.

        ``reads`` has columns pk, rtable, addr, rcnt (> 0), voff (into ``pool``), ts, last_frame. Later calls must
        not hold reads older than ``frontier_ns`` (windows close in time order).
        """
        n = len(reads)
        bk = hash_rows(np.column_stack([reads["pk"], reads["rtable"], reads["addr"], reads["rcnt"]]).astype(np.uint64))
        # Sorted by count first: the reads of one count are then a (rows x count) matrix, compared row to row.
        order = _block_time_order(bk, reads["rcnt"], reads["ts"], reads["last_frame"])
        k, cnt, ts, voff = bk[order], reads["rcnt"][order], reads["ts"][order], reads["voff"][order]
        first = np.ones(n, dtype=bool)
        first[1:] = (k[1:] != k[:-1]) | (cnt[1:] != cnt[:-1])
        fi = np.flatnonzero(first)
        last = np.append(fi[1:], n) - 1
        found, idx = lookup(self.keys, k[fi])
        st_cnt, st_off = pick(self.state["cnt"], idx, found, -1), pick(self.state["off"], idx, found, 0)
        fresh = found & (st_cnt == cnt[fi]) & (ts[fi] - pick(self.state["ts"], idx, found, 0) <= self.ttl_ns)
        fresh_rows, fresh_off = fi[fresh], st_off[fresh]
        comparable = ~first
        comparable[fresh_rows] = True

        vmin, vmax = np.empty(n, dtype=pool.dtype), np.empty(n, dtype=pool.dtype)
        n_chg = np.zeros(n, dtype=np.int64)
        kept: list[np.ndarray] = []  # values of each block's last read, in row order
        bounds = np.append(group_starts(cnt), n).tolist()
        for a, b in zip(bounds[:-1], bounds[1:]):
            c = int(cnt[a])
            m = rows_of(pool, voff[a:b], c)
            if c == 1:
                vmin[a:b] = vmax[a:b] = m[:, 0]
            else:
                vmin[a:b], vmax[a:b] = m.min(axis=1), m.max(axis=1)
            chg = np.zeros(b - a, dtype=np.int64)
            chg[1:] = (m[1:] != m[:-1]).sum(axis=1)
            chg[fi[np.searchsorted(fi, a) : np.searchsorted(fi, b)] - a] = 0  # compared with another block
            lo, hi = np.searchsorted(fresh_rows, a), np.searchsorted(fresh_rows, b)
            if hi > lo:
                prev = rows_of(self.pool, fresh_off[lo:hi], c)
                chg[fresh_rows[lo:hi] - a] = (m[fresh_rows[lo:hi] - a] != prev).sum(axis=1)
            n_chg[a:b] = chg
            kept.append(m[last[np.searchsorted(last, a) : np.searchsorted(last, b)] - a].ravel())
        self._store(k[last], np.concatenate(kept) if kept else pool[:0], cnt[last], ts[last], frontier_ns)
        result = {}
        for name, col in (("n_cmp", np.where(comparable, cnt, 0)), ("n_chg", n_chg), ("vmin", vmin), ("vmax", vmax)):
            result[name] = np.empty_like(col)
            result[name][order] = col
        return result

    def _store(self, keys: np.ndarray, values: np.ndarray, cnt: np.ndarray, ts: np.ndarray, frontier_ns: int) -> None:
        """Replace/insert the blocks' last values, forget stale blocks, and re-pack the value pool."""
        both = np.concatenate([values.astype(np.int64), self.pool])
        old = {"off": self.state["off"] + len(values), "cnt": self.state["cnt"], "ts": self.state["ts"]}
        keys, state = merge_state(self.keys, old, keys, {"off": np.cumsum(cnt) - cnt, "cnt": cnt, "ts": ts})
        keep = state["ts"] >= frontier_ns - self.ttl_ns
        if int(state["cnt"][keep].sum()) > self.max_values:
            recent = np.argsort(-state["ts"], kind="stable")
            within = np.cumsum(state["cnt"][recent] * keep[recent]) <= self.max_values
            capped = np.zeros(len(keep), dtype=bool)
            capped[recent[within]] = True
            keep &= capped
        keys, state = keys[keep], {name: col[keep] for name, col in state.items()}
        self.pool = both[ranges(state["off"], state["cnt"])]
        state["off"] = np.cumsum(state["cnt"]) - state["cnt"]
        self.keys, self.state = keys, state
