"""The detector stage over a transport: ``otsentry.features`` -> scores -> ``otsentry.alerts``, as a group member.

One ``pipeline.Detection`` per worker scores the windows that each poll makes ready (``ordering`` releases them in
event time across the worker's partitions). Delivery is at-least-once:

1. poll, decode, buffer; 2. score what is ready and publish its alerts (key = alert id); 3. wait until the broker
acknowledged those alerts (and any dead-lettered records); 4. only then commit, per partition, the offset of the
oldest window not yet scored. A crash between 2 and 4 means the next owner scores those windows again and
publishes the same alerts again: alert ids are deterministic, so a consumer that keeps the last document per id
(Elasticsearch indexing by ``_id``, ``JsonlSink``) sees no duplicate. Copies on the topic itself are possible.

Per-worker state, and what follows: the policy baseline's re-alert suppression (a fact reported at most once an
hour) lives in the worker's ``Detection``. After a restart or a rebalance, a condition that persists can be
reported once more by the new owner (a new alert, with the id of the window it is seen in), and two workers do
not share suppression for a fact that shows on partitions of both (a new talker's pairs on two workers: each
reports it once). Nothing is lost; at most one reminder more per fact, worker and hour.

Malformed records (not JSON, another schema version, wrong fields) are counted, logged (the first ones, then every
1000th) and copied to the dead-letter topic with the reason in a header; the offset moves on: never a crash loop.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any, Callable, Protocol, Sequence

from otsentry.detectors.scoring import Detection
from otsentry.records import Alert, FeatureWindow
from otsentry.stream.codec import MalformedRecord, Watermark, decode_feature_record, encode_alert
from otsentry.stream.delivery.ordering import EventTimeBuffer
from otsentry.stream.delivery.outbox import Outbox
from otsentry.stream.kafka import kafka_transport
from otsentry.stream.runtime.daemon import Daemon, StopSignal, StreamSettings, serve
from otsentry.stream.runtime.membership import ConsumerMember
from otsentry.stream.runtime.metrics import Metrics
from otsentry.stream.runtime.retry import Backoff, StateLog, Stopped
from otsentry.stream.transport import Consumer, Message, Publisher, TopicPartition

__all__ = ["ConsumerFactory", "DetectorWorker", "Scorer", "run_detector"]

log = logging.getLogger("otsentry.stream")

ConsumerFactory = Callable[[], Consumer]


class Scorer(Protocol):
    """What the worker scores windows with (``otsentry.detectors.scoring.Detection`` over a bundle)."""

    def feed(self, windows: Sequence[FeatureWindow]) -> list[Alert]: ...


class DetectorWorker(ConsumerMember):
    """Consumes windows, scores them with ``scorer``, publishes alerts, commits after acknowledgement."""

    def __init__(self, make_consumer: ConsumerFactory, outbox: Outbox, scorer: Scorer, *, alerts_topic: str,
                 deadletter_topic: str = "", max_poll_records: int = 500, max_hold_s: float = 30.0,
                 max_buffered: int = 50000, metrics: Metrics | None = None, stop: threading.Event | None = None,
                 backoff: Backoff | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        self.outbox = outbox
        self.detection = scorer
        self.alerts_topic = alerts_topic
        self.deadletter_topic = deadletter_topic
        self.max_poll_records = max_poll_records
        self.metrics = metrics or outbox.metrics
        self.stop = stop or threading.Event()
        self.backoff = backoff or Backoff()
        self.buffer = EventTimeBuffer(max_hold_s, max_buffered, clock)
        self.state = StateLog("broker (consumer)")
        self.malformed = 0
        self.alerts_published = 0
        self.scored = 0
        self._committed: dict[TopicPartition, tuple[int, str]] = {}
        self._dirty = False
        self._paused: set[TopicPartition] = set()
        self.on_alerts: Callable[[list], None] | None = None  # tests: see what was scored
        self.consumer = make_consumer()

    # -- rebalances ----------------------------------------------------------------------------------------------

    def _reconcile(self) -> set[TopicPartition]:
        """Align the buffer with the current assignment (after each poll; see ``stream.kafka`` for why not in
        callbacks): revoked partitions are forgotten (their held windows are read again by the new owner from the
        last commit, which every step keeps current), new ones start from their committed watermarks."""
        assigned, revoked, added = self._follow_assignment(set(self.buffer.partitions()))
        for tp in revoked:
            self.buffer.revoke(tp)
            self._committed.pop(tp, None)
            self._paused.discard(tp)
        for tp in sorted(added):
            committed = self._committed_offset(tp)
            self.buffer.assign(tp, committed[1] if committed else None)
            if committed:
                self._committed[tp] = committed
        return assigned

    # -- main loop -----------------------------------------------------------------------------------------------

    def run(self) -> None:
        """Until ``stop`` is set; then flush, commit and close (bounded by the caller's watchdog)."""
        self.metrics.running = True
        try:
            while not self.stop.is_set():
                self.step()
        finally:
            self.metrics.running = False
            self.close()

    def _after_take(self, read: int) -> None:
        """score -> publish -> acknowledge -> commit."""
        self._score(self.buffer.release())
        self._flow_control()
        if self._dirty and self.outbox.flush():  # False only when stopping: close() flushes with a deadline
            self._commit()
        self._gauges()

    def _take(self, m: Message) -> None:
        tp = (m.topic, m.partition)
        try:
            record = decode_feature_record(m.value)
        except MalformedRecord as exc:
            self._malformed(m, str(exc))
            self.buffer.skip(tp, m.offset)
            self._dirty = True
            return
        if isinstance(record, Watermark):
            self.buffer.add_watermark(tp, m.offset, record)
        else:
            self.metrics.inc("otsentry_windows_consumed_total")
            self.buffer.add_window(tp, m.offset, record)
        self._dirty = True

    def _score(self, windows: list[FeatureWindow]) -> None:
        if not windows:
            return
        alerts = self.detection.feed(windows)
        for a in alerts:
            self.outbox.send(self.alerts_topic, encode_alert(a), key=a.id.encode())
        self.scored += len(windows)
        self.alerts_published += len(alerts)
        self.metrics.inc("otsentry_windows_scored_total", len(windows))
        self.metrics.inc("otsentry_alerts_published_total", len(alerts))
        if self.on_alerts is not None:
            self.on_alerts(alerts)
        self._dirty = True

    def _flow_control(self) -> None:
        """Bounded memory: with too many windows held, pause the partitions that are ahead of the frontier."""
        b = self.buffer
        if b.held > b.max_buffered // 2:
            ahead = b.ahead() - self._paused
            if ahead:
                self.consumer.pause(ahead)
                self._paused |= ahead
                log.info("pausing %d partition(s) ahead of the others (%d windows held)", len(ahead), b.held)
        elif self._paused:
            self.consumer.resume(self._paused)
            self._paused = set()

    def _commit(self) -> None:
        offsets = {}
        for tp in self.buffer.partitions():
            pos = self.buffer.commit_position(tp)
            if pos is not None and self._committed.get(tp) != pos:
                offsets[tp] = pos
        if not offsets:
            self._dirty = False
            return
        if not self._commit_offsets(offsets):  # not committed: the records are read again, alerts are idempotent
            return
        self._committed.update(offsets)
        self._dirty = False

    def _gauges(self) -> None:
        self._lag_gauge()
        self.metrics.set("otsentry_windows_buffered", self.buffer.held)
        b = self.buffer
        self.metrics.set("otsentry_windows_late_total", b.late)
        self.metrics.set("otsentry_windows_forced_total", b.forced)
        self.metrics.set("otsentry_windows_duplicate_total", b.duplicates)

    def _finish(self, deadline: float, timeout_s: float) -> None:
        """Flush alerts and commit; held windows are left for the next owner."""
        if self.outbox.flush(deadline):
            self._commit()
        else:
            log.warning("alerts not acknowledged within %.0f s: offsets not committed (they are read again)",
                        timeout_s)


def run_detector(bundle: object, settings: StreamSettings, *, make_publisher: Callable[[], Publisher] | None = None,
                 make_consumer: Callable[[int], Consumer] | None = None,
                 ensure: Callable[[Sequence[str]], Any] | None = None, stop_signal: StopSignal | None = None,
                 until_idle_s: float | None = None) -> tuple[DetectorWorker | None, Metrics]:
    """A detector worker until stopped (or, with ``until_idle_s``, until nothing arrived for that long)."""
    k, s = settings.kafka, settings.stream
    if make_publisher is None or make_consumer is None:
        make_publisher, make_consumer, ensure = kafka_transport(k)
    worker: DetectorWorker | None = None
    with Daemon("detector", settings, stop_signal) as d:
        log.info("detector worker in group %s: %s -> %s", k.group, k.features_topic, k.alerts_topic,
                 extra={"fields": {"event": "start", "group": k.group}})
        try:
            topics = [k.features_topic, k.alerts_topic] + ([k.deadletter_topic] if k.deadletter_topic else [])
            d.ensure_topics(ensure, topics)
            publisher = d.retry("connecting (producer)", make_publisher)
            outbox = d.outbox(publisher)
            worker = d.retry("connecting (consumer)",
                             lambda: DetectorWorker(lambda: make_consumer(s.max_poll_records), outbox, Detection(bundle),
                                                    alerts_topic=k.alerts_topic, deadletter_topic=k.deadletter_topic,
                                                    max_poll_records=s.max_poll_records, max_hold_s=s.max_hold_s,
                                                    max_buffered=s.max_buffered_windows, metrics=d.metrics,
                                                    stop=d.stop, backoff=d.backoff))
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
