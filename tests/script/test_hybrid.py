"""The uncertain-and-diverse hybrid: the uncertainty pre-filter and k-means representatives (seed 004)."""

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings, strategies as st

from conftest import prediction_table, script_module, write_table


def probs(*rows):
    return np.array(rows, dtype=np.float64)


def diversity(X, batch_size, labeled=None, probabilities=None, **settings):
    """DiversitySampler(**settings).select on arrays shaped as the engine passes them."""
    candidates = script_module.Candidates(
        None if probabilities is None else np.asarray(probabilities, dtype=np.float64),
        np.array(X, dtype=np.float32),
        None if labeled is None else np.array(labeled, dtype=np.float32))
    return script_module.DiversitySampler(**settings).select(candidates, batch_size)


def blobs(n_clusters, per_cluster, spread=0.1, seed=0):
    """Clusters around the corners of a simplex (10 apart), rows shuffled; returns X and each row's cluster."""
    rng = np.random.default_rng(seed)
    centers = 10.0 * np.eye(n_clusters)
    X = np.repeat(centers, per_cluster, axis=0) + spread * rng.normal(size=(n_clusters * per_cluster, n_clusters))
    cluster = np.repeat(np.arange(n_clusters), per_cluster)
    order = rng.permutation(len(X))
    return X[order], cluster[order]


# --- the pre-filter ---------------------------------------------------------------------------------------

def test_prefilter_keeps_the_most_uncertain_rows_in_row_order(script):
    # margins 1 - (p1 - p2): 0.2, 1.0, 0.6, 0.9, 0.0
    p = probs([0.9, 0.1], [0.5, 0.5], [0.7, 0.3], [0.55, 0.45], [1.0, 0.0])
    assert script.uncertainty_prefilter(p, 3).tolist() == [1, 2, 3]
    assert script.uncertainty_prefilter(p, 1).tolist() == [1]


def test_prefilter_breaks_ties_at_the_cut_by_row_order(script):
    p = probs([0.9, 0.1], [0.6, 0.4], [0.5, 0.5], [0.6, 0.4], [0.6, 0.4])
    assert script.uncertainty_prefilter(p, 3).tolist() == [1, 2, 3]


def test_prefilter_uses_the_chosen_uncertainty_mode(script):
    # Row 0 has the smaller margin, row 1 the larger entropy.
    p = probs([0.45, 0.45, 0.1, 0.0], [0.4, 0.2, 0.2, 0.2], [0.97, 0.01, 0.01, 0.01])
    assert script.uncertainty_prefilter(p, 1, mode="margin").tolist() == [0]
    assert script.uncertainty_prefilter(p, 1, mode="entropy").tolist() == [1]


def test_prefilter_larger_than_the_pool_keeps_every_row(script):
    p = probs([0.9, 0.1], [0.5, 0.5])
    assert script.uncertainty_prefilter(p, 50).tolist() == [0, 1]


def test_prefilter_rejects_an_empty_cut(script):
    with pytest.raises(ValueError, match="n_keep"):
        script.uncertainty_prefilter(probs([0.5, 0.5]), 0)


@settings(max_examples=100, deadline=None)
@given(st.integers(0, 2**16), st.integers(1, 40), st.integers(1, 50), st.sampled_from(["margin", "entropy",
                                                                                        "least_confidence"]))
def test_prefilter_is_the_top_of_a_stable_sort(seed, n, n_keep, mode):
    rng = np.random.default_rng(seed)
    weights = rng.integers(0, 4, size=(n, 3)).astype(float)  # coarse: many ties
    weights[weights.sum(axis=1) == 0, 0] = 1.0
    p = weights / weights.sum(axis=1, keepdims=True)
    scores = script_module.uncertainty_scores(p, mode)
    expected = np.sort(np.argsort(-scores, kind="stable")[:n_keep])
    assert script_module.uncertainty_prefilter(p, n_keep, mode=mode).tolist() == expected.tolist()


@pytest.mark.parametrize("method", ["kcenter", "kmeans"])
def test_hybrid_selects_only_among_the_prefiltered_rows(script, method):
    # Rows 0-3 are far away but certain; plain diversity picks them, the hybrid must not.
    X = np.array([[100.0, 0], [0, 100.0], [-100.0, 0], [0, -100.0], [0, 0], [1, 0], [0, 1], [1, 1], [2, 2]])
    p = np.array([[0.99, 0.01]] * 4 + [[0.5, 0.5], [0.55, 0.45], [0.6, 0.4], [0.52, 0.48], [0.9, 0.1]])
    plain = diversity(X, 2, probabilities=p, method=method, random_seed=0)
    assert set(plain.indices.tolist()) & {0, 1, 2, 3}
    hybrid = diversity(X, 2, probabilities=p, method=method, uncertainty_prefilter=2, random_seed=0)
    assert set(hybrid.indices.tolist()) <= {4, 5, 6, 7}
    assert len(set(hybrid.indices.tolist())) == 2


@pytest.mark.parametrize("method", ["kcenter", "kmeans"])
def test_prefilter_covering_every_candidate_equals_the_plain_method(script, method):
    rng = np.random.default_rng(4)
    X = rng.normal(size=(40, 5))
    p = rng.dirichlet(np.ones(3), size=40)
    labeled = rng.normal(size=(6, 5))
    plain = diversity(X, 7, labeled, p, method=method, random_seed=3)
    for beta in (6, 1000):  # 6 x 7 = 42 >= 40 candidates
        wide = diversity(X, 7, labeled, p, method=method, uncertainty_prefilter=beta, random_seed=3)
        assert wide.indices.tolist() == plain.indices.tolist()
        assert wide.scores.tolist() == plain.scores.tolist()


def test_hybrid_kcenter_still_starts_from_the_labeled_rows(script):
    # Kept: rows 0-2 (uncertain). Labeled center at 0: row 2 is farthest among the kept ones.
    X = np.array([[1.0], [2.0], [5.0], [50.0]])
    p = probs([0.5, 0.5], [0.5, 0.5], [0.5, 0.5], [0.99, 0.01])
    selection = diversity(X, 1, [[0.0]], p, uncertainty_prefilter=3)
    assert selection.indices.tolist() == [2]
    assert selection.scores.tolist() == pytest.approx([5.0])


def test_prefilter_needs_probabilities(script):
    with pytest.raises(ValueError, match="probabilities"):
        script.DiversitySampler(uncertainty_prefilter=2).select_batch(np.zeros((10, 2)), 2)


def test_select_batch_runs_the_hybrid_on_a_subset_with_its_indices(script):
    # The seeds' API: rows 2..6 passed with their positions; the pre-filter keeps the 2 most uncertain (3 and 5).
    X = np.arange(16.0).reshape(8, 2)
    p = probs([0.5, 0.5], [0.5, 0.5], [0.9, 0.1], [0.55, 0.45], [0.8, 0.2], [0.6, 0.4], [0.95, 0.05], [0.5, 0.5])
    rows = np.array([2, 3, 4, 5, 6])
    picks = script.DiversitySampler(method="kmeans", uncertainty_prefilter=1).select_batch(
        X[rows], 2, indices=rows, probabilities=p[rows])
    assert sorted(picks.tolist()) == [3, 5]


@pytest.mark.parametrize("bad, match", [(dict(method="dbscan"), "method"),
                                        (dict(uncertainty_prefilter=-1), "uncertainty_prefilter"),
                                        (dict(uncertainty_mode="variance"), "uncertainty_mode")])
def test_diversity_sampler_rejects_bad_settings_when_used(script, bad, match):
    sampler = script.DiversitySampler(**bad)
    with pytest.raises(ValueError, match=match):
        sampler.select_batch(np.zeros((4, 2)), 2, probabilities=probs(*[[0.5, 0.5]] * 4))


# --- k-means representatives ------------------------------------------------------------------------------

@pytest.mark.parametrize("seed", range(10))
def test_kmeans_picks_one_row_per_well_separated_cluster(script, seed):
    X, cluster = blobs(3, 20, seed=seed)
    indices, sizes = script.kmeans_representatives(X, 3, random_state=seed)
    assert sorted(cluster[indices].tolist()) == [0, 1, 2]
    assert sizes.tolist() == [20.0, 20.0, 20.0]


def test_kmeans_pick_is_the_member_nearest_its_centroid(script):
    # Two clusters on a line; centroids 1.0 and 11.0, so rows 1 and 4 are the representatives.
    X = np.array([[0.0], [1.0], [2.0], [10.0], [11.0], [12.0], [10.5]])
    indices, sizes = script.kmeans_representatives(X, 2, random_state=0)
    # cluster {3, 4, 5, 6} has 4 rows and mean 10.875: row 4 (11.0) is nearest; it comes first as the larger one
    assert indices.tolist() == [4, 1]
    assert sizes.tolist() == [4.0, 3.0]


def test_kmeans_is_deterministic_for_a_seed(script):
    X = np.random.default_rng(7).normal(size=(300, 6))
    first = script.kmeans_representatives(X, 12, random_state=11)
    again = script.kmeans_representatives(X, 12, random_state=11)
    assert first[0].tolist() == again[0].tolist() and first[1].tolist() == again[1].tolist()


@pytest.mark.parametrize("seed", range(5))
def test_kmeans_picks_are_distinct_even_with_duplicate_rows(script, seed, caplog):
    X = np.repeat(np.array([[0.0, 0.0], [5.0, 5.0], [9.0, 0.0]]), 5, axis=0)
    indices, sizes = script.kmeans_representatives(X, 5, random_state=seed)
    assert len(indices) == 5 and len(set(indices.tolist())) == 5
    assert sorted(sizes.tolist()) == [0.0, 0.0, 5.0, 5.0, 5.0]  # three real clusters, two fill-ins
    assert "only 3 distinct clusters" in caplog.text


def test_kmeans_with_more_picks_than_rows_selects_them_all(script):
    X = np.arange(8.0).reshape(4, 2)
    indices, sizes = script.kmeans_representatives(X, 10, random_state=0)
    assert indices.tolist() == [0, 1, 2, 3] and sizes.tolist() == [1.0] * 4


def test_kmeans_cosine_clusters_by_direction(script):
    # Two directions at very different lengths: cosine groups by direction, euclidean would not.
    X = np.array([[1.0, 0.0], [100.0, 1.0], [50.0, 0.5], [0.0, 1.0], [1.0, 100.0], [0.5, 50.0]])
    indices, _ = script.kmeans_representatives(X, 2, metric="cosine", random_state=0)
    assert sorted(np.sign(X[indices, 0] - X[indices, 1]).tolist()) == [-1.0, 1.0]


def test_kmeans_leaves_its_input_alone_unless_told(script):
    X = np.random.default_rng(2).normal(size=(30, 3)).astype(np.float32)
    before = X.copy()
    script.kmeans_representatives(X, 4, random_state=0)
    assert np.array_equal(X, before)


@pytest.mark.parametrize("bad, match", [(dict(metric="manhattan"), "metric"), (dict(max_iter=0), "max_iter"),
                                        (dict(tol=-1.0), "tol")])
def test_kmeans_rejects_bad_options(script, bad, match):
    with pytest.raises(ValueError, match=match):
        script.kmeans_representatives(np.zeros((5, 2)), 2, **bad)


# --- end to end through main ------------------------------------------------------------------------------

def test_kmeans_never_selects_labeled_rows_and_is_reproducible(run):
    table = prediction_table(n=80, labeled_fraction=0.3, seed=12)
    write_table(table, run.input_dir, "parquet")
    env = {"SELECTION_STRATEGY": "diversity", "DIVERSITY_METHOD": "kmeans", "UNCERTAINTY_PREFILTER": "3",
           "BATCH_SIZE": "8", "LABEL_FIELD": "label", "RANDOM_SEED": "9"}
    metadata = run.main(env)
    selected = run.selected()
    labeled_ids = set(table.loc[table["label"].notna(), "id"])
    assert len(selected) == 8 and selected["id"].is_unique
    assert labeled_ids and not labeled_ids & set(selected["id"])
    assert selected["selection_score"].is_monotonic_decreasing  # cluster sizes, largest first
    assert metadata["config"]["diversity_method"] == "kmeans" and metadata["config"]["uncertainty_prefilter"] == 3
    run.main(env)
    pd.testing.assert_frame_equal(selected, run.selected())


def test_hybrid_picks_come_from_the_most_uncertain_candidates(run, script):
    table = prediction_table(n=90, labeled_fraction=0.2, seed=13)
    write_table(table, run.input_dir)
    run.main({"SELECTION_STRATEGY": "diversity", "UNCERTAINTY_PREFILTER": "2", "BATCH_SIZE": "5",
              "UNCERTAINTY_MODE": "least_confidence", "LABEL_FIELD": "label"})
    candidates = table[table["label"].isna()]
    confidence = candidates[["prob_class_0", "prob_class_1", "prob_class_2"]].max(axis=1)
    most_uncertain = set(candidates["id"].iloc[np.argsort(confidence.to_numpy(), kind="stable")[:10]])
    assert set(run.selected()["id"]) <= most_uncertain


@pytest.mark.parametrize("name, value", [("UNCERTAINTY_PREFILTER", "-1"), ("UNCERTAINTY_PREFILTER", "two"),
                                         ("DIVERSITY_METHOD", "dbscan")])
def test_bad_hybrid_settings_are_one_line_errors(script, name, value):
    with pytest.raises(script.SelectionError, match=name):
        script.parse_environment({"SELECTION_STRATEGY": "diversity", name: value})


@pytest.mark.parametrize("method", ["kcenter", "kmeans"])
def test_a_prefilter_covering_every_candidate_changes_nothing_end_to_end(run, tmp_path, method):
    write_table(prediction_table(n=50, labeled_fraction=0.2, seed=14), run.input_dir)
    env = {"SELECTION_STRATEGY": "diversity", "DIVERSITY_METHOD": method, "BATCH_SIZE": "6", "LABEL_FIELD": "label"}
    run.main(env)
    plain = run.selected()
    run.main(dict(env, UNCERTAINTY_PREFILTER="1000"))
    pd.testing.assert_frame_equal(plain, run.selected())


# --- SELECTION_STRATEGY=hybrid: the recommended default is a row ---------------------------------------------

@pytest.mark.parametrize("strategy, env, expected", [
    ("hybrid", {}, ("kmeans", 3)),
    ("hybrid", {"DIVERSITY_METHOD": "kcenter"}, ("kcenter", 3)),
    ("hybrid", {"UNCERTAINTY_PREFILTER": "0"}, ("kmeans", 0)),
    ("hybrid", {"UNCERTAINTY_PREFILTER": "10", "DIVERSITY_METHOD": "kcenter"}, ("kcenter", 10)),
    ("diversity", {}, ("kcenter", 0)),
    ("diversity", {"UNCERTAINTY_PREFILTER": "3"}, ("kcenter", 3)),
])
def test_hybrid_is_kmeans_behind_beta_3_and_each_setting_overridable(script, strategy, env, expected):
    config = script.parse_environment(dict(env, SELECTION_STRATEGY=strategy))
    assert (config.diversity_method, config.uncertainty_prefilter) == expected
    sampler = script.make_sampler(config)
    assert (sampler.method, sampler.uncertainty_prefilter) == expected


def test_settings_other_strategies_do_not_read_stay_unset(script):
    config = script.parse_environment({"SELECTION_STRATEGY": "uncertainty"})
    assert config.diversity_method is None and config.uncertainty_prefilter is None


def test_hybrid_selects_what_diversity_with_kmeans_and_beta_3_selects(run, script):
    write_table(prediction_table(n=300, labeled_fraction=0.1, seed=7), run.input_dir, "csv")
    run.main({"SELECTION_STRATEGY": "diversity", "DIVERSITY_METHOD": "kmeans", "UNCERTAINTY_PREFILTER": "3",
              "BATCH_SIZE": "12", "LABEL_FIELD": "label"})
    spelled_out = (run.samples_dir / "selected_samples.csv").read_bytes()
    metadata = run.main({"SELECTION_STRATEGY": "hybrid", "BATCH_SIZE": "12", "LABEL_FIELD": "label"})
    assert (run.samples_dir / "selected_samples.csv").read_bytes() == spelled_out
    assert metadata["strategy"] == "hybrid"
    assert (metadata["config"]["diversity_method"], metadata["config"]["uncertainty_prefilter"]) == ("kmeans", 3)


def test_a_long_kmeans_says_how_far_it_got(script, monkeypatch, caplog):
    """Lloyd's loop usually stops long before max_iter, so it logs by time (every 10 s), not by fraction."""
    ticks = iter(range(0, 10 ** 7, 11))  # each clock read is 11 s after the previous one
    monkeypatch.setattr(script.time, "time", lambda: next(ticks))
    X = np.random.default_rng(0).normal(size=(200, 3))
    with caplog.at_level("INFO", logger="active_sample_selection"):
        script.kmeans_representatives(X, 5, random_state=0, max_iter=4, tol=0.0)
    lines = [record.getMessage() for record in caplog.records if record.getMessage().startswith("k-means (")]
    assert lines and all("of at most 4 iterations" in line for line in lines), lines
    assert lines[0].startswith("k-means (200 rows, 5 clusters): 1 of at most 4 iterations, 11.0s elapsed"), lines


@pytest.mark.parametrize("seed", range(20))
def test_weighted_kmeans_is_kmeans_on_rows_repeated_by_their_weight(script, seed):
    """Integer weights: the same clusters as the unweighted algorithm on each row repeated w times (k-means++
    draws the same group for the same random number, weighted means are the repeated rows' means)."""
    rng = np.random.default_rng(seed)
    X = rng.normal(scale=10, size=(6, 3))[rng.integers(0, 6, size=80)] + rng.normal(size=(80, 3))
    weights = rng.integers(1, 5, size=80)
    repeated, owner = np.repeat(X, weights, axis=0), np.repeat(np.arange(80), weights)
    picks, sizes = script.kmeans_representatives(X, 5, random_state=seed, sample_weight=weights)
    expected_picks, expected_sizes = script.kmeans_representatives(repeated, 5, random_state=seed)
    assert picks.tolist() == owner[expected_picks].tolist()
    assert sizes.tolist() == expected_sizes.tolist()
    assert sizes.sum() == weights.sum()


def test_weights_of_one_change_nothing_and_bad_weights_are_refused(script):
    X = np.random.default_rng(3).normal(size=(50, 4))
    plain = script.kmeans_representatives(X, 6, random_state=2)
    ones = script.kmeans_representatives(X, 6, random_state=2, sample_weight=np.ones(50))
    assert plain[0].tolist() == ones[0].tolist() and plain[1].tolist() == ones[1].tolist()
    with pytest.raises(ValueError, match="sample_weight must be 50 finite non-negative numbers"):
        script.kmeans_representatives(X, 6, sample_weight=-np.ones(50))
