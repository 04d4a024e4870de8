"""Fast grouping of multi-column integer keys (connections, flows) within a chunk.

``np.unique`` over rows sorts wide void keys and dominated the collector's profile; a 64-bit mix of the columns
sorts as plain integers. The mix is verified afterwards, and a collision falls back to the exact row sort, so the
result is always exact.
"""

from __future__ import annotations

import numpy as np

__all__ = ["group_columns", "group_rows", "stable_order"]

_MULT = np.uint64(0x9E3779B97F4A7C15)


def group_rows(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For an (n, k) uint64 array: (index of each group's first row, group of each row), groups in key order."""
    n = len(keys)
    if n == 0:
        return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int64)
    with np.errstate(over="ignore"):
        h = np.zeros(n, dtype=np.uint64)
        for j in range(keys.shape[1]):
            h = (h ^ keys[:, j]) * _MULT
            h ^= h >> np.uint64(29)
    _, first, inv = np.unique(h, return_index=True, return_inverse=True)
    inv = inv.ravel()
    if np.array_equal(keys[first][inv], keys):
        return first, inv
    void = np.ascontiguousarray(keys).view(np.dtype((np.void, keys.dtype.itemsize * keys.shape[1]))).ravel()
    _, first, inv = np.unique(void, return_index=True, return_inverse=True)
    return first, inv.ravel()


def group_columns(columns: tuple[np.ndarray, ...] | list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """``group_rows`` of the (n, k) array whose columns are ``columns`` (uint64), without building that array."""
    n = len(columns[0]) if len(columns) else 0
    if n == 0:
        return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int64)
    with np.errstate(over="ignore"):
        h = np.zeros(n, dtype=np.uint64)
        for col in columns:
            h = (h ^ col) * _MULT
            h ^= h >> np.uint64(29)
    _, first, inv = np.unique(h, return_index=True, return_inverse=True)
    inv = inv.ravel()
    rep = first[inv]
    if all(np.array_equal(col[rep], col) for col in columns):
        return first, inv
    return group_rows(np.stack(columns, axis=1))


def stable_order(ids: np.ndarray) -> np.ndarray:
    """Stable argsort of small non-negative ids (radix sort when they fit in 16 bits)."""
    if len(ids) and int(ids.max()) < 65536 and int(ids.min()) >= 0:
        return np.argsort(ids.astype(np.uint16), kind="stable")
    return np.argsort(ids, kind="stable")
