"""NumPy-only scorer copies (``detectors.compact``): bit-identical to the fitted PyOD models, and bundles of them
load and score without importing PyOD, scikit-learn or SciPy."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from otsentry.detectors.compact import ForestScorer, HistogramScorer, NeighbourScorer, compact
from otsentry.detectors.models import PyODDetector, _make_scorer, _one_thread


def _data(width: int, rows: int = 400, seed: int = 3) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(rows, width)) * rng.uniform(0.5, 20, size=width)
    X[:, 0] = np.round(X[:, 0])  # a count-like column with ties
    fresh = np.vstack([rng.normal(size=(300, width)) * 30, X[:5] + 1e-9, X[:5]])
    return X, fresh


@pytest.mark.parametrize(
    ("model", "width", "copy_type"),
    [("iforest", 40, ForestScorer), ("hbos", 40, HistogramScorer), ("knn", 72, NeighbourScorer),
     ("knn", 13, NeighbourScorer)],  # 72 features: brute-force neighbours; 13: a KD tree
)
def test_copy_scores_bit_identically(model: str, width: int, copy_type: type) -> None:
    X, fresh = _data(width)
    with _one_thread():
        original = _make_scorer(model, {}, 0).fit(X)
        copy = compact(original, X)
        assert isinstance(copy, copy_type)
        for rows in (X, fresh, fresh[:1]):
            assert np.array_equal(copy.score(rows), original.score(rows))


def test_a_copy_that_differs_is_not_used() -> None:
    X, _ = _data(13)
    with _one_thread():
        original = _make_scorer("knn", {}, 0).fit(X)
    original.estimator.neigh_._fit_X = original.estimator.neigh_._fit_X + 1.0  # the copy now learns other rows
    assert compact(original, X) is original


def test_fitted_detector_keeps_numpy_scorers() -> None:
    X, _ = _data(20)
    for model in ("ecod", "iforest", "hbos", "copod", "knn"):
        scorer = PyODDetector(model=model).fit(X).scorer_
        assert type(scorer).__module__ != "pyod" and not hasattr(scorer, "estimator")


def test_bundle_loads_and_scores_without_pyod_or_sklearn(tmp_path: Path) -> None:
    from otsentry.detectors.ensemble import EnsembleDetector

    X, fresh = _data(20)
    path = tmp_path / "ensemble.joblib"
    import joblib

    ensemble = EnsembleDetector().fit(X)
    joblib.dump(ensemble, path)
    np.save(tmp_path / "rows.npy", fresh)
    np.save(tmp_path / "expected.npy", ensemble.score_samples(fresh))
    code = (
        "import sys, joblib, numpy as np\n"
        f"e = joblib.load({str(path)!r})\n"
        f"s = e.score_samples(np.load({str(tmp_path / 'rows.npy')!r}))\n"
        f"assert np.array_equal(s, np.load({str(tmp_path / 'expected.npy')!r}))\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('pyod', 'sklearn', 'scipy'))\n"
        "assert not bad, bad[:5]\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
