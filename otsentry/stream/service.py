"""The daemons, wired: ``otsentry collect ... --kafka`` and ``otsentry detect --kafka`` call these.

Each sets up what a long-running process needs around a stage (``stream.collector`` or ``stream.worker``): signal
handling with a bounded stop, the broker connection retried with backoff (logged once per state change), topics
created when missing, the ``/healthz`` + ``/metrics`` endpoint, and a one-line summary at the end. The transport
is a parameter (``make_publisher``/``make_consumer``), so tests can run the very same function in one process.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence, TypeVar

from otsentry.collectors.collector import CollectorConfig
from otsentry.detectors.scoring import Detection
from otsentry.stream.collector import PublishStats, WindowPublisher, default_source, publish_captures, publish_live
from otsentry.stream.daemon import Backoff, StateLog, StopSignal
from otsentry.stream.metrics import Metrics, MetricsServer
from otsentry.stream.outbox import Outbox, Stopped
from otsentry.stream.settings import DaemonConfig, KafkaConfig, StreamConfig
from otsentry.stream.transport import Consumer, Publisher, TransportError
from otsentry.stream.worker import DetectorWorker

log = logging.getLogger("otsentry.stream")
T = TypeVar("T")


@dataclass(frozen=True)
class StreamSettings:
    kafka: KafkaConfig
    stream: StreamConfig
    daemon: DaemonConfig


def kafka_transport(kafka: KafkaConfig) -> tuple[Callable[[], Publisher], Callable[[int], Consumer],
                                                  Callable[[Sequence[str]], Any]]:
    """Factories of the Kafka transport (imported lazily: kafka-python is only needed with --kafka)."""
    from otsentry.stream.kafka import KafkaGroupConsumer, KafkaPublisher, ensure_topics

    return (lambda: KafkaPublisher(kafka),
            lambda max_poll: KafkaGroupConsumer(kafka, [kafka.features_topic], max_poll),
            lambda topics: ensure_topics(kafka, topics))


def serve(stop: threading.Event, step: Callable[[], object], until_idle_s: float | None) -> bool:
    """Call ``step`` (truthy: something was read or is pending) until ``stop`` is set or, with ``until_idle_s``,
    until it was falsy for that long; True when it ended by idling (the daemons' main loop)."""
    idle_since = time.monotonic()
    while not stop.is_set():
        if step():
            idle_since = time.monotonic()
        elif until_idle_s is not None and time.monotonic() - idle_since >= until_idle_s:
            return True
    return False


def retry(what: str, fn: Callable[[], T], stop: threading.Event, backoff: Backoff, state: StateLog,
          metrics: Metrics) -> T:
    """``fn()`` until it succeeds (TransportError: wait the next backoff delay); raises Stopped if stopped first."""
    while True:
        try:
            result = fn()
        except TransportError as exc:
            metrics.inc("otsentry_errors_total")
            metrics.broker_up = False
            state.set("down", f"{what}: {exc}; retrying with backoff")
            if backoff.wait(stop):
                raise Stopped(f"stopped while waiting for the broker ({what})") from None
            continue
        backoff.reset()
        metrics.broker_up = True
        state.set("up")
        return result


class _Daemon:
    """Signals, metrics endpoint and backoff shared by both roles."""

    def __init__(self, role: str, settings: StreamSettings, stop_signal: StopSignal | None) -> None:
        d = settings.daemon
        self.settings = settings
        self.metrics = Metrics(role)
        self.signals = stop_signal or StopSignal(d.stop_timeout_s)
        self.stop = self.signals.stop
        self.backoff = Backoff(d.backoff_initial_s, d.backoff_max_s)
        self.state = StateLog("broker")
        self.server = MetricsServer(self.metrics, d.metrics_host, d.metrics_port).start() if d.metrics_port else None

    def __enter__(self) -> "_Daemon":
        self.signals.install()
        self.metrics.running = True
        return self

    def __exit__(self, *exc: object) -> None:
        self.metrics.running = False
        self.signals.restore()
        if self.server is not None:
            self.server.close()

    def outbox(self, publisher: Publisher) -> Outbox:
        return Outbox(publisher, max_in_flight=self.settings.stream.max_in_flight, backoff=self.backoff,
                      stop=self.stop, metrics=self.metrics, state=self.state)


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
    with _Daemon("collector", settings, stop_signal) as d:
        log.info("collector %s publishing %s-second windows to %s on %s", source, f"{s.window_s:g}", k.features_topic,
                 k.bootstrap or "the in-process transport", extra={"fields": {"event": "start", "source": source}})
        stats = PublishStats()
        publisher: Publisher | None = None
        outbox: Outbox | None = None
        try:
            if ensure is not None:
                retry("creating topics", lambda: ensure([k.features_topic]), d.stop, d.backoff, d.state, d.metrics)
            publisher = retry("connecting", make_publisher, d.stop, d.backoff, d.state, d.metrics)
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


def run_detector(bundle: object, settings: StreamSettings, *, make_publisher: Callable[[], Publisher] | None = None,
                 make_consumer: Callable[[int], Consumer] | None = None,
                 ensure: Callable[[Sequence[str]], Any] | None = None, stop_signal: StopSignal | None = None,
                 until_idle_s: float | None = None) -> tuple[DetectorWorker | None, Metrics]:
    """A detector worker until stopped (or, with ``until_idle_s``, until nothing arrived for that long)."""
    k, s = settings.kafka, settings.stream
    if make_publisher is None or make_consumer is None:
        make_publisher, make_consumer, ensure = kafka_transport(k)
    worker: DetectorWorker | None = None
    with _Daemon("detector", settings, stop_signal) as d:
        log.info("detector worker in group %s: %s -> %s", k.group, k.features_topic, k.alerts_topic,
                 extra={"fields": {"event": "start", "group": k.group}})
        try:
            if ensure is not None:
                topics = [k.features_topic, k.alerts_topic] + ([k.deadletter_topic] if k.deadletter_topic else [])
                retry("creating topics", lambda: ensure(topics), d.stop, d.backoff, d.state, d.metrics)
            publisher = retry("connecting (producer)", make_publisher, d.stop, d.backoff, d.state, d.metrics)
            outbox = d.outbox(publisher)
            worker = retry("connecting (consumer)",
                           lambda: DetectorWorker(lambda: make_consumer(s.max_poll_records), outbox, Detection(bundle),
                                                  alerts_topic=k.alerts_topic, deadletter_topic=k.deadletter_topic,
                                                  max_poll_records=s.max_poll_records, max_hold_s=s.max_hold_s,
                                                  max_buffered=s.max_buffered_windows, metrics=d.metrics,
                                                  stop=d.stop, backoff=d.backoff),
                           d.stop, d.backoff, d.state, d.metrics)
            serve(d.stop, lambda: worker.step() or worker.buffer.held, until_idle_s)
        except Stopped:
            pass
        finally:
            if worker is not None:
                worker.close(settings.daemon.stop_timeout_s)
        if worker is not None:
            log.info("detector done: %d windows scored, %d alerts published, %d unreadable records",
                     worker.scored, worker.alerts_published, worker.malformed,
                     extra={"fields": {"event": "done", "scored": worker.scored,
                                       "alerts": worker.alerts_published, "malformed": worker.malformed}})
        return worker, d.metrics
