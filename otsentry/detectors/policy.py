"""The policy baseline: allow-lists learned from known-good windows, explained alerts for what falls outside.

Deterministic and explainable by construction: no scores to calibrate, every alert names the learned range it
broke. ``fit`` learns, per asset pair, the function codes, address and value ranges and per-window count ranges
(see ``policy_profiles``), and from flow windows the conversations (originator, responder, port, transport);
``detect`` runs the rules of ``policy_rules`` on each window.

Rate limiting applies to *states* only (``kind`` in ``otsentry.detectors.rules``). An attack action (a write, a
diagnostic command, a new function code, an exception burst, values played back) alerts in every window that holds
it, however often it repeats: suppressing it is how a second force-listen-only seven minutes after the first
vanished. Repeats fold into an incident (``otsentry.correlation``) instead of disappearing. A state (a new talker
that keeps talking, a new pair or service, a device that stays silent or frozen) would otherwise fire every 10 s
window for as long as it lasts: each finding names the facts it reports (the new IP, the pair, the service...) and
becomes an alert when at least one of them was not reported in the last ``realert_interval_s`` seconds of *window
time* (default one hour; ``None``: once per fact); the alert then lists all of the window's facts for that rule and
refreshes them. So the first window of a state always alerts, a state that persists is re-reported once per
interval as a reminder, a new fact (a second new talker) alerts at once, and a fact that comes back after
``reappear_s`` unseen (a scan repeated after a quiet spell) alerts at once too. Time is the windows' own, so a capture
gives the same alerts on every replay; ``detect`` starts from a fresh ``AlertSuppressor`` unless given one, which a
streaming caller keeps across batches.

Alert ids come from ``alert_id`` over (window, asset pair, rule). Flow windows have no unit id (-1), so their
service (port/transport) is folded into the rule part of the key: two new services between the same two hosts in
one window are two alerts, not one.
"""

from __future__ import annotations

from typing import Any, Hashable, Iterable, Mapping, Sequence

from otsentry.contracts.schema import FEATURE_SCHEMA_VERSION
from otsentry.detectors.acceptance import Accepted
from otsentry.detectors.base import BaseDetector, Interval, NotFittedError, validate_params
from otsentry.detectors.policy_findings import Finding, compute_write_history
from otsentry.detectors.policy_flow_rules import FLOW_RULES
from otsentry.detectors.policy_ot import OtProfile, ot_findings, ot_profiles
from otsentry.detectors.policy_profiles import PairProfile, check_window, merge_all, profile_of
from otsentry.detectors.policy_rules import PAIR_RULES
from otsentry.detectors.rules import RISK_SCORES, RULES, rule
from otsentry.features.otwin import ot_protocol
from otsentry.records import Alert, FeatureWindow, alert_id

__all__ = ["ACTION_RULES", "AlertSuppressor", "Asset", "Conversation", "Pair", "PolicyBaseline", "STATE_KIND",
    "STATE_VERSION"]

STATE_KIND = "otsentry.policy_baseline"
STATE_VERSION = 1

Pair = tuple[str, str, int]
Asset = tuple[str, int]
Conversation = tuple[str, str, int, str]  # originator, responder, responder port, transport
ACTION_RULES = frozenset(r.id for r in RULES.values() if r.kind == "action")  # never rate-limited


class AlertSuppressor:
    """Remembers, per fact, the window time it was last reported and last seen; decides what may alert again.

    A fact alerts when it was never reported, when its last report is ``interval_s`` old (a persistent state's
    reminder), or when it comes back after ``reappear_s`` without being seen at all: a scan repeated after a quiet
    spell is a new occurrence (and, after the incident gap, a new incident), not the same state going on.
    """

    def __init__(self, interval_s: float | None, reappear_s: float | None = None) -> None:
        self.interval_s, self.reappear_s = interval_s, reappear_s
        self._last: dict[Hashable, float] = {}
        self._seen: dict[Hashable, float] = {}

    def allows(self, facts: Iterable[Hashable], t: float) -> bool:
        for fact in facts:
            last = self._last.get(fact)
            if last is None or (self.interval_s is not None and abs(t - last) >= self.interval_s):
                return True
            seen = self._seen.get(fact, last)
            if self.reappear_s is not None and t - seen > self.reappear_s:
                return True
        return False

    def seen(self, facts: Iterable[Hashable], t: float) -> None:
        for fact in facts:
            if t > self._seen.get(fact, float("-inf")):
                self._seen[fact] = t

    def record(self, facts: Iterable[Hashable], t: float) -> None:
        for fact in facts:
            self._last[fact] = t


def _window_order(w: FeatureWindow) -> tuple[Any, ...]:
    """Time first, then pair windows before flow windows (they carry unit id and function codes), then keys."""
    return (w.window_start, w.window_end, w.kind != "pair", w.client_ip, w.server_ip, w.unit_id, w.port,
            w.transport)


class PolicyBaseline:
    """Learned allow-lists for the OT segment; ``detect`` turns deviations into explained alerts.

    Parameters (thresholds are relative to what was learned, with floors, so that normal-but-rare traffic stays
    quiet after a short learning period):

    * ``exception_burst_factor``, ``exception_burst_min``: a window alerts when its exception count exceeds
      ``max(factor * learned_max, learned_max + min)`` for the pair;
    * ``exception_rate_floor``, ``exception_tail``: a window also alerts when its exceptions exceed the learned
      maximum and are that unlikely (binomial tail probability below ``exception_tail``) at the pair's learned
      exceptions-per-response rate, floored at ``exception_rate_floor``: 3 exceptions in 4 answers from a poller
      that reads twice per cycle, far below the absolute floor above, but about 4e-6 at a 1 % rate;
    * ``address_margin``: registers tolerated beyond the learned address ranges (all requests, and writes);
    * ``write_margin_gaps``: for writes the margin also shrinks with the evidence, to this many times the learned
      write range divided by (writes learned + 1) (the expected gap between n writes spread over that range): a
      handful of learned writes keeps the full ``address_margin``, seventy writes over addresses 0-113 (coils and
      setpoints) leave 2.4, thirty-five (five minutes of an HMI's writes) 4.8;
    * ``value_margin``, ``value_margin_min``: a written value alerts when outside the learned written range widened
      by ``max(value_margin * learned span, value_margin_min)``;
    * ``pool_writes_per_client``: a client that wrote to this asset while learning is judged, for write codes,
      write addresses and written values, against everything it wrote (its other assets too), and a client that
      wrote to one unit id of a server is a known writer of the server's other unit ids (a gateway's units);
      ``False`` judges every pair on its own history only (stricter, needs a longer learning period);
    * ``always_alert_restart``: FC 8 restart-communications and force-listen-only alert even if seen while learning
      (they take a device off the network; a learning capture holding one is more likely tainted than normal);
    * ``frozen_rate_factor``, ``frozen_min_windows``: a learned pair whose register values changed in every one
      of at least ``frozen_min_windows`` learning windows (the lowest change rate, over windows comparing at least
      ``MIN_COMPARED`` values, above 0) alerts when a window's change rate is at most ``frozen_rate_factor`` times
      that lowest rate: values frozen;
    * ``replay_burst_min``: a window alerts when its replayed reads (values back to an exact earlier state of the
      block) exceed ``max(2 * learned_max, learned_max + replay_burst_min)``;
    * ``unanswered_ratio``, ``unanswered_burst_min``: a window alerts when its unanswered requests exceed the
      learned maximum and are at least ``unanswered_ratio`` of its requests or ``unanswered_burst_min`` above the
      learned maximum: the device stopped answering;
    * ``realert_interval_s``: window-time interval before the same fact of a *state* is reported again (``None``:
      never); attack actions are never rate-limited;
    * ``reappear_s``: a state's fact not seen for this long that shows again alerts at once (a scan repeated after
      a quiet spell; ``None``: only the interval above counts). The default is the incident gap, so a repeat
      after an incident closed opens a new one.
    """

    get_params = BaseDetector.get_params
    __repr__ = BaseDetector.__repr__
    _parameter_constraints = {
        "exception_burst_factor": Interval(float, 1.0, None), "exception_burst_min": Interval(float, 0.0, None),
        "address_margin": Interval(int, 0, None), "value_margin": Interval(float, 0.0, None),
        "value_margin_min": Interval(float, 0.0, None), "pool_writes_per_client": Interval(bool),
        "always_alert_restart": Interval(bool),
        "realert_interval_s": Interval(float, 0.0, None, none_ok=True),
        "exception_rate_floor": Interval(float, 0.0, 1.0, closed="right"),
        "exception_tail": Interval(float, 0.0, 1.0, closed="neither"),
        "write_margin_gaps": Interval(float, 0.0, None), "frozen_rate_factor": Interval(float, 0.0, 1.0),
        "frozen_min_windows": Interval(int, 1, None), "replay_burst_min": Interval(float, 0.0, None),
        "unanswered_ratio": Interval(float, 0.0, 1.0), "unanswered_burst_min": Interval(float, 0.0, None),
        "reappear_s": Interval(float, 0.0, None, none_ok=True),
    }

    def __init__(self, exception_burst_factor: float = 3.0, exception_burst_min: float = 5.0,
                 address_margin: int = 10, value_margin: float = 1.0, value_margin_min: float = 10.0,
                 pool_writes_per_client: bool = True, always_alert_restart: bool = True,
                 realert_interval_s: float | None = 3600.0, exception_rate_floor: float = 0.01,
                 exception_tail: float = 1e-5, write_margin_gaps: float = 1.5, frozen_rate_factor: float = 0.25,
                 frozen_min_windows: int = 6, replay_burst_min: float = 2.0, unanswered_ratio: float = 0.3,
                 unanswered_burst_min: float = 3.0, reappear_s: float | None = 900.0) -> None:
        self.exception_burst_factor = exception_burst_factor
        self.exception_burst_min = exception_burst_min
        self.exception_rate_floor = exception_rate_floor
        self.exception_tail = exception_tail
        self.address_margin = address_margin
        self.write_margin_gaps = write_margin_gaps
        self.frozen_rate_factor = frozen_rate_factor
        self.frozen_min_windows = frozen_min_windows
        self.replay_burst_min = replay_burst_min
        self.unanswered_ratio = unanswered_ratio
        self.unanswered_burst_min = unanswered_burst_min
        self.value_margin = value_margin
        self.value_margin_min = value_margin_min
        self.pool_writes_per_client = pool_writes_per_client
        self.always_alert_restart = always_alert_restart
        self.realert_interval_s = realert_interval_s
        self.reappear_s = reappear_s

    # -- learning -------------------------------------------------------------------------------------------------

    def fit(self, windows: Iterable[FeatureWindow]) -> "PolicyBaseline":
        """Learn the allow-lists from known-good windows (pair and flow windows, in any order)."""
        validate_params(self)
        pair_profiles: dict[Pair, list[PairProfile]] = {}
        talkers: set[str] = set()
        conversations: set[Conversation] = set()
        named: dict[tuple[str, int, str], set[str]] = {}  # responder service -> protocols its payload showed
        stats = {"pair_windows": 0, "flow_windows": 0, "start": None, "end": None}
        ot: list[FeatureWindow] = []
        for w in windows:
            if w.kind == "sensor":  # reported by otsentry.detectors.sensor, never learned
                continue
            if w.kind == "ot":  # DNP3, IEC 104, S7, EtherNet/IP: learned by policy_ot
                ot.append(w)
            else:
                check_window(w)
                talkers.update((w.client_ip, w.server_ip))
                if w.kind == "pair":
                    stats["pair_windows"] += 1
                    pair_profiles.setdefault(w.pair, []).append(profile_of(w))
                else:
                    stats["flow_windows"] += 1
                    conversations.add((w.client_ip, w.server_ip, int(w.port), w.transport))
                    if w.service:
                        named.setdefault((w.server_ip, int(w.port), w.transport), set()).add(w.service)
            stats["start"] = w.window_start if stats["start"] is None else min(stats["start"], w.window_start)
            stats["end"] = w.window_end if stats["end"] is None else max(stats["end"], w.window_end)
        if not stats["pair_windows"] and not stats["flow_windows"] and not ot:
            raise ValueError("PolicyBaseline.fit needs at least one window of known-good traffic")
        pairs = {pair: merge_all(ps) for pair, ps in pair_profiles.items()}
        if ot:
            stats["ot_windows"] = len(ot)
        self._set_learned(frozenset(talkers), pairs, frozenset(conversations), stats, ot=ot_profiles(ot),
                          service_names={k: frozenset(v) for k, v in named.items()})
        return self

    def _set_learned(self, talkers: frozenset[str], pairs: Mapping[Pair, PairProfile],
                     conversations: frozenset[Conversation], stats: Mapping[str, Any],
                     accepted: Accepted | None = None, ot: Mapping[tuple, OtProfile] | None = None,
                     service_names: Mapping[tuple[str, int, str], frozenset[str]] | None = None) -> None:
        """Store what was learned and derive the lookups the rules use (shared by fit and from_state)."""
        self.accepted_ = accepted or Accepted()
        self.service_names_ = dict(sorted((service_names or {}).items()))
        self.ot_profiles_ = dict(sorted((ot or {}).items()))
        masters: dict[tuple, set[str]] = {}
        for client, server, station, port, transport in self.ot_profiles_:
            masters.setdefault((server, station, port, transport), set()).add(client)
        self.ot_masters_ = {k: frozenset(v) for k, v in sorted(masters.items())}
        self.talkers_ = talkers
        self.pairs_ = dict(sorted(pairs.items()))
        self.conversations_ = conversations
        self.training_stats_ = dict(stats)
        assets: dict[Asset, list[PairProfile]] = {}
        clients: dict[Asset, set[str]] = {}
        writers: dict[Asset, set[str]] = {}
        wrote: dict[str, list[PairProfile]] = {}
        for (client, server, unit), profile in self.pairs_.items():
            assets.setdefault((server, unit), []).append(profile)
            clients.setdefault((server, unit), set()).add(client)
            if profile.wrote:
                writers.setdefault((server, unit), set()).add(client)
                wrote.setdefault(client, []).append(profile.writes_only())
        self.assets_ = {a: merge_all(ps) for a, ps in sorted(assets.items())}
        self.clients_ = {a: frozenset(c) for a, c in sorted(clients.items())}
        self.writers_ = {a: frozenset(c) for a, c in sorted(writers.items())}
        server_writers: dict[str, set[str]] = {}
        for (server, _), cs in writers.items():
            server_writers.setdefault(server, set()).update(cs)
        self.server_writers_ = {s: frozenset(c) for s, c in sorted(server_writers.items())}
        self.writer_profiles_ = {c: merge_all(ps) for c, ps in sorted(wrote.items())}
        self.services_ = frozenset((resp, port, transport) for _, resp, port, transport in conversations)
        client_services: dict[str, set[tuple[int, str]]] = {}
        for orig, _, port, transport in conversations:
            client_services.setdefault(orig, set()).add((port, transport))
        self.client_services_ = {c: frozenset(s) for c, s in sorted(client_services.items())}
        # what each learned pair's writes are judged against (policy_findings.write_history): computed once here, so
        # that detection only reads the learned state
        self.write_histories_ = {pair: compute_write_history(self, pair) for pair in self.pairs_}

    def _check_fitted(self) -> None:
        if not hasattr(self, "pairs_"):
            raise NotFittedError("PolicyBaseline is not fitted yet: call fit() on learning data first")

    # -- detection ------------------------------------------------------------------------------------------------

    def new_suppressor(self) -> AlertSuppressor:
        """Rate-limit memory for a stream of ``detect`` calls (keep one per stream, in window-time order)."""
        return AlertSuppressor(self.realert_interval_s, self.reappear_s)

    def findings(self, window: FeatureWindow) -> list[Finding]:
        """Every rule's verdict on one window, without rate limiting (for inspection and tests)."""
        self._check_fitted()
        if window.kind == "ot":
            return ot_findings(self.ot_profiles_, self.ot_masters_, window)
        check_window(window)
        rules = PAIR_RULES if window.kind == "pair" else FLOW_RULES
        return [f for f in (check(self, window) for check in rules) if f is not None]

    def detect(self, windows: Sequence[FeatureWindow], suppressor: AlertSuppressor | None = None) -> list[Alert]:
        """Alerts for the windows, in window-time order, rate-limited as the module docstring explains."""
        self._check_fitted()
        memory = suppressor if suppressor is not None else self.new_suppressor()
        accepted = self.accepted_
        alerts = []
        # ``findings`` inlined (rules do not read the suppressor, so interleaving them with it changes nothing):
        # the per-window calls and generator frames were a good share of the policy's time on a busy capture.
        for w in sorted(windows, key=_window_order):
            if w.kind == "sensor":
                continue
            if w.kind == "ot":
                found = ot_findings(self.ot_profiles_, self.ot_masters_, w)
            else:
                check_window(w)
                found = [check(self, w) for check in (PAIR_RULES if w.kind == "pair" else FLOW_RULES)]
            for finding in found:
                if finding is None or (accepted and accepted.covers(finding, w)):
                    continue
                if finding.rule_id not in ACTION_RULES:
                    allowed = memory.allows(finding.facts, w.window_start)
                    memory.seen(finding.facts, w.window_start)
                    if not allowed:
                        continue
                    memory.record(finding.facts, w.window_start)
                alerts.append(_to_alert(w, finding))
        return alerts

    def accept(self, alerts: Iterable[Alert]) -> "PolicyBaseline":
        """A new baseline that also allows exactly what ``alerts`` reported (see ``otsentry.detectors.acceptance``);
        this one is unchanged. Raises ``NotAcceptable`` for an alert no policy fact can allow."""
        self._check_fitted()
        copy = PolicyBaseline.from_state(self.to_state())
        copy.accepted_ = self.accepted_.with_alerts(alerts)
        return copy

    # -- persistence ----------------------------------------------------------------------------------------------

    def to_state(self) -> dict[str, Any]:
        """JSON-ready, sorted and stable: the same baseline always gives the same document (no pickle)."""
        self._check_fitted()
        return {
            "kind": STATE_KIND,
            "version": STATE_VERSION,
            "feature_schema": FEATURE_SCHEMA_VERSION,
            "params": self.get_params(),
            "talkers": sorted(self.talkers_),
            "pairs": [{"client": c, "server": s, "unit": u, **p.to_state()} for (c, s, u), p in self.pairs_.items()],
            "conversations": [{"originator": o, "responder": r, "port": p, "transport": t}
                              for o, r, p, t in sorted(self.conversations_)],
            "training_stats": dict(sorted(self.training_stats_.items())),
            **({"accepted": self.accepted_.to_state()} if self.accepted_ else {}),
            **({"ot": [{"client": c, "server": s, "station": u, "port": p, "transport": t, **prof.to_state()}
                       for (c, s, u, p, t), prof in self.ot_profiles_.items()]} if self.ot_profiles_ else {}),
            **({"service_names": [{"responder": r, "port": p, "transport": t, "names": sorted(names)}
                                  for (r, p, t), names in self.service_names_.items()]} if self.service_names_ else {}),
        }

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> "PolicyBaseline":
        """Rebuild a fitted baseline from ``to_state()``; refuses another kind, version or feature schema."""
        if state.get("kind") != STATE_KIND or state.get("version") != STATE_VERSION:
            raise ValueError(f"not a version-{STATE_VERSION} policy baseline state: "
                             f"kind={state.get('kind')!r}, version={state.get('version')!r}")
        if state.get("feature_schema") != FEATURE_SCHEMA_VERSION:
            raise ValueError(f"policy baseline learned on feature schema {state.get('feature_schema')!r}, "
                             f"this version reads {FEATURE_SCHEMA_VERSION!r}: relearn it")
        baseline = cls(**state["params"])
        validate_params(baseline)
        pairs = {(p["client"], p["server"], int(p["unit"])): PairProfile.from_state(p) for p in state["pairs"]}
        conversations = frozenset((c["originator"], c["responder"], int(c["port"]), c["transport"])
                                  for c in state["conversations"])
        ot = {(o["client"], o["server"], int(o["station"]), int(o["port"]), o["transport"]): OtProfile.from_state(o)
              for o in state.get("ot", ())}
        names = {(n["responder"], int(n["port"]), n["transport"]): frozenset(n["names"])
                 for n in state.get("service_names", ())}  # absent from bundles made before payloads were named
        baseline._set_learned(frozenset(state["talkers"]), pairs, conversations, state["training_stats"],
                              Accepted.from_state(state.get("accepted", ())), ot, names)
        return baseline


def _to_alert(w: FeatureWindow, f: Finding) -> Alert:
    key_rule = f.rule_id if w.kind == "pair" else f"{f.rule_id}@{w.port}/{w.transport}"
    if w.kind == "ot" and f.variant:  # two findings of one rule in one window (a stop and a start) are two alerts
        key_rule = f"{f.rule_id}:{f.variant}@{w.port}/{w.transport}"
    transport, protocol = ot_protocol(w.transport) if w.kind == "ot" else (w.transport or "tcp", "")
    declared = rule(f.rule_id)
    tech = declared.technique_for(f.variant)
    return Alert(
        id=alert_id(w.window_start, w.window_end, w.client_ip, w.server_ip, w.unit_id, key_rule),
        rule_id=f.rule_id,
        rule_name=declared.name,
        category="policy",
        detector="policy",
        severity=f.severity,
        risk_score=RISK_SCORES[f.severity],
        score=float(f.score),
        threshold=float(f.threshold),
        window_start=w.window_start,
        window_end=w.window_end,
        client_ip=w.client_ip,
        server_ip=w.server_ip,
        unit_id=w.unit_id,
        explanation=f.explanation,
        evidence=f.evidence,
        function_codes=f.function_codes,
        server_port=w.port,
        transport=transport,
        technique_id=tech.id if tech is not None else "",
        first_frame=w.first_frame,
        last_frame=w.last_frame,
        protocol=protocol,
    )
