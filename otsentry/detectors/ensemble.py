"""An ensemble of PyOD detectors with one calibrated threshold and per-row explanations.

Members score on different scales (ECOD sums log tail probabilities, IForest is centred on 0, KNN is a distance),
so each member's score is first put on a common scale against its *own* learning distribution:
``(score - median) / (threshold - median)``, which is 0 for a typical learning window and 1 at the member's
threshold. ``combine="mean"`` averages them: one member firing alone rarely lifts the mean over the ensemble
threshold, so the ensemble effectively asks members to agree, which matters when thousands of windows an hour
are scored. ``combine="max"`` alarms when any member is far out (more sensitive, more false alarms at the same
calibration); ``"median"`` asks a majority. The ensemble threshold is calibrated, like every detector's, on
out-of-fold learning scores (the members' calibration scores, combined the same way), plus ``margin``.

``explain`` does not ask the models why (PyOD offers no per-feature attribution for most of them); it reports the
features that are furthest outside the learned [min, max] in robust units, or, when every feature is inside its
range (an unusual *combination*), the ones furthest from their median. These are the features an analyst checks.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from otsentry.detectors.base import BaseDetector
from otsentry.detectors.models import MODELS, PyODDetector
from otsentry.detectors.scaling import FeatureStats, as_matrix
from otsentry.records import FeatureEvidence

__all__ = ["COMBINERS", "DEFAULT_MEMBERS", "EnsembleDetector"]

DEFAULT_MEMBERS: tuple[str, ...] = MODELS
COMBINERS = ("mean", "max", "median")

# A member whose learning scores are all equal would divide by ~0; its normalised scores are capped instead.
_NORMALISED_CAP = 1e6


class EnsembleDetector(BaseDetector):
    """Several detectors, normalised against their own learning scores and combined into one score.

    ``members`` are model names (see ``models.MODELS``) or unfitted detectors with ``get_params`` (cloned at fit, so
    the instances passed in stay unfitted; they must expose ``calibration_scores_`` and ``score_center_`` as
    ``PyODDetector`` does). ``combine`` is "mean" (default), "max" or "median" (majority must agree). ``margin`` is
    added to the calibrated quantile in units of the calibration scores' 99th-50th percentile spread (see
    ``BaseDetector._calibrate``); the other parameters are passed to members given by name.
    """

    def __init__(
        self,
        members: Sequence[str | BaseDetector] = DEFAULT_MEMBERS,
        false_alarm_rate: float = 1e-4,
        combine: str = "mean",
        random_state: int = 0,
        calibration_folds: int = 5,
        range_weight: float = 1.0,
        margin: float = 0.1,
    ) -> None:
        self.members = members
        self.false_alarm_rate = false_alarm_rate
        self.combine = combine
        self.random_state = random_state
        self.calibration_folds = calibration_folds
        self.range_weight = range_weight
        self.margin = margin

    def fit(self, X: np.ndarray, feature_names: Sequence[str] | None = None) -> "EnsembleDetector":
        """Fit every member on the same rows, then calibrate the combined score; returns ``self``."""
        if self.combine not in COMBINERS:
            raise ValueError(f"unknown combine {self.combine!r}: choose one of {', '.join(COMBINERS)}")
        if not self.members:
            raise ValueError("an ensemble needs at least one member")
        X = as_matrix(X)
        if feature_names is not None and len(feature_names) != X.shape[1]:
            raise ValueError(f"{len(feature_names)} feature names for {X.shape[1]} columns")
        needed = self.min_rows()
        if len(X) < needed:
            raise ValueError(f"the ensemble needs at least {needed} learning rows, got {len(X)}")
        members = tuple(self._build_member(m).fit(X) for m in self.members)
        self.members_ = members
        self.member_names_ = tuple(getattr(m, "model", type(m).__name__.lower()) for m in members)
        self.stats_ = FeatureStats.fit(X)
        self.n_features_in_ = X.shape[1]
        self.feature_names_ = tuple(feature_names) if feature_names is not None else tuple(
            f"f{i}" for i in range(X.shape[1])
        )
        self.member_centers_ = np.array([m.score_center_ for m in members])
        self.member_scales_ = np.array([max(m.threshold_ - m.score_center_, 1e-12) for m in members])
        calibration = np.column_stack([m.calibration_scores_ for m in members])
        self.calibration_scores_ = self._combine(self._normalise(calibration))
        self._calibrate(self.calibration_scores_, self.false_alarm_rate, self.margin)
        return self

    def min_rows(self) -> int:
        """Fewest learning rows every member can fit."""
        return max(self._build_member(m).min_rows() for m in self.members) if self.members else 0

    def member_scores(self, X: np.ndarray) -> np.ndarray:
        """Normalised member scores, shape ``(n_rows, n_members)``: 0 = typical learning row, 1 = member threshold."""
        self._check_fitted()
        X = as_matrix(X, self.n_features_in_)
        raw = np.column_stack([m.score_samples(X) for m in self.members_])
        return self._normalise(raw)

    def score_samples(self, X: np.ndarray) -> np.ndarray:
        """Combined normalised score per row; higher is more anomalous, ``> threshold_`` is an alarm."""
        return self._combine(self.member_scores(X))

    def explain(self, X: np.ndarray, top: int = 3) -> list[list[FeatureEvidence]]:
        """Per row, up to ``top`` features that drove the score, with the learned [min, max] of each.

        Features outside their learned range come first, ranked by their out-of-range term
        (``FeatureStats.range_terms``); ``contribution`` is each one's share of the total over all out-of-range
        features. A row with every feature in range is explained by the features furthest from their learned
        median instead.
        """
        self._check_fitted()
        X = as_matrix(X, self.n_features_in_)
        stats = self.stats_
        excess = stats.range_terms(X)
        deviation = np.abs(stats.transform(X))
        evidence: list[list[FeatureEvidence]] = []
        for i in range(len(X)):
            weights = excess[i] if excess[i].any() else deviation[i]
            total = float(weights.sum())
            order = np.argsort(-weights, kind="stable")[:top]
            evidence.append(
                [
                    FeatureEvidence(
                        name=self.feature_names_[j],
                        value=float(X[i, j]),
                        baseline_low=float(stats.low[j]),
                        baseline_high=float(stats.high[j]),
                        contribution=round(float(weights[j]) / total, 4) if total > 0 else 0.0,
                    )
                    for j in order
                    if weights[j] > 0
                ]
            )
        return evidence

    # -- internals -------------------------------------------------------------------------------------------

    def _build_member(self, member: str | BaseDetector) -> BaseDetector:
        if isinstance(member, str):
            return PyODDetector(
                model=member,
                false_alarm_rate=self.false_alarm_rate,
                random_state=self.random_state,
                calibration_folds=self.calibration_folds,
                range_weight=self.range_weight,
            )
        if not (hasattr(member, "get_params") and hasattr(member, "score_samples")):
            raise TypeError(f"ensemble member {member!r} is neither a model name nor a detector")
        return type(member)(**member.get_params())

    def _normalise(self, raw: np.ndarray) -> np.ndarray:
        normalised = (raw - self.member_centers_) / self.member_scales_
        return np.clip(normalised, -_NORMALISED_CAP, _NORMALISED_CAP)

    def _combine(self, normalised: np.ndarray) -> np.ndarray:
        if self.combine == "max":
            return normalised.max(axis=1)
        if self.combine == "median":
            return np.median(normalised, axis=1)
        return normalised.mean(axis=1)
