"""What every consumer-group daemon does alike: polling with the broker's state followed, unreadable records
counted and dead-lettered, partition names for logs."""

from __future__ import annotations

import logging
import threading
import time
from typing import Iterable

from otsentry.stream.delivery.outbox import Outbox
from otsentry.stream.runtime.metrics import Metrics
from otsentry.stream.runtime.retry import Backoff, StateLog
from otsentry.stream.transport import Consumer, Message, TopicPartition, TransportError

__all__ = ["LOG_FIRST_MALFORMED", "POLL_TIMEOUT_S", "ConsumerMember", "partition_names"]

log = logging.getLogger("otsentry.stream")

LOG_FIRST_MALFORMED = 10
POLL_TIMEOUT_S = 0.5  # longest wait in poll: how soon a stop request is noticed


class ConsumerMember:
    """The one consumer loop of every consumer-group daemon (detector, indexer, correlator): poll, take each record,
    then the stage's own work; unreadable records, commits, the assignment and the broker's state alike.

    Subclasses set ``consumer``, ``outbox`` (or None), ``deadletter_topic``, ``metrics``, ``state``, ``backoff`` and
    ``malformed``, and define ``_take`` (one record), ``_after_take`` (the rest of a cycle) and ``_reconcile``.
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
    _closed: bool = False

    def step(self, timeout_s: float = POLL_TIMEOUT_S) -> int:
        """One cycle: poll, take each record, then the stage's work; returns the number of records read."""
        polled = self._poll(timeout_s)
        if polled is None:
            return 0
        read, messages = polled
        for m in messages:
            self._take(m)
        self._after_take(read)
        return read

    def _take(self, m: Message) -> None:
        """One record of a poll."""
        raise NotImplementedError

    def _after_take(self, read: int) -> None:
        """The rest of a cycle once the poll's records were taken (``read`` of them)."""
        raise NotImplementedError

    def _reconcile(self) -> set[TopicPartition]:
        """Follow the assignment after a poll; returns the partitions assigned now."""
        raise NotImplementedError

    def _follow_assignment(self, known: set[TopicPartition]) -> tuple[set[TopicPartition], set[TopicPartition],
                                                                          set[TopicPartition]]:
        """(assigned, revoked, added) against the partitions the stage ``known``s; the change is logged once."""
        assigned = self.consumer.assignment()
        revoked, added = known - assigned, assigned - known
        if revoked:
            log.info("revoked %d partition(s): %s", len(revoked), partition_names(revoked),
                     extra={"fields": {"event": "revoked", "partitions": partition_names(revoked)}})
        if added:
            log.info("assigned %d partition(s): %s", len(added), partition_names(added),
                     extra={"fields": {"event": "assigned", "partitions": partition_names(added)}})
        self.metrics.set("otsentry_assigned_partitions", len(assigned))
        return assigned, revoked, added

    def _committed_offset(self, tp: TopicPartition) -> tuple[int, str] | None:
        """The partition's committed (offset, metadata), None when there is none or the broker did not say."""
        try:
            return self.consumer.committed(tp)
        except TransportError:
            return None

    def _commit_offsets(self, offsets: dict[TopicPartition, tuple[int, str]]) -> bool:
        """Commit; a broker error is counted and logged once, and the records are read again after a restart."""
        try:
            self.consumer.commit(offsets)
        except TransportError as exc:
            self._broker_down(exc)
            return False
        self.metrics.inc("otsentry_commits_total")
        return True

    def close(self, timeout_s: float = 10.0) -> None:
        """Finish the stage's work within ``timeout_s`` (``_finish``), then leave the group and close the producer.
        Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        deadline = time.monotonic() + timeout_s
        try:
            self._finish(deadline, timeout_s)
        finally:
            self.consumer.close()
            if self.outbox is not None:
                self.outbox.publisher.close(max(0.0, deadline - time.monotonic()))

    def _finish(self, deadline: float, timeout_s: float) -> None:
        """What ``close`` does before leaving: acknowledge and commit what can be, by ``deadline``."""
        raise NotImplementedError

    def _lag_gauge(self) -> None:
        try:
            lag = self.consumer.lag()
        except TransportError:
            lag = None
        if lag is not None:
            self.metrics.set("otsentry_consumer_lag", lag)

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


def partition_names(tps: Iterable[TopicPartition]) -> str:
    return ",".join(f"{t}/{p}" for t, p in sorted(tps))
