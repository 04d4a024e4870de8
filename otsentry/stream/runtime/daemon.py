"""Daemon lifecycle: signals, bounded shutdown, the main loop, structured logs; ``Daemon`` wraps a stage.

A collector or detector worker runs for months under systemd. What that needs, and why:

* SIGTERM/SIGINT set a stop flag that the loops check between batches; they then flush and commit and return.
  A watchdog ends the process if that takes longer than ``stop_timeout_s`` plus a grace (a broker that vanished
  mid-flush must not turn ``systemctl stop`` into a 90 s hang); a second signal exits at once.
* A broker that is down is retried with backoff (``otsentry.stream.runtime.retry``).
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
from dataclasses import dataclass
from types import FrameType
from typing import Any, Callable, Sequence, TypeVar

from otsentry.stream.delivery.outbox import Outbox
from otsentry.stream.runtime.metrics import Metrics, MetricsServer
from otsentry.stream.runtime.retry import Backoff, StateLog, retry
from otsentry.stream.runtime.settings import DaemonConfig, KafkaConfig, StreamConfig
from otsentry.stream.transport import Publisher

__all__ = ["Daemon", "STOP_GRACE_S", "StopSignal", "StreamSettings", "serve", "setup_logging"]

log = logging.getLogger("otsentry.stream")
T = TypeVar("T")

STOP_GRACE_S = 5.0  # beyond stop_timeout_s before the watchdog ends the process


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


@dataclass(frozen=True)
class StreamSettings:
    kafka: KafkaConfig
    stream: StreamConfig
    daemon: DaemonConfig


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


class Daemon:
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

    def __enter__(self) -> "Daemon":
        self.signals.install()
        self.metrics.running = True
        return self

    def __exit__(self, *exc: object) -> None:
        self.metrics.running = False
        self.signals.restore()
        if self.server is not None:
            self.server.close()

    def retry(self, what: str, fn: Callable[[], T]) -> T:
        """``fn()`` until the broker takes it, with this daemon's backoff, state log and metrics."""
        return retry(what, fn, self.stop, self.backoff, self.state, self.metrics)

    def ensure_topics(self, ensure: Callable[[Sequence[str]], Any] | None, topics: Sequence[str]) -> None:
        if ensure is not None:
            self.retry("creating topics", lambda: ensure(topics))

    def outbox(self, publisher: Publisher) -> Outbox:
        return Outbox(publisher, max_in_flight=self.settings.stream.max_in_flight, backoff=self.backoff,
                      stop=self.stop, metrics=self.metrics, state=self.state)
