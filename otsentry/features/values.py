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

Replays: a read whose values differ from the previous read of its block but are identical, value for value, to an
*older* read of the block (within ``ttl_s``) is a replayed read. Noisy process values (analog measurements, a
running counter) never come back to an exact earlier state, so a man in the middle playing back recorded
answers shows up as a run of replayed reads; a block that only changes when someone writes it (setpoints) can
legitimately return to an earlier state now and then, which the detectors learn. Each read's content is kept as
a 64-bit hash of (block, values) (``columns.hash_values``), at most ``max_hashes`` of them, the oldest dropped
first (the only way this part can depend on chunking, like ``max_values``).
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from otsentry.arrays import ranges
from otsentry.features.columns import Cols, group_starts, hash_rows, hash_values, lookup, merge_state, pick

__all__ = ["ContentHistory", "MAX_VALUES", "VALUE_TTL_S", "ValueState", "rows_of"]


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


VALUE_TTL_S = 3600.0
MAX_VALUES = 1 << 22


class ValueState:
    """Last values of every read block, across windows."""

    def __init__(self, ttl_s: float = VALUE_TTL_S, max_values: int = MAX_VALUES, max_hashes: int = 1 << 22) -> None:
        self.ttl_ns = int(ttl_s * 1e9)
        self.max_values = max_values
        self.history = ContentHistory(self.ttl_ns, max_hashes)
        self.keys = np.empty(0, dtype=np.uint64)
        self.state = {"off": np.empty(0, dtype=np.int64), "cnt": np.empty(0, dtype=np.int64),
                      "ts": np.empty(0, dtype=np.int64)}
        self.pool = np.empty(0, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.keys)

    def update(self, reads: Cols, pool: np.ndarray, frontier_ns: int) -> dict[str, np.ndarray]:
        """Per read transaction (in ``reads`` order): n_cmp, n_chg, vmin, vmax, replay (1: a replayed read).

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
        content = np.empty(n, dtype=np.uint64)  # hash of (block, values) of each read
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
            content[a:b] = hash_values(k[a:b], m)
            kept.append(m[last[np.searchsorted(last, a) : np.searchsorted(last, b)] - a].ravel())
        self._store(k[last], np.concatenate(kept) if kept else pool[:0], cnt[last], ts[last], frontier_ns)
        tracked = reads["rtable"][order] >= 2  # register reads: bit blocks flip back and forth by design
        seen = self.history.seen_then_add(content, ts, tracked, frontier_ns)
        replay = ((n_chg > 0) & seen).astype(np.int64)
        result = {}
        for name, col in (("n_cmp", np.where(comparable, cnt, 0)), ("n_chg", n_chg), ("vmin", vmin), ("vmax", vmax),
                          ("replay", replay)):
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


class ContentHistory:
    """Hashes of read contents with the time each was last seen: "was this exact block state seen before?".

    A large sorted array and a small sorted one of recent additions, merged when the small one grows past an
    eighth of the large one, so adding a batch costs about its own size, not the history's. Entries older than
    ``ttl_ns`` are ignored by ``seen`` and dropped at the next merge; past ``max_entries`` the oldest go first.
    """

    def __init__(self, ttl_ns: int, max_entries: int = 1 << 22) -> None:
        self.ttl_ns, self.max_entries = ttl_ns, max_entries
        self._main = (np.empty(0, dtype=np.uint64), np.empty(0, dtype=np.int64))
        self._recent = (np.empty(0, dtype=np.uint64), np.empty(0, dtype=np.int64))

    def __len__(self) -> int:
        return len(self._main[0]) + len(self._recent[0])

    def seen(self, h: np.ndarray, ts: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """Per row: ``mask`` and its hash was seen at an earlier row of this call (rows of one block are in time
        order) or, within ``ttl_ns`` before its time, in an earlier call."""
        return self._seen(h, ts, mask)[0]

    def seen_then_add(self, h: np.ndarray, ts: np.ndarray, mask: np.ndarray, frontier_ns: int) -> np.ndarray:
        """``seen``, then ``add`` the ``mask`` rows: one sort of the hashes serves both."""
        out, hh, tt = self._seen(h, ts, mask)
        self.add(hh, tt, frontier_ns)  # in hash order: the merges below become linear
        return out

    def _seen(self, h: np.ndarray, ts: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        out = np.zeros(len(h), dtype=bool)
        rows = np.flatnonzero(mask)
        # In hash order (stable: equal hashes keep row order, so all but the first of each are repeats). Sorted
        # queries also make the binary searches below walk the history in order instead of jumping around.
        order = rows[np.argsort(h[rows], kind="stable")]
        hh, tt = h[order], ts[order]
        if not len(rows):
            return out, hh, tt
        hit = np.zeros(len(order), dtype=bool)
        hit[1:] = hh[1:] == hh[:-1]
        for keys, times in (self._main, self._recent):
            found, idx = lookup(keys, hh)
            hit |= found & (tt - pick(times, idx, found, 0) <= self.ttl_ns)
        out[order] = hit
        return out, hh, tt

    def add(self, h: np.ndarray, ts: np.ndarray, frontier_ns: int) -> None:
        if not len(h):
            return
        keys, times = _latest(np.concatenate([self._recent[0], h]), np.concatenate([self._recent[1], ts]))
        self._recent = (keys, times)
        if len(keys) * 8 > len(self._main[0]) or len(self) > self.max_entries:
            keys, times = _latest(np.concatenate([self._main[0], keys]), np.concatenate([self._main[1], times]))
            keep = times >= frontier_ns - self.ttl_ns
            if int(keep.sum()) > self.max_entries:
                cut = np.sort(times[keep])[-self.max_entries]
                keep &= times >= cut
            self._main = (keys[keep], times[keep])
            self._recent = (np.empty(0, dtype=np.uint64), np.empty(0, dtype=np.int64))


def _latest(keys: np.ndarray, times: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sorted unique keys, each with its latest time (one sort of the keys; any order among equal keys).

    Stable sort on purpose: callers pass already-sorted history followed by newer keys, and timsort merges such
    runs in linear time, where the default quicksort re-sorts millions of hashes at every history merge.
    """
    order = np.argsort(keys, kind="stable")
    keys, times = keys[order], times[order]
    starts = group_starts(keys)
    return keys[starts], np.maximum.reduceat(times, starts) if len(starts) else times
