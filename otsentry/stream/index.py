"""The indexer stage: ``otsentry.alerts`` -> Elasticsearch, committing offsets only once Elasticsearch acknowledged.

``otsentry index`` runs this as a consumer-group member. Delivery, and why every alert ends up indexed exactly once:

1. poll a batch, decode each alert and queue its ECS document in an ``ElasticSink`` made with ``spool=False``;
2. flush it as one bulk request (``op_type=create``, ``_id`` = alert id): each document is created, answered 409
   (already there: a re-delivery), or rejected for good (a mapping error: the sink's dead-letter file);
3. only then commit, per partition, the offset after the last record of the batch.

A crash or a rebalance between 2 and 3 means the batch is read again and answered 409 (counted as duplicates), so
at-least-once delivery from Kafka gives exactly one document per alert. The sink's local spool is *not* used: the
topic is already a durable buffer, and committing because a document reached a file would commit before
Elasticsearch acknowledged it.

Elasticsearch down: the batch stays in memory, every assigned partition is paused (the consumer keeps polling, so
the group does not give its partitions away after ``max.poll.interval``), the bulk is retried with the daemon's
exponential backoff without blocking the loop (a SIGTERM is still served at once), and ``elasticsearch: down`` /
``elasticsearch: up`` are logged once per change. Memory stays at one poll's worth of alerts however long it lasts.
Errors retrying cannot fix (credentials refused, a request Elasticsearch rejects) stop the daemon with an error.

Unreadable records are counted, logged (the first ones, then every 1000th) and copied to the dead-letter topic,
like the detector worker does; their offsets move on once the copy is acknowledged.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any, Callable, Protocol, Sequence

from otsentry.alerts.elastic import ElasticError, ElasticUnavailable, SinkStats
from otsentry.records import Alert, Incident
from otsentry.stream.codec import MalformedRecord, decode_alert, decode_incident
from otsentry.stream.delivery.outbox import Outbox
from otsentry.stream.kafka import kafka_transport
from otsentry.stream.runtime.daemon import Daemon, StopSignal, StreamSettings, serve
from otsentry.stream.runtime.membership import ConsumerMember
from otsentry.stream.runtime.metrics import Metrics
from otsentry.stream.runtime.retry import Backoff, StateLog, Stopped
from otsentry.stream.runtime.settings import KafkaConfig
from otsentry.stream.transport import Consumer, Message, Publisher, TopicPartition

__all__ = ["AlertIndexer", "AlertSink", "ES_TIMEOUT_S", "IncidentSink", "indexer_transport", "run_indexer"]

log = logging.getLogger("otsentry.stream")

ES_TIMEOUT_S = 10.0  # one bulk request at most: a hung node must not outlast the stop timeout



class AlertSink(Protocol):
    """What the indexer needs of ``ElasticSink``: queue, then flush (True, or ``ElasticUnavailable``)."""

    stats: SinkStats

    def write(self, alert: Alert) -> None: ...

    def flush(self) -> bool: ...


class AlertIndexer(ConsumerMember):
    """Consumes alerts, bulk-indexes them through ``sink``, commits after Elasticsearch acknowledged them."""

    def __init__(self, make_consumer: Callable[[], Consumer], sink: AlertSink, outbox: Outbox | None = None, *,
                 deadletter_topic: str = "", max_poll_records: int = 500, metrics: Metrics | None = None,
                 stop: threading.Event | None = None, backoff: Backoff | None = None,
                 es_backoff: Backoff | None = None, clock: Callable[[], float] = time.monotonic,
                 decode: Callable[[bytes | None], Any] = decode_alert) -> None:
        self.sink = sink
        self.decode = decode  # decode_incident for the incidents topic (with an IncidentSink)
        self.outbox = outbox
        self.deadletter_topic = deadletter_topic if outbox is not None else ""
        self.max_poll_records = max_poll_records
        self.metrics = metrics or Metrics("indexer")
        self.stop = stop or threading.Event()
        self.backoff = backoff or Backoff()
        self.es_backoff = es_backoff or Backoff()
        self.clock = clock
        self.state = StateLog("broker (consumer)")
        self.es_state = StateLog("elasticsearch")
        self.consumed = 0
        self.malformed = 0
        self.commits = 0
        self._unacked = 0  # alerts queued in the sink since its last acknowledged flush
        self._next: dict[TopicPartition, int] = {}  # next offset to read: everything before is acknowledged or queued
        self._committed: dict[TopicPartition, int] = {}
        self._assigned: set[TopicPartition] = set()
        self._paused: set[TopicPartition] = set()
        self._retry_at: float | None = None  # Elasticsearch down: when to send the bulk again
        self.metrics.set_downstream_up(True)
        self.consumer = make_consumer()

    @property
    def es_down(self) -> bool:
        return self._retry_at is not None

    @property
    def pending(self) -> bool:
        """Something read but not committed yet (alerts not acknowledged, or a commit still to make)."""
        return self._unacked > 0 or any(self._committed.get(tp) != n for tp, n in self._next.items())

    # -- main loop -----------------------------------------------------------------------------------------------

    def _after_take(self, read: int) -> None:
        """bulk -> commit (the records were queued in the sink as they were taken)."""
        if self.pending and (self._retry_at is None or self.clock() >= self._retry_at):
            if self._acknowledge():
                self._commit()
        self._flow_control()
        self._lag_gauge()

    def _take(self, m: Message) -> None:
        tp = (m.topic, m.partition)
        try:
            alert = self.decode(m.value)
        except MalformedRecord as exc:
            self._malformed(m, str(exc))
        else:
            try:
                self.sink.write(alert)  # the sink's batch is larger than a poll: this only queues
            except ElasticUnavailable as exc:  # it flushed anyway and failed: the document stays queued
                self._es_down(exc)
            self._unacked += 1
            self.consumed += 1
            self.metrics.inc("otsentry_alerts_consumed_total")
        self._next[tp] = m.offset + 1

    def _acknowledge(self, deadline: float | None = None) -> bool:
        """Dead-letter copies acknowledged by the broker and every queued alert by Elasticsearch."""
        if self.outbox is not None and not self.outbox.flush(deadline):  # False only when stopping
            return False
        try:
            acked = self.sink.flush()
        except ElasticUnavailable as exc:
            self._es_down(exc)
            return False
        finally:
            self._sync_stats()
        if not acked:  # a sink that spools: not acknowledged by Elasticsearch, so not committed
            self._es_down(ElasticUnavailable("documents went to the local spool"))
            return False
        self._unacked = 0
        self._es_up()
        return True

    def _commit(self) -> None:
        offsets = {tp: (n, "") for tp, n in self._next.items()
                   if tp in self._assigned and self._committed.get(tp) != n}
        if not offsets:
            return
        if not self._commit_offsets(offsets):  # read again after a restart: answered 409, counted as duplicates
            return
        self._committed.update({tp: n for tp, (n, _) in offsets.items()})
        self.commits += 1

    # -- Elasticsearch state and flow control ------------------------------------------------------------------

    def _es_down(self, exc: BaseException) -> None:
        self.metrics.inc("otsentry_errors_total")
        self.metrics.set_downstream_up(False)
        self._retry_at = self.clock() + self.es_backoff.next_delay()
        self.es_state.set("down", f"{exc}; {self._unacked} alert(s) held, partitions paused, retrying with backoff")

    def _es_up(self) -> None:
        if self._retry_at is not None:
            self.es_backoff.reset()
            self._retry_at = None
        self.metrics.set_downstream_up(True)
        self.es_state.set("up")

    def _flow_control(self) -> None:
        """Bounded memory: while Elasticsearch is down, read nothing more (pause), but keep polling (membership)."""
        if self.es_down:  # again every step: a rebalance may hand back partitions unpaused under the same names
            if self._assigned:
                self.consumer.pause(self._assigned)
            self._paused = set(self._assigned)
        elif self._paused:
            self.consumer.resume(self._paused & self._assigned)
            self._paused = set()

    # -- rebalances and the broker ---------------------------------------------------------------------------

    def _reconcile(self) -> set[TopicPartition]:
        """Follow the assignment after each poll (see ``stream.kafka`` for why not in callbacks). Alerts queued
        from a revoked partition are still indexed here; its new owner reads them again and gets 409s."""
        assigned, revoked, added = self._follow_assignment(self._assigned)
        for tp in revoked:
            self._next.pop(tp, None)
            self._committed.pop(tp, None)
            self._paused.discard(tp)
        for tp in sorted(added):
            committed = self._committed_offset(tp)
            if committed:
                self._committed[tp] = committed[0]
        self._assigned = assigned
        return assigned

    def _sync_stats(self) -> None:
        s = self.sink.stats
        self.metrics.set("otsentry_alerts_indexed_total", s.indexed)
        self.metrics.set("otsentry_alerts_duplicate_total", s.duplicates)
        self.metrics.set("otsentry_alerts_rejected_total", s.dead_lettered)

    def _finish(self, deadline: float, timeout_s: float) -> None:
        """Index what is queued, then commit."""
        if not self.pending:
            return
        acked = False
        try:
            acked = self._acknowledge(deadline)
        except ElasticError as exc:
            log.error("%s", exc)
        if acked:
            self._commit()
        else:
            log.warning("%d alert(s) not acknowledged by Elasticsearch: offsets not committed (they are "
                        "read again at the next start)", self._unacked,
                        extra={"fields": {"event": "not_committed", "alerts": self._unacked}})


class IncidentSink:
    """``ElasticSink`` seen as an ``AlertSink`` of incidents: each incident becomes its ECS document."""

    def __init__(self, sink: Any) -> None:
        self.sink = sink
        self.display_url = getattr(sink, "display_url", "Elasticsearch")

    @property
    def stats(self) -> SinkStats:
        return self.sink.stats

    def write(self, incident: Incident) -> None:
        from otsentry.alerts.ecs import incident_to_ecs

        self.sink.write_document(incident_to_ecs(incident))

    def flush(self) -> bool:
        return self.sink.flush()


def indexer_transport(kafka: KafkaConfig, topic: str | None = None) -> tuple[
        Callable[[], Publisher], Callable[[int], Consumer], Callable[[Sequence[str]], Any]]:
    """The Kafka transport of ``service.kafka_transport``, with the consumer subscribed to ``topic`` (the alerts
    topic by default)."""
    from otsentry.stream.kafka.client import KafkaGroupConsumer

    make_publisher, _, ensure = kafka_transport(kafka)
    subscribed = topic or kafka.alerts_topic
    return make_publisher, lambda max_poll: KafkaGroupConsumer(kafka, [subscribed], max_poll), ensure


def run_indexer(sink: AlertSink, settings: StreamSettings, *, make_publisher: Callable[[], Publisher] | None = None,
                make_consumer: Callable[[int], Consumer] | None = None,
                ensure: Callable[[Sequence[str]], Any] | None = None, stop_signal: StopSignal | None = None,
                until_idle_s: float | None = None, incidents: bool = False) -> tuple[AlertIndexer | None, Metrics, bool]:
    """An indexer until stopped (or, with ``until_idle_s``, until nothing arrived and all is committed for that
    long). Returns (indexer, metrics, ok); ``ok`` is False after an error retrying cannot fix. With ``incidents``,
    it reads the incidents topic into an ``IncidentSink``."""
    k, s = settings.kafka, settings.stream
    topic = k.incidents_topic if incidents else k.alerts_topic
    if make_publisher is None or make_consumer is None:
        make_publisher, make_consumer, ensure = indexer_transport(k, topic)
    indexer: AlertIndexer | None = None
    publisher: Publisher | None = None
    ok = True
    with Daemon("indexer", settings, stop_signal) as d:
        target = getattr(sink, "display_url", "Elasticsearch")
        log.info("indexer in group %s: %s -> %s", k.group, topic, target,
                 extra={"fields": {"event": "start", "group": k.group}})
        es_backoff = Backoff(settings.daemon.backoff_initial_s, settings.daemon.backoff_max_s)
        try:
            topics = [topic] + ([k.deadletter_topic] if k.deadletter_topic else [])
            d.ensure_topics(ensure, topics)
            outbox = None
            if k.deadletter_topic:
                publisher = d.retry("connecting (producer)", make_publisher)
                outbox = d.outbox(publisher)
            indexer = d.retry("connecting (consumer)",
                              lambda: AlertIndexer(lambda: make_consumer(s.max_poll_records), sink, outbox,
                                                   deadletter_topic=k.deadletter_topic,
                                                   max_poll_records=s.max_poll_records, metrics=d.metrics,
                                                   stop=d.stop, backoff=d.backoff, es_backoff=es_backoff,
                                                   decode=decode_incident if incidents else decode_alert))
            serve(d.stop, lambda: indexer.step() or indexer.pending, until_idle_s)
        except Stopped:
            pass
        except ElasticError as exc:
            ok = False
            log.error("%s: stopping (offsets of unindexed alerts are not committed)", exc,
                      extra={"fields": {"event": "fatal", "error": str(exc)}})
        finally:
            if indexer is not None:
                indexer.close(settings.daemon.stop_timeout_s)
            elif publisher is not None:
                publisher.close(settings.daemon.stop_timeout_s)
        if indexer is not None:
            st = indexer.sink.stats
            log.info("indexer done: %d alerts read, %d indexed, %d already indexed, %d rejected, %d unreadable",
                     indexer.consumed, st.indexed, st.duplicates, st.dead_lettered, indexer.malformed,
                     extra={"fields": {"event": "done", "consumed": indexer.consumed, "indexed": st.indexed,
                                       "duplicates": st.duplicates, "rejected": st.dead_lettered,
                                       "malformed": indexer.malformed}})
        return indexer, d.metrics, ok

