"""Unsupervised detectors from PyOD behind the otsentry contract (see ``base``).

``PyODDetector(model=...)`` wraps one PyOD model with three additions that matter on OT traffic:

* **robust scaling** (``scaling.FeatureStats``) so distance and histogram models see comparable units;
* an **out-of-learned-range term**: ``score = model score + range_weight * w * range_score`` where ``w`` is the
  spread (99th - 50th percentile) of the model's own learning scores. Trees and histograms saturate outside the
  learned range and ignore columns that were constant while learning; this term makes any excursion raise the score
  and a 100x flood rank above a 2x one. It is zero on every learning row, so it costs nothing on normal traffic;
* **out-of-fold calibration**: the threshold is taken from scores of learning rows that the scoring model did not
  see (``calibration_folds``-fold split). In-sample scores are optimistic (KNN finds the row itself, the learned
  range contains the row by construction), so a threshold set on them fires more often on fresh normal traffic
  than the target false-alarm rate says.

Scoring is row-by-row independent: a window gets the same score alone or in a batch of 10,000. PyOD's ECOD and
COPOD do not have that property (``decision_function`` recomputes the empirical CDFs over learning data *plus the
batch being scored*, so a long flood in one batch dilutes itself, and the model keeps the batch in memory); here
their scores are computed against the learning sample only, with PyOD's formulas (``test_pyod_parity`` checks that
one-row batches agree with PyOD). HBOS uses PyOD's fitted histograms with a vectorised NumPy scorer: PyOD's scorer
is a numba function without an on-disk cache, which costs ~3-4 s of JIT compilation in every process that scores.

PyOD and scikit-learn are imported lazily (``import pyod`` costs ~1.5 s), so importing otsentry stays fast, and a
fitted detector keeps NumPy-only copies of its IForest, HBOS and KNN scorers (``compact``), so that loading a bundle
and scoring with it import neither.
"""

from __future__ import annotations

import sys
import warnings
from functools import cache
from typing import Any, Mapping, NamedTuple

import numpy as np

from otsentry.detectors.base import BaseDetector
from otsentry.detectors.compact import compact
from otsentry.detectors.scaling import FeatureStats, as_matrix

__all__ = ["MODELS", "PyODDetector"]

MODELS = ("ecod", "iforest", "hbos", "copod", "knn")


class _ECDFScorer:
    """ECOD / COPOD tail probabilities against the learning sample only (PyOD's formulas, inductive)."""

    def __init__(self, kind: str) -> None:
        self.kind = kind

    def fit(self, X: np.ndarray) -> "_ECDFScorer":
        from scipy.stats import skew

        self.sorted_ = np.sort(X, axis=0)
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore", RuntimeWarning)
            self.skew_sign_ = np.sign(np.nan_to_num(skew(X, axis=0)))
        self.train_scores_ = self.score(X)
        return self

    def score(self, X: np.ndarray) -> np.ndarray:
        u_left, u_right = _tails(self.sorted_, X)
        s = self.skew_sign_
        u_skew = u_left * -np.sign(s - 1) + u_right * np.sign(s + 1)
        if self.kind == "ecod":
            outlying = np.maximum(np.maximum(u_left, u_right), u_skew)
        else:  # copod
            outlying = np.maximum(u_skew, (u_left + u_right) / 2)
        return outlying.sum(axis=1)


# The last (learning sample, rows, tails) computed by ``_tails``; see there.
_last_tails: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None = None


def _tails(sorted_: np.ndarray, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``-log`` of the left and right tail probabilities of every value of ``X`` against the sorted learning sample.

    Why remembered: an ensemble's ECOD and COPOD members learn from the same rows with the same scaling, so they
    ask for the tails of equal rows against equal samples one after the other; the second gets the first's arrays
    (equality is checked value for value, so a hit returns exactly what the computation would).
    """
    global _last_tails
    last = _last_tails
    if (last is not None and last[0].shape == sorted_.shape and last[1].shape == X.shape
            and last[1].dtype == X.dtype and np.array_equal(last[0], sorted_) and np.array_equal(last[1], X)):
        return last[2], last[3]
    n = sorted_.shape[0]
    u_left = np.empty_like(X)
    u_right = np.empty_like(X)
    for j in range(X.shape[1]):
        column = sorted_[:, j]
        # As if the row were appended to the learning sample: P(X <= x) and P(X >= x), ties inclusive.
        u_left[:, j] = np.searchsorted(column, X[:, j], side="right") + 1
        u_right[:, j] = n - np.searchsorted(column, X[:, j], side="left") + 1
    u_left = -np.log(u_left / (n + 1))
    u_right = -np.log(u_right / (n + 1))
    u_left.flags.writeable = False  # shared with the next caller: nobody may change them in place
    u_right.flags.writeable = False
    _last_tails = (sorted_.copy(), X.copy(), u_left, u_right)
    return u_left, u_right


class _PyODScorer:
    """A fitted PyOD estimator; its ``decision_function`` is already row-independent (IForest, KNN)."""

    def __init__(self, estimator: Any) -> None:
        self.estimator = estimator

    def fit(self, X: np.ndarray) -> "_PyODScorer":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.estimator.fit(X)
        self.train_scores_ = np.asarray(self.estimator.decision_scores_, dtype=float)
        return self

    def score(self, X: np.ndarray) -> np.ndarray:
        return np.asarray(self.estimator.decision_function(X), dtype=float)


class _HBOSScorer(_PyODScorer):
    """PyOD HBOS histograms, scored with NumPy (same rule as PyOD's numba loop, see module docstring)."""

    def score(self, X: np.ndarray) -> np.ndarray:
        est = self.estimator
        hist, edges, n_bins = est.hist_, est.bin_edges_, est.hist_.shape[0]
        total = np.zeros(X.shape[0])
        for i in range(X.shape[1]):
            x = X[:, i]
            log_density = np.log2(hist[:, i] + est.alpha)
            bins = np.digitize(x, edges[:, i], right=True)
            inside = log_density[np.clip(bins - 1, 0, n_bins - 1)]
            floor = log_density.min()
            below_ok = (edges[0, i] - x) <= (edges[1, i] - edges[0, i]) * est.tol
            above_ok = (x - edges[-1, i]) <= (edges[-1, i] - edges[-2, i]) * est.tol
            column = np.where(bins == 0, np.where(below_ok, log_density[0], floor), inside)
            column = np.where(bins == n_bins + 1, np.where(above_ok, log_density[-1], floor), column)
            total += column
        return -total


@cache
def _thread_controller(with_sklearn: bool) -> Any:
    """One ThreadpoolController per process and library set, made after scikit-learn (and so its OpenMP runtime)
    is loaded when it is in use. Bundles of NumPy-only scorers (``compact``) never import scikit-learn: their
    controller then only limits NumPy's BLAS, and scoring skips the second of importing it."""
    if with_sklearn:
        import sklearn  # noqa: F401 - loads libgomp, which the controller must see to limit it
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()


def _one_thread() -> Any:
    """Run BLAS / OpenMP single-threaded for the duration of a ``with`` block.

    Batches here are small (the windows closed in the last 10 s) and the sensor's cores are busy with capture:
    scikit-learn's OpenMP neighbour search then spends its time waking and spinning threads (a one-row KNN query
    took 5-35 ms with 2 threads on a loaded 2-core host, 0.4 ms with one).
    """
    return _thread_controller("sklearn" in sys.modules).limit(limits=1)


def _make_scorer(model: str, params: Mapping[str, Any], random_state: int) -> Any:
    if model in ("ecod", "copod"):
        if params:
            raise ValueError(f"{model} takes no model parameters (got {', '.join(sorted(params))})")
        return _ECDFScorer(model)
    if model == "iforest":
        from pyod.models.iforest import IForest

        return _PyODScorer(IForest(**{"n_estimators": 100, **params, "random_state": random_state}))
    if model == "hbos":
        from pyod.models.hbos import HBOS

        return _HBOSScorer(HBOS(**params))
    if model == "knn":
        from pyod.models.knn import KNN

        return _PyODScorer(KNN(**params))
    raise ValueError(f"unknown model {model!r}: choose one of {', '.join(MODELS)}")


class PyODDetector(BaseDetector):
    """One PyOD model on robust-scaled features, with an out-of-range term and out-of-fold threshold.

    Parameters: ``model`` one of ``MODELS``; ``false_alarm_rate`` the share of normal windows allowed above the
    threshold (with n learning rows the quantile cannot resolve rates below ~1/n: it becomes the maximum plus a
    margin); ``random_state`` fixes IForest and the calibration folds; ``calibration_folds`` (0 or 1 = in-sample
    calibration); ``range_weight`` (0 disables the out-of-range term); ``model_params`` passed to the PyOD class.
    """

    def __init__(
        self,
        model: str = "ecod",
        false_alarm_rate: float = 1e-4,
        random_state: int = 0,
        calibration_folds: int = 5,
        range_weight: float = 1.0,
        model_params: Mapping[str, Any] | None = None,
    ) -> None:
        self.model = model
        self.false_alarm_rate = false_alarm_rate
        self.random_state = random_state
        self.calibration_folds = calibration_folds
        self.range_weight = range_weight
        self.model_params = model_params

    def fit(self, X: np.ndarray) -> "PyODDetector":
        """Learn scaling, model and threshold from known-good rows; returns ``self``."""
        X = as_matrix(X)
        self._validate(len(X))
        core = self._fit_core(X)
        with _one_thread():  # the saved scorer is a NumPy-only copy when it scores identically (see compact)
            scorer = compact(core.scorer, core.stats.transform(X))
        self.stats_, self.scorer_, self.range_scale_ = core.stats, scorer, self.range_weight * core.spread
        self.n_features_in_ = X.shape[1]
        self.calibration_scores_ = self._calibration_scores(X, core)
        self.score_center_ = float(np.median(self.calibration_scores_))
        self._calibrate(self.calibration_scores_, self.false_alarm_rate)
        return self

    def score_samples(self, X: np.ndarray) -> np.ndarray:
        """Anomaly score per row; higher is more anomalous, ``> threshold_`` is an alarm."""
        self._check_fitted()
        X = as_matrix(X, self.n_features_in_)
        return _score(self.stats_, self.scorer_, self.range_scale_, X)

    # -- internals -------------------------------------------------------------------------------------------

    def _validate(self, n_rows: int) -> None:
        if self.model not in MODELS:
            raise ValueError(f"unknown model {self.model!r}: choose one of {', '.join(MODELS)}")
        if not 0.0 < self.false_alarm_rate < 0.5:
            raise ValueError(f"false_alarm_rate must be in (0, 0.5), got {self.false_alarm_rate}")
        needed = self.min_rows()
        if n_rows < needed:
            raise ValueError(f"{self.model} needs at least {needed} learning rows, got {n_rows}")

    def min_rows(self) -> int:
        """Fewest learning rows this configuration can fit (each calibration fold must hold enough neighbours)."""
        folds = max(int(self.calibration_folds), 1)
        neighbours = int((self.model_params or {}).get("n_neighbors", 5)) + 2 if self.model == "knn" else 2
        return max(folds * neighbours, 2 * folds, 10)

    def _fit_core(self, X: np.ndarray) -> "_Core":
        stats = FeatureStats.fit(X)
        scorer = _make_scorer(self.model, dict(self.model_params or {}), self.random_state)
        with _one_thread():
            scorer.fit(stats.transform(X))
        train = scorer.train_scores_
        center = float(np.median(train))
        spread = float(np.quantile(train, 0.99)) - center
        if spread <= 0.0:  # identical learning rows: fall back to the score magnitude, then to 1
            spread = max(float(np.abs(train).max()), 1.0)
        return _Core(stats, scorer, center, spread)

    def _score_core(self, core: "_Core", X: np.ndarray) -> np.ndarray:
        return _score(core.stats, core.scorer, self.range_weight * core.spread, X)

    def _calibration_scores(self, X: np.ndarray, core: "_Core") -> np.ndarray:
        """Out-of-fold scores of the learning rows, on the full model's scale (in-sample if folds < 2).

        Each fold model scores the rows it did not learn from. Its scores are standardised against its own
        in-sample scores (median, 99th-50th percentile spread) and mapped onto the full model's, because a model
        learned from fewer rows scores on a shifted scale (HBOS densities depend on the learned range, ECOD tail
        probabilities on the sample size). What remains is the genuine effect of scoring unseen rows.
        """
        folds = int(self.calibration_folds)
        if folds < 2:
            return self._score_core(core, X)
        order = np.random.default_rng(self.random_state).permutation(len(X))
        scores = np.empty(len(X))
        for held_out in np.array_split(order, folds):
            keep = np.ones(len(X), dtype=bool)
            keep[held_out] = False
            fold = self._fit_core(X[keep])
            standardised = (self._score_core(fold, X[held_out]) - fold.center) / fold.spread
            scores[held_out] = core.center + core.spread * standardised
        return scores


class _Core(NamedTuple):
    """What one fit learns: feature statistics, the model, and its in-sample score median and spread."""

    stats: FeatureStats
    scorer: Any
    center: float
    spread: float


def _score(stats: FeatureStats, scorer: Any, weight: float, X: np.ndarray) -> np.ndarray:
    with _one_thread():
        scores = scorer.score(stats.transform(X))
    if weight:
        scores = scores + weight * stats.range_score(X)
    return scores
