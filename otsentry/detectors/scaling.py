"""Per-feature statistics learned from normal traffic: robust scaling, learned range, out-of-range distance.

Why not scikit-learn's ``RobustScaler`` alone: OT traffic is so regular that many features have an interquartile
range of zero (a PLC polled exactly 10 times per window, an exception counter that is always 0). RobustScaler then
divides by 1 whatever the feature's magnitude, and tree or histogram models never split on a constant column, so a
feature that was constant while learning could change without moving their score. Here the scale falls back from
the IQR to half the learned range and then to a unit of ``max(1, 5% of |median|)`` (and is at least 1 for
integer-valued features: counts, addresses), and ``excess`` measures how far a value lies outside the learned
[min, max] in those units, so every member can add an out-of-range term (``range_terms``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["FeatureStats", "as_matrix"]

# Relative size under which an IQR or range counts as zero (float noise in means and ratios).
_TINY = 1e-9


@dataclass(frozen=True)
class FeatureStats:
    """Learned median, scale and [low, high] range of every feature (arrays of shape ``(n_features,)``)."""

    median: np.ndarray
    scale: np.ndarray
    low: np.ndarray
    high: np.ndarray

    @classmethod
    def fit(cls, X: np.ndarray) -> "FeatureStats":
        X = as_matrix(X)
        if len(X) == 0:
            raise ValueError("cannot learn feature statistics from zero rows")
        q25, median, q75 = np.quantile(X, [0.25, 0.5, 0.75], axis=0)
        low, high = X.min(axis=0), X.max(axis=0)
        magnitude = np.maximum(np.abs(median), 1.0)
        iqr = q75 - q25
        half_range = (high - low) / 2.0
        unit = np.maximum(0.05 * np.abs(median), 1.0)
        scale = np.where(iqr > _TINY * magnitude, iqr, np.where(half_range > _TINY * magnitude, half_range, unit))
        counts = (X == np.round(X)).all(axis=0)  # integer-valued: a count or an address cannot move by less than 1
        scale = np.where(counts, np.maximum(scale, 1.0), scale)
        return cls(median=median, scale=scale, low=low, high=high)

    @property
    def n_features(self) -> int:
        return int(self.median.shape[0])

    def transform(self, X: np.ndarray) -> np.ndarray:
        """Robust z-scores: ``(x - median) / scale``."""
        return (as_matrix(X, self.n_features) - self.median) / self.scale

    def excess(self, X: np.ndarray) -> np.ndarray:
        """Distance outside the learned [low, high], in scale units (0 inside the range), per row and feature."""
        X = as_matrix(X, self.n_features)
        over = np.maximum(X - self.high, 0.0)
        under = np.maximum(self.low - X, 0.0)
        return (over + under) / self.scale

    def range_terms(self, X: np.ndarray) -> np.ndarray:
        """Per feature ``log1p(excess**2) / 2``: 0 inside the learned range, quadratic just outside, ~log(excess) far.

        Soft near the edge because a fresh hour of normal traffic always sets a few new maxima by one count (with n
        learning windows each feature's maximum is beaten about once per n windows); logarithmic far out so one
        wild counter does not swamp the rest while a 100x flood still ranks above a 2x one.
        """
        return 0.5 * np.log1p(np.square(self.excess(X)))

    def range_score(self, X: np.ndarray) -> np.ndarray:
        """Sum of ``range_terms`` over features: how far outside the learned box a row lies."""
        return self.range_terms(X).sum(axis=1)


def as_matrix(X: np.ndarray, n_features: int | None = None) -> np.ndarray:
    """A 2-D float matrix, checked for width; non-finite values are refused rather than silently scored."""
    X = np.asarray(X, dtype=float)
    if X.ndim == 1:
        X = X.reshape(1, -1)
    if X.ndim != 2:
        raise ValueError(f"expected a 2-D matrix of feature rows, got shape {X.shape}")
    if n_features is not None and X.shape[1] != n_features:
        raise ValueError(f"expected {n_features} features per row, got {X.shape[1]}")
    if not np.isfinite(X).all():
        raise ValueError("feature matrix contains NaN or infinite values")
    return X
