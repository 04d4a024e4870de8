"""The detector contract, in the scikit-learn style.

* ``__init__`` only stores parameters (no work, no validation beyond storing);
* ``fit(X)`` learns from known-good data and returns ``self``; attributes learned by fit end in ``_``;
* ``score_samples(X)``: higher means more anomalous (as in PyOD's ``decision_function``);
* ``threshold_`` is set in one place, ``_calibrate``, from the learning scores and a target false-alarm rate;
* ``predict(X)`` is ``score_samples(X) > threshold_``;
* before ``fit``, every method raises ``NotFittedError``.

Window-level detectors (policy baseline, anomaly ensembles over FeatureWindows) implement ``WindowDetector``: they
turn windows into explained ``Alert``s.
"""

from __future__ import annotations

import inspect
from typing import Any, Protocol, Sequence, runtime_checkable

import numpy as np

from otsentry.records import Alert, FeatureWindow


class NotFittedError(RuntimeError):
    """A detector was used before ``fit``."""


class BaseDetector:
    """Common plumbing: parameter introspection, fitted checks, threshold calibration."""

    def get_params(self) -> dict[str, Any]:
        names = [p for p in inspect.signature(type(self).__init__).parameters if p != "self"]
        return {name: getattr(self, name) for name in names}

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({params})"

    def _check_fitted(self) -> None:
        if not hasattr(self, "threshold_"):
            raise NotFittedError(f"{type(self).__name__} is not fitted yet: call fit() on learning data first")

    def _calibrate(self, train_scores: np.ndarray, false_alarm_rate: float, margin: float = 0.1) -> None:
        """Threshold at the (1 - false_alarm_rate) quantile of the learning scores, plus a margin.

        The margin (``margin`` times the 99th-50th percentile spread of the scores) keeps the highest learning
        window from alerting on the same data, so a clean capture replayed against its own model raises nothing.
        With n learning scores a quantile cannot resolve rates below ~1/n: a detector that must stay under one
        false alarm per several thousand windows asks for a larger margin rather than a smaller rate.
        """
        scores = np.asarray(train_scores, dtype=float)
        q = float(np.quantile(scores, 1.0 - false_alarm_rate)) if len(scores) else 0.0
        spread = float(np.quantile(scores, 0.99) - np.quantile(scores, 0.5)) if len(scores) else 0.0
        self.threshold_ = q + margin * max(spread, 1e-9)

    def predict(self, X: np.ndarray) -> np.ndarray:
        self._check_fitted()
        return self.score_samples(X) > self.threshold_

    def score_samples(self, X: np.ndarray) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError


@runtime_checkable
class WindowDetector(Protocol):
    """Learns from known-good feature windows, then explains what deviates as alerts."""

    def fit(self, windows: Sequence[FeatureWindow]) -> "WindowDetector": ...

    def detect(self, windows: Sequence[FeatureWindow]) -> list[Alert]: ...
