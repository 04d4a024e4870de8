"""NumPy-only copies of fitted PyOD / scikit-learn scorers, so that a saved bundle unpickles without either library.

Why: ``otsentry run --model`` spent about a second of every start importing PyOD, scikit-learn and SciPy just to
unpickle the models, and IsolationForest scored through joblib's per-tree dispatch. The scorers here hold plain
arrays (tree nodes, histograms, learning rows) and reproduce the libraries' arithmetic operation for operation:

* IForest: scikit-learn's tree walk on float32 features, per-tree depth sums in tree order, ``2 ** -(d / c)``;
* HBOS: the NumPy scorer of ``models._HBOSScorer`` on the fitted histograms;
* KNN: the k-th neighbour distance as scikit-learn computes it: brute force as ``|x|^2 - 2 x.y + |y|^2`` with BLAS
  (``np.dot``, the same kernels), KD/ball trees as the exact sequential sum of squares.

``compact`` only swaps a scorer when the copy's scores are *bit-identical* to the original's on the learning rows
and on rows pushed off them; otherwise the original is kept (and the bundle then imports the libraries as before).
So a bundle scores exactly as the fitted models do, whichever form it holds.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

__all__ = ["ForestScorer", "HistogramScorer", "NeighbourScorer", "compact"]

log = logging.getLogger(__name__)

_CHUNK = 256  # rows per block, as scikit-learn's pairwise-distance reductions use
_HBOS_ROWS = 2048  # rows per HBOS block: with 10 bins and 72 features, 1.6 MB of comparisons
# Bound on |estimate - exact sum| of a squared distance, relative to |x|^2 + |y|^2: the rounding of either is about
# (features + 3) * 2**-53 of it, so 1e-10 holds with orders of magnitude to spare (only more candidates if loose).
_SLACK = 1e-10


class ForestScorer:
    """PyOD IForest's ``decision_function`` from the node arrays of scikit-learn's isolation trees."""

    def __init__(self, iforest: Any) -> None:
        from sklearn.ensemble._iforest import _average_path_length

        forest = iforest.detector_
        trees = [t.tree_ for t in forest.estimators_]
        sizes = np.array([t.node_count for t in trees])
        offsets = np.r_[0, np.cumsum(sizes)[:-1]]
        self.roots_ = offsets.astype(np.intp)
        shift = np.repeat(offsets, sizes)
        left = np.concatenate([t.children_left for t in trees]).astype(np.intp)
        right = np.concatenate([t.children_right for t in trees]).astype(np.intp)
        leaf = left == -1
        here = np.arange(len(left), dtype=np.intp)
        # children_[2 * node + went_left]: leaves point to themselves, so every row walks max_depth_ steps.
        self.children_ = np.empty(2 * len(left), dtype=np.intp)
        self.children_[0::2] = np.where(leaf, here, right + shift)
        self.children_[1::2] = np.where(leaf, here, left + shift)
        self.feature_ = np.where(leaf, 0, np.concatenate([t.feature for t in trees])).astype(np.intp)
        self.threshold_ = np.concatenate([t.threshold for t in trees])
        # Per node: decision path length + average path length of its leaf samples - 1, as sklearn adds them.
        self.leaf_depth_ = np.concatenate([np.asarray(d) + np.asarray(a) - 1.0 for d, a in
                                           zip(forest._decision_path_lengths, forest._average_path_length_per_tree)])
        subsample = forest._max_features != forest.n_features_in_
        if subsample:  # tree t's feature j is column estimators_features_[t][j] of X
            tree_of = np.repeat(np.arange(len(trees)), sizes)
            columns = [np.asarray(f, dtype=np.intp) for f in forest.estimators_features_]
            self.feature_ = np.array([columns[t][f] for t, f in zip(tree_of, self.feature_)], dtype=np.intp)
        self.denominator_ = len(forest.estimators_) * _average_path_length([forest._max_samples])
        self.offset_ = forest.offset_
        self.max_depth_ = int(max(t.max_depth for t in trees))

    def score(self, X: np.ndarray) -> np.ndarray:
        X32 = np.ascontiguousarray(X, dtype=np.float32)
        n, width = X32.shape
        flat = X32.ravel()
        base = (np.arange(n, dtype=np.intp) * width)[:, None]
        node = np.broadcast_to(self.roots_, (n, len(self.roots_))).copy()
        for _ in range(self.max_depth_):
            value = np.take(flat, base + np.take(self.feature_, node))
            went_left = value <= np.take(self.threshold_, node)  # float32 value against float64 threshold
            node = np.take(self.children_, 2 * node + went_left)
        contributions = np.take(self.leaf_depth_, node)
        depths = np.zeros(n)
        for t in range(contributions.shape[1]):  # sequential, in tree order, as sklearn accumulates
            depths += contributions[:, t]
        ones = np.ones_like(depths)
        scores = 2 ** (-np.divide(depths, self.denominator_, out=ones, where=self.denominator_ != 0))
        return (-scores - self.offset_) * -1


class HistogramScorer:
    """PyOD HBOS's fitted histograms, scored like ``models._HBOSScorer``."""

    def __init__(self, hbos: Any) -> None:
        self.hist_ = np.asarray(hbos.hist_)
        self.bin_edges_ = np.asarray(hbos.bin_edges_)
        self.alpha = hbos.alpha
        self.tol = hbos.tol

    def score(self, X: np.ndarray) -> np.ndarray:
        """All features at once (the per-feature loop was a dozen small NumPy calls per feature and batch), with
        the same per-value arithmetic and the per-feature sum in feature order, so the scores are bit-identical.
        Rows score independently: long inputs go in blocks, so the (rows x edges x features) comparison stays small."""
        if len(X) > _HBOS_ROWS:
            return np.concatenate([self.score(X[i:i + _HBOS_ROWS]) for i in range(0, len(X), _HBOS_ROWS)])
        hist, edges, n_bins = self.hist_, self.bin_edges_, self.hist_.shape[0]
        n, d = X.shape
        log_density = np.empty(hist.shape)
        for i in range(d):  # per column as before: the same log2 calls on the same (strided) inputs
            log_density[:, i] = np.log2(hist[:, i] + self.alpha)
        # np.digitize(x, e, right=True) on increasing edges is the number of edges below x.
        bins = (X[:, None, :] > edges[None, :, :]).sum(axis=1)
        columns = np.arange(d)
        inside = log_density[np.clip(bins - 1, 0, n_bins - 1), columns]
        floor = log_density.min(axis=0)
        below_ok = (edges[0] - X) <= (edges[1] - edges[0]) * self.tol
        above_ok = (X - edges[-1]) <= (edges[-1] - edges[-2]) * self.tol
        value = np.where(bins == 0, np.where(below_ok, log_density[0], floor), inside)
        value = np.where(bins == n_bins + 1, np.where(above_ok, log_density[-1], floor), value)
        total = np.zeros(n)
        for column in np.ascontiguousarray(value.T):  # feature by feature, as the loop added them
            total += column
        return -total


class NeighbourScorer:
    """PyOD KNN (``method="largest"``): the distance to the k-th nearest learning row."""

    def __init__(self, knn: Any) -> None:
        neigh = knn.neigh_
        self.fit_X_ = np.ascontiguousarray(neigh._fit_X, dtype=float)
        self.k = int(knn.n_neighbors)
        self.brute = neigh._fit_method == "brute"
        self.y_norms_ = _row_norms(self.fit_X_) if self.brute else None

    def score(self, X: np.ndarray) -> np.ndarray:
        X = np.ascontiguousarray(X, dtype=float)
        out = np.empty(len(X))
        for start in range(0, len(X), _CHUNK):
            block = X[start:start + _CHUNK]
            if not self.brute:
                out[start:start + _CHUNK] = np.sqrt(self._exact_kth(block))
                continue
            squared = self._brute(block)
            squared.partition(self.k - 1, axis=1)  # in place: np.partition would copy the whole block first
            out[start:start + _CHUNK] = np.sqrt(squared[:, self.k - 1])
        return out

    def _exact_kth(self, block: np.ndarray) -> np.ndarray:
        """The k-th smallest ``_exact`` distance per row, summed exactly only for the learning rows that can be it.

        Why: the exact sums cost three passes over (rows x learning rows) per feature, most of them for rows far
        from the query. A BLAS estimate ``|x|^2 - 2 x.y + |y|^2`` differs from the exact sum by at most ``err``, far
        below ``_SLACK * (|x|^2 + max |y|^2)``; so every learning row whose exact distance is within the k smallest has
        an estimate within ``2 * err`` of the k-th smallest estimate. Those candidates get the same sequential sums as
        ``_exact`` (same operations, same order), and the k-th smallest of them is bit for bit the full answer.
        """
        k, Y = self.k, self.fit_X_
        x_norms, y_norms = np.einsum("ij,ij->i", block, block), np.einsum("ij,ij->i", Y, Y)
        estimate = block @ Y.T
        np.multiply(estimate, -2.0, out=estimate)
        np.add(estimate, x_norms[:, None], out=estimate)
        np.add(estimate, y_norms[None, :], out=estimate)
        if not (np.isfinite(estimate).all() and np.isfinite(x_norms).all()):
            squared = self._exact(block)  # overflow: no bound to trust, sum everything
            squared.partition(k - 1, axis=1)
            return squared[:, k - 1]
        kth = np.partition(estimate, k - 1, axis=1)[:, k - 1]
        slack = 2.0 * _SLACK * (x_norms + float(y_norms.max()))
        rows, cols = np.nonzero(estimate <= (kth + slack)[:, None])  # row-major: rows ascending
        acc = np.zeros(len(rows))
        queries, columns = block.T, Y.T
        for j in range(block.shape[1]):  # as _exact: 0 + d0^2, then + d1^2, ...
            diff = queries[j][rows] - columns[j][cols]
            np.multiply(diff, diff, out=diff)
            np.add(acc, diff, out=acc)
        order = np.lexsort((acc, rows))
        first = np.searchsorted(rows, np.arange(len(block)))  # each row has >= k candidates (its k best estimates)
        return acc[order][first + k - 1]

    def _brute(self, block: np.ndarray) -> np.ndarray:
        """scikit-learn's ArgKmin: ``|x|^2 + (-2 x.y) + |y|^2`` per Y block, floored at 0."""
        x_norms = _row_norms(block)[:, None]
        squared = np.empty((len(block), len(self.fit_X_)))
        for start in range(0, len(self.fit_X_), _CHUNK):
            Y = self.fit_X_[start:start + _CHUNK]
            # The same operations in the same order, in place: no temporaries per step (IEEE ops are commutative).
            middle = block @ Y.T
            np.multiply(middle, -2.0, out=middle)
            np.add(x_norms, middle, out=middle)
            np.add(middle, self.y_norms_[None, start:start + _CHUNK], out=squared[:, start:start + _CHUNK])
        return np.maximum(squared, 0.0, out=squared)

    def _exact(self, block: np.ndarray) -> np.ndarray:
        """KD / ball tree distances: the squared differences summed feature by feature."""
        squared = np.zeros((len(block), len(self.fit_X_)))
        diff = np.empty_like(squared)
        columns = self.fit_X_.T
        for j in range(block.shape[1]):  # in place: the temporaries of a naive expression cost twice the time
            np.subtract(block[:, j, None], columns[j][None, :], out=diff)
            np.multiply(diff, diff, out=diff)
            np.add(squared, diff, out=squared)
        return squared


def _row_norms(X: np.ndarray) -> np.ndarray:
    """Squared row norms with BLAS ``ddot`` per row, as scikit-learn's ``_sqeuclidean_row_norms64``.

    A stack of (1, d) @ (d, 1) products: NumPy runs each through ``ddot``, in one C loop.
    """
    X = np.ascontiguousarray(X, dtype=float)
    return np.matmul(X[:, None, :], X[:, :, None]).reshape(len(X))


def compact(scorer: Any, X: np.ndarray) -> Any:
    """A NumPy-only copy of a fitted ``models`` scorer if it scores ``X`` (learning rows, scaled) bit-identically.

    The check also scores rows moved off the learning data (scaled and shifted), where trees and neighbours take
    other paths. Scorers without a copy (ECOD/COPOD already are NumPy) and copies that differ are returned as is.
    """
    copy = _copy_of(scorer)
    if copy is None:
        return scorer
    rng = np.random.default_rng(0)
    probe = np.vstack([X, X * 1.5 + rng.normal(scale=2.0, size=X.shape)])
    if not np.array_equal(copy.score(probe), scorer.score(probe)):
        log.debug("keeping %s: its NumPy copy does not score identically", type(scorer).__name__)
        return scorer
    return copy


def _copy_of(scorer: Any) -> Any:
    estimator = getattr(scorer, "estimator", None)
    name = type(estimator).__name__
    try:
        if name == "IForest":
            return ForestScorer(estimator)
        if name == "HBOS":
            return HistogramScorer(estimator)
        if name == "KNN" and estimator.method == "largest" and _euclidean(estimator.neigh_):
            return NeighbourScorer(estimator)
    except (AttributeError, ImportError, TypeError, ValueError) as exc:  # a library version laid out differently
        log.debug("no NumPy copy of %s: %s", name, exc)
    return None


def _euclidean(neigh: Any) -> bool:
    metric = getattr(neigh, "effective_metric_", None)
    return metric == "euclidean" and getattr(neigh, "_fit_method", None) in ("brute", "kd_tree", "ball_tree")
