"""Triangle-inequality pruning in k_center_greedy and badge_kmeanspp: the picks are today's, pick for pick.

The reference is today's unpruned code (``reference_kernels.py``, one full pass per pick, kept verbatim).
The pruned kernels choose per pick between a full pass and computing only the rows the bound cannot rule
out, by fixed cost ratios; that choice must never change a pick, so every case runs with the choice forced
both ways as well as left to the kernel.
"""

import logging

import numpy as np
import pytest

import reference_kernels as ref
from conftest import script_module as script

MODES = ("adaptive", "gather", "stream")


@pytest.fixture(params=MODES)
def mode(request, monkeypatch):
    """Force the kernels' choice: 'gather' computes only live rows whenever the bound rules any row out."""
    if request.param == "gather":
        costs = {"stream": 1.0, "gather": 1e-9, "check": 0.0}
    elif request.param == "stream":
        costs = {"stream": 1.0, "gather": 1e9, "check": 1e9}
    else:
        return request.param
    monkeypatch.setattr(script._TriangleBound, "_per_row", lambda self, kind: costs[kind])
    return request.param


def _mixture(rng, n, d, n_clusters, spread=0.05, scale=3.0):
    centers = scale * rng.standard_normal((n_clusters, d))
    return (centers[rng.integers(n_clusters, size=n)] + spread * rng.standard_normal((n, d))).astype(np.float32)


def _inputs(kind, rng):
    """(X, initial_centers) for the named case."""
    if kind == "clustered":
        return _mixture(rng, 3000, 12, 40), None
    if kind == "separated":  # most rows are ruled out after a few picks
        return _mixture(rng, 4000, 24, 60, spread=0.01, scale=10.0), None
    if kind == "tied":  # integer grid: many exactly equal distances, ties go to the lowest index
        return rng.integers(0, 3, size=(1500, 3)).astype(np.float32), None
    if kind == "all_equal":
        return np.full((300, 5), 2.5, dtype=np.float32), None
    if kind == "duplicates":
        base = _mixture(rng, 150, 6, 10)
        return base[rng.integers(150, size=1200)], None
    if kind == "one_cluster":
        return (1000.0 + 1e-3 * rng.standard_normal((2000, 8))).astype(np.float32), None
    if kind == "labeled":
        X = _mixture(rng, 2500, 10, 30)
        return X, X[rng.choice(2500, 40, replace=False)] + np.float32(0.01)
    if kind == "collinear":  # rows exactly halfway between a center and a later pick: the bound's edge
        t = np.concatenate([np.arange(0, 65, dtype=np.float32), np.arange(0, 65, 2, dtype=np.float32) + 0.5])
        X = np.zeros((t.size, 4), dtype=np.float32)
        X[:, 0] = t * np.float32(1024.0)
        return X, None
    if kind == "small":  # fewer rows than one padded BLAS call, and a dimension of one
        return rng.standard_normal((37, 1)).astype(np.float32), None
    raise ValueError(kind)


KINDS = ("clustered", "separated", "tied", "all_equal", "duplicates", "one_cluster", "labeled", "collinear", "small")


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
@pytest.mark.parametrize("kind", KINDS)
def test_k_center_picks_equal_the_unpruned_kernel(kind, metric, mode):
    rng = np.random.default_rng(KINDS.index(kind))
    X, initial = _inputs(kind, rng)
    n_select = min(len(X), 400)
    expected = ref.k_center_greedy_reference(X, n_select, initial_centers=initial, metric=metric)
    got = script.k_center_greedy(X, n_select, initial_centers=initial, metric=metric)
    assert got[0].tolist() == expected[0].tolist()
    np.testing.assert_array_equal(got[1], expected[1])


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
@pytest.mark.parametrize("kind", KINDS)
def test_badge_draws_equal_the_unpruned_kernel(kind, metric, mode):
    rng = np.random.default_rng(100 + KINDS.index(kind))
    X, _ = _inputs(kind, rng)
    n_classes = 4
    if kind in ("all_equal", "tied", "duplicates"):  # rows that repeat in both the embedding and the scores
        P = np.tile(rng.dirichlet(np.ones(n_classes), 7), (len(X) // 7 + 1, 1))[:len(X)]
    else:
        P = rng.dirichlet(0.3 * np.ones(n_classes), len(X))
    n_select = min(len(X), 300)
    for seed in (0, 42):
        expected = ref.badge_kmeanspp_reference(X, P, n_select, metric=metric, random_state=seed)
        got = script.badge_kmeanspp(X, P, n_select, metric=metric, random_state=seed)
        assert got[0].tolist() == expected[0].tolist()
        np.testing.assert_array_equal(got[1], expected[1])


def test_badge_weighted_draws_equal_the_unpruned_kernel(mode):
    rng = np.random.default_rng(7)
    X = _mixture(rng, 2000, 10, 25)
    P = rng.dirichlet(0.5 * np.ones(3), len(X))
    weights = rng.integers(0, 5, size=len(X)).astype(np.float64)
    expected = ref.badge_kmeanspp_reference(X, P, 200, random_state=3, sample_weight=weights)
    got = script.badge_kmeanspp(X, P, 200, random_state=3, sample_weight=weights)
    assert got[0].tolist() == expected[0].tolist()


def test_k_center_with_radius_matches_the_unpruned_kernel(mode):
    """The shard kernel runs k_center_greedy one pick longer; its picks and radius follow today's."""
    rng = np.random.default_rng(11)
    X = _mixture(rng, 3000, 16, 50)
    indices, distances, radius = script.k_center_with_radius(X, 150)
    mean = X.mean(axis=0, dtype=np.float64).astype(np.float32)[None, :]
    expected, expected_distances = ref.k_center_greedy_reference(X, 151, initial_centers=mean)
    assert indices.tolist() == expected[:-1].tolist()
    assert radius >= expected_distances[-1]


def _fraction_logged(caplog):
    records = [r for r in caplog.records if "distances computed" in str(r.msg)]
    assert records, "the kernel logs the share of distances it computed"
    return records[-1].args[0] / 100.0


def test_pruning_skips_most_distances_on_separated_clusters(caplog, monkeypatch):
    """On well-separated clusters the bound rules out most rows once every cluster has a center."""
    costs = {"stream": 1.0, "gather": 1e-9, "check": 0.0}  # compute only what the bound leaves, every pick
    monkeypatch.setattr(script._TriangleBound, "_per_row", lambda self, kind: costs[kind])
    rng = np.random.default_rng(5)
    X = _mixture(rng, 20000, 32, 20, spread=0.05, scale=10.0)
    caplog.set_level(logging.DEBUG, logger=script.logger.name)
    script.k_center_greedy(X, 300)
    # 20 clusters: after about 20 picks a new center's own cluster holds nearly all its live rows.
    assert _fraction_logged(caplog) < 0.25
    caplog.clear()
    P = rng.dirichlet(np.ones(3), len(X))
    script.badge_kmeanspp(X, P, 300, random_state=0)
    assert _fraction_logged(caplog) < 0.25


@pytest.mark.parametrize("n_rows", [1, 37, 64, 65, 250, 1000, 4097, 20011])
def test_row_dots_equal_the_full_pass_bit_for_bit(n_rows):
    """Gathered products equal a full matrix-vector product's, which is what the exactness rests on.

    Below OpenBLAS's threading threshold (m x n < 9216) the full pass runs on one thread and every value
    must match. Above it an OpenBLAS 0.3.21 with several threads computes the last rows of each thread's
    share by its remainder path, so a full pass there differs from a one-thread pass at a few rows, by an
    ulp; those are allowed, nothing else.
    """
    rng = np.random.default_rng(n_rows)
    n_features = 36
    X = rng.standard_normal((n_rows, n_features)).astype(np.float32) * np.float32(3)
    R = np.ascontiguousarray(rng.standard_normal((n_rows, 6)).T)
    x_dots, r_dots = script._RowDots(X, rows_axis=0), script._RowDots(R, rows_axis=1)
    one_thread = n_rows * n_features < 9216
    for trial in range(10):
        center = int(rng.integers(n_rows))
        rows = np.sort(rng.choice(n_rows, int(rng.integers(1, n_rows + 1)), replace=False))
        full_x = np.empty(n_rows, dtype=np.float32)
        np.dot(X, X[center], out=full_x)
        for got, full in ((x_dots(X[center], rows), full_x[rows]), (r_dots(R[:, center], rows),
                                                                     np.dot(R[:, center], R)[rows])):
            differ = np.flatnonzero(got != full)
            if one_thread:
                assert differ.size == 0
            else:
                assert differ.size <= 8
                np.testing.assert_allclose(got, full, rtol=1e-5, atol=1e-5)


def test_pruning_slack_covers_the_duplicate_snap():
    """The slack exceeds the snap tolerance and the float32 rounding bound for every dimension."""
    for n_features in (1, 16, 128, 4096):
        slack = script._pruning_slack(n_features)
        assert slack / 2 > script._DUPLICATE_TOLERANCE + (2 * n_features + 8) * 2.0 ** -24


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_full_pass_fold_equals_todays_update_bit_for_bit(dtype):
    """fold() without rows touches only the rows below its ceiling; d2 must still equal today's add() exactly,
    and the rows it reports must be exactly those whose distance went down. Products are drawn so that many
    expanded values land on the current distance, on the snap threshold and just either side of them."""
    rng = np.random.default_rng(3)
    n_rows = 5000
    sq_norms = rng.uniform(0.0, 4.0, n_rows).astype(dtype)
    sq_norms[:50] = 0.0
    initial = rng.uniform(0.0, 8.0, n_rows).astype(dtype)
    initial[50:100] = 0.0
    today = ref._NearestCenter(sq_norms, initial.copy())
    pruned = script._NearestCenter(sq_norms, initial.copy())
    for step in range(60):
        center = int(rng.integers(n_rows))
        target = np.where(rng.random(n_rows) < 0.5, today.d2, today.tolerances + today.tolerances[center])
        target = target.astype(dtype) + (rng.integers(-2, 3, n_rows) * np.finfo(dtype).eps * 4).astype(dtype)
        dots = ((sq_norms + sq_norms[center] - target) / 2).astype(dtype)  # expands back to about target
        before = today.d2.copy()
        today.add(dots.copy(), center)
        down = pruned.fold(dots.copy(), center)
        np.testing.assert_array_equal(pruned.d2, today.d2)
        assert down.tolist() == np.flatnonzero(today.d2 < before).tolist()
        if step % 7 == 0:  # the kernels lower a picked row's distance outside fold
            today.d2[center] = pruned.d2[center] = -np.inf if step % 2 else 0.0


def test_with_row_equals_union1d():
    """The moved rows of a BADGE pick always include the pick: inserted in order, never twice."""
    rng = np.random.default_rng(9)
    for trial in range(300):
        n = int(rng.integers(1, 50))
        rows = np.sort(rng.choice(n, int(rng.integers(0, n + 1)), replace=False)).astype(np.intp)
        row = int(rng.integers(n))
        got = script._with_row(rows, row)
        assert got.tolist() == np.union1d(rows, [row]).tolist()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("norm_scale, distance_scale", [(1e4, 1e-3), (1e-3, 1e2), (1.0, 1e-6), (1e-38, 1e-40)])
def test_full_pass_fold_is_exact_across_magnitudes(dtype, norm_scale, distance_scale):
    """Rows far from the origin with tiny distances (and the reverse): the filter's margins are relative to the
    norms and ceilings, so products expanding to within a few roundings of the current distance still fold."""
    rng = np.random.default_rng(int(-np.log10(norm_scale)) % 100)
    n_rows = 4000
    sq_norms = (norm_scale * rng.uniform(0.5, 1.5, n_rows)).astype(dtype)
    initial = (distance_scale * rng.uniform(0.0, 2.0, n_rows)).astype(dtype)
    today = ref._NearestCenter(sq_norms, initial.copy())
    pruned = script._NearestCenter(sq_norms, initial.copy())
    eps = np.finfo(dtype).eps
    for step in range(40):
        center = int(rng.integers(n_rows))
        span = (sq_norms + sq_norms[center]).astype(np.float64)
        target = today.d2.astype(np.float64) + rng.integers(-6, 7, n_rows) * eps * span
        dots = ((sq_norms + sq_norms[center].astype(np.float64) - target) / 2).astype(dtype)
        before = today.d2.copy()
        today.add(dots.copy(), center)
        down = pruned.fold(dots.copy(), center)
        np.testing.assert_array_equal(pruned.d2, today.d2)
        assert down.tolist() == np.flatnonzero(today.d2 < before).tolist()
