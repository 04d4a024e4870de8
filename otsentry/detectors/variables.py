"""``policy.process_value_out_of_range``: a register read far outside anything it held while learning.

Nozomi-style process-variable monitoring, per server, unit and register: the learned range (``ProcessVariable``)
widened by a margin that scales with what the register does, ``max(margin_span * span, margin_changes * typical
change per poll, margin_level * its magnitude, margin_min)``. A few minutes of learning see an analog value over
part of its swing and a status register in one or two states, so the magnitude term (by default: the value may
double) and the floor keep those quiet, while a register that held 797 answering 9999 alerts. A register driven
down towards 0 is not caught (its magnitude covers it). Judged: holding and input registers (coils and discrete
inputs are two-valued), but no counters (a register that only rose while learning wraps: a range means nothing
for it) and no setpoints (registers in the address range clients wrote while learning: ``write_value_out_of_range``
judges what is written to them). What is left is the process itself - measurements, states, registers nobody
writes - driven where it never went. A register never read while learning is not judged (``new_pair`` and
``address_out_of_range`` say so).

Unlike the other policy rules this one needs the reads themselves (windows carry no per-register values):
``VariableWatch`` sees the reads of each group of closed pair windows where their register values are tracked
(``PairBlock.value_job``, in the scoring process) and hands its alerts to the pipeline with those windows. One
alert per window and asset pair, the registers furthest outside first; ids as every alert's (window, pair, rule),
so a value of the same window seen in a later batch adds nothing. A register out of range is a state: reported by
its first reader, re-reported at most hourly (window time); for a register that held still, a new value is news.
"""

from __future__ import annotations

from typing import Iterable

import numpy as np

from otsentry.detectors.rules import RISK_SCORES, rule
from otsentry.features.closed import PairBlock
from otsentry.features.values import rows_of
from otsentry.records import Alert, FeatureEvidence, ProcessVariable, alert_id

__all__ = ["RULE_ID", "TABLE_CODES", "VariableWatch", "allowed_range"]

RULE_ID = "policy.process_value_out_of_range"
TABLE_CODES = {"holding_register": 2, "input_register": 3}  # features.pairs' read tables
MAX_EVIDENCE = 5


def allowed_range(v: ProcessVariable, margin_span: float = 0.5, margin_changes: float = 10.0,
                  margin_level: float = 1.0, margin_min: float = 16.0) -> tuple[float, float]:
    """The learned range widened by the margin (see the module docstring)."""
    level = max(abs(v.low), abs(v.high)) * margin_level
    pad = max(margin_span * (v.high - v.low), margin_changes * v.typical_change, level, margin_min)
    return v.low - pad, v.high + pad


class VariableWatch:
    """Checks the reads of closed pair windows against learned process variables (vectorised over the reads)."""

    def __init__(self, variables: Iterable[ProcessVariable], window_s: float, realert_s: float = 3600.0) -> None:
        self.window_s, self.realert_s = window_s, realert_s
        self._facts: dict[tuple[str, int, str, float | None], float] = {}
        learned = [v for v in variables if v.table in TABLE_CODES and not v.counter and not v.written]
        self._servers: dict[tuple[str, int], int] = {}
        keys, lows, highs = [], [], []
        for v in learned:
            sid = self._servers.setdefault((v.server, v.unit), len(self._servers))
            lo, hi = allowed_range(v)
            keys.append(_key(sid, TABLE_CODES[v.table], v.address))
            lows.append(lo)
            highs.append(hi)
        order = np.argsort(np.asarray(keys, dtype=np.int64), kind="stable")
        self._keys = np.asarray(keys, dtype=np.int64)[order]
        self._low = np.asarray(lows, dtype=float)[order]
        self._high = np.asarray(highs, dtype=float)[order]
        self._vars = [learned[i] for i in order.tolist()]
        self._reported: set[tuple[float, str, str, int]] = set()

    def __bool__(self) -> bool:
        return bool(len(self._keys))

    def observe(self, block: PairBlock | None) -> list[Alert]:
        """Alerts for the reads of ``block`` (before ``ClosedWindows.complete``, which consumes the reads).

        Vectorised in two steps: reads of one block in one window (a poller reads it every second or so) are first
        reduced to their per-register minimum and maximum, then only those are looked up and compared.
        """
        job = block.value_job if block is not None else None
        if not self or job is None:
            return []
        reads = job.reads
        regs = np.flatnonzero(np.isin(reads["rtable"], (2, 3)))
        if not len(regs):
            return []
        row_of_group = np.arange(job.n) if block.job_order is None else np.argsort(block.job_order)
        # server/unit id of each group (a window of one pair): looked up once per distinct (pair, unit)
        combo = block.pair.astype(np.int64) * 256 + block.unit.astype(np.int64)
        distinct, inverse = np.unique(combo, return_inverse=True)
        ids = np.array([self._servers.get((block.names[int(c) // 256][1], int(c) % 256), -1) for c in distinct],
                       dtype=np.int64)
        sid_of_group = ids[inverse.ravel()][row_of_group]
        group = job.group[regs]
        regs = regs[sid_of_group[group] >= 0]
        if not len(regs):
            return []
        found: dict[tuple[float, str, str, int], list[tuple[float, str, float, ProcessVariable]]] = {}
        counts = reads["rcnt"][regs]
        for c in np.unique(counts).tolist():
            self._check_count(block, job, regs[counts == c], int(c), row_of_group, sid_of_group, found)
        alerts = []
        for key in sorted(found):
            if key in self._reported:
                continue
            ws, _, server, unit = key
            fresh = [h for h in found[key]
                     if self._fresh((server, unit, h[1], h[2] if h[3].typical_change == 0 else None), ws)]
            if fresh:
                self._reported.add(key)
                alerts.append(self._alert(key, fresh))
        self._forget_old()
        return alerts

    def _check_count(self, block: PairBlock, job, idx: np.ndarray, c: int, row_of_group: np.ndarray,
                     sid_of_group: np.ndarray, found: dict) -> None:
        """Reads of ``c`` registers: per (window group, table, start address), min and max of each position."""
        reads = job.reads
        group, table, start = job.group[idx], reads["rtable"][idx], reads["addr"][idx]
        order = np.lexsort((start, table, group))
        group, table, start = group[order], table[order], start[order]
        values = rows_of(job.pool, reads["voff"][idx][order], c)
        edge = np.r_[True, (group[1:] != group[:-1]) | (table[1:] != table[:-1]) | (start[1:] != start[:-1])]
        at = np.flatnonzero(edge)
        low, high = np.minimum.reduceat(values, at, axis=0), np.maximum.reduceat(values, at, axis=0)
        g, t, a0 = group[at], table[at], start[at]
        keys = _key(sid_of_group[g][:, None], t[:, None], a0[:, None] + np.arange(c)[None, :])
        pos = np.clip(np.searchsorted(self._keys, keys), 0, len(self._keys) - 1)
        hit = self._keys[pos] == keys
        below, above = hit & (low < self._low[pos]), hit & (high > self._high[pos])
        for seg, col in zip(*np.nonzero(below | above)):
            v = self._vars[int(pos[seg, col])]
            value = float(low[seg, col] if below[seg, col] else high[seg, col])
            lo, hi = self._low[pos[seg, col]], self._high[pos[seg, col]]
            row = int(row_of_group[g[seg]])
            client, server = block.names[int(block.pair[row])][:2]
            ws = int(block.widx[row]) * block.window_ns / 1e9
            distance = (lo - value if value < lo else value - hi) / max(v.high - v.low, 1.0)
            found.setdefault((ws, client, server, int(block.unit[row])), []).append(
                (float(distance), f"{v.table}_{v.address}", value, v))

    def _fresh(self, fact: tuple[str, int, str, float | None], ws: float) -> bool:
        """A register out of range is a state: reported once (by its first reader), again after ``realert_s``
        only; for a register that held still while learning, a new value (another write) is news at once."""
        last = self._facts.get(fact)
        if last is not None and 0 <= ws - last < self.realert_s:
            return False
        self._facts[fact] = ws
        return True

    def _forget_old(self) -> None:
        """Keep the last hours of window time only (memory stays flat on a months-long run)."""
        if len(self._reported) > 10000:
            newest = max(k[0] for k in self._reported)
            self._reported = {k for k in self._reported if k[0] >= newest - 3600}
        if len(self._facts) > 10000:
            newest = max(self._facts.values())
            self._facts = {k: t for k, t in self._facts.items() if t >= newest - self.realert_s}

    def _alert(self, key: tuple[float, str, str, int], hits: list) -> Alert:
        ws, client, server, unit = key
        worst: dict[str, tuple[float, str, float, ProcessVariable]] = {}
        for h in sorted(hits, key=lambda h: (-h[0], h[1])):
            worst.setdefault(h[1], h)
        registers = list(worst.values())
        distance, _, value, v = registers[0]
        more = f" and {len(registers) - 1} more register(s)" if len(registers) > 1 else ""
        text = (f"{server} unit {unit} answered {client}'s read of {v.table.replace('_', ' ')} {v.address} with "
                f"{value:g}, far outside anything it held while learning ({v.low:g}-{v.high:g}, typically changing "
                f"by {v.typical_change:g} per poll){more}: the process was driven outside what it ever did")
        evidence = tuple(FeatureEvidence(name, val, var.low, var.high, 1.0) for _, name, val, var in
                         registers[:MAX_EVIDENCE])
        declared = rule(RULE_ID)
        tech = declared.technique_for()
        codes = tuple(sorted({3 if r[3].table == "holding_register" else 4 for r in registers}))
        return Alert(id=alert_id(ws, ws + self.window_s, client, server, unit, RULE_ID), rule_id=RULE_ID,
                     rule_name=declared.name, category="policy", detector="policy", severity="high",
                     risk_score=RISK_SCORES["high"], score=round(float(distance), 4), threshold=0.0,
                     window_start=ws, window_end=ws + self.window_s, client_ip=client, server_ip=server,
                     unit_id=unit, explanation=text, evidence=evidence, function_codes=codes,
                     technique_id=tech.id if tech else "")


def _key(sid, table, address):
    """One integer per (server and unit, table, address): sortable, so lookups are one searchsorted."""
    return (np.asarray(sid, dtype=np.int64) << 20) | (np.asarray(table, dtype=np.int64) << 17) | \
        np.asarray(address, dtype=np.int64)
