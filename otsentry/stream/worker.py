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
from typing import Callable, Iterable, Protocol, Sequence

from otsentry.records import Alert, FeatureWindow
from otsentry.stream.codec import MalformedRecord, Watermark, decode_feature_record, encode_alert
from otsentry.stream.daemon import Backoff, StateLog
from otsentry.stream.metrics import Metrics
from otsentry.stream.ordering import EventTimeBuffer
from otsentry.stream.outbox import Outbox
from otsentry.stream.transport import Consumer, Message, TopicPartition, TransportError

log = logging.getLogger("otsentry.stream")

ConsumerFactory = Callable[[], Consumer]
LOG_FIRST_MALFORMED = 10
POLL_TIMEOUT_S = 0.5  # longest wait in poll: how soon a stop request is noticed


class Scorer(Protocol):
    """What the worker scores windows with (``otsentry.detectors.scoring.Detection`` over a bundle)."""

    def feed(self, windows: Sequence[FeatureWindow]) -> list[Alert]: ...


class ConsumerMember:
    """What every consumer-group daemon does alike: unreadable records, and the broker's state for logs and metrics.

    Subclasses set ``consumer``, ``outbox`` (or None), ``deadletter_topic``, ``metrics``, ``state``, ``backoff`` and
    ``malformed``.
    """

    consumer: Consumer
    outbox: Outbox | None
    deadletter_topic: str
    metrics: Metrics
    state: StateLog
    backoff: Backoff
    stop: threading.Event
    max_poll_records: int
    malformed: int

    def _reconcile(self) -> set[TopicPartition]:
        """Follow the assignment after a poll; returns the partitions assigned now."""
        raise NotImplementedError

    def _poll(self, timeout_s: float) -> tuple[int, list[Message]] | None:
        """One poll: (records read, those of partitions still assigned); None after a broker error (and one backoff
        step), when the rest of the cycle is skipped."""
        self.metrics.beat()
        try:
            messages = self.consumer.poll(timeout_s, self.max_poll_records)
        except TransportError as exc:
            self._broker_down(exc)
            self.backoff.wait(self.stop)
            return None
        self._observe_connection()
        assigned = self._reconcile()
        # a record fetched just before its partition was revoked is its new owner's
        return len(messages), [m for m in messages if (m.topic, m.partition) in assigned]

    def _malformed(self, m: Message, reason: str) -> None:
        """Counted, logged (the first few, then every 1000th), copied to the dead-letter topic when there is one."""
        self.malformed += 1
        self.metrics.inc("otsentry_malformed_records_total")
        where = f"{m.topic}/{m.partition}@{m.offset}"
        if self.malformed <= LOG_FIRST_MALFORMED or self.malformed % 1000 == 0:
            dest = f"copied to {self.deadletter_topic}" if self.deadletter_topic else "skipped"
            log.warning("unreadable record %s: %s; %s (%d so far)", where, reason, dest, self.malformed,
                        extra={"fields": {"event": "malformed_record", "where": where, "reason": reason}})
        if self.outbox is not None and self.deadletter_topic:
            headers = [("otsentry.error", reason.encode()), ("otsentry.source", where.encode())]
            self.outbox.send(self.deadletter_topic, m.value or b"", key=m.key, headers=headers)
            self.metrics.inc("otsentry_deadletter_total")

    def _broker_down(self, exc: BaseException) -> None:
        self.metrics.inc("otsentry_errors_total")
        self.metrics.broker_up = False
        self.state.set("down", f"{type(exc).__name__}: {str(exc)[:120]}")

    def _observe_connection(self) -> None:
        up = self.consumer.connected()
        if up is None:
            return
        self.metrics.broker_up = up
        if up:
            self.backoff.reset()
        self.state.set("up" if up else "down", "" if up else "no connection to any broker; retrying")


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
        self._closed = False
        self.on_alerts: Callable[[list], None] | None = None  # tests: see what was scored
        self.consumer = make_consumer()

    # -- rebalances ----------------------------------------------------------------------------------------------

    def _reconcile(self) -> set[TopicPartition]:
        """Align the buffer with the current assignment (after each poll; see ``stream.kafka`` for why not in
        callbacks): revoked partitions are forgotten (their held windows are read again by the new owner from the
        last commit, which every step keeps current), new ones start from their committed watermarks."""
        assigned = self.consumer.assignment()
        known = set(self.buffer.partitions())
        revoked, added = known - assigned, assigned - known
        for tp in revoked:
            self.buffer.revoke(tp)
            self._committed.pop(tp, None)
            self._paused.discard(tp)
        for tp in sorted(added):
            try:
                committed = self.consumer.committed(tp)
            except TransportError:
                committed = None
            self.buffer.assign(tp, committed[1] if committed else None)
            if committed:
                self._committed[tp] = committed
        if revoked:
            log.info("revoked %d partition(s): %s", len(revoked), _names(revoked),
                     extra={"fields": {"event": "revoked", "partitions": _names(revoked)}})
        if added:
            log.info("assigned %d partition(s): %s", len(added), _names(added),
                     extra={"fields": {"event": "assigned", "partitions": _names(added)}})
        self.metrics.set("otsentry_assigned_partitions", len(assigned))
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

    def step(self, timeout_s: float = POLL_TIMEOUT_S) -> int:
        """One poll -> score -> publish -> acknowledge -> commit cycle; returns the number of records read."""
        polled = self._poll(timeout_s)
        if polled is None:
            return 0
        read, messages = polled
        for m in messages:
            self._take(m)
        self._score(self.buffer.release())
        self._flow_control()
        if self._dirty and self.outbox.flush():  # False only when stopping: close() flushes with a deadline
            self._commit()
        self._gauges()
        return read

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
        try:
            self.consumer.commit(offsets)
        except TransportError as exc:
            self._broker_down(exc)  # not committed: the records are read again, alerts are idempotent
            return
        self._committed.update(offsets)
        self._dirty = False
        self.metrics.inc("otsentry_commits_total")

    def _gauges(self) -> None:
        try:
            lag = self.consumer.lag()
        except TransportError:
            lag = None
        if lag is not None:
            self.metrics.set("otsentry_consumer_lag", lag)
        self.metrics.set("otsentry_windows_buffered", self.buffer.held)
        b = self.buffer
        self.metrics.set("otsentry_windows_late_total", b.late)
        self.metrics.set("otsentry_windows_forced_total", b.forced)
        self.metrics.set("otsentry_windows_duplicate_total", b.duplicates)

    def close(self, timeout_s: float = 10.0) -> None:
        """Flush alerts, commit, leave the group. Safe to call twice; held windows are left for the next owner."""
        if self._closed:
            return
        self._closed = True
        deadline = time.monotonic() + timeout_s
        try:
            if self.outbox.flush(deadline):
                self._commit()
            else:
                log.warning("alerts not acknowledged within %.0f s: offsets not committed (they are read again)",
                            timeout_s)
        finally:
            self.consumer.close()
            self.outbox.publisher.close(max(0.0, deadline - time.monotonic()))


def _names(tps: Iterable[TopicPartition]) -> str:
    return ",".join(f"{t}/{p}" for t, p in sorted(tps))
