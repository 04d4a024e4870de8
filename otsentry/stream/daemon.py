"""Daemon lifecycle: signals, bounded shutdown, retry backoff, logs once per state change, structured logs.

A collector or detector worker runs for months under systemd. What that needs, and why:

* SIGTERM/SIGINT set a stop flag that the loops check between batches; they then flush and commit and return.
  A watchdog ends the process if that takes longer than ``stop_timeout_s`` plus a grace (a broker that vanished
  mid-flush must not turn ``systemctl stop`` into a 90 s hang); a second signal exits at once.
* A broker that is down is retried with exponential backoff (``Backoff``), and ``StateLog`` writes one line when
  the connection state changes (up -> down -> up), not one per record or per retry: a night-long outage is two
  log lines, not a full disk.
* Logs as text, ``key=value`` or JSON lines (``setup_logging``), so journald, Loki or Elasticsearch can parse them.
  Fields are passed with ``extra={"fields": {...}}``.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import threading
import time
from types import FrameType
from typing import Any, Callable

log = logging.getLogger("otsentry.stream")

STOP_GRACE_S = 5.0  # beyond stop_timeout_s before the watchdog ends the process


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


class StopSignal:
    """SIGTERM/SIGINT -> ``stop`` event; a watchdog bounds how long stopping may take; a second signal exits."""

    def __init__(self, stop_timeout_s: float = 10.0, exit_fn: Callable[[int], None] = os._exit) -> None:
        self.stop = threading.Event()
        self.stop_timeout_s = stop_timeout_s
        self.exit_fn = exit_fn
        self.signal_name: str | None = None
        self._previous: dict[int, Any] = {}
        self._watchdog: threading.Timer | None = None

    def install(self) -> "StopSignal":
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                self._previous[sig] = signal.signal(sig, self._on_signal)
        return self

    def restore(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()
        if self._watchdog is not None:
            self._watchdog.cancel()

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        if self.stop.is_set():
            log.warning("%s again: exiting now", name)
            self.exit_fn(128 + signum)
            return
        self.request(name)

    def request(self, reason: str = "requested") -> None:
        """Stop as a signal would (tests, ``--duration``)."""
        if self.stop.is_set():
            return
        self.signal_name = reason
        log.info("stopping (%s): flushing and committing, at most %.0f s", reason, self.stop_timeout_s,
                 extra={"fields": {"event": "stopping", "reason": reason}})
        self.stop.set()
        self._watchdog = threading.Timer(self.stop_timeout_s + STOP_GRACE_S, self._expired)
        self._watchdog.daemon = True
        self._watchdog.start()

    def deadline(self) -> float:
        """Monotonic time by which flushing and committing must be done."""
        return time.monotonic() + self.stop_timeout_s

    def _expired(self) -> None:
        log.error("did not stop within %.0f s: exiting without finishing (uncommitted records are read again "
                  "by the next worker)", self.stop_timeout_s + STOP_GRACE_S)
        logging.shutdown()
        self.exit_fn(1)


# -- structured logs -----------------------------------------------------------------------------------------------


class _KeyValueFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        fields = {"ts": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"), "level": record.levelname.lower(),
                  "logger": record.name, "msg": record.getMessage(), **getattr(record, "fields", {})}
        if record.exc_info:
            fields["exc"] = self.formatException(record.exc_info).splitlines()[-1]
        return " ".join(f"{k}={_kv(v)}" for k, v in fields.items())


def _kv(value: Any) -> str:
    text = str(value)
    return json.dumps(text) if (not text or any(c in text for c in ' "=\n')) else text


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        doc = {"@timestamp": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}",
               "log.level": record.levelname.lower(), "log.logger": record.name, "message": record.getMessage(),
               "process.pid": record.process, **getattr(record, "fields", {})}
        if record.exc_info:
            doc["error.message"] = self.formatException(record.exc_info).splitlines()[-1]
        return json.dumps(doc, default=str)


def setup_logging(fmt: str = "text", level: str = "info", stream: Any = None) -> None:
    """Configure the root logger for a daemon; kafka-python's own chatter is kept to errors.

    kafka-python logs every failed reconnect attempt at WARNING/ERROR; otsentry reports the broker's state itself
    (once per change), so the client's logger is raised to CRITICAL unless debugging. Even when debugging it stays
    at INFO: kafka-python's DEBUG lines dump whole requests, SaslAuthenticate's password included.
    """
    handler = logging.StreamHandler(stream or sys.stderr)
    if fmt == "json":
        handler.setFormatter(_JsonFormatter())
    elif fmt == "kv":
        handler.setFormatter(_KeyValueFormatter())
    else:
        handler.setFormatter(logging.Formatter("otsentry: %(levelname)s: %(message)s"))
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    root.addHandler(handler)
    root.setLevel(getattr(logging, level.upper()))
    logging.getLogger("kafka").setLevel(logging.INFO if level == "debug" else logging.CRITICAL)
