"""Anomaly detection over FeatureWindows: an ensemble per window kind, turned into explained Alerts.

One ``AnomalyWindowDetector`` serves one kind of window ("pair" for Modbus asset pairs, "flow" for conversations)
because the two kinds have different feature vectors. All asset pairs share one model: a pair polled at 20
requests per window and one polled at 5 are both "normal", so the models learn a multi-modal normal and an alert
means "unlike any pair seen while learning". Per-pair rules (a new pair, a function code new for this pair) belong to
the policy baseline.

Severity follows how far the ensemble score is above its threshold: < 2x medium, 2-5x high, >= 5x critical; the
risk score (0-100) rises with the logarithm of that ratio inside the same bands.
"""

from __future__ import annotations

import math
from typing import Iterable, Sequence

import numpy as np

from otsentry.contracts.schema import FEATURE_SCHEMA_VERSION, FLOW_FEATURES, OT_FEATURES, OT_SCHEMA_VERSION, PAIR_FEATURES
from otsentry.detectors.base import BaseDetector
from otsentry.detectors.ensemble import DEFAULT_MEMBERS, EnsembleDetector
from otsentry.detectors.rules import rule
from otsentry.records import Alert, FeatureEvidence, FeatureWindow, alert_id

__all__ = ["AnomalyWindowDetector", "KINDS", "SCHEMAS", "explain_sentence", "function_codes", "severity_for"]

KINDS = {"pair": PAIR_FEATURES, "flow": FLOW_FEATURES, "ot": OT_FEATURES}
SCHEMAS = {"pair": FEATURE_SCHEMA_VERSION, "flow": FEATURE_SCHEMA_VERSION, "ot": OT_SCHEMA_VERSION}

# Features that count events in the window: their explanation says "in 10 s".
_COUNT_PREFIXES = ("fc_", "exc_", "diag_", "tcp_", "packets", "bytes")
_COUNT_NAMES = frozenset(
    {"requests", "responses", "transactions", "exceptions", "reads", "writes", "unanswered", "orphan_responses",
     "malformed", "values_count", "connections", "retransmissions"}
)
_NOT_COUNTS = frozenset({"fc_distinct"})

# (ratio at band start, severity, risk at band start, risk at band end, ratio at band end)
_BANDS = ((1.0, "medium", 40.0, 69.0, 2.0), (2.0, "high", 70.0, 89.0, 5.0), (5.0, "critical", 90.0, 100.0, 50.0))


class AnomalyWindowDetector(BaseDetector):
    """Learns the normal feature windows of one kind, then alerts on windows the ensemble scores above threshold.

    ``min_train_windows`` guards against a threshold learned from a handful of windows (with n windows the
    calibration cannot resolve false-alarm rates below ~1/n); ``top_features`` is how many features an alert names.

    ``margin`` (1.0, in units of the calibration scores' 99th-50th percentile spread) is what keeps false alerts
    under one per hour: a quantile of one hour of learning windows cannot see events rarer than one per hour, and a
    fresh hour always brings a few (a counter one above its learned maximum). Measured on four generated one-hour
    plants (learn one hour, score the next; 12 asset pairs, ~7,300 windows per hour): the default ensemble margin of
    0.1 gave 13 false alerts in 4 hours, 0.5 and 0.75 none (the highest normal window at 0.86 of the threshold with
    0.75), while every attack window of the generated flood, sweep, new-host write and setpoint scenarios still
    scored 1.6x (the last, partial window of a flood) to over 500x the threshold. With the scenario library's
    shorter learning (10 minutes, ~1,200 windows), 0.75 still let one normal window through in six 30-minute
    captures (seeds 1-6: a gateway reconnect with an unusually long pause, at 1.04x); 1.0 raises the threshold by
    3-8 % and silences it, while every attack window the ensemble flagged at 0.75 still scores above it (lowest
    1.05x, an exception-storm window the policy baseline reports anyway; floods 1.5x and up).
    """

    def __init__(
        self,
        kind: str = "pair",
        members: Sequence[str] = DEFAULT_MEMBERS,
        false_alarm_rate: float = 1e-4,
        min_train_windows: int = 60,
        combine: str = "mean",
        random_state: int = 0,
        top_features: int = 3,
        margin: float = 1.0,
    ) -> None:
        self.kind = kind
        self.members = members
        self.false_alarm_rate = false_alarm_rate
        self.min_train_windows = min_train_windows
        self.combine = combine
        self.random_state = random_state
        self.top_features = top_features
        self.margin = margin

    @property
    def rule_id(self) -> str:
        return f"anomaly.{self.kind}_ensemble"

    def fit(self, windows: Iterable[FeatureWindow]) -> "AnomalyWindowDetector":
        """Learn from the known-good windows of this detector's kind (others are ignored); returns ``self``."""
        names = self._feature_names()
        selected = self._select(windows)
        ensemble = EnsembleDetector(
            members=tuple(self.members),
            false_alarm_rate=self.false_alarm_rate,
            combine=self.combine,
            random_state=self.random_state,
            margin=self.margin,
        )
        needed = max(int(self.min_train_windows), ensemble.min_rows())
        if len(selected) < needed:
            raise ValueError(
                f"{self.rule_id} needs at least {needed} {self.kind} windows to learn from, got {len(selected)}: "
                f"learn from a longer capture (e.g. {math.ceil(needed / max(len(self._pairs(selected)), 1))} "
                "windows per asset pair)"
            )
        X = self._matrix(selected, names)
        self.ensemble_ = ensemble.fit(X, feature_names=names)
        self.schema_ = SCHEMAS[self.kind]
        self.n_train_windows_ = len(selected)
        self.n_train_pairs_ = len(self._pairs(selected))
        self.window_s_ = float(np.median([w.window_end - w.window_start for w in selected]))
        self.threshold_ = self.ensemble_.threshold_
        return self

    def score_samples(self, X: np.ndarray) -> np.ndarray:
        """Ensemble score of feature rows in this kind's schema order (higher = more anomalous)."""
        self._check_fitted()
        return self.ensemble_.score_samples(X)

    def score_windows(self, windows: Iterable[FeatureWindow]) -> tuple[list[FeatureWindow], np.ndarray]:
        """The windows of this kind and their scores, in input order."""
        self._check_fitted()
        selected = self._select(windows)
        if not selected:
            return [], np.zeros(0)
        return selected, self.ensemble_.score_samples(self._matrix(selected, self.ensemble_.feature_names_))

    def detect(self, windows: Iterable[FeatureWindow]) -> list[Alert]:
        """An explained Alert for every window of this kind scored above the threshold, in input order."""
        selected, scores = self.score_windows(windows)
        above = np.flatnonzero(scores > self.threshold_)
        if not len(above):
            return []
        flagged = [selected[i] for i in above]
        evidence = self.ensemble_.explain(self._matrix(flagged, self.ensemble_.feature_names_), self.top_features)
        return [self._alert(w, float(scores[i]), ev) for w, i, ev in zip(flagged, above, evidence)]

    # -- internals -------------------------------------------------------------------------------------------

    def _feature_names(self) -> tuple[str, ...]:
        if self.kind not in KINDS:
            raise ValueError(f"unknown window kind {self.kind!r}: choose one of {', '.join(KINDS)}")
        return KINDS[self.kind]

    def _select(self, windows: Iterable[FeatureWindow]) -> list[FeatureWindow]:
        selected = [w for w in windows if w.kind == self.kind]
        schema = SCHEMAS.get(self.kind, FEATURE_SCHEMA_VERSION)
        for w in selected:
            if w.schema != schema:
                raise ValueError(
                    f"window at {w.window_start} uses feature schema {w.schema}, this otsentry uses {schema}"
                )
        return selected

    @staticmethod
    def _pairs(windows: Sequence[FeatureWindow]) -> set[tuple]:
        return {(w.client_ip, w.server_ip, w.unit_id, w.port, w.transport) for w in windows}

    @staticmethod
    def _matrix(windows: Sequence[FeatureWindow], names: Sequence[str]) -> np.ndarray:
        """Feature rows in schema order (``features.windows.to_matrix`` will replace this once it lands)."""
        X = np.array([w.values for w in windows], dtype=float).reshape(len(windows), -1)
        if X.shape[1] != len(names):
            raise ValueError(f"{X.shape[1]} feature values per window, the schema has {len(names)}")
        return X

    def _alert(self, w: FeatureWindow, score: float, evidence: list[FeatureEvidence]) -> Alert:
        ratio = score / self.threshold_ if self.threshold_ > 0 else math.inf
        severity, risk = severity_for(ratio)
        # alert_id has no port: flow windows of one host pair on two services would collide without it.
        id_rule = self.rule_id if self.kind == "pair" else f"{self.rule_id}@{w.port}/{w.transport}"
        tech = rule(self.rule_id).technique_for()
        technique_id = tech.id if tech is not None else ""
        return Alert(
            id=alert_id(w.window_start, w.window_end, w.client_ip, w.server_ip, w.unit_id, id_rule),
            rule_id=self.rule_id,
            rule_name=rule(self.rule_id).name,
            category="anomaly",
            detector=f"ensemble({self.combine}: {', '.join(self.ensemble_.member_names_)})",
            severity=severity,
            risk_score=risk,
            score=round(score, 4),
            threshold=round(self.threshold_, 4),
            window_start=w.window_start,
            window_end=w.window_end,
            client_ip=w.client_ip,
            server_ip=w.server_ip,
            unit_id=w.unit_id,
            explanation=explain_sentence(evidence, w.window_end - w.window_start, ratio),
            evidence=tuple(evidence),
            function_codes=function_codes(w) if self.kind == "pair" else (),
            server_port=w.port,
            transport=(w.transport.partition("/")[0] if self.kind == "ot" else w.transport) or "tcp",
            technique_id=technique_id,
            first_frame=w.first_frame,
            last_frame=w.last_frame,
            protocol=w.transport.partition("/")[2] if self.kind == "ot" else "",
        )


def severity_for(ratio: float) -> tuple[str, float]:
    """Severity and risk score (0-100) for a score ``ratio`` times the threshold."""
    for start, severity, risk_lo, risk_hi, end in reversed(_BANDS):
        if ratio >= start:
            if not math.isfinite(ratio):
                return severity, risk_hi
            share = min(math.log(ratio / start) / math.log(end / start), 1.0)
            return severity, round(risk_lo + share * (risk_hi - risk_lo), 1)
    return "low", 30.0


def function_codes(w: FeatureWindow) -> tuple[int, ...]:
    """Function codes with a non-zero ``fc_N`` count in a pair window (``fc_other`` cannot name its codes)."""
    codes = []
    for name, value in zip(w.feature_names(), w.values):
        if name.startswith("fc_") and name[3:].isdigit() and value > 0:
            codes.append(int(name[3:]))
    return tuple(sorted(codes))


def explain_sentence(evidence: Sequence[FeatureEvidence], window_s: float, ratio: float) -> str:
    """One sentence: "requests 4210 in 10 s, learned 8-12; fc_distinct 57, learned 1-2 (score 9.1x threshold)"."""
    parts = []
    for e in evidence:
        per = f" in {_number(window_s)} s" if _is_count(e.name) else ""
        dash = " to " if min(e.baseline_low, e.baseline_high) < 0 else "-"
        learned = f"{_number(e.baseline_low)}{dash}{_number(e.baseline_high)}"
        parts.append(f"{e.name} {_number(e.value)}{per}, learned {learned}")
    head = "; ".join(parts) if parts else "unusual combination of features"
    return f"{head} (score {ratio:.1f}x threshold)"


def _is_count(name: str) -> bool:
    return name not in _NOT_COUNTS and (name in _COUNT_NAMES or name.startswith(_COUNT_PREFIXES))


def _number(value: float) -> str:
    if float(value).is_integer():
        return str(int(value))
    return f"{value:.3g}" if abs(value) < 1000 else f"{value:.0f}"
