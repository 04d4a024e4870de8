"""Publishing that loses nothing: each record is kept until the broker acknowledged it, failures are sent again.

The Kafka producer already retries inside ``delivery_timeout_s``; the outbox covers what lies beyond (a broker down
for longer, a record that could not even be queued) and bounds memory: at most ``max_in_flight`` records wait for
an acknowledgement, after which ``send`` blocks (a pcap collector stops reading, a detector stops polling) instead
of buffering without limit. A record sent again may land after records sent later, and twice (a delivery that
failed on our side but reached the log): consumers of ``otsentry.features`` drop window copies by identity and
alerts are deduplicated by id downstream.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

from otsentry.stream.runtime.metrics import Metrics
from otsentry.stream.runtime.retry import Backoff, StateLog, Stopped
from otsentry.stream.transport import Delivery, Headers, Publisher, TransportError

__all__ = ["Outbox", "STALL_S"]


STALL_S = 5.0  # nothing acknowledged for this long while records wait: the broker is reported down


@dataclass(frozen=True, slots=True)
class _Record:
    topic: str
    value: bytes
    key: bytes | None
    partition: int | None
    headers: Headers


class Outbox:
    """``send`` records, ``flush`` until every one is acknowledged (or a deadline passes)."""

    def __init__(self, publisher: Publisher, *, max_in_flight: int = 20000, backoff: Backoff | None = None,
                 stop: threading.Event | None = None, metrics: Metrics | None = None,
                 state: StateLog | None = None) -> None:
        self.publisher = publisher
        self.max_in_flight = max_in_flight
        self.backoff = backoff or Backoff()
        self.stop = stop or threading.Event()
        self.metrics = metrics or Metrics("producer")
        self.state = state or StateLog("broker (producer)")
        self._pending: list[tuple[_Record, Delivery]] = []
        self._stalled_since: float | None = None
        self.acknowledged = 0

    @property
    def in_flight(self) -> int:
        return len(self._pending)

    def send(self, topic: str, value: bytes, key: bytes | None = None, partition: int | None = None,
             headers: Headers = ()) -> None:
        """Queue one record; blocks while ``max_in_flight`` records are unacknowledged. Raises ``Stopped``."""
        while len(self._pending) >= self.max_in_flight:
            self.flush(time.monotonic() + 1.0)
            if self.stop.is_set() and len(self._pending) >= self.max_in_flight:
                raise Stopped("stop requested while the broker was not acknowledging")
        self._queue(_Record(topic, value, key, partition, tuple(headers)))

    def _queue(self, record: _Record) -> None:
        while True:
            try:
                delivery = self.publisher.publish(record.topic, record.value, record.key, record.partition,
                                                  record.headers)
            except TransportError as exc:
                self._failed(exc)
                if self.backoff.wait(self.stop):
                    raise Stopped("stop requested while the broker was unreachable") from None
                continue
            self._pending.append((record, delivery))
            self.metrics.set("otsentry_in_flight_records", len(self._pending))
            return

    def _failed(self, exc: BaseException) -> None:
        self.metrics.inc("otsentry_errors_total")
        self.metrics.broker_up = False
        self.state.set("down", f"{type(exc).__name__}: {str(exc)[:120]}; retrying with backoff")

    def _reap(self) -> list[_Record]:
        """Drop acknowledged records; return the failed ones (to send again)."""
        still: list[tuple[_Record, Delivery]] = []
        failed: list[_Record] = []
        last: BaseException | None = None
        acked = 0
        for record, delivery in self._pending:
            if not delivery.done():
                still.append((record, delivery))
            elif delivery.error() is not None:
                failed.append(record)
                last = delivery.error()
            else:
                acked += 1
        self._pending = still
        if acked or not still:
            self._stalled_since = None
        if acked:
            self.acknowledged += acked
            self.metrics.broker_up = True
            self.backoff.reset()
            self.state.set("up")
        if last is not None:
            self._failed(last)
        self.metrics.set("otsentry_in_flight_records", len(self._pending))
        return failed

    def flush(self, deadline: float | None = None) -> bool:
        """Wait until every record is acknowledged, sending failures again after a backoff.

        Returns False if ``deadline`` (monotonic) passed first; without a deadline it waits for as long as the
        broker is away, unless a stop is requested (the caller then flushes once more with the stop deadline).
        """
        while True:
            now = time.monotonic()
            if self._pending:
                if not self.publisher.flush(1.0 if deadline is None else max(0.0, min(1.0, deadline - now))):
                    self._check_connection()
            failed = self._reap()
            if failed:
                delay = self.backoff.next_delay()
                if deadline is not None:
                    time.sleep(max(0.0, min(delay, deadline - time.monotonic())))
                    stopped = False
                else:
                    stopped = self.stop.wait(delay)
                self._requeue(failed)
                if stopped:
                    return False
                continue
            if not self._pending:
                return True
            if deadline is not None and time.monotonic() >= deadline:
                return False
            if deadline is None and self.stop.is_set():
                return False

    def _check_connection(self) -> None:
        """Records wait longer than a flush slice. The producer keeps retrying them inside its delivery timeout,
        so no delivery has failed yet; say once that the broker is down when the client reports no connection or
        nothing has been acknowledged for ``STALL_S``."""
        now = time.monotonic()
        if self._stalled_since is None:
            self._stalled_since = now
        stalled = now - self._stalled_since
        if self.publisher.connected() is False or stalled >= STALL_S:
            self.metrics.broker_up = False
            self.state.set("down", f"{len(self._pending)} record(s) not acknowledged for {stalled:.0f} s; "
                                   "the producer keeps retrying")

    def _requeue(self, failed: list[_Record]) -> None:
        for record in failed:
            self.metrics.inc("otsentry_resent_records_total")
            try:
                delivery = self.publisher.publish(record.topic, record.value, record.key, record.partition,
                                                  record.headers)
            except TransportError as exc:
                self._failed(exc)
                delivery = _Failed(exc)
            self._pending.append((record, delivery))


class _Failed:
    """A publish that could not be queued: reaped as failed, so it is tried again after the backoff."""

    def __init__(self, exc: BaseException) -> None:
        self._exc = exc

    def done(self) -> bool:
        return True

    def error(self) -> BaseException | None:
        return self._exc
