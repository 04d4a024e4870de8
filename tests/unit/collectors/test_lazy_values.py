"""Register/coil values are decoded only when read, and read the same as if decoded at once."""

from __future__ import annotations

import numpy as np

from otsentry.collectors.events import ModbusBatch
from otsentry.collectors.halves import VALUE_DTYPE, HalfBatch, LazyValues, raw_values


def _batch(values: np.ndarray | LazyValues, counts: list[int]) -> HalfBatch:
    n = len(counts)
    col = np.arange(n, dtype=np.int64)
    start = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
    return HalfBatch(frame=col, ts_ns=col, conn=col * 0, from_client=np.zeros(n, bool), tid=col, unit=col, fc=col,
                     exc=col, subfn=col, addr=col, qty=col, val_start=start,
                     val_count=np.asarray(counts, dtype=np.int64), flags=col * 0, values=values)


def test_decoded_on_first_read_only() -> None:
    calls = []

    def part() -> np.ndarray:
        calls.append(1)
        return np.array([[7, 8], [9, 10]], dtype=np.uint16)

    b = _batch(LazyValues([np.array([1], dtype=np.int64), part], 5), [1, 2, 2])
    assert isinstance(raw_values(b), LazyValues) and not calls
    assert b.values.dtype == VALUE_DTYPE and b.values.tolist() == [1, 7, 8, 9, 10]
    assert b.values.tolist() == [1, 7, 8, 9, 10] and calls == [1]  # kept once decoded
    assert isinstance(raw_values(b), np.ndarray)


def test_concat_and_take() -> None:
    lazy = _batch(LazyValues([lambda: np.array([5, 6, 7], dtype=np.uint16)], 3), [0, 3])
    eager = _batch(np.array([1, 2], dtype=VALUE_DTYPE), [2, 0])
    both = HalfBatch.concat([eager, lazy])
    assert isinstance(raw_values(both), LazyValues) and len(raw_values(both)) == 5
    assert both.values.tolist() == [1, 2, 5, 6, 7]
    assert both.val_start.tolist() == [0, 2, 2, 2]
    lazy2 = _batch(LazyValues([lambda: np.array([5, 6, 7], dtype=np.uint16)], 3), [0, 3])
    none = lazy2.take(np.array([0]))  # no values taken: nothing decoded, nothing lazy kept
    assert isinstance(raw_values(none), np.ndarray) and none.values.dtype == VALUE_DTYPE and len(none.values) == 0
    assert isinstance(raw_values(lazy2), LazyValues)
    some = lazy2.take(np.array([1]))
    assert isinstance(raw_values(some), np.ndarray) and some.values.tolist() == [5, 6, 7]


def test_modbus_batch_values_field() -> None:
    empty = ModbusBatch.empty()
    assert empty.values.dtype == VALUE_DTYPE
    cols = {name: np.zeros(1, dtype=np.int64) for name in ModbusBatch.__dataclass_fields__ if name != "values"}
    cols["val_count"] = np.array([2], dtype=np.int64)
    b = ModbusBatch(values=LazyValues([lambda: np.array([3, 4])], 2), **cols)
    assert b.values.tolist() == [3, 4]
    assert ModbusBatch.concat([b, b]).values.tolist() == [3, 4, 3, 4]
