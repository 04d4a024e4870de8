"""``otsentry replay score``: learn on each scenario's normal part, score the rest, judge against ground truth.

Units are those of ``otsentry.detectors.evaluation`` (10-second window x pair of hosts), with re-alert suppression
off so every window counts. A scenario without an attack has no precision or recall of its own (nothing to find):
its false alerts still count in the library's overall precision, which is a micro-average (sums of true and false
positives and negatives over all scenarios), so a long noisy scenario weighs as much as its windows do.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

from otsentry.collectors.collector import CollectorConfig
from otsentry.detectors.evaluation import AttackFrame, Evaluation, evaluate, load_labels
from otsentry.pipeline import DEFAULT_WINDOW_S, attack_frames_from_capture, run
from otsentry.records import Alert
from otsentry.replay.catalog import Generated, ScenarioInfo

__all__ = ["AttackResult", "Overall", "ScenarioScore", "overall", "score_scenario", "slot_scores", "to_json"]


@dataclass(frozen=True)
class AttackResult:
    """One ground-truth attack interval: was any of its windows alerted, and how long after it began."""

    start_ts: float
    end_ts: float
    detected: bool
    time_to_detect_s: float | None


@dataclass
class ScenarioScore:
    info: ScenarioInfo
    generated: Generated
    evaluation: Evaluation
    attacks: list[AttackResult]
    alerts: list[Alert]
    windows: int
    learned_windows: int
    slot_scores: list[tuple[float, float]]  # (window end, highest normalised anomaly score of that time slot)
    seconds: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def has_attack(self) -> bool:
        return bool(self.generated.attack_intervals)

    @property
    def detected(self) -> bool | None:
        """Every attack detected (None: nothing to detect)."""
        return all(a.detected for a in self.attacks) if self.attacks else None

    def to_dict(self) -> dict[str, Any]:
        """The scenario's entry in ``replay score --json``: the issue's keys first, then details."""
        ev = self.evaluation
        attack = self.has_attack
        return {
            "name": self.info.name,
            "detected": self.detected,
            "time_to_detect_s": ev.time_to_detect_s,
            "precision": ev.precision if attack else None,
            "recall": ev.recall if attack else None,
            "f1": ev.f1 if attack else None,
            "false_alerts_per_hour": ev.false_alerts_per_hour,
            "technique": self.info.technique_id,
            "seed": self.generated.seed,
            "attacks": [{"start_ts": a.start_ts, "end_ts": a.end_ts, "detected": a.detected,
                         "time_to_detect_s": a.time_to_detect_s} for a in self.attacks],
            "units": ev.windows, "attack_units": ev.attack_windows, "alerted_units": ev.alerted_windows,
            "true_positives": ev.true_positives, "false_positives": ev.false_positives,
            "false_negatives": ev.false_negatives, "false_alerts": ev.false_alerts,
            "normal_hours": ev.normal_hours, "roc_auc": ev.roc_auc, "alerts_by_rule": ev.alerts_by_rule,
            "learn_s": self.generated.learn_s, "capture": str(self.generated.pcap),
        }


def _attack_results(ev: Evaluation, windows, alerts, scores, labels, frames: Sequence[AttackFrame],
                    intervals: Sequence[tuple[float, float]]) -> list[AttackResult]:
    """Per attack interval: the scenario's evaluation restricted to that attack's frames (detection and delay;
    its precision would be meaningless, the other attacks' windows counting as false there)."""
    out = []
    for start, end in intervals:
        if len(intervals) == 1:
            sub = ev
        else:
            mine = [f for f in frames if start <= f.ts <= end]
            sub = evaluate(windows, alerts, scores, labels, mine, attack_start=start) if mine else Evaluation()
        out.append(AttackResult(start, end, sub.detected, sub.time_to_detect_s))
    return out


def slot_scores(scores: dict[tuple, float], window_s: float) -> list[tuple[float, float]]:
    """Highest normalised score per time slot (keys as ``contracts.windows.score_key``: start at index 1)."""
    best: dict[float, float] = {}
    for key, value in scores.items():
        start = key[1]
        best[start] = max(best.get(start, 0.0), value)
    return [(start + window_s, best[start]) for start in sorted(best)]


def score_scenario(info: ScenarioInfo, gen: Generated, window_s: float = DEFAULT_WINDOW_S,
                   config: CollectorConfig | None = None, jobs: int = 1) -> ScenarioScore:
    """Learn on the scenario's learning part (its truth says how long), score the rest, evaluate."""
    t0 = time.monotonic()
    result = run([gen.pcap], learn_for_s=gen.learn_s, window_s=window_s, config=config, keep_scores=True,
                 suppress=False, jobs=jobs)
    labels = load_labels(gen.labels)
    frames = attack_frames_from_capture(gen.pcap, labels.frames)
    det = result.detection
    ev = evaluate(det.scored_windows, result.alerts, det.scores, labels, frames)
    attacks = _attack_results(ev, det.scored_windows, result.alerts, det.scores, labels, frames,
                              gen.attack_intervals)
    return ScenarioScore(info, gen, ev, attacks, result.alerts, result.windows, result.learned_windows,
                         slot_scores(det.scores, window_s), time.monotonic() - t0)


@dataclass(frozen=True)
class Overall:
    true_positives: int
    false_positives: int
    false_negatives: int
    precision: float
    recall: float
    f1: float
    false_alerts: int
    normal_hours: float
    attacks: int
    attacks_detected: int

    @property
    def false_alerts_per_hour(self) -> float:
        return self.false_alerts / self.normal_hours if self.normal_hours else 0.0


def overall(scores: Iterable[ScenarioScore]) -> Overall:
    """Micro-average over every scenario's units (same conventions as ``evaluate`` for empty cases)."""
    scores = list(scores)
    tp = sum(s.evaluation.true_positives for s in scores)
    fp = sum(s.evaluation.false_positives for s in scores)
    fn = sum(s.evaluation.false_negatives for s in scores)
    precision = tp / (tp + fp) if tp + fp else (1.0 if not tp + fn else 0.0)
    recall = tp / (tp + fn) if tp + fn else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    attacks = [a for s in scores for a in s.attacks]
    return Overall(tp, fp, fn, precision, recall, f1, sum(s.evaluation.false_alerts for s in scores),
                   sum(s.evaluation.normal_hours for s in scores), len(attacks), sum(a.detected for a in attacks))


def to_json(scores: Sequence[ScenarioScore]) -> dict[str, Any]:
    """The one object ``replay score --json`` prints."""
    o = overall(scores)
    return {"scenarios": [s.to_dict() for s in scores],
            "overall": {"precision": o.precision, "recall": o.recall, "f1": o.f1}}
