"""Our ECOD/COPOD/HBOS scorers compute PyOD's scores (see ``otsentry.detectors.models``), minus PyOD's batch effects."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from otsentry.detectors.models import _ECDFScorer, _HBOSScorer


def learning_sample() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(5)
    n = 400
    X = np.column_stack(
        [
            rng.lognormal(0, 0.8, n),  # right-skewed
            -rng.lognormal(0, 0.8, n),  # left-skewed
            rng.poisson(3, n).astype(float),  # ties
            np.zeros(n),  # constant while learning
            rng.normal(0, 1, n),
        ]
    )
    queries = np.vstack([X[:5] * 1.01, [[9.0, -9.0, 30.0, 1.0, 0.0]], [[0.2, -0.2, 0.0, 0.0, -3.0]]])
    return X, queries


@pytest.mark.parametrize("kind", ["ecod", "copod"])
def test_ecdf_scores_equal_pyod_on_one_row_batches(kind: str) -> None:
    from pyod.models.copod import COPOD
    from pyod.models.ecod import ECOD

    X, queries = learning_sample()
    ours = _ECDFScorer(kind).fit(X)
    reference = (ECOD if kind == "ecod" else COPOD)().fit(X)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        expected = np.array([reference.decision_function(q[None, :])[0] for q in queries])
    np.testing.assert_allclose(ours.score(queries), expected, rtol=1e-9)


def test_pyod_ecod_scores_depend_on_the_batch_and_ours_do_not() -> None:
    """Why we do not call ECOD.decision_function: a flood scored in one batch dilutes itself."""
    from pyod.models.ecod import ECOD

    X, queries = learning_sample()
    flood = np.repeat(queries[5:6], 400, axis=0)
    reference = ECOD().fit(X)
    alone = reference.decision_function(flood[:1])[0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        in_batch = reference.decision_function(flood)[0]
    assert in_batch < 0.8 * alone
    ours = _ECDFScorer("ecod").fit(X)
    assert ours.score(flood)[0] == ours.score(flood[:1])[0]


def test_hbos_numpy_scorer_equals_pyod() -> None:
    from pyod.models.hbos import HBOS

    X, queries = learning_sample()
    ours = _HBOSScorer(HBOS()).fit(X)
    rows = np.vstack([X, queries, queries * 3, -queries])
    np.testing.assert_allclose(ours.score(rows), ours.estimator.decision_function(rows), rtol=1e-12)
    np.testing.assert_allclose(ours.score(X), ours.train_scores_, rtol=1e-12)
