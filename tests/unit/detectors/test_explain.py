"""Explanations name the feature that was changed, with its learned range."""

from __future__ import annotations

from functools import cache

import numpy as np
import pytest

from otsentry.detectors.ensemble import EnsembleDetector
from otsentry.contracts.schema import PAIR_FEATURES
from tests.unit.detector_data import COLUMN, normal_rows


@cache
def ensemble() -> EnsembleDetector:
    return EnsembleDetector(members=("ecod", "knn")).fit(normal_rows(400, np.random.default_rng(3)), PAIR_FEATURES)


@cache
def inliers() -> np.ndarray:
    return normal_rows(40, np.random.default_rng(4))


@pytest.mark.parametrize(
    "feature, value",
    [("exceptions", 25.0), ("requests", 400.0), ("fc_distinct", 9.0), ("latency_max_ms", 900.0), ("tcp_rst", 3.0),
     ("value_max", 65535.0), ("write_ratio", 1.0)],
)
def test_explanation_names_the_perturbed_feature_first(feature: str, value: float) -> None:
    rows = inliers().copy()
    rows[:, COLUMN[feature]] = value
    train = normal_rows(400, np.random.default_rng(3))
    for evidence in ensemble().explain(rows):
        top = evidence[0]
        assert top.name == feature
        assert top.value == value
        learned = train[:, COLUMN[feature]]
        assert (top.baseline_low, top.baseline_high) == (learned.min(), learned.max())
        assert top.contribution > 0.5


def test_explanation_lists_several_out_of_range_features_with_shares() -> None:
    row = inliers()[:1].copy()
    row[0, COLUMN["exceptions"]] = 30.0
    row[0, COLUMN["exc_2"]] = 30.0
    evidence = ensemble().explain(row, top=3)[0]
    assert {e.name for e in evidence[:2]} == {"exceptions", "exc_2"}
    assert sum(e.contribution for e in evidence) == pytest.approx(1.0, abs=1e-3)
    assert len(evidence) == 2  # nothing else is outside its learned range


def test_in_range_row_is_explained_by_distance_from_median() -> None:
    evidence = ensemble().explain(inliers()[:5], top=3)
    assert all(1 <= len(e) <= 3 for e in evidence)
    assert all(e.baseline_low <= e.value <= e.baseline_high for row in evidence for e in row)


def test_perturbed_rows_score_higher_than_their_originals() -> None:
    rows = inliers().copy()
    rows[:, COLUMN["exceptions"]] = 25.0
    det = ensemble()
    assert (det.score_samples(rows) > det.score_samples(inliers())).all()
    assert det.predict(rows).all()
