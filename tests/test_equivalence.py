"""The fast selection functions against straightforward references, on inputs small enough to compute exactly.

``k_center_greedy`` works in float32 with the norm expansion and ``badge_kmeanspp`` never builds the gradient
matrix; the references below do the obvious thing in float64 (explicit differences, materialized gradient
embeddings) with the same tie-breaking and the same random draws, so k-center picks must be identical and
BADGE must produce the same first pick and the same seeded sequence.
"""

import math

import numpy as np
import pytest

from active_sampling.scripts import active_sample_selection as script

METRICS = ("euclidean", "cosine")


def unit_rows(matrix):
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return matrix / np.where(norms == 0, 1.0, norms)


def reference_k_center(X, n_select, initial_centers=None, metric="euclidean"):
    """Farthest-first with explicit float64 distances; ties to the lowest index, a pick never repeats."""
    X = np.asarray(X, dtype=np.float64)
    centers = X.mean(axis=0)[None, :] if initial_centers is None else np.asarray(initial_centers, np.float64)

    def distance(points, center):
        if metric == "cosine":  # 1 - cos as |u - v|^2 / 2 on unit rows: exactly 0 for duplicates
            return ((unit_rows(points) - unit_rows(center[None, :])) ** 2).sum(axis=1) / 2
        return np.sqrt(((points - center) ** 2).sum(axis=1))

    min_distance = np.min([distance(X, c) for c in centers], axis=0)
    picked, picked_distances = [], []
    for _ in range(n_select):
        chosen = int(np.argmax(min_distance))
        picked.append(chosen)
        picked_distances.append(max(min_distance[chosen], 0.0))
        min_distance = np.minimum(min_distance, distance(X, X[chosen]))
        min_distance[picked] = -np.inf
    return np.array(picked), np.array(picked_distances)


def reference_gradient_embeddings(H, P):
    """(p - onehot(argmax p)) outer h, materialized in float64: the seeds' definition."""
    P = np.asarray(P, dtype=np.float64)
    delta = P - np.eye(P.shape[1])[P.argmax(axis=1)]
    return (delta[:, :, None] * np.asarray(H, dtype=np.float64)[:, None, :]).reshape(len(P), -1)


def reference_d2_after(G, picked):
    """Squared euclidean distance of every row of G to its nearest picked row (k-means++ weights)."""
    d2 = np.min([((G - G[p]) ** 2).sum(axis=1) for p in picked], axis=0)
    d2[picked] = 0.0
    return d2


def reference_badge(H, P, n_select, metric="euclidean", seed=None):
    """k-means++ over materialized gradient embeddings, drawing exactly as the project documents."""
    G = reference_gradient_embeddings(H, P)
    raw_sq_norms = (G ** 2).sum(axis=1)
    if metric == "cosine":
        G = unit_rows(G)
    rng = np.random.default_rng(seed)
    picked = [int(np.argmax(raw_sq_norms))]
    while len(picked) < n_select:
        d2 = reference_d2_after(G, picked)
        total = d2.sum()
        if total == 0:
            rest = [i for i in np.argsort(-raw_sq_norms, kind="stable") if i not in picked]
            picked += rest[: n_select - len(picked)]
            break
        picked.append(int(np.searchsorted(np.cumsum(d2), rng.random() * total, side="right")))
    return np.array(picked)


def gaussian(rng, n, d, dtype=np.float32):
    return rng.standard_normal((n, d)).astype(dtype)


def probabilities(rng, n, c):
    logits = 1.5 * rng.standard_normal((n, c))
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    return p / p.sum(axis=1, keepdims=True)


@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("with_initial_centers", [False, True])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_k_center_picks_equal_reference(metric, with_initial_centers, seed):
    rng = np.random.default_rng(seed)
    X = gaussian(rng, 400, 12)
    initial = gaussian(rng, 5, 12) if with_initial_centers else None
    indices, distances = script.k_center_greedy(X, 60, initial_centers=initial, metric=metric)
    expected_indices, expected_distances = reference_k_center(X, 60, initial, metric)
    np.testing.assert_array_equal(indices, expected_indices)
    np.testing.assert_allclose(distances, expected_distances, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_k_center_picks_equal_reference_for_off_center_embeddings(metric, seed):
    rng = np.random.default_rng(seed)
    X = gaussian(rng, 1000, 32) + np.float32(50)
    indices, _ = script.k_center_greedy(X, 100, metric=metric)
    np.testing.assert_array_equal(indices, reference_k_center(X, 100, metric=metric)[0])


def duplicated_rows(copies=6):
    return np.repeat(gaussian(np.random.default_rng(3), 7, 5), copies, axis=0)


@pytest.mark.parametrize("metric", METRICS)
def test_k_center_duplicates_are_never_picked_twice(metric):
    X = duplicated_rows()
    indices, distances = script.k_center_greedy(X, len(X), metric=metric)
    assert sorted(indices.tolist()) == list(range(len(X)))
    assert len({tuple(X[i]) for i in indices[:7]}) == 7
    assert np.all(distances[7:] <= 1e-2 * distances[:7].min())


@pytest.mark.parametrize("metric", METRICS)
def test_k_center_duplicate_ties_go_to_the_lowest_index(metric):
    X = duplicated_rows()
    indices, _ = script.k_center_greedy(X, len(X), metric=metric)
    np.testing.assert_array_equal(indices, reference_k_center(X, len(X), metric=metric)[0])


def test_k_center_takes_every_row_when_asked_for_more():
    X = gaussian(np.random.default_rng(4), 9, 3)
    indices, _ = script.k_center_greedy(X, 50)
    np.testing.assert_array_equal(indices, reference_k_center(X, 9)[0])


def test_gradient_embeddings_match_the_seed_definition():
    rng = np.random.default_rng(5)
    H, P = gaussian(rng, 30, 6), probabilities(rng, 30, 4)
    np.testing.assert_allclose(script.gradient_embeddings(H, P), reference_gradient_embeddings(H, P), rtol=1e-12)


@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("seed", [0, 1, 2, 3, 4])
def test_badge_same_first_pick_and_seeded_sequence(metric, seed):
    rng = np.random.default_rng(100 + seed)
    H, P = gaussian(rng, 300, 8), probabilities(rng, 300, 4)
    indices, _ = script.badge_kmeanspp(H, P, 40, metric=metric, random_state=seed)
    expected = reference_badge(H, P, 40, metric, seed)
    assert indices[0] == np.argmax((reference_gradient_embeddings(H, P) ** 2).sum(axis=1))
    np.testing.assert_array_equal(indices, expected)


def test_badge_distances_are_to_the_nearest_earlier_pick():
    rng = np.random.default_rng(6)
    H, P = gaussian(rng, 200, 8), probabilities(rng, 200, 5)
    indices, distances = script.badge_kmeanspp(H, P, 25, random_state=7)
    G = reference_gradient_embeddings(H, P)
    expected = [np.linalg.norm(G[indices[0]])]
    expected += [math.sqrt(reference_d2_after(G, indices[:i])[indices[i]]) for i in range(1, 25)]
    np.testing.assert_allclose(distances, expected, rtol=1e-4)


def chi_square_critical(df, z=3.09):
    """Upper critical value of chi-square(df) at about 0.1% (Wilson-Hilferty approximation)."""
    return df * (1 - 2 / (9 * df) + z * math.sqrt(2 / (9 * df))) ** 3


def test_badge_second_pick_follows_d2_sampling():
    rng = np.random.default_rng(8)
    H, P = gaussian(rng, 15, 4), probabilities(rng, 15, 3)
    G = reference_gradient_embeddings(H, P)
    first = int(np.argmax((G ** 2).sum(axis=1)))
    weights = reference_d2_after(G, [first])
    expected = weights / weights.sum()
    draws = 4000
    counts = np.zeros(len(H))
    for seed in range(draws):
        indices, _ = script.badge_kmeanspp(H, P, 2, random_state=seed)
        assert indices[0] == first
        counts[indices[1]] += 1
    assert counts[first] == 0
    support = expected > 0
    statistic = (((counts - draws * expected)[support]) ** 2 / (draws * expected[support])).sum()
    assert statistic < chi_square_critical(support.sum() - 1)


@pytest.mark.parametrize("metric", METRICS)
def test_badge_duplicates_are_never_picked_twice(metric):
    rng = np.random.default_rng(9)
    distinct = 6
    H = np.repeat(gaussian(rng, distinct, 5), 4, axis=0)
    P = np.repeat(probabilities(rng, distinct, 3), 4, axis=0)
    indices, distances = script.badge_kmeanspp(H, P, len(H), metric=metric, random_state=0)
    assert sorted(indices.tolist()) == list(range(len(H)))
    first_rows = {tuple(H[i]) for i in indices[:distinct]}
    assert len(first_rows) == distinct
    assert np.all(distances[distinct:] == 0)
    np.testing.assert_array_equal(indices, reference_badge(H, P, len(H), metric, seed=0))


def test_badge_all_zero_gradients_take_rows_in_order():
    rng = np.random.default_rng(10)
    H = gaussian(rng, 20, 4)
    P = np.eye(3)[rng.integers(0, 3, size=20)]
    indices, distances = script.badge_kmeanspp(H, P, 8, random_state=1)
    np.testing.assert_array_equal(indices, np.arange(8))
    np.testing.assert_array_equal(distances, np.zeros(8))
    np.testing.assert_array_equal(indices, reference_badge(H, P, 8, seed=1))
