"""What every consumer-group daemon does alike: polling with the broker's state followed, unreadable records
counted and dead-lettered, partition names for logs."""

from __future__ import annotations

import logging
import threading
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


def partition_names(tps: Iterable[TopicPartition]) -> str:
    return ",".join(f"{t}/{p}" for t, p in sorted(tps))
