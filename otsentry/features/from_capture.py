"""Capture file -> FeatureWindows, streaming (collector, flow observer and windower wired together)."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

from otsentry.collectors.collector import Collector, CollectorConfig, CollectorStats
from otsentry.collectors.source import CaptureRun
from otsentry.features.closed import ClosedWindows
from otsentry.features.windows import Windower
from otsentry.records import FeatureWindow

__all__ = ["closed_from_capture", "window_batches_from_capture", "windows_from_capture"]


def window_batches_from_capture(path: str | Path, window_s: float = 10.0, config: CollectorConfig | None = None, *,
                                lateness_s: float = 5.0, chunk_bytes: int | None = None,
                                windower: Windower | None = None,
                                stats_out: list[CollectorStats] | None = None) -> Iterator[list[FeatureWindow]]:
    """Decode a capture and yield its windows in the groups in which they close (see ``closed_from_capture``)."""
    for closed in closed_from_capture(path, window_s, config, lateness_s=lateness_s, chunk_bytes=chunk_bytes,
                                      windower=windower, stats_out=stats_out):
        yield closed.windows()


def closed_from_capture(path: str | Path, window_s: float = 10.0, config: CollectorConfig | None = None, *,
                        lateness_s: float = 5.0, chunk_bytes: int | None = None, windower: Windower | None = None,
                        stats_out: list[CollectorStats] | None = None,
                        defer_values: bool = False) -> Iterator[ClosedWindows]:
    """Decode a capture and yield its windows in the groups in which they close (memory stays flat).

    Detectors score a group at a time (models are much faster on a matrix than row by row), and a group is never
    held back waiting for more. The lateness is raised to the collector's pairing timeout when shorter: an
    unanswered request is only reported that long after it started, and would otherwise arrive after its window
    closed. Pass ``windower`` to read its ``stats`` afterwards (its window and lateness then win over the arguments),
    and ``stats_out`` to get the collector's live ``CollectorStats`` appended (a daemon's packet counter).
    """
    config = config or CollectorConfig()
    if windower is None:
        windower = Windower(window_s, max(lateness_s, config.pairing_timeout_s), server_ports=config.server_ports,
                            defer_values=defer_values)
    run = CaptureRun(Path(path), config)
    # CaptureRun builds a plain Collector; swap in one that feeds the windower's flow observer.
    run.collector = Collector(config, observers=(windower.observer,))
    run.conns, run.stats = run.collector.conns, run.collector.stats
    if stats_out is not None:
        stats_out.append(run.stats)
    if chunk_bytes is not None:
        run.chunk_bytes = chunk_bytes
    for batch in run:
        closed = windower.push_closed(batch, run.conns)
        if len(closed):
            yield closed
    last = windower.flush_closed()
    if len(last):
        yield last


def windows_from_capture(path: str | Path, window_s: float = 10.0, config: CollectorConfig | None = None,
                         **kwargs) -> Iterator[FeatureWindow]:
    """The windows of ``window_batches_from_capture`` one by one."""
    for group in window_batches_from_capture(path, window_s, config, **kwargs):
        yield from group


