"""Small numpy helpers shared by the window builders: column tables and per-group reductions.

Why: every feature is computed for all the windows that close at once, over sorted columns, so that the cost is a
few numpy passes per closing batch instead of Python work per transaction or per packet.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np

__all__ = ["Cols", "count", "distinct", "group_starts", "hash_rows", "hash_values", "lookup", "masked_reduce",
    "merge_state", "pick", "runs_to_ids", "seg_reduce", "signed32"]

_MULT = np.uint64(0x9E3779B97F4A7C15)


class Cols:
    """Equal-length named numpy columns (one table of pending rows); ``widx`` is the window index of each row."""

    __slots__ = ("data",)

    def __init__(self, data: Mapping[str, np.ndarray]) -> None:
        self.data = dict(data)

    def __len__(self) -> int:
        return len(next(iter(self.data.values()))) if self.data else 0

    def __getitem__(self, name: str) -> np.ndarray:
        return self.data[name]

    def select(self, rows: np.ndarray) -> "Cols":
        """Rows by boolean mask or index array."""
        return Cols({k: v[rows] for k, v in self.data.items()})

    @staticmethod
    def concat(tables: list["Cols"]) -> "Cols | None":
        tables = [t for t in tables if t is not None and len(t)]
        if not tables:
            return None
        if len(tables) == 1:
            return tables[0]
        return Cols({k: np.concatenate([t.data[k] for t in tables]) for k in tables[0].data})


def hash_rows(keys: np.ndarray) -> np.ndarray:
    """64-bit mix of the columns of an (n, k) uint64 array: a conversation's identity across chunks.

    Collisions are possible in principle (two of a million flows share a hash with probability ~3e-8); the effect
    would be two conversations sharing orientation and sequence state.
    """
    h = np.zeros(len(keys), dtype=np.uint64)
    with np.errstate(over="ignore"):
        for j in range(keys.shape[1]):
            h = (h ^ keys[:, j].astype(np.uint64)) * _MULT
            h ^= h >> np.uint64(29)
    return h


_POSITIONS = np.empty(0, dtype=np.uint64)


def _position_multipliers(count: int) -> np.ndarray:
    """Fixed odd 64-bit multipliers, one per value position (same seed in every process: hashes are comparable)."""
    global _POSITIONS
    if len(_POSITIONS) < count:
        size = max(count, 2 * len(_POSITIONS), 64)
        _POSITIONS = np.random.default_rng(0x0751E1).integers(0, 1 << 63, size, dtype=np.uint64) * np.uint64(2) + \
            np.uint64(1)
    return _POSITIONS[:count]


def hash_values(keys: np.ndarray, values: np.ndarray) -> np.ndarray:
    """64-bit hash of each row of ``values`` (n, c) together with its 64-bit ``keys``: "is this the same content?".

    One integer matrix-vector product (sum of value x random odd multiplier per position, mod 2^64), then the key
    and a bijective mix: a pass over the matrix where ``hash_rows`` makes four per column. Two different rows
    collide with probability about 2^-64 for values of up to 48 bits (register and coil values are 16 and 1).
    """
    with np.errstate(over="ignore"):
        h = values.astype(np.uint64, copy=False) @ _position_multipliers(values.shape[1])
        h ^= keys.astype(np.uint64, copy=False)
        h *= _MULT
        h ^= h >> np.uint64(29)
        h *= _MULT
        h ^= h >> np.uint64(32)
    return h


def group_starts(*sorted_keys: np.ndarray) -> np.ndarray:
    """First row of each run of equal keys in rows already sorted by ``sorted_keys``."""
    n = len(sorted_keys[0])
    if n == 0:
        return np.empty(0, dtype=np.int64)
    new = np.zeros(n, dtype=bool)
    new[0] = True
    for k in sorted_keys:
        new[1:] |= k[1:] != k[:-1]
    return np.flatnonzero(new)


def runs_to_ids(starts: np.ndarray, n: int) -> np.ndarray:
    """Group id of every row, from the runs' first rows."""
    ids = np.zeros(n, dtype=np.int64)
    if len(starts) > 1:
        ids[starts[1:]] = 1
    return np.cumsum(ids)


def seg_reduce(ufunc: np.ufunc, values: np.ndarray, groups: np.ndarray, n_groups: int, fill: float) -> np.ndarray:
    """``ufunc`` (np.minimum or np.maximum) of ``values`` per group, ``fill`` for groups without rows.

    Exact in any row order (min/max do not round), so the result never depends on how rows were batched.
    """
    start = np.inf if ufunc is np.minimum else -np.inf
    out = np.full(n_groups, start, dtype=np.float64)
    ufunc.at(out, groups, values.astype(np.float64, copy=False))
    out[~np.isfinite(out)] = fill
    return out


def masked_reduce(ufunc: np.ufunc, values: np.ndarray, mask: np.ndarray, groups: np.ndarray, n_groups: int,
                  fill: float) -> np.ndarray:
    """``seg_reduce`` over the rows where ``mask`` holds."""
    return seg_reduce(ufunc, values[mask], groups[mask], n_groups, fill)


def count(groups: np.ndarray, n_groups: int, weights: np.ndarray | None = None) -> np.ndarray:
    return np.bincount(groups, weights=weights, minlength=n_groups).astype(np.float64)


def distinct(groups: np.ndarray, values: np.ndarray, n_groups: int) -> np.ndarray:
    """Number of distinct ``values`` per group."""
    if len(values) == 0:
        return np.zeros(n_groups)
    order = np.lexsort((values, groups))
    starts = group_starts(groups[order], values[order])
    return count(groups[order][starts], n_groups)


def signed32(x: np.ndarray) -> np.ndarray:
    """A difference of 32-bit sequence numbers as a signed offset in [-2**31, 2**31)."""
    return ((x.astype(np.int64) + (1 << 31)) & 0xFFFFFFFF) - (1 << 31)


def merge_state(keys: np.ndarray, cols: dict[str, np.ndarray], new_keys: np.ndarray,
                new_cols: dict[str, np.ndarray]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Sorted-key state updated with new entries (a new entry replaces an old one with the same key)."""
    all_keys = np.concatenate([keys, new_keys])
    order = np.argsort(all_keys, kind="stable")  # stable: for equal keys the new entry (appended) sorts last
    k = all_keys[order]
    last = np.ones(len(k), dtype=bool)
    last[:-1] = k[1:] != k[:-1]
    keep = order[last]
    return all_keys[keep], {name: np.concatenate([cols[name], new_cols[name]])[keep] for name in cols}


def lookup(keys: np.ndarray, query: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(found, index) of each query key in sorted ``keys``; read state at ``index`` with ``pick``."""
    if len(keys) == 0:
        return np.zeros(len(query), dtype=bool), np.zeros(len(query), dtype=np.int64)
    idx = np.searchsorted(keys, query)
    idx = np.minimum(idx, len(keys) - 1)
    return keys[idx] == query, idx


def pick(col: np.ndarray, idx: np.ndarray, found: np.ndarray, fill: int | bool) -> np.ndarray:
    """``col[idx]`` where ``found``, ``fill`` elsewhere (``col`` may be empty)."""
    if len(col) == 0:
        return np.full(len(idx), fill, dtype=col.dtype)
    return np.where(found, col[idx], fill)
