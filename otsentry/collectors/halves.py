"""Columnar batches of decoded ADUs ("halves" of transactions).

Both the vectorised fast path and the general reassembler append here, so pairing and everything after it work on
numpy columns rather than on a million small Python objects.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Callable, Union

import numpy as np

from otsentry.arrays import ranges

__all__ = ["DecodedOnUse", "HalfBatch", "HalfBuilder", "LazyValues", "NONE", "VALUE_DTYPE", "ValuesLike",
    "concat_csr", "raw_values"]


NONE = -1  # "absent" in integer columns (exception code, sub-function, address, quantity, frame)
# Register/coil values are 16-bit (or smaller) in every public function code: int32 halves the copying.
VALUE_DTYPE = np.int32


class LazyValues:
    """Register/coil values not decoded yet: ``parts`` (arrays, zero-argument callables or other LazyValues) are
    decoded and concatenated on first use.

    Why: a million ADUs carry ~15 million values, and copying them out of the capture costs more than any other
    step of decoding; ``otsentry inspect --summary`` and every counter never look at them. Memory stays flat: a
    batch's parts refer to its own chunk only (``HalfBatch.take``, the carry-over between chunks, decodes).
    """

    __slots__ = ("parts", "size")

    def __init__(self, parts: list["ValuesLike | Callable[[], np.ndarray]"], size: int) -> None:
        self.parts = parts
        self.size = size  # number of values once decoded

    def __len__(self) -> int:
        return self.size

    def decode(self) -> np.ndarray:
        arrays = [p.decode() if isinstance(p, LazyValues) else p() if callable(p) else p for p in self.parts]
        if not arrays:
            return np.empty(0, dtype=VALUE_DTYPE)
        return np.concatenate([a.ravel() for a in arrays], dtype=VALUE_DTYPE)


ValuesLike = Union[np.ndarray, LazyValues]


class DecodedOnUse:
    """Data descriptor for a batch's ``values`` field: holds an array or LazyValues, always reads as an array.

    A descriptor (not a property) so the dataclass keeps ``values`` as an ordinary constructor argument.
    """

    def __set_name__(self, owner: type, name: str) -> None:
        self.slot = "_" + name

    def __get__(self, obj: object, objtype: type | None = None) -> np.ndarray:
        if obj is None:
            raise AttributeError(self.slot[1:])  # no class-level default: the field stays required
        v = obj.__dict__[self.slot]
        if isinstance(v, LazyValues):
            v = v.decode()
            obj.__dict__[self.slot] = v
        return v

    def __set__(self, obj: object, value: ValuesLike) -> None:
        obj.__dict__[self.slot] = value


def raw_values(batch: object) -> ValuesLike:
    """A batch's values as stored (maybe still LazyValues): for passing them on without decoding them."""
    return batch.__dict__["_values"]


@dataclass(frozen=True)
class HalfBatch:
    """One row per ADU, in capture order. ``values`` holds every ADU's values back to back (CSR layout)."""

    frame: np.ndarray  # int64
    ts_ns: np.ndarray  # int64
    conn: np.ndarray  # int64 connection id (see ConnTable)
    from_client: np.ndarray  # bool
    tid: np.ndarray  # int64
    unit: np.ndarray  # int64
    fc: np.ndarray  # int64, exception bit cleared
    exc: np.ndarray  # int64 or NONE
    subfn: np.ndarray  # int64 or NONE
    addr: np.ndarray  # int64 or NONE
    qty: np.ndarray  # int64 or NONE
    val_start: np.ndarray  # int64 index into values
    val_count: np.ndarray  # int64
    flags: np.ndarray  # int64 bit mask over records.ALL_FLAGS
    values: np.ndarray = DecodedOnUse()  # type: ignore[assignment]  # VALUE_DTYPE; may be given as LazyValues

    def __len__(self) -> int:
        return len(self.frame)

    @classmethod
    def empty(cls) -> "HalfBatch":
        cols = {f.name: np.empty(0, dtype=bool if f.name == "from_client" else np.int64) for f in fields(cls)}
        cols["values"] = np.empty(0, dtype=VALUE_DTYPE)
        return cls(**cols)

    def take(self, index: np.ndarray) -> "HalfBatch":
        """Rows at ``index`` (with their values re-packed)."""
        counts = self.val_count[index]
        starts = self.val_start[index]
        new_start = np.zeros(len(index), dtype=np.int64)
        if len(index):
            np.cumsum(counts[:-1], out=new_start[1:])
        gather = ranges(starts, counts)
        cols = {
            f.name: getattr(self, f.name)[index]
            for f in fields(self)
            if f.name not in ("values", "val_start")
        }
        # Decoded here (only when a taken row has values): a carried-over batch must not keep old chunks alive.
        values = self.values[gather] if len(gather) else np.empty(0, dtype=VALUE_DTYPE)
        return HalfBatch(val_start=new_start, values=values, **cols)

    @staticmethod
    def concat(batches: list["HalfBatch"]) -> "HalfBatch":
        return concat_csr(HalfBatch, batches)


def concat_csr(cls, batches: list):
    """Concatenate column batches of dataclass ``cls`` whose ``values`` are indexed by ``val_start``."""
    batches = [b for b in batches if len(b)]
    if not batches:
        return cls.empty()
    if len(batches) == 1:
        return batches[0]
    raws = [raw_values(b) for b in batches]
    shift = np.cumsum([0] + [len(v) for v in raws[:-1]])
    cols = {f.name: np.concatenate([getattr(b, f.name) for b in batches])
            for f in fields(cls) if f.name not in ("val_start", "values")}
    cols["val_start"] = np.concatenate([b.val_start + s for b, s in zip(batches, shift)])
    if any(isinstance(v, LazyValues) for v in raws):
        cols["values"] = LazyValues(raws, int(sum(len(v) for v in raws)))
    else:
        cols["values"] = np.concatenate(raws)
    return cls(**cols)


class HalfBuilder:
    """Row-at-a-time builder for the general (non-vectorised) path."""

    _COLS = ("frame", "ts_ns", "conn", "from_client", "tid", "unit", "fc", "exc", "subfn", "addr", "qty", "flags")

    def __init__(self) -> None:
        self._rows: list[tuple] = []
        self._counts: list[int] = []
        self._values: list[int] = []

    def __len__(self) -> int:
        return len(self._rows)

    def add(
        self,
        frame: int,
        ts_ns: int,
        conn: int,
        from_client: bool,
        tid: int,
        unit: int,
        fc: int,
        exc: int | None,
        subfn: int | None,
        addr: int | None,
        qty: int | None,
        values: tuple[int, ...],
        flags: int,
    ) -> None:
        self._rows.append(
            (
                frame, ts_ns, conn, from_client, tid, unit, fc,
                NONE if exc is None else exc,
                NONE if subfn is None else subfn,
                NONE if addr is None else addr,
                NONE if qty is None else qty,
                flags,
            )
        )
        self._counts.append(len(values))
        self._values.extend(values)

    def build(self) -> HalfBatch:
        if not self._rows:
            return HalfBatch.empty()
        cols = list(zip(*self._rows))
        data = {
            name: np.asarray(col, dtype=bool if name == "from_client" else np.int64)
            for name, col in zip(self._COLS, cols)
        }
        counts = np.asarray(self._counts, dtype=np.int64)
        start = np.zeros(len(counts), dtype=np.int64)
        np.cumsum(counts[:-1], out=start[1:])
        return HalfBatch(val_start=start, val_count=counts, values=np.asarray(self._values, dtype=VALUE_DTYPE), **data)
