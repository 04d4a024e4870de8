"""Alerts -> incidents: the alerts of one attack folded into one record an analyst can work.

Grouping (deterministic, in window-time order): an alert joins the open incident that already involves its client
or its server (the earliest-started one when several do); otherwise it opens an incident. An incident closes when
no alert joined it for ``idle_gap_s`` seconds of window time, so a campaign repeated after a quiet spell is a new
incident while every repeat inside one stays visible as an alert of it. Sensor-wide alerts (no hosts: kernel drops)
share one incident per quiet spell.

Severity is the highest of the alerts, one level higher when the incident *escalates*: it spans three tactics or
more, or a preparing tactic (discovery, collection, initial access) is followed by an acting one (inhibit response
function, impair process control, impact). Incident ids derive from the first alert's id (itself a hash of window,
pair and rule), so replays and restarts build the same ids.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace
from typing import Iterable

from otsentry.attack import ACTING_TACTICS, PREPARING_TACTICS, TACTICS, tactic_rank, technique
from otsentry.correlation.summary import summarise
from otsentry.records import Alert, Incident, IncidentStep

__all__ = ["DEFAULT_IDLE_GAP_S", "Correlator", "alert_order", "correlate", "incident_id"]

DEFAULT_IDLE_GAP_S = 900.0
SEVERITIES = ("low", "medium", "high", "critical")
RISK = {"low": 21.0, "medium": 47.0, "high": 73.0, "critical": 99.0}
SENSOR = ""  # the "host" of sensor-wide alerts


def incident_id(first_alert_id: str) -> str:
    return hashlib.sha256(f"incident|{first_alert_id}".encode()).hexdigest()[:32]


@dataclass
class _Step:
    first_ts: float
    last_ts: float
    actor: str
    rule_id: str
    technique_id: str
    alerts: int = 0
    targets: dict[str, None] = field(default_factory=dict)
    services: dict[str, None] = field(default_factory=dict)
    units: set[int] = field(default_factory=set)
    codes: set[int] = field(default_factory=set)

    def add(self, a: Alert) -> None:
        self.alerts += 1
        self.last_ts = max(self.last_ts, a.window_start)
        if a.server_ip:
            self.targets.setdefault(a.server_ip)
        if a.unit_id >= 0:
            self.units.add(a.unit_id)
        elif a.server_port:
            self.services.setdefault(f"{a.server_port}/{a.transport}")
        self.codes.update(a.function_codes)

    def freeze(self) -> IncidentStep:
        return IncidentStep(self.first_ts, self.last_ts, self.actor, self.rule_id, self.technique_id,
                            self.alerts, tuple(self.targets), tuple(sorted(self.services, key=_service_key)),
                            len(self.units), tuple(sorted(self.codes)))


def _service_key(s: str) -> tuple[str, int]:
    port, transport = s.split("/", 1)
    return transport, int(port)


@dataclass
class _Open:
    first: Alert
    last_seen: float
    end: float
    hosts: set[str] = field(default_factory=set)
    # name -> first window start: orders are by time, then by name, whatever order alerts of one window came in
    actors: dict[str, float] = field(default_factory=dict)
    targets: dict[str, float] = field(default_factory=dict)
    techniques: dict[str, float] = field(default_factory=dict)
    rules: dict[str, list[float]] = field(default_factory=dict)  # rule -> [first window start, alerts]
    steps: dict[tuple[str, str, str], _Step] = field(default_factory=dict)
    worst: int = 0
    count: int = 0
    last_id: str = ""

    @property
    def id(self) -> str:
        return incident_id(self.first.id)

    def add(self, a: Alert) -> None:
        self.count += 1
        self.last_id = a.id
        self.last_seen = max(self.last_seen, a.window_start)
        self.end = max(self.end, a.window_end)
        self.hosts.update(_hosts(a))
        if a.client_ip:
            self.actors.setdefault(a.client_ip, a.window_start)
        if a.server_ip:
            self.targets.setdefault(a.server_ip, a.window_start)
        if a.technique_id:
            self.techniques.setdefault(a.technique_id, a.window_start)
        self.rules.setdefault(a.rule_id, [a.window_start, 0])[1] += 1
        self.worst = max(self.worst, SEVERITIES.index(a.severity) if a.severity in SEVERITIES else 1)
        key = (a.client_ip, a.rule_id, a.technique_id)
        step = self.steps.get(key)
        if step is None:
            step = self.steps[key] = _Step(a.window_start, a.window_start, a.client_ip, a.rule_id, a.technique_id)
        step.add(a)

    def freeze(self) -> Incident:
        techniques = sorted(self.techniques, key=lambda t: (self.techniques[t], _rank(t), t))
        tactics = [technique(t).tactic.id for t in techniques]
        distinct = list(dict.fromkeys(tactics))
        prepared = False
        escalated = len(distinct) >= 3
        for tactic in tactics:
            prepared = prepared or tactic in PREPARING_TACTICS
            escalated = escalated or (prepared and tactic in ACTING_TACTICS)
        level = min(self.worst + (1 if escalated else 0), len(SEVERITIES) - 1)
        steps = tuple(sorted((s.freeze() for s in self.steps.values()),
                             key=lambda s: (s.first_ts, _rank(s.technique_id), s.actor, s.rule_id)))
        return Incident(
            id=self.id, start=self.first.window_start, end=self.end, severity=SEVERITIES[level],
            risk_score=RISK[SEVERITIES[level]], actors=_by_time(self.actors), targets=_by_time(self.targets),
            techniques=tuple(techniques), alert_count=self.count,
            rules=tuple((r, int(self.rules[r][1])) for r in _by_time({r: v[0] for r, v in self.rules.items()})),
            steps=steps,
            summary=summarise(steps), first_alert_id=self.first.id,
            last_alert_id=self.last_id, escalated=escalated,
        )


def _by_time(first_seen: dict[str, float]) -> tuple[str, ...]:
    return tuple(sorted(first_seen, key=lambda k: (first_seen[k], k)))


def _rank(technique_id: str) -> int:
    """Steps of the same window in the matrix's order: discovery before the action it prepared."""
    return tactic_rank(technique(technique_id).tactic.id) if technique_id else len(TACTICS)


def _hosts(a: Alert) -> set[str]:
    hosts = {h for h in (a.client_ip, a.server_ip) if h}
    return hosts or {SENSOR}


class Correlator:
    """Folds alerts (in ``alert_order``) into incidents; see the module docstring for the grouping.

    ``add`` returns the alert with its ``incident_id`` set; ``close_idle(t)`` returns the incidents idle since
    before ``t - idle_gap_s`` (closed for good); ``open_incidents()`` snapshots the open ones (for a live index);
    ``flush()`` closes all of them at the end of a stream.
    """

    def __init__(self, idle_gap_s: float = DEFAULT_IDLE_GAP_S) -> None:
        if not idle_gap_s > 0:
            raise ValueError(f"idle_gap_s must be > 0, got {idle_gap_s!r}")
        self.idle_gap_s = idle_gap_s
        self._open: list[_Open] = []  # in order of start
        self.closed = 0

    def add(self, alert: Alert) -> Alert:
        hosts = _hosts(alert)
        incident = next((i for i in self._open if i.hosts & hosts and
                         alert.window_start - i.last_seen <= self.idle_gap_s), None)
        if incident is None:
            incident = _Open(alert, alert.window_start, alert.window_end)
            self._open.append(incident)
        incident.add(alert)
        return replace(alert, incident_id=incident.id)

    def close_idle(self, now: float) -> list[Incident]:
        """Incidents whose last alert is more than ``idle_gap_s`` before window time ``now``."""
        done = [i for i in self._open if now - i.last_seen > self.idle_gap_s]
        if not done:
            return []
        self._open = [i for i in self._open if now - i.last_seen <= self.idle_gap_s]
        self.closed += len(done)
        return [i.freeze() for i in done]

    def open_incidents(self) -> list[Incident]:
        return [i.freeze() for i in self._open]

    def flush(self) -> list[Incident]:
        done, self._open = self._open, []
        self.closed += len(done)
        return [i.freeze() for i in done]


def alert_order(a: Alert) -> tuple:
    """The order a correlator must see alerts in to build the same incidents (``Detection`` emits it per batch)."""
    return (a.window_start, a.client_ip, a.server_ip, a.unit_id, a.rule_id, a.id)


def correlate(alerts: Iterable[Alert], idle_gap_s: float = DEFAULT_IDLE_GAP_S) -> tuple[list[Alert], list[Incident]]:
    """Every alert with its incident id, and the incidents in order of start (a whole stream at once)."""
    correlator = Correlator(idle_gap_s)
    ordered = sorted(alerts, key=alert_order)
    out: list[Alert] = []
    incidents: list[Incident] = []
    for a in ordered:
        incidents.extend(correlator.close_idle(a.window_start))
        out.append(correlator.add(a))
    incidents.extend(correlator.flush())
    return out, sorted(incidents, key=lambda i: (i.start, i.id))
