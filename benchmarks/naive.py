"""The "as designed" baseline: the seeds' DiversitySampler and BADGESampler sketches, written as they stand.

Seed 000 ("DiversitySampler", "BADGESampler") and seed 001 (sections 2.2 Diversity and 2.3 BADGE) describe
farthest-first selection whose distance is ``sqrt(sum((X[:, None, :] - Y[None, :, :]) ** 2, axis=2))`` for one
new center at a time, and BADGE as that same farthest-first run over the materialized gradient embeddings
``(p - onehot(argmax p))[:, :, None] * h[:, None, :]`` reshaped to (N, C*D).

Two deliberate departures, both so that results can be compared with the project and neither of which
changes the cost:

* the seeds read the embeddings with pandas, so they arrive as float64; this module converts to float64 up
  front to reproduce that (otherwise a float32 input would silently make the baseline faster than designed);
* k-center starts from the column mean as the single initial center, as the project does when no row is
  labeled, instead of the seeds' random first point. BADGE keeps the seeds' random first point
  (``np.random.seed(seed); randint(N)``) because its k-means++ sampling is not comparable pick by pick anyway.

Nothing is chunked: one (N, 1, D) float64 broadcast per pick is 1 GB at N = 1M, D = 128, which fits; the
BADGE gradient matrix at N = 1M, D = 128, C = 10 (10 GB, plus the same again per pick for the broadcast)
does not fit on the benchmark machine, so that case is not run at all.
"""

import numpy as np


def compute_distances(X, Y, metric="euclidean"):
    """Pairwise distances between the rows of X and Y, exactly as the seeds' ``_compute_distances``."""
    if metric == "euclidean":
        return np.sqrt(np.sum((X[:, None, :] - Y[None, :, :]) ** 2, axis=2))
    if metric == "cosine":
        X_norm = X / (np.linalg.norm(X, axis=1, keepdims=True) + 1e-10)
        Y_norm = Y / (np.linalg.norm(Y, axis=1, keepdims=True) + 1e-10)
        return 1 - np.dot(X_norm, Y_norm.T)
    raise ValueError(f"Unknown metric: {metric}")


def farthest_first(X, n_select, first_distances, metric="euclidean"):
    """Seed farthest-first loop from precomputed distances to the initial center(s)."""
    min_distances = first_distances
    selected, distances = [], []
    for _ in range(n_select):
        farthest = int(np.argmax(min_distances))
        selected.append(farthest)
        distances.append(float(min_distances[farthest]))
        new_distances = compute_distances(X, X[farthest:farthest + 1], metric).flatten()
        min_distances = np.minimum(min_distances, new_distances)
    return np.array(selected, dtype=np.int64), np.array(distances)


def k_center_greedy(embeddings, n_select, metric="euclidean"):
    """Seed k-center over float64 embeddings, starting from the column mean as the project does."""
    X = np.asarray(embeddings, dtype=np.float64)
    mean = X.mean(axis=0, keepdims=True)
    return farthest_first(X, n_select, compute_distances(X, mean, metric).flatten(), metric)


def gradient_embeddings(features, probabilities):
    """Seed ``compute_gradient_embeddings``: (p - onehot(argmax p)) outer h, materialized as (N, C*D)."""
    pseudo_labels = np.argmax(probabilities, axis=1)
    n_samples, n_classes = probabilities.shape
    one_hot = np.eye(n_classes)[pseudo_labels]
    delta = probabilities - one_hot
    return (delta[:, :, None] * features[:, None, :]).reshape(n_samples, -1)


def badge(features, probabilities, n_select, metric="euclidean", random_seed=42):
    """Seed BADGE: materialize the gradient embeddings, then the seed's farthest-first from a random point."""
    G = gradient_embeddings(np.asarray(features, dtype=np.float64), np.asarray(probabilities, dtype=np.float64))
    np.random.seed(random_seed)
    first = np.random.randint(len(G))
    first_distances = compute_distances(G, G[first:first + 1], metric).flatten()
    rest, distances = farthest_first(G, n_select - 1, first_distances, metric)
    return np.concatenate([[first], rest]), np.concatenate([[0.0], distances])
