"""Event-time ordering of windows read from several partitions, driven by the collectors' watermarks.

Why: the policy baseline reports a fact (a new talker, a new pair...) on the first window that shows it and then
rate-limits it. In one process windows come in time order; from Kafka, a worker reads partitions in whatever order
the fetches return, so the flow window of a new talker could be scored before its pair window of the same 10 s
and the alert would get another id. The buffer holds windows until every assigned partition's watermark has passed
their end, then releases them in time order: the same windows in the same order as ``otsentry run``, whatever the
partitioning, and so the same alerts.

Watermarks come from ``codec.Watermark`` records that each collector (``source``) writes to every partition after
the windows it published. A partition's watermark is the lowest of its active sources'; a source that said
``final`` no longer holds anything back. A window waits at most ``max_hold_s`` of wall time (a collector that died
without a final watermark must not stall detection forever) and at most ``max_buffered`` windows are held;
beyond that the oldest are released early and counted as *forced*. Windows arriving after their time has been
released are scored at once and counted as *late*. Copies of a window already held (a producer's retry) are
dropped.

Offsets: a partition may only be committed up to its oldest held window; the commit carries the partition's
watermarks as metadata, so a worker that takes the partition over (restart, rebalance) knows them at once.
"""

from __future__ import annotations

import heapq
import itertools
import json
import math
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Callable

from otsentry.contracts.windows import window_identity, window_order
from otsentry.records import FeatureWindow
from otsentry.stream.codec import Watermark
from otsentry.stream.transport import TopicPartition

__all__ = ["EventTimeBuffer", "Held", "MAX_METADATA_CHARS"]

MAX_METADATA_CHARS = 3500  # Kafka's offset.metadata.max.bytes defaults to 4096


@dataclass
class Held:
    tp: TopicPartition
    offset: int
    window: FeatureWindow
    since: float
    seq: int
    done: bool = False


@dataclass
class _Partition:
    sources: dict[str, tuple[float, bool]] = field(default_factory=dict)
    next_offset: int | None = None
    held: deque[Held] = field(default_factory=deque)  # arrival (= offset) order

    def watermark(self) -> float | None:
        active = [wm for wm, final in self.sources.values() if not final]
        if active:
            return min(active)
        return math.inf if self.sources else None

    def metadata(self) -> str:
        # Trimmed (rarely: dozens of collectors) by dropping finished sources first, then the oldest.
        items = sorted(self.sources.items(), key=lambda kv: (kv[1][1], -kv[1][0]))
        while True:
            text = json.dumps({"wm": {s: [wm, final] for s, (wm, final) in items}}, separators=(",", ":"))
            if len(text) <= MAX_METADATA_CHARS or not items:
                return text
            items = items[:-1]


class EventTimeBuffer:
    def __init__(self, max_hold_s: float = 30.0, max_buffered: int = 50000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.max_hold_s = max_hold_s
        self.max_buffered = max_buffered
        self.clock = clock
        self._parts: dict[TopicPartition, _Partition] = {}
        self._by_end: list[tuple[float, int, Held]] = []
        self._arrival: deque[Held] = deque()
        self._ids: dict[tuple, Held] = {}
        self._seq = itertools.count()
        self.held = 0
        self.released_upto = -math.inf  # largest window end released so far
        self.late = self.forced = self.duplicates = 0

    # -- partitions ----------------------------------------------------------------------------------------------

    def assign(self, tp: TopicPartition, metadata: str | None = None) -> None:
        part = self._parts.setdefault(tp, _Partition())
        if metadata:
            try:
                for source, (wm, final) in json.loads(metadata).get("wm", {}).items():
                    part.sources.setdefault(str(source), (float(wm), bool(final)))
            except (ValueError, TypeError, AttributeError):
                pass  # metadata written by something else: the next watermark records rebuild it

    def revoke(self, tp: TopicPartition) -> None:
        """Forget a partition (another worker reads it from the last commit): its held windows are dropped."""
        part = self._parts.pop(tp, None)
        if part is None:
            return
        for h in part.held:
            if not h.done:
                self._drop(h)

    def partitions(self) -> list[TopicPartition]:
        return list(self._parts)

    # -- input ---------------------------------------------------------------------------------------------------

    def add_watermark(self, tp: TopicPartition, offset: int, mark: Watermark) -> None:
        part = self._parts.setdefault(tp, _Partition())
        part.sources[mark.source] = (mark.watermark, mark.final)
        part.next_offset = offset + 1

    def skip(self, tp: TopicPartition, offset: int) -> None:
        """A record that is not a window (malformed, dead-lettered): only the offset moves."""
        self._parts.setdefault(tp, _Partition()).next_offset = offset + 1

    def add_window(self, tp: TopicPartition, offset: int, w: FeatureWindow) -> None:
        part = self._parts.setdefault(tp, _Partition())
        part.next_offset = offset + 1
        ident = window_identity(w)
        if ident in self._ids:
            self.duplicates += 1
            return
        if w.window_end <= self.released_upto:
            self.late += 1
        h = Held(tp, offset, w, self.clock(), next(self._seq))
        self._ids[ident] = h
        part.held.append(h)
        heapq.heappush(self._by_end, (w.window_end, h.seq, h))
        self._arrival.append(h)
        self.held += 1

    # -- output --------------------------------------------------------------------------------------------------

    def frontier(self) -> float:
        """Windows ending at or before this are complete on every assigned partition (-inf: unknown)."""
        marks = [p.watermark() for p in self._parts.values()]
        if not marks or any(m is None for m in marks):
            return -math.inf
        return min(marks)  # type: ignore[type-var]

    def release(self) -> list[FeatureWindow]:
        """Windows ready to score, in time order: complete, held too long, or beyond the buffer limit."""
        frontier = self.frontier()
        out: list[Held] = []
        while self._by_end and (self._by_end[0][2].done or self._by_end[0][0] <= frontier):
            _, _, h = heapq.heappop(self._by_end)
            if not h.done:
                out.append(self._take(h))
        now = self.clock()
        while self._arrival and (self._arrival[0].done or now - self._arrival[0].since >= self.max_hold_s
                                 or self.held > self.max_buffered):
            h = self._arrival.popleft()
            if not h.done:
                self.forced += 1
                out.append(self._take(h))
        if out:
            self.released_upto = max(self.released_upto, max(h.window.window_end for h in out))
        out.sort(key=lambda h: window_order(h.window))
        return [h.window for h in out]

    def _take(self, h: Held) -> Held:
        self._drop(h)
        return h

    def _drop(self, h: Held) -> None:
        h.done = True
        self.held -= 1
        self._ids.pop(window_identity(h.window), None)

    def commit_position(self, tp: TopicPartition) -> tuple[int, str] | None:
        """``(offset, metadata)`` that may be committed for ``tp``: before its oldest held window."""
        part = self._parts.get(tp)
        if part is None or part.next_offset is None:
            return None
        while part.held and part.held[0].done:
            part.held.popleft()
        offset = part.held[0].offset if part.held else part.next_offset
        return offset, part.metadata()

    def ahead(self) -> set[TopicPartition]:
        """Partitions whose watermark is past the frontier: the ones to pause when the buffer is full."""
        frontier = self.frontier()
        marks = {tp: p.watermark() for tp, p in self._parts.items()}
        return {tp for tp, m in marks.items() if m is not None and m > frontier}
