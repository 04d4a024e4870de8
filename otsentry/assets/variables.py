"""Process variables: what each register of each device does, learned from the values polled.

Per (server, unit, table, address): how many reads, the range of values, the typical change from one poll to the
next (median of the absolute changes), the polling period (median time between reads), the last value with its
time, whether it behaved as a counter (only ever rose) and whether it lies in the address range clients wrote on
that device and table (a setpoint block). Reads are FC 1-4 answered without exception (FC 23's read part carries
no address of its own in the transaction record and is left out). Memory is bounded by the number of registers the
plant polls, not by time: each variable keeps a fixed-size sample of its changes and intervals (``SAMPLE``, the
first ones seen).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable

from otsentry.assets.inventory import ip_sort_key
from otsentry.records import ModbusEvent, ProcessVariable

__all__ = ["TABLES", "VariableBook"]

TABLES = {1: "coil", 2: "discrete_input", 3: "holding_register", 4: "input_register"}
WRITES = {5: "coil", 15: "coil", 6: "holding_register", 16: "holding_register"}  # write code -> table written
SAMPLE = 256
COUNTER_MIN_STEPS = 10  # rises seen before a register that only rises is taken for a counter


@dataclass
class _Acc:
    reads: int = 0
    low: float = float("inf")
    high: float = float("-inf")
    last_value: float = 0.0
    last_ts: float = float("-inf")
    changes: list[float] = field(default_factory=list)
    gaps: list[float] = field(default_factory=list)
    ups: int = 0
    downs: int = 0

    def add(self, value: float, ts: float) -> None:
        if self.reads and ts >= self.last_ts:
            self.ups += value > self.last_value
            self.downs += value < self.last_value
        if self.reads:
            if len(self.changes) < SAMPLE:
                self.changes.append(abs(value - self.last_value))
            if len(self.gaps) < SAMPLE and ts >= self.last_ts:
                self.gaps.append(ts - self.last_ts)
        self.reads += 1
        self.low, self.high = min(self.low, value), max(self.high, value)
        if ts >= self.last_ts:
            self.last_value, self.last_ts = value, ts


def _counter(a: _Acc) -> bool:
    """Only ever rose (a few falls allowed: a poll that crossed a reset)."""
    return a.ups >= COUNTER_MIN_STEPS and a.ups >= 0.95 * (a.ups + a.downs)


def _median(xs: list[float]) -> float:
    if not xs:
        return 0.0
    s = sorted(xs)
    mid = len(s) // 2
    return s[mid] if len(s) % 2 else (s[mid - 1] + s[mid]) / 2


class VariableBook:
    """Accumulates register values from transactions; ``variables()`` is what was learned so far."""

    def __init__(self) -> None:
        self._acc: dict[tuple[str, int, str, int], _Acc] = {}
        self._written: dict[tuple[str, int, str], tuple[int, int]] = {}  # written address range per table

    def add_events(self, events: Iterable[ModbusEvent]) -> None:
        acc = self._acc
        for e in events:
            wrote = WRITES.get(e.function_code)
            if wrote is not None and e.start_address is not None and e.exception_code is None:
                n = max(len(e.values), 1) if e.function_code in (15, 16) else 1
                key = (e.server_ip, e.unit_id, wrote)
                lo, hi = self._written.get(key, (e.start_address, e.start_address + n - 1))
                self._written[key] = (min(lo, e.start_address), max(hi, e.start_address + n - 1))
                continue
            table = TABLES.get(e.function_code)
            if table is None or e.exception_code is not None or not e.values or e.start_address is None:
                continue
            ts = e.response_ts if e.response_ts is not None else e.ts
            for i, v in enumerate(e.values):
                key = (e.server_ip, e.unit_id, table, e.start_address + i)
                a = acc.get(key)
                if a is None:
                    a = acc[key] = _Acc()
                a.add(float(v), ts)

    def _in_written(self, server: str, unit: int, table: str, address: int) -> bool:
        """Inside the address range written on that server, unit and table while learning (the setpoint block:
        ten minutes see a few of its registers written, not all)."""
        span = self._written.get((server, unit, table))
        return span is not None and span[0] <= address <= span[1]

    def variables(self) -> list[ProcessVariable]:
        return [ProcessVariable(s, u, t, addr, a.reads, a.low, a.high, _median(a.changes), _median(a.gaps),
                                a.last_value, a.last_ts, counter=_counter(a), written=self._in_written(s, u, t, addr))
                for (s, u, t, addr), a in sorted(self._acc.items(), key=lambda kv: (ip_sort_key(kv[0][0]), kv[0][1:]))]

