"""The scoring of feature windows with a model bundle: sensor alerts, the policy baseline and the anomaly
detectors, in one deterministic order. The batch pipeline and the Kafka detector worker both use it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from otsentry.contracts.windows import alert_order, score_key
from otsentry.detectors.sensor import sensor_alerts
from otsentry.records import Alert, FeatureWindow

__all__ = ["Detection"]


@dataclass
class Detection:
    """Scores windows in batches with a bundle; alerts come out in window order, ids deterministic."""

    bundle: object
    keep_scores: bool = False
    suppress: bool = True  # policy re-alert suppression; evaluation turns it off to judge every window
    min_batch: int = 1  # live capture: score every group at once; replays get big groups anyway
    scores: dict[tuple, float] = field(default_factory=dict)
    windows: int = 0
    _pending: list[FeatureWindow] = field(default_factory=list)

    def __post_init__(self) -> None:
        from otsentry.detectors.policy import AlertSuppressor

        policy = getattr(self.bundle, "policy", None)
        self._suppressor = None
        if policy is not None:
            self._suppressor = policy.new_suppressor() if self.suppress else AlertSuppressor(0.0)
        self.scored_windows: list[FeatureWindow] = []

    def feed(self, windows: Sequence[FeatureWindow]) -> list[Alert]:
        """Score a group of windows that just closed (groups smaller than ``min_batch`` wait for more)."""
        self._pending.extend(windows)
        return self._score() if len(self._pending) >= self.min_batch else []

    def flush(self) -> list[Alert]:
        return self._score() if self._pending else []

    def _score(self) -> list[Alert]:
        batch, self._pending = self._pending, []
        self.windows += len(batch)
        alerts: list[Alert] = sensor_alerts(batch)  # what the sensor could not see: reported with any bundle
        policy = getattr(self.bundle, "policy", None)
        if policy is not None:
            alerts.extend(policy.detect(batch, self._suppressor))
        for detector in self.bundle.detectors.values():
            alerts.extend(detector.detect(batch))
            if self.keep_scores:
                selected, raw = detector.score_windows(batch)
                for w, s in zip(selected, np.asarray(raw, dtype=float) / max(detector.threshold_, 1e-12)):
                    self.scores[score_key(w)] = float(s)
        if self.keep_scores:
            self.scored_windows.extend(batch)
        return sorted(alerts, key=alert_order)
