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
from itertools import groupby
from typing import Iterable, Sequence

from otsentry.contracts.attack import ACTING_TACTICS, PREPARING_TACTICS, TACTICS, tactic_rank, technique
from otsentry.contracts.windows import alert_order
from otsentry.correlation.summary import summarise
from otsentry.detectors.rules import rule
from otsentry.records import Alert, Incident, IncidentStep

__all__ = ["DEFAULT_IDLE_GAP_S", "Correlator", "correlate", "incident_id"]

DEFAULT_IDLE_GAP_S = 900.0
DEFAULT_MAX_DURATION_S = 86400.0
SEVERITIES = ("low", "medium", "high", "critical")
RISK = {"low": 21.0, "medium": 47.0, "high": 73.0, "critical": 99.0}
SENSOR = ""  # the "host" of sensor-wide alerts


def incident_id(first_alert_id: str) -> str:
    """Deterministic: the same first alert (itself a hash of window, pair and rule) gives the same incident."""
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

    def add(self, a: Alert, other: str) -> None:
        self.alerts += 1
        self.last_ts = max(self.last_ts, a.window_start)
        if other:
            self.targets.setdefault(other)
        if a.unit_id >= 0:
            self.units.add(a.unit_id)
        elif a.server_port:
            self.services.setdefault(f"{a.server_port}/{a.transport}")
        self.codes.update(a.function_codes)

    def absorb(self, other: "_Step") -> None:
        self.first_ts, self.last_ts = min(self.first_ts, other.first_ts), max(self.last_ts, other.last_ts)
        self.alerts += other.alerts
        self.targets.update(other.targets)
        self.services.update(other.services)
        self.units |= other.units
        self.codes |= other.codes

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
    related: dict[str, float] = field(default_factory=dict)
    techniques: dict[str, float] = field(default_factory=dict)
    rules: dict[str, list[float]] = field(default_factory=dict)  # rule -> [first window start, alerts]
    steps: dict[tuple[str, str, str], _Step] = field(default_factory=dict)
    worst: int = 0
    count: int = 0
    last_id: str = ""
    merged: list[str] = field(default_factory=list)  # ids of incidents folded into this one

    @property
    def id(self) -> str:
        return incident_id(self.first.id)

    def add(self, a: Alert) -> None:
        self.count += 1
        self.last_id = a.id
        self.last_seen = max(self.last_seen, a.window_start)
        self.end = max(self.end, a.window_end)
        self.hosts.update(_hosts(a))
        for h in _hosts(a) - {SENSOR}:
            self.related.setdefault(h, a.window_start)
        declared = rule(a.rule_id)
        subject, other = (a.server_ip, a.client_ip) if declared.subject == "server" else (a.client_ip, a.server_ip)
        if a.client_ip and declared.subject == "client":
            self.actors.setdefault(a.client_ip, a.window_start)
        if a.server_ip:
            self.targets.setdefault(a.server_ip, a.window_start)
        if a.technique_id:
            self.techniques.setdefault(a.technique_id, a.window_start)
        self.rules.setdefault(a.rule_id, [a.window_start, 0])[1] += 1
        self.worst = max(self.worst, SEVERITIES.index(a.severity) if a.severity in SEVERITIES else 1)
        key = (subject, a.rule_id, a.technique_id)
        step = self.steps.get(key)
        if step is None:
            step = self.steps[key] = _Step(a.window_start, a.window_start, subject, a.rule_id, a.technique_id)
        step.add(a, other)

    def absorb(self, other: "_Open") -> None:
        """Fold ``other`` (started no earlier) into this incident: an alert involved hosts of both."""
        if (other.last_seen, other.last_id) > (self.last_seen, self.last_id):
            self.last_id = other.last_id
        self.last_seen, self.end = max(self.last_seen, other.last_seen), max(self.end, other.end)
        self.hosts |= other.hosts
        for mine, theirs in ((self.actors, other.actors), (self.targets, other.targets),
                             (self.related, other.related), (self.techniques, other.techniques)):
            for k, t in theirs.items():
                mine[k] = min(mine.get(k, t), t)
        for r, (t, n) in other.rules.items():
            mine_r = self.rules.setdefault(r, [t, 0])
            mine_r[0], mine_r[1] = min(mine_r[0], t), mine_r[1] + n
        for key, step in other.steps.items():
            if key in self.steps:
                self.steps[key].absorb(step)
            else:
                self.steps[key] = step
        self.worst, self.count = max(self.worst, other.worst), self.count + other.count
        self.merged += [other.id, *other.merged]

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
            related=tuple(sorted(self.related)),
            techniques=tuple(techniques), alert_count=self.count,
            rules=tuple((r, int(self.rules[r][1])) for r in _by_time({r: v[0] for r, v in self.rules.items()})),
            steps=steps,
            summary=summarise(steps), first_alert_id=self.first.id,
            last_alert_id=self.last_id, escalated=escalated, merged=tuple(sorted(self.merged)),
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

    def __init__(self, idle_gap_s: float = DEFAULT_IDLE_GAP_S, max_duration_s: float = DEFAULT_MAX_DURATION_S) -> None:
        if not idle_gap_s > 0 or not max_duration_s > 0:
            raise ValueError(f"idle_gap_s and max_duration_s must be > 0, got {idle_gap_s!r}, {max_duration_s!r}")
        self.idle_gap_s, self.max_duration_s = idle_gap_s, max_duration_s
        self._open: list[_Open] = []  # in order of start
        self._folded: dict[int, _Open] = {}  # within one add_window: folded incident -> the one it went into
        self.closed = 0

    def add_window(self, alerts: Sequence[Alert]) -> list[Alert]:
        """The alerts of one window time (in ``alert_order``), each with the id of the incident it ends up in.

        An alert that involves hosts of several open incidents folds them into the earliest-started one; inside a
        window that is resolved before any id is handed out (the HMI's "no answer" and the attacker's listen-only
        command of one window are one incident, whichever came first). An incident folded later keeps the id its
        earlier alerts carry, listed in the survivor's ``merged``.
        """
        placed = []
        for a in alerts:
            hosts = _hosts(a)
            matches = [i for i in self._open if i.hosts & hosts and a.window_start - i.last_seen <= self.idle_gap_s]
            if not matches:
                incident = _Open(a, a.window_start, a.window_end)
                self._open.append(incident)
            else:
                incident = matches[0]
                for other in matches[1:]:
                    incident.absorb(other)
                    self._folded[id(other)] = incident
                self._open = [i for i in self._open if i is incident or i not in matches]
            incident.add(a)
            placed.append((a, incident))
        out = [replace(a, incident_id=self._survivor(i).id) for a, i in placed]
        self._folded.clear()
        return out

    def add(self, alert: Alert) -> Alert:
        """One alert on its own (its window holds no other): ``add_window([alert])``."""
        return self.add_window([alert])[0]

    def _survivor(self, incident: _Open) -> _Open:
        while id(incident) in self._folded:
            incident = self._folded[id(incident)]
        return incident

    def close_idle(self, now: float) -> list[Incident]:
        """Incidents whose last alert is more than ``idle_gap_s`` before window time ``now``, and those open for
        more than ``max_duration_s`` (a host that never goes quiet: the next alert opens a new incident, so memory
        and a daemon's checkpoint stay bounded)."""
        def over(i: _Open) -> bool:
            return now - i.last_seen > self.idle_gap_s or now - i.first.window_start > self.max_duration_s

        done = [i for i in self._open if over(i)]
        if not done:
            return []
        self._open = [i for i in self._open if not over(i)]
        self.closed += len(done)
        return [i.freeze() for i in done]

    def open_incidents(self) -> list[Incident]:
        """The open incidents as they stand (nothing is closed)."""
        return [i.freeze() for i in self._open]

    def flush(self) -> list[Incident]:
        done, self._open = self._open, []
        self.closed += len(done)
        return [i.freeze() for i in done]


def correlate(alerts: Iterable[Alert], idle_gap_s: float = DEFAULT_IDLE_GAP_S) -> tuple[list[Alert], list[Incident]]:
    """Every alert with its incident id, and the incidents in order of start (a whole stream at once)."""
    correlator = Correlator(idle_gap_s)
    ordered = sorted(alerts, key=alert_order)
    out: list[Alert] = []
    incidents: list[Incident] = []
    for _, window in groupby(ordered, key=lambda a: a.window_start):
        group = list(window)
        incidents.extend(correlator.close_idle(group[0].window_start))
        out.extend(correlator.add_window(group))
    incidents.extend(correlator.flush())
    return out, sorted(incidents, key=lambda i: (i.start, i.id))
