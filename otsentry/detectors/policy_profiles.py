"""What the policy baseline learns about one asset pair, and how windows are read for it.

A ``PairProfile`` is the allow-list of one (client, server, unit) pair: the function codes it used, the address
and value ranges of its requests, and the range of a few per-window counts. Profiles merge, so the same type also
describes an asset (every client of a server/unit) and a writer (everything one client wrote anywhere); the rules
fall back to those wider profiles when the pair's own history is too thin to judge.

Window reading is defensive on purpose: the windowing stage may leave a feature at 0 or NaN when it has nothing
to measure (no addressed request, no write), so ranges are only taken from windows whose counts say the feature
was measured, and only finite values count.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

from otsentry.contracts.schema import (ABSENT, FEATURE_SCHEMA_VERSION, FLOW_FEATURES, PAIR_FEATURES,
                                       TRACKED_FUNCTION_CODES, WRITE_CODES)
from otsentry.records import FeatureWindow

__all__ = ["COUNT_FEATURES", "DIAGNOSTICS", "MIN_COMPARED", "OTHER_FUNCTION_CODE", "PairProfile", "Range",
    "SUM_FEATURES", "answered", "check_window", "count", "feature", "function_codes", "learned_change_rate",
    "measured_range", "merge_all", "profile_of", "union", "write_codes"]

Range = tuple[float, float]

# Stands for the ``fc_other`` column (a function code without a column of its own); 0 is not a valid Modbus code.
OTHER_FUNCTION_CODE = 0
DIAGNOSTICS = 8
# Per-window counts whose learned (min, max) is kept as evidence baseline and burst reference.
COUNT_FEATURES = ("requests", "writes", "exceptions", "diag_restart", "diag_listen_only", "diag_other", "unanswered",
                  "replayed_reads")
# Counts summed over the learning windows, plus ``answered`` (see ``answered``) and ``rate_windows`` (windows whose
# change rate was learned, see ``MIN_COMPARED``): rates (exceptions per answer) and how much evidence a range rests on.
SUM_FEATURES = ("requests", "exceptions", "unanswered", "writes")
# A window's register change rate is learned (and judged) only when it compared at least this many values with
# their previous read: fewer say little (one read of a block, or the first read after a reconnect).
MIN_COMPARED = 20

_PAIR_INDEX = {name: i for i, name in enumerate(PAIR_FEATURES)}
_FLOW_INDEX = {name: i for i, name in enumerate(FLOW_FEATURES)}


_FC_COLUMNS = tuple((c, _PAIR_INDEX[f"fc_{c}"]) for c in TRACKED_FUNCTION_CODES) + (
    (OTHER_FUNCTION_CODE, _PAIR_INDEX["fc_other"]),
)


def check_window(w: FeatureWindow) -> None:
    """Refuse windows this baseline cannot read (another schema, another kind, a short vector)."""
    if w.kind not in ("pair", "flow"):
        raise ValueError(f"FeatureWindow kind {w.kind!r} is neither 'pair' nor 'flow'")
    if w.schema != FEATURE_SCHEMA_VERSION:
        raise ValueError(f"FeatureWindow schema {w.schema!r} is not {FEATURE_SCHEMA_VERSION!r}: relearn the baseline")
    expected = len(PAIR_FEATURES) if w.kind == "pair" else len(FLOW_FEATURES)
    if len(w.values) != expected:
        raise ValueError(f"{w.kind} FeatureWindow has {len(w.values)} values, the schema names {expected}")


def feature(w: FeatureWindow, name: str) -> float:
    """A feature of a window by name (KeyError for a name the window's kind does not have)."""
    index = _PAIR_INDEX if w.kind == "pair" else _FLOW_INDEX
    return float(w.values[index[name]])


def count(w: FeatureWindow, name: str) -> float:
    """A count feature, with NaN read as 0 so that a missing measurement never looks like activity.

    ``feature`` inlined: the rules read a dozen counts of every window, and the extra call was a visible share of
    the policy's scoring time.
    """
    v = float(w.values[(_PAIR_INDEX if w.kind == "pair" else _FLOW_INDEX)[name]])
    return v if math.isfinite(v) else 0.0


def measured_range(w: FeatureWindow, low: str, high: str, gate: str) -> Range | None:
    """(low, high) from two features, only when the gating count says they were measured and both are real.

    Addresses and register values are never negative: the schema writes ``ABSENT`` (-1) when a window has
    nothing to compute them from (e.g. writes, but only FC 22/23, which carry no write values).
    """
    if count(w, gate) <= 0:
        return None
    lo, hi = feature(w, low), feature(w, high)
    if not (math.isfinite(lo) and math.isfinite(hi)) or lo <= ABSENT or hi <= ABSENT:
        return None
    return (min(lo, hi), max(lo, hi))


def function_codes(w: FeatureWindow) -> frozenset[int]:
    """Codes used in a pair window; ``fc_other`` shows as ``OTHER_FUNCTION_CODE``.

    Called by several rules for every window: reads the tuple by precomputed index (NaN compares False).
    """
    values = w.values
    return frozenset(code for code, i in _FC_COLUMNS if values[i] > 0)


def write_codes(w: FeatureWindow) -> tuple[int, ...]:
    return tuple(sorted(c for c in function_codes(w) if c in WRITE_CODES))


def union(a: Range | None, b: Range | None) -> Range | None:
    if a is None:
        return b
    if b is None:
        return a
    return (min(a[0], b[0]), max(a[1], b[1]))


@dataclass(frozen=True)
class PairProfile:
    """Allow-list of one pair (or the merge of several): codes, address/value ranges, per-window count ranges."""

    function_codes: frozenset[int] = frozenset()
    address_range: Range | None = None  # every addressed request
    write_address_range: Range | None = None
    write_value_range: Range | None = None
    read_value_range: Range | None = None  # context for write values: what the process showed
    counts: Mapping[str, Range] = field(default_factory=dict)
    windows: int = 0
    change_rate: Range | None = None  # value_change_rate over windows with >= MIN_COMPARED values compared
    sums: Mapping[str, float] = field(default_factory=dict)  # SUM_FEATURES totals, plus rate_windows

    @property
    def wrote(self) -> bool:
        return self.counts.get("writes", (0.0, 0.0))[1] > 0

    def max_count(self, name: str) -> float:
        return self.counts.get(name, (0.0, 0.0))[1]

    def total(self, name: str) -> float:
        return float(self.sums.get(name, 0.0))

    def merge(self, other: "PairProfile") -> "PairProfile":
        names = sorted(set(self.counts) | set(other.counts))
        counts = {n: union(self.counts.get(n), other.counts.get(n)) for n in names}
        return PairProfile(
            self.function_codes | other.function_codes,
            union(self.address_range, other.address_range),
            union(self.write_address_range, other.write_address_range),
            union(self.write_value_range, other.write_value_range),
            union(self.read_value_range, other.read_value_range),
            {n: r for n, r in counts.items() if r is not None},
            self.windows + other.windows,
            union(self.change_rate, other.change_rate),
            {n: self.total(n) + other.total(n) for n in sorted(set(self.sums) | set(other.sums))},
        )

    def writes_only(self) -> "PairProfile":
        """The write-related part, for pooling what one client wrote across the assets it wrote to."""
        return PairProfile(frozenset(c for c in self.function_codes if c in WRITE_CODES), None,
                           self.write_address_range, self.write_value_range, None,
                           {"writes": self.counts["writes"]} if "writes" in self.counts else {}, self.windows,
                           None, {"writes": self.total("writes")} if "writes" in self.sums else {})

    def to_state(self) -> dict[str, Any]:
        def rng(r: Range | None) -> list[float] | None:
            return None if r is None else [r[0], r[1]]

        return {
            "function_codes": sorted(self.function_codes),
            "address_range": rng(self.address_range),
            "write_address_range": rng(self.write_address_range),
            "write_value_range": rng(self.write_value_range),
            "read_value_range": rng(self.read_value_range),
            "counts": {n: [r[0], r[1]] for n, r in sorted(self.counts.items())},
            "windows": self.windows,
            "change_rate": rng(self.change_rate),
            "sums": {n: v for n, v in sorted(self.sums.items())},
        }

    @classmethod
    def from_state(cls, d: Mapping[str, Any]) -> "PairProfile":
        def rng(r: Any) -> Range | None:
            return None if r is None else (float(r[0]), float(r[1]))

        return cls(
            frozenset(int(c) for c in d["function_codes"]),
            rng(d["address_range"]),
            rng(d["write_address_range"]),
            rng(d["write_value_range"]),
            rng(d["read_value_range"]),
            {str(n): (float(r[0]), float(r[1])) for n, r in d["counts"].items()},
            int(d["windows"]),
            rng(d.get("change_rate")),
            {str(n): float(v) for n, v in d.get("sums", {}).items()},
        )


def profile_of(w: FeatureWindow) -> PairProfile:
    """The profile one pair window alone would teach; fit merges these per pair."""
    return PairProfile(
        function_codes(w),
        measured_range(w, "addr_min", "addr_max", "addr_distinct"),
        measured_range(w, "write_addr_min", "write_addr_max", "writes"),
        measured_range(w, "write_value_min", "write_value_max", "writes"),
        measured_range(w, "value_min", "value_max", "values_count"),
        {n: (count(w, n), count(w, n)) for n in COUNT_FEATURES},
        1,
        learned_change_rate(w),
        {**{n: count(w, n) for n in SUM_FEATURES}, "answered": answered(w),
         "rate_windows": float(learned_change_rate(w) is not None)},
    )


def answered(w: FeatureWindow) -> float:
    """Requests that got an answer: responses, or requests not reported unanswered (whichever says more)."""
    return max(count(w, "responses"), count(w, "requests") - count(w, "unanswered"), count(w, "exceptions"))


def learned_change_rate(w: FeatureWindow) -> Range | None:
    """The window's register change rate as a learnable (rate, rate) range, if it compared enough values."""
    if count(w, "values_compared") < MIN_COMPARED:
        return None
    rate = feature(w, "value_change_rate")
    return (rate, rate) if math.isfinite(rate) else None


def merge_all(profiles: Iterable[PairProfile]) -> PairProfile:
    out = PairProfile()
    for p in profiles:
        out = out.merge(p)
    return out
