"""The correlation stage over Kafka: ``otsentry.alerts`` -> incidents, as ``otsentry run`` builds them.

One correlator reads every partition of the alerts topic (incidents span partitions and detector workers: run one
per alerts topic, in its own group). Alerts of one window come from several workers at slightly different times,
so each is held until the window time seen is ``lateness_s`` past it, then folded in ``alert_order``, one window
time at a time, by the same ``Correlator`` as the embedded pipeline. Every alert is published again with its
incident id to the correlated topic (key: alert id) and every incident, when it closes, to the incidents topic
(key: incident id). An incident closes when window time moves ``idle_gap_s`` past its last alert, or when no
alert at all arrived for ``idle_gap_s`` of wall-clock time (a quiet plant), or when the stream ends (``flush``).

Delivery and restarts. Once the outputs are acknowledged by the broker, the state (next offset per partition, the
alerts still held, the alerts of the open incidents) is written atomically to ``state_path``, and only then are the
offsets committed. On start the state is read back: the open incidents are rebuilt by folding their alerts again
(same alerts, same order: same incidents, same ids) and records below the state's offsets (read again after a
crash between the write and the commit) are skipped. A crash before the write reads again from the previous
commit with the previous state: the same alerts give the same outputs, with the same keys, so the incidents topic
and Elasticsearch see no duplicate.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from dataclasses import replace
from itertools import groupby
from pathlib import Path
from typing import Any, Callable, Sequence

from otsentry.contracts.attack import TECHNIQUES
from otsentry.contracts.windows import alert_order
from otsentry.correlation import Correlator
from otsentry.detectors.rules import RULES
from otsentry.errors import InputError
from otsentry.records import Alert, Incident
from otsentry.stream.codec import MalformedRecord, decode_alert, encode_alert, encode_incident
from otsentry.stream.delivery.outbox import Outbox
from otsentry.stream.kafka import kafka_transport
from otsentry.stream.runtime.daemon import Daemon, StopSignal, StreamSettings, serve
from otsentry.stream.runtime.membership import ConsumerMember
from otsentry.stream.runtime.metrics import Metrics
from otsentry.stream.runtime.retry import Backoff, StateLog, Stopped
from otsentry.stream.transport import Consumer, Message, Publisher, TopicPartition

__all__ = ["CorrelatorStateError", "CorrelatorWorker", "STATE_VERSION", "run_correlator"]

log = logging.getLogger("otsentry.stream")

STATE_VERSION = 1


class CorrelatorStateError(InputError, ValueError):
    """The checkpoint cannot be read: one line saying what to do."""


class CorrelatorWorker(ConsumerMember):
    """Consumes alerts, folds them into incidents, publishes both, checkpoints, then commits."""

    def __init__(self, make_consumer: Callable[[], Consumer], outbox: Outbox, *, correlated_topic: str,
                 incidents_topic: str, state_path: Path, idle_gap_s: float = 900.0, lateness_s: float = 60.0,
                 max_hold_s: float = 30.0,
                 deadletter_topic: str = "", max_poll_records: int = 500, metrics: Metrics | None = None,
                 stop: threading.Event | None = None, backoff: Backoff | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.outbox = outbox
        self.correlated_topic, self.incidents_topic = correlated_topic, incidents_topic
        self.state_path = Path(state_path)
        self.idle_gap_s, self.lateness_s, self.max_hold_s = idle_gap_s, lateness_s, max_hold_s
        self.deadletter_topic = deadletter_topic
        self.max_poll_records = max_poll_records
        self.metrics = metrics or outbox.metrics
        self.stop = stop or threading.Event()
        self.backoff = backoff or Backoff()
        self.clock = clock
        self.state = StateLog("broker (consumer)")
        self.malformed = 0
        self.alerts_correlated = 0
        self.incidents_published = 0
        self.correlator = Correlator(idle_gap_s)
        self._next: dict[TopicPartition, int] = {}  # next offset to read: everything before is done or held
        self._held: list[Alert] = []
        self._arrived: list[float] = []  # wall-clock arrival of each held alert (same order)
        self.late = 0
        self._members: list[Alert] = []  # alerts of the open incidents (with their incident id)
        self._frontier = float("-inf")  # window time up to which alerts were folded
        self._seen: dict[TopicPartition, float] = {}  # latest window start read, per partition
        self._last_arrival = clock()
        self._dirty = False
        self._warned = False
        self._restore()
        self.consumer = make_consumer()

    # -- state ---------------------------------------------------------------------------------------------------

    def _restore(self) -> None:
        try:
            state = json.loads(self.state_path.read_text())
        except FileNotFoundError:
            return
        except (OSError, ValueError) as exc:
            raise CorrelatorStateError(f"{self.state_path}: unreadable correlator state ({exc}); move it away to start "
                             "over from the committed offsets") from None
        if state.get("version") != STATE_VERSION:
            raise CorrelatorStateError(f"{self.state_path}: correlator state version {state.get('version')!r} is not "
                             f"{STATE_VERSION}; move it away to start over")
        self._next = {(t, int(p)): int(o) for t, p, o in state["offsets"]}
        self._held = [Alert.from_dict(a) for a in state["held"]]
        self._arrived = [self.clock()] * len(self._held)
        members = sorted((Alert.from_dict(a) for a in state["members"]), key=alert_order)
        for _, same in groupby(members, key=lambda a: a.window_start):
            group = list(same)
            self.correlator.close_idle(group[0].window_start)
            self._members.extend(self.correlator.add_window([_bare(a) for a in group]))
        self._frontier = float(state["frontier"])
        log.info("correlator state restored: %d open incident(s), %d alert(s) held",
                 len(self.correlator.open_incidents()), len(self._held))

    def _save(self) -> None:
        state = {"version": STATE_VERSION, "offsets": [[t, p, o] for (t, p), o in sorted(self._next.items())],
                 "held": [a.to_dict() for a in self._held], "members": [a.to_dict() for a in self._members],
                 "frontier": self._frontier}
        self.state_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.state_path.with_name(self.state_path.name + ".tmp")
        with tmp.open("w") as f:
            json.dump(state, f)
            f.flush()
            os.fsync(f.fileno())
        tmp.replace(self.state_path)

    def _reconcile(self) -> set[TopicPartition]:
        """One correlator owns every partition; a second member in the group would split incidents: say so."""
        assigned = self.consumer.assignment()
        lost = {tp for tp in self._next if tp not in assigned}
        if lost and not self._warned:
            self._warned = True
            log.warning("partitions %s went to another member: run one correlator per alerts topic (incidents "
                        "span partitions)", ",".join(f"{t}/{p}" for t, p in sorted(lost)))
        self.metrics.set("otsentry_assigned_partitions", len(assigned))
        return assigned

    # -- main loop -----------------------------------------------------------------------------------------------

    def _after_take(self, read: int) -> None:
        """fold what every partition has passed -> publish -> checkpoint -> commit."""
        if read:
            self._last_arrival = self.clock()
        self._release(self._horizon() - self.lateness_s, self.clock() - self.max_hold_s)
        if not self._held and self.clock() - self._last_arrival >= self.idle_gap_s:
            self._publish_incidents(self.correlator.flush())  # a quiet plant: nothing can join them any more
            self._members = []
        if self._dirty and self.outbox.flush():
            self._checkpoint()

    def _take(self, m: Message) -> None:
        tp = (m.topic, m.partition)
        if m.offset < self._next.get(tp, 0):
            return  # folded before a crash that came between the checkpoint and the commit
        self._next[tp] = m.offset + 1
        self._dirty = True
        try:
            alert = decode_alert(m.value)
            _check_declared(alert)
        except MalformedRecord as exc:
            self._malformed(m, str(exc))
            return
        if alert.window_start <= self._frontier:
            self.late += 1
            self.metrics.inc("otsentry_alerts_late_total")
        self._held.append(_bare(alert))
        self._arrived.append(self.clock())
        self._seen[tp] = max(self._seen.get(tp, float("-inf")), alert.window_start)
        self.metrics.inc("otsentry_alerts_consumed_total")

    def _horizon(self) -> float:
        """The window time every assigned partition has reached (a partition that showed nothing holds it back)."""
        assigned = self.consumer.assignment()
        return min((self._seen.get(tp, float("-inf")) for tp in assigned), default=float("-inf"))

    def _release(self, upto: float, arrived_before: float = float("-inf")) -> None:
        """Fold the held alerts of window times up to ``upto`` (all of them for +inf), and those that arrived before
        ``arrived_before`` (wall clock) with every alert of their window times."""
        waited = {a.window_start for a, t in zip(self._held, self._arrived) if t <= arrived_before}
        take = [a.window_start <= upto or a.window_start in waited for a in self._held]
        ready = sorted((a for a, go in zip(self._held, take) if go), key=alert_order)
        if not ready:
            return
        self._arrived = [t for t, go in zip(self._arrived, take) if not go]
        self._held = [a for a, go in zip(self._held, take) if not go]
        for _, same in groupby(ready, key=lambda a: a.window_start):
            group = list(same)
            self._publish_incidents(self.correlator.close_idle(group[0].window_start))
            for a in self.correlator.add_window(group):
                self.outbox.send(self.correlated_topic, encode_alert(a), key=a.id.encode())
                self._members.append(a)
                self.alerts_correlated += 1
            self._frontier = max(self._frontier, group[0].window_start)
        self.metrics.inc("otsentry_alerts_correlated_total", len(ready))
        self._dirty = True

    def _publish_incidents(self, incidents: list[Incident]) -> None:
        if not incidents:
            return
        done: set[str] = set()
        for i in incidents:
            self.outbox.send(self.incidents_topic, encode_incident(i), key=i.id.encode())
            done.update((i.id, *i.merged))
        self._members = [a for a in self._members if a.incident_id not in done]
        self.incidents_published += len(incidents)
        self.metrics.inc("otsentry_incidents_published_total", len(incidents))
        self._dirty = True

    def _checkpoint(self) -> None:
        """Outputs acknowledged: write the state, then commit the same offsets."""
        self._save()
        offsets = {tp: (n, "") for tp, n in self._next.items() if tp in self.consumer.assignment()}
        self._dirty = False
        if not offsets:
            return
        self._commit_offsets(offsets)  # on failure read again after a restart and skipped: the state is ahead

    def finish(self) -> None:
        """The end of a stream (``--until-idle``): fold every held alert and close every incident."""
        self._release(float("inf"))
        self._publish_incidents(self.correlator.flush())
        self._members = []

    def _finish(self, deadline: float, timeout_s: float) -> None:
        """Flush, checkpoint and commit."""
        if self.outbox.flush(deadline):
            self._checkpoint()
        else:
            log.warning("outputs not acknowledged within %.0f s: state and offsets left as they were "
                        "(the alerts are read again)", timeout_s)


def _bare(a: Alert) -> Alert:
    """The alert as a detector published it: an incident id on the input is not the correlator's to keep."""
    return replace(a, incident_id="") if a.incident_id else a


def _check_declared(a: Alert) -> None:
    """A rule or technique this version does not declare cannot be folded (its phrase and tactic are unknown)."""
    if a.rule_id not in RULES:
        raise MalformedRecord(f"rule {a.rule_id!r} is not declared by this otsentry version")
    if a.technique_id and a.technique_id not in TECHNIQUES:
        raise MalformedRecord(f"technique {a.technique_id!r} is not declared by this otsentry version")



def run_correlator(settings: StreamSettings, state_path: Path, idle_gap_s: float, lateness_s: float, *,
                   make_publisher: Callable[[], Publisher] | None = None,
                   make_consumer: Callable[[int], Consumer] | None = None,
                   ensure: Callable[[Sequence[str]], Any] | None = None, stop_signal: StopSignal | None = None,
                   until_idle_s: float | None = None) -> tuple[CorrelatorWorker | None, Metrics]:
    """A correlator until stopped (or, with ``until_idle_s``, until nothing arrived for that long: then every held
    alert is folded and every incident closed, as at the end of ``otsentry run``)."""
    k, s = settings.kafka, settings.stream
    if make_publisher is None or make_consumer is None:
        from otsentry.stream.kafka.client import KafkaGroupConsumer

        make_publisher, _, ensure = kafka_transport(k)
        make_consumer = lambda max_poll: KafkaGroupConsumer(k, [k.alerts_topic], max_poll)  # noqa: E731
    worker: CorrelatorWorker | None = None
    with Daemon("correlator", settings, stop_signal) as d:
        log.info("correlator in group %s: %s -> %s, %s", k.group, k.alerts_topic, k.correlated_topic,
                 k.incidents_topic, extra={"fields": {"event": "start", "group": k.group}})
        try:
            topics = [k.alerts_topic, k.correlated_topic, k.incidents_topic] + \
                ([k.deadletter_topic] if k.deadletter_topic else [])
            d.ensure_topics(ensure, topics)
            publisher = d.retry("connecting (producer)", make_publisher)
            outbox = d.outbox(publisher)
            worker = d.retry("connecting (consumer)",
                             lambda: CorrelatorWorker(lambda: make_consumer(s.max_poll_records), outbox,
                                                      correlated_topic=k.correlated_topic,
                                                      incidents_topic=k.incidents_topic, state_path=state_path,
                                                      idle_gap_s=idle_gap_s, lateness_s=lateness_s,
                                                      max_hold_s=s.max_hold_s,
                                                      deadletter_topic=k.deadletter_topic,
                                                      max_poll_records=s.max_poll_records, metrics=d.metrics,
                                                      stop=d.stop, backoff=d.backoff))
            if serve(d.stop, worker.step, until_idle_s):
                worker.finish()  # the end of the stream: fold what is held, close every incident
        except Stopped:
            pass
        finally:
            if worker is not None:
                worker.close(settings.daemon.stop_timeout_s)
        if worker is not None:
            log.info("correlator done: %d alerts correlated, %d incidents published, %d unreadable records",
                     worker.alerts_correlated, worker.incidents_published, worker.malformed,
                     extra={"fields": {"event": "done", "alerts": worker.alerts_correlated,
                                       "incidents": worker.incidents_published, "malformed": worker.malformed}})
        return worker, d.metrics
