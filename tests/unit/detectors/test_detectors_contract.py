"""One contract suite for every detector (see ``otsentry.detectors.base``): each PyOD member, the ensemble, and the
window detector through a matrix adapter. A new detector joins by adding one line to ``FACTORIES``.
"""

from __future__ import annotations

from functools import cache
from typing import Callable

import numpy as np
import pytest

from otsentry.detectors.anomaly import AnomalyWindowDetector
from otsentry.detectors.base import BaseDetector, NotFittedError
from otsentry.detectors.ensemble import EnsembleDetector
from otsentry.detectors.models import PyODDetector
from tests.unit.detector_data import COLUMN, flood_rows, normal_rows, sweep_rows, windows_from_rows

TARGET = 0.01  # false-alarm rate for the calibration checks (large enough to measure on a few thousand rows)
N_TRAIN = 600


class MatrixWindowDetector(AnomalyWindowDetector):
    """``AnomalyWindowDetector`` seen through matrices: rows become pair windows of the synthetic profiles."""

    def fit(self, X: np.ndarray) -> "MatrixWindowDetector":  # type: ignore[override]
        return super().fit(windows_from_rows(X))

    def score_samples(self, X: np.ndarray) -> np.ndarray:
        self._check_fitted()
        return self.score_windows(windows_from_rows(np.atleast_2d(X)))[1]


FACTORIES: dict[str, Callable[[], BaseDetector]] = {
    **{m: (lambda m=m: PyODDetector(model=m, false_alarm_rate=TARGET)) for m in ("ecod", "iforest", "hbos", "copod",
                                                                                  "knn")},
    "ensemble-mean": lambda: EnsembleDetector(false_alarm_rate=TARGET),
    "ensemble-max": lambda: EnsembleDetector(false_alarm_rate=TARGET, combine="max"),
    "window-pair": lambda: MatrixWindowDetector(false_alarm_rate=TARGET),
}
NAMES = sorted(FACTORIES)


@cache
def train() -> np.ndarray:
    return normal_rows(N_TRAIN, np.random.default_rng(11))


@cache
def fresh() -> np.ndarray:
    return normal_rows(4000, np.random.default_rng(12))


@cache
def outliers() -> np.ndarray:
    rng = np.random.default_rng(13)
    return np.vstack([flood_rows(8, rng, factor=10.0), sweep_rows(8, rng)])


@cache
def fitted(name: str) -> BaseDetector:
    return FACTORIES[name]().fit(train())


@pytest.mark.parametrize("name", NAMES)
def test_init_only_stores_parameters(name: str) -> None:
    detector = FACTORIES[name]()
    params = detector.get_params()
    clone = type(detector)(**params)
    assert clone.get_params() == params
    assert repr(clone) == repr(detector)
    assert [a for a in vars(detector) if a.endswith("_")] == []


@pytest.mark.parametrize("name", NAMES)
def test_unfitted_detector_raises_not_fitted(name: str) -> None:
    detector = FACTORIES[name]()
    with pytest.raises(NotFittedError):
        detector.score_samples(fresh()[:3])
    with pytest.raises(NotFittedError):
        detector.predict(fresh()[:3])
    if isinstance(detector, EnsembleDetector):
        with pytest.raises(NotFittedError):
            detector.explain(fresh()[:3])


@pytest.mark.parametrize("name", NAMES)
def test_fit_returns_self_and_fitted_attributes_end_in_underscore(name: str) -> None:
    detector = FACTORIES[name]()
    before = set(vars(detector))
    assert detector.fit(train()) is detector
    learned = set(vars(detector)) - before
    assert learned, "fit learned nothing"
    assert all(a.endswith("_") for a in learned), sorted(a for a in learned if not a.endswith("_"))
    assert np.isfinite(detector.threshold_)


@pytest.mark.parametrize("name", NAMES)
def test_obvious_outliers_score_above_threshold_and_inliers(name: str) -> None:
    detector = fitted(name)
    inlier_scores = detector.score_samples(fresh())
    outlier_scores = detector.score_samples(outliers())
    assert outlier_scores.min() > np.quantile(inlier_scores, 0.999)
    assert detector.predict(outliers()).all()


@pytest.mark.parametrize("name", NAMES)
def test_false_alarm_rate_on_fresh_normal_data_is_near_target(name: str) -> None:
    rate = float(fitted(name).predict(fresh()).mean())
    # Out-of-fold calibration plus the margin make thresholds conservative (IForest's very much so, and the window
    # detector's on purpose: see its ``margin``); the plain ensembles must still be close to the target.
    assert rate <= 2 * TARGET, rate
    if isinstance(fitted(name), EnsembleDetector):
        assert rate >= TARGET / 4, f"threshold far too high: {rate}"


@pytest.mark.parametrize("name", ["ecod", "knn", "ensemble-mean"])
def test_default_tiny_false_alarm_rate_stays_tiny(name: str) -> None:
    detector = FACTORIES[name]()
    detector.false_alarm_rate = 1e-4  # the default; set after construction to reuse the factory
    rate = float(detector.fit(train()).predict(fresh()).mean())
    assert rate <= 2e-3, rate


@pytest.mark.parametrize("name", NAMES)
def test_same_data_gives_same_scores(name: str) -> None:
    again = FACTORIES[name]().fit(train())
    np.testing.assert_array_equal(again.score_samples(fresh()[:500]), fitted(name).score_samples(fresh()[:500]))
    assert again.threshold_ == fitted(name).threshold_


@pytest.mark.parametrize("name", NAMES)
def test_score_of_a_row_does_not_depend_on_its_batch(name: str) -> None:
    detector = fitted(name)
    batch = np.vstack([fresh()[:20], outliers()])
    together = detector.score_samples(batch)
    alone = np.array([detector.score_samples(row[None, :])[0] for row in batch])
    np.testing.assert_allclose(alone, together, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("name", NAMES)
def test_change_in_a_feature_constant_while_learning_raises_the_score(name: str) -> None:
    column = COLUMN["diag_restart"]
    assert np.ptp(train()[:, column]) == 0
    rows = fresh()[:10].copy()
    changed = rows.copy()
    changed[:, column] = 1.0
    detector = fitted(name)
    assert (detector.score_samples(changed) > detector.score_samples(rows)).all()


@pytest.mark.parametrize("name", NAMES)
def test_wrong_width_is_refused(name: str) -> None:
    with pytest.raises(ValueError, match="feature"):
        fitted(name).score_samples(fresh()[:2, :-1])


# -- window detectors: the same contract over FeatureWindows ------------------------------------------------------

def _policy_windows():
    from tests.unit.detectors.test_policy import learning_windows

    return learning_windows()


def _attack_windows():
    from tests.unit.detectors.test_policy import AFTER, ATTACKER, PLC1, flow_window, hmi_reads, hmi_writes

    return [hmi_reads(AFTER, fc_43=1, addr_max=5000), hmi_writes(AFTER + 10, 103, 9999),
            flow_window(AFTER + 20, ATTACKER, PLC1, 502), hmi_reads(AFTER + 30, fc_8=1, diag_listen_only=1)]


WINDOW_FACTORIES: dict[str, Callable[[], object]] = {
    "policy": lambda: __import__("otsentry.detectors.policy", fromlist=["PolicyBaseline"]).PolicyBaseline(),
    "anomaly-pair": lambda: AnomalyWindowDetector(kind="pair", min_train_windows=10),
}


@pytest.mark.parametrize("name", sorted(WINDOW_FACTORIES))
def test_window_detectors_follow_the_estimator_contract(name: str) -> None:
    from otsentry.contracts.windows import alert_order
    from otsentry.detectors.base import WindowDetector
    from otsentry.detectors.rules import RULES

    detector = WINDOW_FACTORIES[name]()
    params = detector.get_params()
    assert type(detector)(**params).get_params() == params and isinstance(detector, WindowDetector)
    assert [a for a in vars(detector) if a.endswith("_")] == []
    with pytest.raises(NotFittedError):
        detector.detect(_attack_windows())
    assert detector.fit(_policy_windows()) is detector
    assert [a for a in vars(detector) if a.endswith("_")]
    first = sorted(detector.detect(_attack_windows()), key=alert_order)
    assert sorted(detector.detect(list(reversed(_attack_windows()))), key=alert_order) == first  # deterministic
    assert first and len({a.id for a in first}) == len(first)
    for a in first:  # every alert is a declared rule, with one of its declared techniques
        declared = RULES[a.rule_id]
        assert a.technique_id in {declared.technique, *(t for t, _ in declared.variants.values())}
    if name == "policy":
        assert {a.rule_id for a in first} >= {"policy.diagnostics", "policy.new_talker"}


def test_policy_baseline_declares_every_parameter_and_refuses_values_outside_them() -> None:
    from otsentry.detectors.base import InvalidParameterError
    from otsentry.detectors.policy import PolicyBaseline

    constraints = PolicyBaseline._parameter_constraints
    assert set(constraints) == set(PolicyBaseline().get_params())
    for name, c in constraints.items():
        bad = "x" if c.kind is bool else (c.low - 1 if c.low is not None else float("nan"))
        with pytest.raises(InvalidParameterError, match=name):
            PolicyBaseline(**{name: bad}).fit(_policy_windows())
    state = PolicyBaseline().fit(_policy_windows()).to_state()
    with pytest.raises(InvalidParameterError):
        PolicyBaseline.from_state({**state, "params": {**state["params"], "unanswered_ratio": 2.0}})
