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


# ---- BADGE's draws from per-block sums (_BlockedDraw) against today's np.cumsum draw -----------------------------


class _FixedUniform:
    """A generator whose ``random()`` returns the given values in turn (and fails when asked for more)."""

    def __init__(self, *values):
        self.values = list(values)

    def random(self):
        return self.values.pop(0)


def _twins(seed):
    return np.random.default_rng(seed), np.random.default_rng(seed)


def _adversarial_weights(kind, rng, n_rows):
    if kind == "uniform":
        return rng.random(n_rows)
    if kind == "huge_and_tiny":  # 2^-1000 .. 2^600: the sums' low digits are lost over and over
        return np.ldexp(rng.random(n_rows), rng.integers(-1000, 600, size=n_rows))
    if kind == "mostly_zero":
        weights = np.zeros(n_rows)
        hot = rng.choice(n_rows, max(1, n_rows // 50), replace=False)
        weights[hot] = rng.random(hot.size)
        return weights
    if kind == "one_positive":
        weights = np.zeros(n_rows)
        weights[rng.integers(n_rows)] = 3.0
        return weights
    if kind == "ties":  # integers: every prefix exact, so draws meet boundaries exactly
        return rng.integers(0, 3, size=n_rows).astype(np.float64)
    if kind == "subnormal":
        return rng.random(n_rows) * 2.0 ** -1060
    if kind == "near_overflow":  # totals above the checked range: today's draw
        return rng.random(n_rows) * 1e306
    if kind == "one_huge":  # one weight holds almost all the mass; the others are below its rounding
        weights = rng.random(n_rows)
        weights[rng.integers(n_rows)] = 1e20
        return weights
    raise ValueError(kind)


WEIGHT_KINDS = ("uniform", "huge_and_tiny", "mostly_zero", "one_positive", "ties", "subnormal", "near_overflow",
                "one_huge")


@pytest.mark.filterwarnings("ignore:overflow encountered")  # near_overflow: today's np.cumsum warns
@pytest.mark.parametrize("n_rows", [1, 2, 1023, 1024, 1025, 5000, 40961])
@pytest.mark.parametrize("kind", WEIGHT_KINDS)
def test_blocked_draw_equals_todays_draw(kind, n_rows):
    rng = np.random.default_rng(WEIGHT_KINDS.index(kind) * 100 + n_rows)
    draw = script._BlockedDraw(n_rows)
    for seed in range(60):
        weights = _adversarial_weights(kind, rng, n_rows)
        ours, todays = _twins(seed)
        assert draw(weights, ours) == ref._draw_proportional(weights, todays)
        assert ours.random() == todays.random()  # the same generator state after the draw
    assert draw.draws == 60


def test_blocked_draw_of_zero_weights_is_minus_one_without_a_draw():
    draw = script._BlockedDraw(3000)
    ours, todays = _twins(5)
    assert draw(np.zeros(3000), ours) == ref._draw_proportional(np.zeros(3000), todays) == -1
    assert ours.random() == todays.random() == np.random.default_rng(5).random()


@pytest.mark.parametrize("bad", [np.inf, np.nan])
def test_blocked_draw_of_non_finite_weights_is_todays(bad):
    weights = np.random.default_rng(0).random(3000)
    weights[1700] = bad
    draw = script._BlockedDraw(3000)
    ours, todays = _twins(1)
    assert draw(weights, ours) == ref._draw_proportional(weights, todays)
    assert ours.random() == todays.random()
    assert draw.fallbacks == 1


@pytest.mark.parametrize("uniform, row", [(0.25, 1024), (0.5, 2048), (0.0, 0), (1.0 - 2.0 ** -53, 4095)])
def test_blocked_draw_on_a_boundary_sums_every_row(uniform, row):
    """4096 ones: every prefix is exact, so ``uniform * 4096`` falls exactly on a row's boundary (or at 0) and
    the draw is the first row whose prefix exceeds it; the blocked sums cannot tell the boundary's side, so
    that draw sums every row as today (except at 0, which is exact in any order)."""
    weights = np.ones(4096)
    draw = script._BlockedDraw(weights.size)
    assert draw(weights, _FixedUniform(uniform)) == row == ref._draw_proportional(weights, _FixedUniform(uniform))
    assert draw.fallbacks == (0 if uniform == 0.0 else 1)


def test_blocked_draw_past_the_last_prefix_is_the_last_positive_row():
    """A uniform so close to 1 that ``u`` rounds to the total: today's draw takes the last positive weight."""
    weights = np.zeros(3000)
    weights[[10, 2100]] = [1.0, 2.0 ** 60]
    uniform = 1.0 - 2.0 ** -53
    draw = script._BlockedDraw(weights.size)
    assert draw(weights, _FixedUniform(uniform)) == ref._draw_proportional(weights, _FixedUniform(uniform)) == 2100


def test_blocked_draw_rarely_sums_every_row():
    """Away from exact boundaries the fallback needs a draw within about 1e-11 of the total from one of the
    prefixes: none in 2000 draws over random weights."""
    rng = np.random.default_rng(11)
    draw = script._BlockedDraw(50_000)
    for seed in range(2000):
        weights = rng.random(50_000) ** 3
        ours, todays = _twins(seed)
        assert draw(weights, ours) == ref._draw_proportional(weights, todays)
    assert draw.fallbacks == 0


def test_badge_draws_equal_the_unpruned_kernel_when_every_draw_sums_every_row(monkeypatch):
    monkeypatch.setattr(script._BlockedDraw, "_located", lambda self, weights, ends, target: -1)
    rng = np.random.default_rng(21)
    X = _mixture(rng, 2500, 8, 20)
    P = rng.dirichlet(0.5 * np.ones(3), len(X))
    expected = ref.badge_kmeanspp_reference(X, P, 150, random_state=4)
    got = script.badge_kmeanspp(X, P, 150, random_state=4)
    assert got[0].tolist() == expected[0].tolist()


@pytest.mark.parametrize("seed", range(8))
def test_badge_draws_equal_the_unpruned_kernel_on_many_seeds(seed):
    rng = np.random.default_rng(1000 + seed)
    X = _mixture(rng, 3000, 6, 15, spread=0.3)
    P = rng.dirichlet(0.4 * np.ones(5), len(X))
    for random_state in range(5):
        expected = ref.badge_kmeanspp_reference(X, P, 250, random_state=random_state)
        got = script.badge_kmeanspp(X, P, 250, random_state=random_state)
        assert got[0].tolist() == expected[0].tolist()
        np.testing.assert_array_equal(got[1], expected[1])


@pytest.mark.parametrize("kind", ["zeros", "wide_range", "one_row"])
def test_badge_weighted_draws_equal_the_unpruned_kernel_on_adversarial_weights(kind, mode):
    """The kernel keeps weight x D^2 at the rows whose D^2 went down only; every draw must still be today's."""
    rng = np.random.default_rng(31)
    X = _mixture(rng, 2600, 7, 20)
    P = rng.dirichlet(0.5 * np.ones(4), len(X))
    if kind == "zeros":  # most rows can never be drawn
        weights = (rng.random(len(X)) < 0.1) * rng.integers(1, 50, size=len(X)).astype(np.float64)
    elif kind == "wide_range":
        weights = np.ldexp(1.0, rng.integers(-60, 60, size=len(X)))
    else:  # one row holds all the weight: after it, every draw is by gradient norm
        weights = np.zeros(len(X))
        weights[1234] = 1.0
    for seed in (0, 9):
        expected = ref.badge_kmeanspp_reference(X, P, 120, random_state=seed, sample_weight=weights)
        got = script.badge_kmeanspp(X, P, 120, random_state=seed, sample_weight=weights)
        assert got[0].tolist() == expected[0].tolist()
        np.testing.assert_array_equal(got[1], expected[1])


@pytest.mark.parametrize("scale", [1.0, 1e-150, 1e120])
def test_gradient_bound_gaps_stay_below_the_exact_gaps(scale):
    """``_GradientBound`` takes |g_a - g_c|^2 from the factorization; every value must be at most the exact squared
    distance of the outer products (rational arithmetic) and within the stated rounding allowance of it, also
    for nearly equal centers, where the expansion cancels."""
    from fractions import Fraction

    rng = np.random.default_rng(int(np.log10(scale)) + 200)
    n_classes, n_features, n_centers = 5, 7, 40
    residuals = rng.standard_normal((n_centers, n_classes)) * scale
    features = rng.standard_normal((n_centers, n_features)).astype(np.float32)
    residuals[20:] = residuals[:20] * (1 + 1e-9)  # near copies of the first twenty
    features[20:] = features[:20]
    sq_norms = np.einsum("ij,ij->i", residuals, residuals) * np.einsum("ij,ij->i", features, features,
                                                                       dtype=np.float64)
    centers = np.hstack([residuals, features.astype(np.float64)])
    bound = script._GradientBound(n_classes, np.ones(3), np.ones(3), np.zeros(3, dtype=np.intp), centers[:-1],
                                  sq_norms[:-1], 1, 0.0, gather_cost=1.0, check_cost=0.0)
    got = bound._squared_gaps(centers[-1], float(sq_norms[-1]))

    def gradient(i):
        return [Fraction(float(r)) * Fraction(float(h)) for r in residuals[i] for h in features[i]]

    last = gradient(n_centers - 1)
    for i in range(n_centers - 1):
        exact = sum((a - b) ** 2 for a, b in zip(gradient(i), last))
        allowance = Fraction(2 * (n_classes + n_features + 8)) * Fraction(2.0 ** -52) * Fraction(
            float(sq_norms[i]) + float(sq_norms[-1])) * 2
        assert Fraction(float(got[i])) <= exact
        assert exact - Fraction(float(got[i])) <= allowance
