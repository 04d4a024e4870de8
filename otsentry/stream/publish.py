"""The collector stage over a transport: capture (file or interface) -> FeatureWindows -> ``otsentry.features``.

Windows are computed exactly as in ``otsentry run`` (``window_batches_from_capture`` / ``Windower``), keyed by
asset pair, and published group by group as they close. After each group is acknowledged, a watermark record
goes to every partition (see ``codec`` and ``ordering`` for why); a start watermark opens the stream and a final
one closes it when the capture ends. A stop request (SIGTERM) ends a replay between groups: what was published is
flushed, no final watermark is sent (the capture was not finished), and detectors stop waiting for this source
after their ``max_hold_s``.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from otsentry.collectors.collector import CollectorConfig, CollectorStats
from otsentry.contracts.windows import partition_key
from otsentry.records import FeatureWindow
from otsentry.stream.codec import Watermark, encode_watermark, encode_window
from otsentry.stream.delivery.outbox import Outbox
from otsentry.stream.kafka import kafka_transport
from otsentry.stream.runtime.daemon import Daemon, StopSignal, StreamSettings
from otsentry.stream.runtime.metrics import Metrics
from otsentry.stream.runtime.retry import Stopped
from otsentry.stream.transport import Publisher

__all__ = ["PublishStats", "WindowPublisher", "default_source", "publish_captures", "publish_live", "run_collector"]

log = logging.getLogger("otsentry.stream")


def default_source(what: str) -> str:
    """Watermark source name: stable across restarts of the same collector, distinct between collectors."""
    return f"{socket.gethostname()}/{what}"


@dataclass
class PublishStats:
    windows: int = 0
    groups: int = 0
    packets: int = 0
    finished: bool = False  # the capture was read to its end (final watermark sent)
    stop_reason: str = ""
    health: str = ""  # live capture: drops and parser health, for the last line


class WindowPublisher:
    """Publishes groups of windows and the watermarks that follow them."""

    def __init__(self, outbox: Outbox, topic: str, source: str, metrics: Metrics | None = None) -> None:
        self.outbox = outbox
        self.topic = topic
        self.source = source
        self.metrics = metrics or outbox.metrics
        self.stats = PublishStats()
        self.watermark = 0.0
        self._partitions: list[int] | None = None

    def start(self) -> None:
        """Open the stream: detectors hold this source's windows until its next watermark."""
        self._mark(0.0, final=False)
        if not self.outbox.flush():
            raise Stopped("stopped before the broker acknowledged the start watermark")

    def publish(self, windows: Sequence[FeatureWindow]) -> None:
        """Send one closed group; returns when the broker acknowledged it and its watermark is queued."""
        if not windows:
            return
        for w in windows:
            self.outbox.send(self.topic, encode_window(w), key=partition_key(w))
        if not self.outbox.flush():  # watermarks only after the windows they cover are in the log
            raise Stopped("stopped while the broker was not acknowledging")
        self.stats.windows += len(windows)
        self.stats.groups += 1
        self.metrics.inc("otsentry_windows_published_total", len(windows))
        self.watermark = max(self.watermark, max(w.window_end for w in windows))
        self._mark(self.watermark, final=False)

    def finish(self, deadline: float | None = None) -> bool:
        """End of capture: the final watermark, then wait for every acknowledgement."""
        self._mark(self.watermark, final=True)
        self.stats.finished = True
        return self.outbox.flush(deadline)

    def _mark(self, watermark: float, final: bool) -> None:
        if self._partitions is None:
            self._partitions = sorted(self.outbox.publisher.partitions(self.topic))
        value = encode_watermark(Watermark(self.source, watermark, final))
        for p in self._partitions:
            self.outbox.send(self.topic, value, partition=p)


def publish_captures(paths: Sequence[Path], publisher: WindowPublisher, window_s: float,
                     config: CollectorConfig | None = None, stop: threading.Event | None = None,
                     chunk_bytes: int | None = None) -> PublishStats:
    """Replay capture files into the features topic; stops between groups when ``stop`` is set.

    ``chunk_bytes`` (default 8 MiB) sets how much capture is decoded per step, hence how many windows a group
    holds: smaller chunks mean more, smaller acknowledged groups and watermarks (tests, paced replays)."""
    from otsentry.features.from_capture import window_batches_from_capture

    stop = stop or threading.Event()
    stats = publisher.stats
    publisher.start()
    packets_before = 0
    for path in paths:
        live: list[CollectorStats] = []
        for group in window_batches_from_capture(path, window_s, config, stats_out=live, chunk_bytes=chunk_bytes):
            _count_packets(publisher.metrics, live, packets_before, stats)
            if stop.is_set():
                stats.stop_reason = "stopped"
                return stats
            publisher.publish(group)
        _count_packets(publisher.metrics, live, packets_before, stats)
        packets_before = stats.packets
    if stop.is_set():
        stats.stop_reason = "stopped"
        return stats
    publisher.finish()
    stats.stop_reason = "end"
    return stats


def _count_packets(metrics: Metrics, live: list[CollectorStats], before: int, stats: PublishStats) -> None:
    if live:
        now = before + live[0].packets
        metrics.inc("otsentry_packets_total", now - stats.packets)
        stats.packets = now


def publish_live(iface: str, publisher: WindowPublisher, window_s: float, config: CollectorConfig | None = None,
                 *, bpf: str | None = None, count: int | None = None, duration_s: float | None = None,
                 stop: threading.Event | None = None, stop_timeout_s: float = 10.0, ring=None):
    """Capture ``iface`` and publish its windows as they close (on traffic and on the wall clock).

    Returns the LiveCapture (its stats and stop reason). ``stop`` (set by the daemon's signal handler) also ends
    the capture; the windows still open are then closed, published, and the final watermark sent within
    ``stop_timeout_s``.
    """
    from otsentry.collectors.live import LiveCapture
    from otsentry.features.windows import Windower

    config = config or CollectorConfig()
    stop = stop or threading.Event()
    windower = Windower(window_s, config.pairing_timeout_s, server_ports=config.server_ports)
    capture = LiveCapture(iface, config, bpf=bpf, count=count, duration_s=duration_s,
                          observers=(windower.observer,), handle_signals=False, ring=ring)
    metrics = publisher.metrics
    health_due = 0.0
    watcher = threading.Thread(target=lambda: (stop.wait(), capture.stop()), name="otsentry-stop", daemon=True)
    with capture:
        watcher.start()
        publisher.start()
        log.info("capturing on %s (filter: %s)", iface, capture.bpf or "none",
                 extra={"fields": {"event": "capturing", "iface": iface}})
        seen = 0
        for batch in capture:
            metrics.inc("otsentry_packets_total", capture.captured - seen)
            seen = capture.captured
            if time.monotonic() >= health_due:  # at most once a second: it walks every stream's state
                metrics.set_health(capture.health())
                health_due = time.monotonic() + 1.0
            closed = windower.push(batch, capture.conns) + windower.tick(time.time())
            if closed:
                publisher.publish(closed)
    last = windower.flush()
    deadline = time.monotonic() + stop_timeout_s if stop.is_set() else None
    if last:
        for w in last:
            publisher.outbox.send(publisher.topic, encode_window(w), key=partition_key(w))
        if publisher.outbox.flush(deadline):
            publisher.stats.windows += len(last)
            metrics.inc("otsentry_windows_published_total", len(last))
            publisher.watermark = max(publisher.watermark, max(w.window_end for w in last))
    publisher.finish(deadline)
    publisher.stats.packets = capture.captured
    metrics.set_health(capture.health())
    publisher.stats.health = capture.health_line()
    return capture


def run_collector(paths: Sequence[Path] | None, settings: StreamSettings, collector: CollectorConfig, *,
                  iface: str | None = None, bpf: str | None = None, count: int | None = None,
                  duration_s: float | None = None, make_publisher: Callable[[], Publisher] | None = None,
                  ensure: Callable[[Sequence[str]], Any] | None = None,
                  stop_signal: StopSignal | None = None, ring=None) -> tuple[PublishStats, Metrics]:
    """Publish the windows of capture files (``paths``) or of a live interface (``iface``) until done or stopped."""
    k, s = settings.kafka, settings.stream
    if make_publisher is None:
        make_publisher, _, ensure = kafka_transport(k)
    source = s.source or default_source(iface or "pcap")
    with Daemon("collector", settings, stop_signal) as d:
        log.info("collector %s publishing %s-second windows to %s on %s", source, f"{s.window_s:g}", k.features_topic,
                 k.bootstrap or "the in-process transport", extra={"fields": {"event": "start", "source": source}})
        stats = PublishStats()
        publisher: Publisher | None = None
        outbox: Outbox | None = None
        try:
            d.ensure_topics(ensure, [k.features_topic])
            publisher = d.retry("connecting", make_publisher)
            outbox = d.outbox(publisher)
            out = WindowPublisher(outbox, k.features_topic, source, d.metrics)
            stats = out.stats
            if iface is not None:
                capture = publish_live(iface, out, s.window_s, collector, bpf=bpf, count=count,
                                       duration_s=duration_s, stop=d.stop,
                                       stop_timeout_s=settings.daemon.stop_timeout_s, ring=ring)
                stats.stop_reason = d.signals.signal_name or capture.stop_reason or "end"
            else:
                publish_captures(list(paths or ()), out, s.window_s, collector, d.stop)
                if d.stop.is_set():
                    stats.stop_reason = d.signals.signal_name or "stopped"
        except Stopped:
            stats.stop_reason = d.signals.signal_name or "stopped"
        finally:
            if publisher is not None:
                deadline = time.monotonic() + settings.daemon.stop_timeout_s
                if outbox is not None and not outbox.flush(deadline):
                    log.warning("%d record(s) not acknowledged within %.0f s of stopping: lost from this run",
                                outbox.in_flight, settings.daemon.stop_timeout_s)
                publisher.close(max(0.0, deadline - time.monotonic()))
        health = f"; {stats.health}" if stats.health else ""
        log.info("collector done (%s): %d packets, %d windows published%s", stats.stop_reason, stats.packets,
                 stats.windows, health,
                 extra={"fields": {"event": "done", "packets": stats.packets, "windows": stats.windows,
                                   "reason": stats.stop_reason,
                                   "kernel_drops": d.metrics.get("otsentry_capture_kernel_drops_total")}})
        return stats, d.metrics
