"""Scoring detectors against ground truth: window-level precision, recall, F1, ROC-AUC, time to detect, and false
alerts per hour of normal traffic.

Labels come in two forms (both ``;``-separated CSV, a header line optional):

* per frame, ``frame;label`` with 1 = attack (what the scenario generator writes);
* per time interval, ``start;end`` in epoch seconds (or ISO-8601).

Evaluation units are (time window, pair of hosts): the pair windows of every unit id behind a server and the
flow windows between the same two hosts in one time slot form one unit, as a SOC analyst sees it ("was there an
alert about these two hosts in these 10 seconds?"). A unit is an attack unit when an attack frame between the
two hosts falls inside its window (frame labels), or when it overlaps an attack interval (interval labels, which
know no hosts). A unit is alerted when any alert names one of its windows; its score is the highest of its windows.
"""

from __future__ import annotations

import csv
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from otsentry.contracts.windows import score_key
from otsentry.errors import InputError
from otsentry.records import Alert, FeatureWindow

__all__ = ["AttackFrame", "AttackIndex", "Evaluation", "LabelError", "Labels", "evaluate", "load_labels", "roc_auc",
    "unit_key"]


class LabelError(InputError, ValueError):
    """A labels file that cannot be read; the message names the file and line."""


@dataclass(frozen=True)
class Labels:
    frames: frozenset[int] = frozenset()
    intervals: tuple[tuple[float, float], ...] = ()

    @property
    def kind(self) -> str:
        return "frames" if self.frames else "intervals"


def _time(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def load_labels(path: str | Path) -> Labels:
    """Read ``frame;label`` or ``start;end`` labels; decides the form from the first data row."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise LabelError(f"{path}: cannot read labels ({exc.strerror})") from None
    except UnicodeDecodeError:
        raise LabelError(f"{path}: not a text file of labels (expected 'frame;label' or 'start;end' lines)") from None
    frames: set[int] = set()
    intervals: list[tuple[float, float]] = []
    form = None
    for lineno, row in enumerate(csv.reader(text.splitlines(), delimiter=";"), start=1):
        if not row or not "".join(row).strip() or row[0].lstrip().startswith("#"):
            continue
        if len(row) < 2:
            raise LabelError(f"{path}:{lineno}: expected two ';'-separated columns, got {row!r}")
        a, b = row[0].strip(), row[1].strip()
        if form is None and not a.replace(".", "", 1).lstrip("-").isdigit() and "T" not in a:
            continue  # a header line
        try:
            if form is None:
                form = "frames" if a.isdigit() and b in ("0", "1") else "intervals"
            if form == "frames":
                if int(b) == 1:
                    frames.add(int(a))
            else:
                start, end = _time(a), _time(b)
                if end < start:
                    raise LabelError(f"{path}:{lineno}: interval ends before it starts")
                intervals.append((start, end))
        except ValueError:
            raise LabelError(f"{path}:{lineno}: cannot read {row!r} as {form} labels") from None
    if form is None:
        raise LabelError(f"{path}: no labels found")
    return Labels(frozenset(frames), tuple(sorted(intervals)))


@dataclass(frozen=True)
class AttackFrame:
    ts: float
    hosts: frozenset[str]


class AttackIndex:
    """Attack frames by host pair, sorted by time, so each window is checked with a binary search."""

    def __init__(self, labels: Labels, attack_frames: Sequence[AttackFrame]) -> None:
        self.labels = labels
        by_hosts: dict[frozenset[str], list[float]] = {}
        for f in attack_frames:
            by_hosts.setdefault(f.hosts, []).append(f.ts)
        self._times = {h: np.sort(np.asarray(t)) for h, t in by_hosts.items()}

    def is_attack(self, window: FeatureWindow) -> bool:
        if self.labels.frames:
            times = self._times.get(frozenset((window.client_ip, window.server_ip)))
            if times is None:
                return False
            i = int(np.searchsorted(times, window.window_start, side="left"))
            return i < len(times) and times[i] < window.window_end
        return any(s < window.window_end and e >= window.window_start for s, e in self.labels.intervals)


def roc_auc(scores: np.ndarray, truth: np.ndarray) -> float | None:
    """Area under the ROC curve (Mann-Whitney form, ties counted half); None when one class is absent."""
    scores = np.asarray(scores, dtype=float)
    truth = np.asarray(truth, dtype=bool)
    pos, neg = int(truth.sum()), int((~truth).sum())
    if pos == 0 or neg == 0:
        return None
    order = np.argsort(scores, kind="mergesort")
    ranks = np.empty(len(scores), dtype=float)
    sorted_scores = scores[order]
    # average ranks for ties
    i = 0
    while i < len(scores):
        j = i
        while j + 1 < len(scores) and sorted_scores[j + 1] == sorted_scores[i]:
            j += 1
        ranks[order[i : j + 1]] = (i + j) / 2.0 + 1.0
        i = j + 1
    return float((ranks[truth].sum() - pos * (pos + 1) / 2.0) / (pos * neg))


@dataclass
class Evaluation:
    windows: int = 0
    attack_windows: int = 0
    alerted_windows: int = 0
    true_positives: int = 0
    false_positives: int = 0
    false_negatives: int = 0
    precision: float = 0.0
    recall: float = 0.0
    f1: float = 0.0
    roc_auc: float | None = None
    detected: bool = False
    time_to_detect_s: float | None = None
    false_alerts: int = 0
    normal_hours: float = 0.0
    false_alerts_per_hour: float = 0.0
    alerts_by_rule: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


def unit_key(window_start: float, a: str, b: str) -> tuple:
    """The evaluation unit of a window or alert: its time slot and the two hosts, in either direction."""
    return (round(window_start, 6), frozenset((a, b)))


def evaluate(
    windows: Iterable[FeatureWindow],
    alerts: Iterable[Alert],
    scores: dict[tuple, float],
    labels: Labels,
    attack_frames: Sequence[AttackFrame] = (),
    attack_start: float | None = None,
) -> Evaluation:
    """Unit-level quality of a detection run (see the module docstring for what a unit is).

    ``scores`` maps a window key (see ``contracts.windows.score_key``) to its score (higher = more anomalous); windows without a
    score count as 0. ``attack_start`` (default: the first labelled attack time) is where time to detect counts from.
    """
    alerts = list(alerts)
    rules: dict[str, int] = {}
    alerted: dict[tuple, float] = {}  # unit -> earliest alert time (window end)
    for a in alerts:
        rules[a.rule_id] = rules.get(a.rule_id, 0) + 1
        key = unit_key(a.window_start, a.client_ip, a.server_ip)
        alerted[key] = min(alerted.get(key, a.window_end), a.window_end)
    units: dict[tuple, FeatureWindow] = {}
    unit_score: dict[tuple, float] = {}
    for w in windows:
        key = unit_key(w.window_start, w.client_ip, w.server_ip)
        units.setdefault(key, w)
        unit_score[key] = max(unit_score.get(key, 0.0), scores.get(score_key(w), 0.0))
    ev = Evaluation(windows=len(units), alerts_by_rule=dict(sorted(rules.items())))
    index = AttackIndex(labels, attack_frames)
    keys = list(units)
    truth = np.array([index.is_attack(units[k]) for k in keys], dtype=bool)
    flagged = np.array([k in alerted for k in keys], dtype=bool)
    score = np.array([unit_score[k] + (1e6 if f else 0.0) for k, f in zip(keys, flagged)], dtype=float)
    detect_times = [alerted[k] for k, t, f in zip(keys, truth, flagged) if t and f]
    normal_slots = {k[0] for k, t in zip(keys, truth) if not t}
    ev.attack_windows = int(truth.sum())
    ev.alerted_windows = int(flagged.sum())
    ev.true_positives = int((truth & flagged).sum())
    ev.false_positives = int((~truth & flagged).sum())
    ev.false_negatives = int((truth & ~flagged).sum())
    ev.precision = ev.true_positives / ev.alerted_windows if ev.alerted_windows else (1.0 if not ev.attack_windows else 0.0)
    ev.recall = ev.true_positives / ev.attack_windows if ev.attack_windows else 1.0
    ev.f1 = 2 * ev.precision * ev.recall / (ev.precision + ev.recall) if ev.precision + ev.recall else 0.0
    ev.roc_auc = roc_auc(score, truth)
    ev.detected = ev.true_positives > 0
    start = attack_start
    if start is None:
        times = [f.ts for f in attack_frames] or [s for s, _ in labels.intervals]
        start = min(times) if times else None
    if detect_times and start is not None:
        ev.time_to_detect_s = round(max(0.0, min(detect_times) - start), 3)
    ev.false_alerts = ev.false_positives
    span = max((w.window_end - w.window_start for w in units.values()), default=0.0)
    ev.normal_hours = round(len(normal_slots) * span / 3600.0, 4)
    ev.false_alerts_per_hour = round(ev.false_alerts / ev.normal_hours, 3) if ev.normal_hours else 0.0
    return ev
