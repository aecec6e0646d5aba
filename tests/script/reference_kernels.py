"""Today's k-center and BADGE kernels, copied verbatim from the entry script before issue 24 added pruning.

The unpruned kernels are the reference the pruned ones must reproduce pick for pick: every pick is one full
matrix-vector product over all rows. Only the helpers that issue 24 left unchanged (``_as_matrix``,
``_normalize_rows``, ``_prediction_residuals``, ``_sample_weights``, ``top_k_indices``, ``_Progress``)
come from the script.
"""

import math
from typing import Any, Tuple

import numpy as np

from conftest import script_module as _script

_as_matrix = _script._as_matrix
_normalize_rows = _script._normalize_rows
_prediction_residuals = _script._prediction_residuals
_sample_weights = _script._sample_weights
top_k_indices = _script.top_k_indices
METRICS = _script.METRICS
_DUPLICATE_TOLERANCE = 1e-5


class _Progress:
    def __init__(self, *args, **kwargs):
        pass

    def update(self, done):
        pass


logger = _script.logger


def _min_sq_distances(X: np.ndarray, sq_norms: np.ndarray, centers: np.ndarray) -> np.ndarray:
    """Squared euclidean distance from every row of X to its nearest center, in bounded blocks."""
    center_sq = np.einsum("ij,ij->i", centers, centers)
    block_rows = max(1, (1 << 24) // max(1, centers.shape[0]))
    result = np.empty(X.shape[0], dtype=X.dtype)
    for start in range(0, X.shape[0], block_rows):
        block = X[start:start + block_rows]
        d2 = block @ centers.T
        d2 *= -2
        d2 += sq_norms[start:start + block_rows, None]
        d2 += center_sq[None, :]
        np.min(d2, axis=1, out=result[start:start + block_rows])
    np.maximum(result, 0, out=result)
    return result


class _NearestCenter:
    """Squared distance from every row to its nearest center so far, updated one center at a time.

    ``add(dots, center)`` takes ``dots[i] = x_i . x_center`` (overwritten as scratch) and folds
    ``|x_i|^2 - 2 x_i . x_center + |x_center|^2`` into ``self.d2``. Values within ``_DUPLICATE_TOLERANCE``
    of the two squared norms count as exact zeros, so duplicates of a center tie at 0 rather than at
    rounding noise. All buffers are allocated once.
    """

    def __init__(self, sq_norms: np.ndarray, initial: np.ndarray):
        self.sq_norms = sq_norms
        self.tolerances = sq_norms * sq_norms.dtype.type(_DUPLICATE_TOLERANCE)
        self.d2 = initial
        self._threshold = np.empty_like(sq_norms)
        self._duplicates = np.empty(sq_norms.shape, dtype=bool)

    def add(self, dots: np.ndarray, center: int) -> None:
        dots *= -2
        dots += self.sq_norms
        dots += self.sq_norms[center]
        np.add(self.tolerances, self.tolerances[center], out=self._threshold)
        np.less_equal(dots, self._threshold, out=self._duplicates)
        np.copyto(dots, 0, where=self._duplicates)
        np.minimum(self.d2, dots, out=self.d2)


def k_center_greedy_reference(
    X: Any, n_select: int, *, initial_centers: Any = None, metric: str = "euclidean", copy: bool = True
) -> Tuple[np.ndarray, np.ndarray]:
    """Greedy k-center (farthest-first traversal), the core-set selection of Sener & Savarese (2018).

    Each pick is the row farthest from its nearest center; the pick then becomes a center. The
    centers start as ``initial_centers`` (the already-labeled rows) or, when there are none, as the
    column mean of X, so the selection is deterministic and every pick has a real distance.

    Works in float32 with precomputed squared norms: one matrix-vector product per pick updates the
    running minimum distance in place, so memory is one centered copy of X plus a few length-n
    vectors (``copy=False`` centers a float32 C-contiguous X in place instead, like scikit-learn's
    ``copy_x``). Rows are centered first (distances do not change) so that ``|x|^2 - 2 x.c + |c|^2`` does
    not lose the distance's digits to a large common offset; squared distances within
    ``_DUPLICATE_TOLERANCE`` of the norms count as exact zeros, so duplicates tie and ties go to the
    lowest index. Cosine distance normalizes the rows once; ``1 - cos = |u - v|^2 / 2`` on unit
    vectors, so the same loop applies.

    Returns the picked row indices in order and each one's distance to its nearest center (euclidean,
    or 1 - cosine similarity) at the moment it was picked.
    """
    if metric not in METRICS:
        raise ValueError("metric must be one of {}, got {!r}".format(METRICS, metric))
    X = _as_matrix(X, "X", np.float32)
    n_rows = X.shape[0]
    n_select = min(int(n_select), n_rows)
    if initial_centers is None or len(initial_centers) == 0:
        centers = X.mean(axis=0, dtype=np.float64).astype(np.float32)[None, :]
    else:
        centers = _as_matrix(initial_centers, "initial_centers", np.float32)
    if copy or not X.flags.writeable:
        X = X.copy()
    if metric == "cosine":
        X = _normalize_rows(X)
        centers = _normalize_rows(centers.copy())
    offset = X.mean(axis=0, dtype=np.float64).astype(np.float32)
    X -= offset
    centers = centers - offset
    sq_norms = np.einsum("ij,ij->i", X, X)
    nearest = _NearestCenter(sq_norms, _min_sq_distances(X, sq_norms, centers))
    indices = np.empty(n_select, dtype=np.int64)
    distances = np.empty(n_select, dtype=np.float64)
    dots = np.empty(n_rows, dtype=np.float32)
    progress = _Progress("k-center greedy", n_select)
    for pick in range(n_select):
        chosen = int(np.argmax(nearest.d2))
        indices[pick] = chosen
        distances[pick] = max(float(nearest.d2[chosen]), 0.0)
        np.dot(X, X[chosen], out=dots)
        nearest.add(dots, chosen)
        nearest.d2[chosen] = -np.inf
        progress.update(pick + 1)
    return indices, _distance_from_squared(distances, metric)


def _distance_from_squared(d2: np.ndarray, metric: str) -> np.ndarray:
    return d2 / 2.0 if metric == "cosine" else np.sqrt(d2)


def badge_kmeanspp_reference(
    embeddings: Any, probabilities: Any, n_select: int, *, metric: str = "euclidean", random_state: Any = None,
    sample_weight: Any = None,
) -> Tuple[np.ndarray, np.ndarray]:
    """BADGE (Ash et al. 2020): k-means++ seeding over gradient embeddings ``g_i = (p_i - e_yhat_i) (x) h_i``.

    The first pick is the row with the largest gradient norm; every next pick is drawn with probability
    proportional to its squared distance to the nearest pick so far (D^2 sampling), which trades off
    uncertainty (gradient magnitude) and diversity. The n x C*D gradient matrix is never built:
    ``g_i . g_j = (d_i . d_j)(h_i . h_j)``, so each pick costs one n x D (float32) and one n x C
    matrix-vector product. A draw is ``u = rng.random() * sum(D2)`` located in ``cumsum(D2)`` by binary
    search; picked rows and exact duplicates of picks have D2 = 0 and are never drawn. When every
    remaining row duplicates a pick (sum(D2) = 0), the rest are taken by decreasing gradient norm.

    ``metric="cosine"`` normalizes d and h (hence g) first; the first pick still maximizes the raw norm.
    ``sample_weight`` (n,) non-negative, as in k-means|| (Bahmani et al. 2012): draws are proportional to
    weight x D^2 (the merge of a sharded run weighs each shard's pick by the rows it stands for).
    Returns the picked row indices in order and each one's distance to its nearest earlier pick at the
    moment it was picked (the first pick reports its gradient norm, or 1.0 for cosine).
    """
    if metric not in METRICS:
        raise ValueError("metric must be one of {}, got {!r}".format(METRICS, metric))
    H = _as_matrix(embeddings, "embeddings", np.float32)
    residual = _prediction_residuals(_as_matrix(probabilities, "probabilities", np.float64))
    if residual.shape[0] != H.shape[0]:
        raise ValueError("embeddings and probabilities have different row counts: {} and {}".format(
            H.shape[0], residual.shape[0]))
    rng = np.random.default_rng(random_state)
    n_rows = H.shape[0]
    n_select = min(int(n_select), n_rows)
    weights = None if sample_weight is None else _sample_weights(sample_weight, n_rows)
    raw_sq_norms = np.einsum("ij,ij->i", residual, residual) * np.einsum("ij,ij->i", H, H, dtype=np.float64)
    if metric == "cosine":
        H = _normalize_rows(H.copy())
        residual = _normalize_rows(residual)
    sq_norms = np.einsum("ij,ij->i", residual, residual) * np.einsum("ij,ij->i", H, H, dtype=np.float64)
    indices = np.empty(n_select, dtype=np.int64)
    distances = np.empty(n_select, dtype=np.float64)
    if n_select == 0:
        return indices, distances
    residual_by_class = np.ascontiguousarray(residual.T)  # (C, n): a faster product than (n, C) by a vector
    del residual
    nearest = _NearestCenter(sq_norms, np.full(n_rows, np.inf))
    min_d2 = nearest.d2
    h_dot = np.empty(n_rows, dtype=np.float32)
    dots = np.empty(n_rows, dtype=np.float64)
    chosen = int(np.argmax(raw_sq_norms))
    indices[0] = chosen
    distances[0] = 1.0 if metric == "cosine" else math.sqrt(raw_sq_norms[chosen])
    progress = _Progress("BADGE k-means++", n_select)
    for pick in range(1, n_select + 1):
        np.dot(H, H[chosen], out=h_dot)
        np.dot(residual_by_class[:, chosen], residual_by_class, out=dots)
        dots *= h_dot
        nearest.add(dots, chosen)
        min_d2[chosen] = 0.0
        progress.update(pick)
        if pick == n_select:
            break
        chosen = _draw_proportional(min_d2 if weights is None else min_d2 * weights, rng)
        if chosen < 0:
            rest = np.setdiff1d(np.arange(n_rows), indices[:pick], assume_unique=True)
            fill = rest[top_k_indices(raw_sq_norms[rest], n_select - pick)]
            logger.warning("BADGE: only %d distinct gradient embeddings among %d rows; the remaining %d picks "
                           "duplicate earlier ones and are taken by gradient norm", pick, n_rows, fill.size)
            indices[pick:] = fill
            distances[pick:] = 0.0
            break
        indices[pick] = chosen
        distances[pick] = min_d2[chosen] / 2.0 if metric == "cosine" else math.sqrt(min_d2[chosen])
    return indices, distances


def _draw_proportional(weights: np.ndarray, rng: np.random.Generator) -> int:
    """Index drawn with probability weights[i] / sum(weights), or -1 when all weights are zero."""
    cumulative = np.cumsum(weights)
    total = cumulative[-1]
    if not total > 0.0:
        return -1
    position = int(np.searchsorted(cumulative, rng.random() * total, side="right"))
    if position >= weights.shape[0]:  # rounding put the draw at the very end
        position = int(np.flatnonzero(weights > 0)[-1])
    return position


