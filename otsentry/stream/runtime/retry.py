"""Waiting out a broker that is down: exponential backoff, one log line per state change, and ``retry``.

A broker that is down is retried with exponential backoff (``Backoff``), and ``StateLog`` writes one line when
the connection state changes (up -> down -> up), not one per record or per retry: a night-long outage is two log
lines, not a full disk.
"""

from __future__ import annotations

import logging
import threading
from typing import Callable, TypeVar

from otsentry.errors import OtsentryError
from otsentry.stream.runtime.metrics import Metrics
from otsentry.stream.transport import TransportError

__all__ = ["Backoff", "StateLog", "Stopped", "retry"]

log = logging.getLogger("otsentry.stream")
T = TypeVar("T")


class Stopped(OtsentryError, RuntimeError):
    """A stop was requested while waiting for the broker."""


class Backoff:
    """Exponential retry delays: initial, doubled each failure up to ``max_s``; ``reset()`` after a success."""

    def __init__(self, initial_s: float = 0.5, max_s: float = 30.0) -> None:
        self.initial_s = initial_s
        self.max_s = max_s
        self._next = initial_s

    def next_delay(self) -> float:
        delay = self._next
        self._next = min(self._next * 2, self.max_s)
        return delay

    def reset(self) -> None:
        self._next = self.initial_s

    def wait(self, stop: threading.Event) -> bool:
        """Sleep the next delay unless stopped first; True if stopped."""
        return stop.wait(self.next_delay())


class StateLog:
    """Logs a named state only when it changes (``broker: up`` -> ``broker: down (reason)`` -> ``broker: up``)."""

    def __init__(self, name: str, logger: logging.Logger = log,
                 on_change: Callable[[str], None] | None = None) -> None:
        self.name = name
        self.logger = logger
        self.state: str | None = None
        self.changes = 0
        self.on_change = on_change

    def set(self, state: str, detail: str = "", level: int | None = None) -> bool:
        if state == self.state:
            return False
        first = self.state is None
        self.state = state
        self.changes += 1
        if level is None:
            level = logging.INFO if state in ("up", "ok") else logging.WARNING
        if not (first and state in ("up", "ok") and level <= logging.INFO and not detail):
            self.logger.log(level, "%s: %s%s", self.name, state, f" ({detail})" if detail else "",
                            extra={"fields": {"component": self.name, "state": state}})
        if self.on_change is not None:
            self.on_change(state)
        return True


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
