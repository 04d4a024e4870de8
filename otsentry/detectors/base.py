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
from dataclasses import dataclass
from typing import Any, Protocol, Sequence, runtime_checkable

import numpy as np

from otsentry.errors import InputError, OtsentryError
from otsentry.records import Alert, FeatureWindow

__all__ = ["BaseDetector", "Interval", "InvalidParameterError", "NotFittedError", "WindowDetector", "validate_params"]


class NotFittedError(OtsentryError, RuntimeError):
    """A detector was used before ``fit``."""


class InvalidParameterError(InputError, ValueError):
    """A parameter outside its declared constraint; the message names the detector, the parameter and the bound."""


@dataclass(frozen=True)
class Interval:
    """A declared parameter constraint (as scikit-learn's ``_parameter_constraints``): a number of ``kind`` between
    ``low`` and ``high`` (``None``: unbounded), bounds included as ``closed`` says; ``none_ok`` also accepts None."""

    kind: type
    low: float | None = None
    high: float | None = None
    closed: str = "both"  # "both" | "left" | "right" | "neither"
    none_ok: bool = False

    def accepts(self, value: Any) -> bool:
        if value is None:
            return self.none_ok
        if isinstance(value, bool) and self.kind is not bool:
            return False
        if self.kind is bool:
            return isinstance(value, bool)
        if not isinstance(value, (int, float)) or (self.kind is int and not isinstance(value, int)):
            return False
        if self.low is not None and (value < self.low or (value == self.low and self.closed in ("right", "neither"))):
            return False
        if self.high is not None and (value > self.high or (value == self.high and self.closed in ("left", "neither"))):
            return False
        return value == value  # NaN is never valid

    def describe(self) -> str:
        if self.kind is bool:
            return "a bool"
        lo = "-inf" if self.low is None else f"{self.low:g}"
        hi = "inf" if self.high is None else f"{self.high:g}"
        left = "[" if self.closed in ("both", "left") and self.low is not None else "("
        right = "]" if self.closed in ("both", "right") and self.high is not None else ")"
        return f"{'an int' if self.kind is int else 'a number'} in {left}{lo}, {hi}{right}" + \
            (" or None" if self.none_ok else "")


def validate_params(detector: Any) -> None:
    """Check every parameter against the class's ``_parameter_constraints`` (called by ``fit``, not ``__init__``)."""
    for name, constraint in type(detector)._parameter_constraints.items():
        value = getattr(detector, name)
        if not constraint.accepts(value):
            raise InvalidParameterError(f"{type(detector).__name__}: {name}={value!r} must be {constraint.describe()}")


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
