"""The seeds' documented Python API (seed 000 "Key Functions", seed 001 sections 2-3 and "Testing Strategy").

Code written against the seeds calls the script this way; every row of the API table in the README is
exercised here, and seed 001's own test examples run as written (only the imports differ).
"""

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import COMMITTEE_PREFIXES, prediction_table, script_module as script, with_committee, write_table

ConfidenceThresholdSampler = script.ConfidenceThresholdSampler
TopKPerClassSampler = script.TopKPerClassSampler
UncertaintySampler = script.UncertaintySampler
DiversitySampler = script.DiversitySampler
BADGESampler = script.BADGESampler


# --- seed 001, "Testing Strategy", as written -------------------------------------------------------------

def test_uncertainty_sampler():
    """Test uncertainty sampling with mock probabilities."""
    # Create mock probabilities
    probs = np.array([
        [0.9, 0.1],  # High confidence
        [0.5, 0.5],  # Low confidence (should be selected)
        [0.8, 0.2],  # Medium confidence
    ])

    sampler = UncertaintySampler(strategy="margin")
    selected_idx = sampler.select_batch(probs, batch_size=1)

    # Verify most uncertain sample selected
    assert selected_idx[0] == 1


def test_diversity_sampler():
    """Test diversity sampling with mock embeddings."""
    # Create mock embeddings (3 points in 2D)
    embeddings = np.array([
        [0, 0],      # Point 1
        [10, 10],    # Point 2 (far from 1)
        [0.1, 0.1],  # Point 3 (close to 1)
    ])

    sampler = DiversitySampler(metric="euclidean", random_seed=42)
    selected_idx = sampler.select_batch(embeddings, batch_size=2)

    # Verify diverse points selected (should get points 1 and 2, not 3)
    assert len(selected_idx) == 2
    assert 2 not in selected_idx or (0 in selected_idx and 1 in selected_idx)


def test_badge_sampler():
    """Test BADGE sampling with mock features and probabilities."""
    # Create mock features and probabilities
    features = np.array([
        [1.0, 0.0],
        [0.0, 1.0],
        [0.5, 0.5],
    ])
    probs = np.array([
        [0.9, 0.1],
        [0.1, 0.9],
        [0.5, 0.5],
    ])

    sampler = BADGESampler(random_seed=42)
    selected_idx = sampler.select_batch(features, probs, batch_size=2)

    # Verify selection returns correct batch size
    assert len(selected_idx) == 2


def test_strategy_consistency():
    """Test that same input produces same output with fixed seed."""
    probs = np.random.rand(100, 3)
    probs = probs / probs.sum(axis=1, keepdims=True)

    sampler1 = UncertaintySampler(strategy="margin", random_seed=42)
    sampler2 = UncertaintySampler(strategy="margin", random_seed=42)

    selected1 = sampler1.select_batch(probs, batch_size=10)
    selected2 = sampler2.select_batch(probs, batch_size=10)

    # Verify deterministic behavior
    assert np.array_equal(selected1, selected2)


# --- the sampler classes ----------------------------------------------------------------------------------

PROBS = np.array([[0.95, 0.05], [0.6, 0.4], [0.1, 0.9], [0.97, 0.03], [0.5, 0.5], [0.3, 0.7]])


def test_samplers_have_the_seeds_defaults():
    assert (ConfidenceThresholdSampler().confidence_threshold, ConfidenceThresholdSampler().max_samples) == (0.9, 0)
    assert TopKPerClassSampler().k_per_class == 100
    assert UncertaintySampler().strategy == "margin"
    assert DiversitySampler().metric == "euclidean"
    assert BADGESampler().metric == "euclidean"
    for sampler in (ConfidenceThresholdSampler(), TopKPerClassSampler(), UncertaintySampler(), DiversitySampler(),
                    BADGESampler()):
        assert sampler.random_seed == 42


def test_confidence_threshold_sampler_by_keyword():
    sampler = ConfidenceThresholdSampler(confidence_threshold=0.8)
    # Top-class probabilities 0.95, 0.6, 0.9, 0.97, 0.5, 0.7: rows 3, 0, 2 reach 0.8, most confident first.
    assert sampler.select_batch(PROBS).tolist() == [3, 0, 2]
    assert ConfidenceThresholdSampler(confidence_threshold=0.8, max_samples=1).select_batch(PROBS).tolist() == [3]


def test_top_k_per_class_sampler():
    # Predicted class 0: rows 0, 1, 3, 4 (row 3 the most confident); class 1: rows 2, 5 (row 2).
    assert TopKPerClassSampler(k_per_class=1).select_batch(PROBS).tolist() == [3, 2]


def test_uncertainty_sampler_scores():
    sampler = UncertaintySampler(strategy="least_confidence")
    assert sampler.compute_scores(PROBS) == pytest.approx([0.05, 0.4, 0.1, 0.03, 0.5, 0.3])
    assert sampler.select_batch(PROBS, 2).tolist() == [4, 1]


def test_diversity_sampler_starts_from_the_labeled_rows():
    embeddings = np.array([[0.0, 0.0], [1.0, 0.0], [9.0, 0.0], [10.0, 0.0]])
    # With a labeled row at 10, the farthest candidate is the one at 0.
    picks = DiversitySampler().select_batch(embeddings, 1, labeled_embeddings=np.array([[10.0, 0.0]]))
    assert picks.tolist() == [0]
    # With one at 0 instead, it is the one at 10.
    picks = DiversitySampler().select_batch(embeddings, 1, labeled_embeddings=np.array([[0.0, 0.0]]))
    assert picks.tolist() == [3]


def test_diversity_sampler_leaves_the_input_alone():
    embeddings = np.array([[0.0, 0.0], [1.0, 0.0], [9.0, 0.0]], dtype=np.float32)
    before = embeddings.copy()
    picks = DiversitySampler().select_batch(embeddings, 2, indices=np.array([10, 11, 12]))
    # From the mean (10/3, 0): row 2 is farthest (5.67), then row 0 (3.33 from the mean, 9 from row 2).
    assert picks.tolist() == [12, 10]
    np.testing.assert_array_equal(embeddings, before)


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_diversity_sampler_compute_distances_is_the_pairwise_distance(metric):
    X = np.array([[0.0, 0.0], [3.0, 4.0], [1.0, 0.0]])
    Y = np.array([[3.0, 4.0], [0.0, 2.0]])
    distances = DiversitySampler(metric=metric)._compute_distances(X, Y)
    if metric == "euclidean":
        expected = [[5.0, 2.0], [0.0, np.sqrt(9 + 4)], [np.sqrt(4 + 16), np.sqrt(1 + 4)]]
    else:  # 1 - cos; the zero row has no direction and stays at distance 1
        expected = [[1.0, 1.0], [0.0, 1 - 4 / 5], [1 - 3 / 5, 1.0]]
    np.testing.assert_allclose(distances, expected, atol=1e-12)


def test_badge_sampler_is_deterministic_by_default_and_seeded():
    table = prediction_table(n=200, dim=5)
    features = table.filter(like="emb_").to_numpy()
    probs = table.filter(like="prob_class_").to_numpy()
    first = BADGESampler().select_batch(features, probs, 20)
    assert np.array_equal(first, BADGESampler().select_batch(features, probs, 20))
    assert np.array_equal(first, BADGESampler(random_seed=42).select_batch(features, probs, 20))
    assert not np.array_equal(first, BADGESampler(random_seed=7).select_batch(features, probs, 20))


def test_badge_gradient_embeddings_are_n_by_classes_times_dims():
    features = np.array([[1.0, 2.0, 3.0], [0.0, 1.0, 0.0]])
    probs = np.array([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]])
    g = BADGESampler().compute_gradient_embeddings(features, probs)
    assert g.shape == (2, 9)
    # Row 0: (p - onehot(0)) = [-0.3, 0.2, 0.1], outer h = [1, 2, 3].
    np.testing.assert_allclose(g[0], [-0.3, -0.6, -0.9, 0.2, 0.4, 0.6, 0.1, 0.2, 0.3])


def test_badge_sampler_on_a_subset_returns_the_subsets_ids():
    table = prediction_table(n=50, dim=3)
    features = table.filter(like="emb_").to_numpy()
    probs = table.filter(like="prob_class_").to_numpy()
    subset = np.arange(10, 40, 3)
    picks = BADGESampler().select_batch(features[subset], probs[subset], 5, indices=subset)
    assert set(picks.tolist()) <= set(subset.tolist()) and len(set(picks.tolist())) == 5
    # indices only names the rows: the picks are those of the same call without it, as ids.
    direct = BADGESampler().select_batch(features[subset], probs[subset], 5)
    assert picks.tolist() == subset[direct].tolist()


# --- indices: one id per row of the array passed in (seed 001: ``return indices[chosen]``) -------------------

# One 1-D embedding per row of PROBS; rows 1 and 4 are "labeled" in the subset tests below.
EMBEDDINGS = np.array([[0.0], [-20.0], [1.0], [9.0], [-30.0], [10.0]])
FEATURES = np.ones((6, 2))
UNLABELED = np.array([True, False, True, True, False, True])


def run_sampler(name, probabilities, embeddings, features, indices=None, **kwargs):
    """Each sampler called as seed 001 calls it, with its own settings for these tests."""
    if name == "confidence_threshold":
        return ConfidenceThresholdSampler(confidence_threshold=0.8).select_batch(probabilities, indices)
    if name == "top_k_per_class":
        return TopKPerClassSampler(k_per_class=1).select_batch(probabilities, indices)
    if name == "uncertainty":
        return UncertaintySampler(strategy="least_confidence").select_batch(probabilities, 2, indices)
    if name == "diversity":
        return DiversitySampler(metric="euclidean").select_batch(embeddings, 2, indices, **kwargs)
    return BADGESampler().select_batch(features, probabilities, 1, indices)


SAMPLER_NAMES = ["confidence_threshold", "top_k_per_class", "uncertainty", "diversity", "badge"]

# Worked out by hand, as positions in PROBS, for the unlabeled rows 0, 2, 3, 5 only:
# confidence >= 0.8: rows 3 (0.97), 0 (0.95), 2 (0.9); top-1 per predicted class: class 0 row 3 (0.97), class 1
# row 2 (0.9); least confidence: row 5 (0.3), row 2 (0.1); k-center from the candidates' mean 5: rows 0 and 5 are
# both 5 away (ties to the lower row: 0), then row 5 (5 from the mean, 10 from row 0); BADGE's first pick is the
# largest gradient norm |p - onehot(argmax p)| |h|, with h = (1, 1) row 5 (|(0.3, -0.3)|).
ON_THE_SUBSET = {"confidence_threshold": [3, 0, 2], "top_k_per_class": [3, 2], "uncertainty": [5, 2],
                 "diversity": [0, 5], "badge": [5]}
# ... and for all six rows: k-center from the mean -5 picks row 4 (-30, 25 away), then row 5 (10, 15 from the mean);
# uncertainty: row 4 (0.5), row 1 (0.4); BADGE: row 4 (|(-0.5, 0.5)|).
ON_ALL_ROWS = {"confidence_threshold": [3, 0, 2], "top_k_per_class": [3, 2], "uncertainty": [4, 1],
               "diversity": [4, 5], "badge": [4]}


@pytest.mark.parametrize("name", SAMPLER_NAMES)
def test_indices_are_the_global_positions_of_a_filtered_subset(name):
    unlabeled = np.flatnonzero(UNLABELED)
    picks = run_sampler(name, PROBS[UNLABELED], EMBEDDINGS[UNLABELED], FEATURES[UNLABELED], indices=unlabeled)
    assert picks.tolist() == ON_THE_SUBSET[name]


@pytest.mark.parametrize("name", SAMPLER_NAMES)
def test_indices_as_a_permutation_name_the_rows_they_stand_beside(name):
    order = np.array([3, 5, 0, 1, 4, 2])  # the rows arrive shuffled, each with its original position
    picks = run_sampler(name, PROBS[order], EMBEDDINGS[order], FEATURES[order], indices=order)
    assert picks.tolist() == ON_ALL_ROWS[name]


@pytest.mark.parametrize("name", SAMPLER_NAMES)
def test_indices_as_string_labels(name):
    labels = np.array(["a", "b", "c", "d", "e", "f"])
    picks = run_sampler(name, PROBS, EMBEDDINGS, FEATURES, indices=labels)
    assert picks.tolist() == [labels[i] for i in ON_ALL_ROWS[name]]
    subset = run_sampler(name, PROBS[UNLABELED], EMBEDDINGS[UNLABELED], FEATURES[UNLABELED],
                         indices=list(labels[UNLABELED]))
    assert subset.tolist() == [labels[i] for i in ON_THE_SUBSET[name]]


def test_the_issues_example_returns_entries_of_indices():
    p4 = PROBS[:4]  # top-class probabilities 0.95, 0.6, 0.9, 0.97
    picks = ConfidenceThresholdSampler(confidence_threshold=0.8).select_batch(p4, np.array([10, 20, 30, 40]))
    assert picks.tolist() == [40, 10, 30]


def test_indices_keep_their_values_and_types():
    p = np.array([[0.5, 0.5], [0.9, 0.1], [0.6, 0.4]])
    picks = UncertaintySampler().select_batch(p, 2, indices=[7, "b", 2.5])
    assert picks.tolist() == [7, 2.5] and type(picks[0]) is int
    big = np.array([2**62 + 1, 2**62 + 2, 2**62 + 3])  # int64 ids beyond float64's exact range
    assert UncertaintySampler().select_batch(p, 1, indices=big).tolist() == [2**62 + 1]
    assert UncertaintySampler().select_batch(p, 1, indices=pd.Index(["x", "y", "z"])).tolist() == ["x"]


def test_diversity_with_labeled_embeddings_takes_indices_for_the_candidates_only():
    candidates = np.flatnonzero(UNLABELED)
    # Labeled rows at -20 and -30: the farthest candidate is row 5 (10, 30 away), then row 0 (10 from row 5, 20
    # from -20) before row 2 (9) and row 3 (1).
    picks = DiversitySampler().select_batch(EMBEDDINGS[UNLABELED], 2, indices=candidates,
                                            labeled_embeddings=EMBEDDINGS[~UNLABELED])
    assert picks.tolist() == [5, 0]
    with pytest.raises(ValueError, match="6 entries .* 4 rows"):
        DiversitySampler().select_batch(EMBEDDINGS[UNLABELED], 2, indices=np.arange(6),
                                        labeled_embeddings=EMBEDDINGS[~UNLABELED])


def test_diversity_hybrid_with_indices():
    # Rows 2..6 of an 8-row pool; margin uncertainty 1 - (p1 - p2) of those: 0.2, 0.9, 0.4, 0.8, 0.1, so the
    # pre-filter (1 x batch 2) keeps rows 3 and 5, and k-means with two clusters takes both.
    X = np.arange(16.0).reshape(8, 2)
    p = np.array([[0.5, 0.5], [0.5, 0.5], [0.9, 0.1], [0.55, 0.45], [0.8, 0.2], [0.6, 0.4], [0.95, 0.05], [0.5, 0.5]])
    rows = np.arange(2, 7)
    picks = DiversitySampler(method="kmeans", uncertainty_prefilter=1).select_batch(X[rows], 2, indices=rows,
                                                                                   probabilities=p[rows])
    assert sorted(picks.tolist()) == [3, 5]


def test_diversity_kmeans_with_indices_as_labels_of_shuffled_rows():
    # Two far-apart clusters of three points; k-means with two clusters takes the member nearest each centroid
    # (1 and 101), the larger cluster first and equal sizes by the lower row. Rows arrive shuffled, with labels.
    values = np.array([100.0, 0.0, 2.0, 101.0, 1.0, 102.0])
    labels = np.array(["p100", "p0", "p2", "p101", "p1", "p102"])
    picks = DiversitySampler(method="kmeans", random_seed=3).select_batch(values[:, None], 2, indices=labels)
    assert picks.tolist() == ["p101", "p1"]


@pytest.mark.parametrize("name", SAMPLER_NAMES)
@pytest.mark.parametrize("length", [5, 7, 0])
def test_indices_of_the_wrong_length_is_a_value_error_naming_both(name, length):
    with pytest.raises(ValueError, match="indices has {} entries but .* has 6 rows".format(length)):
        run_sampler(name, PROBS, EMBEDDINGS, FEATURES, indices=np.arange(length))


def test_indices_must_be_one_dimensional():
    with pytest.raises(ValueError, match="1-D"):
        UncertaintySampler().select_batch(PROBS, 1, indices=np.arange(6).reshape(2, 3))


# --- parameters are checked when the sampler is used, not when it is built (scikit-learn's convention) -----

P2 = np.array([[0.9, 0.1], [0.4, 0.6], [0.5, 0.5]])
E2 = np.array([[0.0, 1.0], [1.0, 0.0], [2.0, 2.0]])


def uses(sampler):
    """Every public way to use ``sampler`` (each must check the parameters)."""
    candidates = script.Candidates(P2, E2.astype(np.float32))
    calls = [lambda: sampler.select(candidates, 1)]
    if isinstance(sampler, (ConfidenceThresholdSampler, TopKPerClassSampler)):
        calls.append(lambda: sampler.select_batch(P2))
    if isinstance(sampler, UncertaintySampler):
        calls += [lambda: sampler.select_batch(P2, 1), lambda: sampler.compute_scores(P2)]
    if isinstance(sampler, DiversitySampler):
        calls += [lambda: sampler.select_batch(E2, 1, probabilities=P2), lambda: sampler._compute_distances(E2, E2)]
    if isinstance(sampler, BADGESampler):
        calls += [lambda: sampler.select_batch(E2, P2, 1), lambda: sampler.compute_gradient_embeddings(E2, P2)]
    return calls


BAD_PARAMETERS = [
    (ConfidenceThresholdSampler, "confidence_threshold", 1.5),
    (ConfidenceThresholdSampler, "confidence_threshold", -0.1),
    (ConfidenceThresholdSampler, "confidence_threshold", float("nan")),
    (ConfidenceThresholdSampler, "confidence_threshold", "0.8"), (ConfidenceThresholdSampler, "max_samples", -1),
    (ConfidenceThresholdSampler, "max_samples", 2.5), (ConfidenceThresholdSampler, "random_seed", -1),
    (TopKPerClassSampler, "k_per_class", 0), (TopKPerClassSampler, "k_per_class", 1.5),
    (TopKPerClassSampler, "random_seed", "seed"),
    (UncertaintySampler, "strategy", "invalid"), (UncertaintySampler, "random_seed", -5),
    (DiversitySampler, "metric", "invalid"), (DiversitySampler, "method", "dbscan"),
    (DiversitySampler, "uncertainty_prefilter", -1), (DiversitySampler, "uncertainty_mode", "variance"),
    (DiversitySampler, "random_seed", 1.5),
    (BADGESampler, "metric", "manhattan"), (BADGESampler, "random_seed", -1),
]


# The seeds' spellings and the samplers' own names of the same parameters.
CURRENT_NAMES = {"random_seed": "random_state", "strategy": "mode"}


@pytest.mark.parametrize("cls, parameter, value", BAD_PARAMETERS,
                         ids=["{}-{}-{!r}".format(c.__name__, p, v) for c, p, v in BAD_PARAMETERS])
def test_a_bad_parameter_is_stored_by_init_and_refused_at_use(cls, parameter, value):
    sampler = cls(**{parameter: value})  # construction only stores, under the seeds' spelling as under the current
    for name in {parameter, CURRENT_NAMES.get(parameter, parameter)}:
        stored = getattr(sampler, name)
        assert stored is value or (stored != stored and value != value)
    for use in uses(sampler):
        with pytest.raises(ValueError, match=CURRENT_NAMES.get(parameter, parameter)):
            use()


@pytest.mark.parametrize("cls", [ConfidenceThresholdSampler, TopKPerClassSampler, UncertaintySampler,
                                 DiversitySampler, BADGESampler])
def test_get_params_and_set_params_round_trip(cls):
    sampler = cls()
    params = sampler.get_params()
    assert params["random_state"] == 42 and "random_seed" not in params
    copy = cls(**params)  # what clone-style code does
    assert copy.get_params() == params
    bad = {"confidence_threshold": 2.0, "k_per_class": 0, "mode": "invalid", "metric": "invalid"}
    name = next(key for key in bad if key in params)
    assert copy.set_params(**{name: bad[name]}) is copy and getattr(copy, name) == bad[name]
    with pytest.raises(ValueError, match=name):
        uses(copy)[0]()
    with pytest.raises(ValueError, match="no parameter 'treshold'"):
        copy.set_params(treshold=0.5)


def test_scikit_learn_clone_works_on_an_unchecked_sampler():
    base = pytest.importorskip("sklearn.base")
    sampler = base.clone(UncertaintySampler(strategy="invalid", random_seed=7))
    assert (sampler.strategy, sampler.random_seed) == ("invalid", 7)
    assert sampler.get_params() == {"mode": "invalid", "random_state": 7}
    with pytest.raises(ValueError, match="mode must be one of margin, entropy, least_confidence, got 'invalid'"):
        sampler.compute_scores(P2)
    assert base.clone(DiversitySampler(method="kmeans")).get_params()["method"] == "kmeans"


# --- select_samples ---------------------------------------------------------------------------------------

def test_select_samples_with_the_seeds_arguments():
    table = prediction_table(n=40)
    selected = script.select_samples(table, strategy="uncertainty", batch_size=10,
                                     strategy_config={"uncertainty_mode": "entropy", "random_seed": 42},
                                     id_field="id")
    assert len(selected) == 10
    assert selected["selection_rank"].tolist() == list(range(1, 11))
    assert (selected["data_source"] == "active_learning").all()
    probabilities = table.filter(like="prob_class_").to_numpy()
    entropy = -(probabilities * np.log(probabilities)).sum(axis=1)
    expected = np.argsort(-entropy, kind="stable")[:10]
    assert selected.index.tolist() == expected.tolist()
    np.testing.assert_allclose(selected["selection_score"], entropy[expected])


def test_select_samples_ssl_adds_pseudo_labels():
    table = prediction_table(n=80)
    selected = script.select_samples(table, "confidence_threshold", 0, {"confidence_threshold": 0.8})
    confidence = table.filter(like="prob_class_").max(axis=1)
    assert set(selected.index) == set(table.index[confidence >= 0.8])
    assert (selected["pseudo_label"] == table.filter(like="prob_class_").to_numpy().argmax(axis=1)[
        selected.index]).all()


def test_select_samples_unknown_strategy_is_a_value_error_naming_it():
    with pytest.raises(ValueError, match="'coreset'"):
        script.select_samples(prediction_table(n=10), "coreset", 5)


def test_select_samples_unknown_config_key_is_an_error():
    with pytest.raises(ValueError, match="treshold"):
        script.select_samples(prediction_table(n=10), "confidence_threshold", 5, {"treshold": 0.8})


def test_select_samples_feature_columns_when_there_are_no_embeddings():
    table = prediction_table(n=30, dim=0)
    table["f1"] = np.arange(30.0)
    table["f2"] = 0.0
    config = {"feature_columns": ["f1"], "metric": "euclidean"}
    selected = script.select_samples(table, "diversity", 2, config)
    # Along f1 alone, farthest-first from the mean (14.5) picks the ends: 0 first (ties to the lower row), then 29.
    assert selected.index.tolist() == [0, 29]


def test_select_samples_never_selects_labeled_rows():
    table = prediction_table(n=60, labeled_fraction=0.5, seed=3)
    selected = script.select_samples(table, "badge", 10, {"label_field": "label"})
    assert table.loc[selected.index, "label"].isna().all()


SEED_OUTPUT_COLUMNS = ["selection_score", "selection_rank", "data_source"]  # seed 001, plus data_source (seed 000)


@pytest.mark.parametrize("strategy", ["confidence_threshold", "top_k_per_class", "uncertainty", "diversity", "badge"])
def test_select_samples_on_an_empty_frame_returns_an_empty_frame_with_the_output_columns(strategy):
    empty = prediction_table(n=10).iloc[:0]
    selected = script.select_samples(empty, strategy, batch_size=5, strategy_config={})
    extra = (["pseudo_label", "confidence"] if strategy in ("confidence_threshold", "top_k_per_class")
             else ["predicted_label", "predicted_confidence"])
    assert isinstance(selected, pd.DataFrame) and len(selected) == 0
    assert list(selected.columns) == list(empty.columns) + SEED_OUTPUT_COLUMNS + extra


def test_select_samples_on_an_empty_frame_still_checks_the_columns():
    empty = pd.DataFrame({"id": pd.Series([], dtype=object), "feature": pd.Series([], dtype=float)})
    with pytest.raises(ValueError, match="no score columns found"):
        script.select_samples(empty, "uncertainty", 5)


def test_select_samples_with_every_row_labeled_selects_nothing(caplog):
    table = prediction_table(n=10)
    table["label"] = "cat"
    selected = script.select_samples(table, "uncertainty", 3, {"label_field": "label"})
    assert len(selected) == 0 and list(selected.columns) == list(table.columns) + SEED_OUTPUT_COLUMNS + [
        "predicted_label", "predicted_confidence"]
    assert any(record.levelname == "WARNING" and "all 10 rows" in record.getMessage() for record in caplog.records)


# --- loading, scores, writing -----------------------------------------------------------------------------

def test_load_inference_data_returns_the_table_and_its_format(tmp_path):
    table = prediction_table(n=12)
    write_table(table, tmp_path, "tsv")
    loaded, fmt = script.load_inference_data(str(tmp_path))
    assert fmt == "tsv"
    assert loaded["id"].tolist() == table["id"].tolist()


def test_load_inference_data_without_data_files_is_a_file_not_found_error(tmp_path):
    (tmp_path / "_SUCCESS").write_text("")
    with pytest.raises(FileNotFoundError, match="no data files"):
        script.load_inference_data(str(tmp_path), "id")


def test_extract_score_columns_priority():
    columns = pd.DataFrame(columns=["id", "prob_class_1", "prob_class_0", "confidence_score", "p"])
    assert script.extract_score_columns(columns) == ["prob_class_0", "prob_class_1"]
    assert script.extract_score_columns(columns, score_field="p") == ["p"]
    assert script.extract_score_columns(columns, None, "nothing_") == ["confidence_score"]


def test_normalize_scores_to_probabilities_returns_standard_columns():
    df = pd.DataFrame({"id": ["a", "b"], "logit_x": [0.0, 2.0], "logit_y": [0.0, 0.0]})
    normalized = script.normalize_scores_to_probabilities(df, ["logit_x", "logit_y"])
    assert isinstance(normalized, pd.DataFrame)
    assert list(normalized.columns) == ["id", "logit_x", "logit_y", "prob_class_0", "prob_class_1"]
    np.testing.assert_allclose(normalized["prob_class_0"], [0.5, np.exp(2) / (np.exp(2) + 1)])
    assert normalized.attrs["score_interpretation"] == "logits (softmax)"
    pd.testing.assert_frame_equal(normalized[["id", "logit_x", "logit_y"]], df)


def test_normalize_scores_to_probabilities_replaces_standard_columns_where_they_stand():
    df = pd.DataFrame({"prob_class_0": [1.0, -1.0], "id": ["a", "b"], "prob_class_1": [1.0, 1.0]})
    normalized = script.normalize_scores_to_probabilities(df, ["prob_class_0", "prob_class_1"])
    assert list(normalized.columns) == ["prob_class_0", "id", "prob_class_1"]
    np.testing.assert_allclose(normalized["prob_class_0"], [0.5, np.exp(-2) / (np.exp(-2) + 1)])
    assert df["prob_class_0"].tolist() == [1.0, -1.0]  # the input is not modified


def test_normalize_scores_to_probabilities_single_score_becomes_two_classes():
    df = pd.DataFrame({"id": [1, 2], "confidence_score": [0.9, 0.2]})
    normalized = script.normalize_scores_to_probabilities(df, ["confidence_score"])
    np.testing.assert_allclose(normalized[["prob_class_0", "prob_class_1"]], [[0.1, 0.9], [0.8, 0.2]])


def test_normalize_names_the_columns_by_position_as_seed_001_does():
    # Seed 001: ``for i, col in enumerate(score_cols): df_norm[f"prob_class_{i}"] = scores[:, i]``.
    logits = np.log([[1.0, 2.0, 3.0], [4.0, 4.0, 2.0]])  # softmax: [1, 2, 3] / 6 and [4, 4, 2] / 10
    df = pd.DataFrame({"id": [1, 2], "score_0": logits[:, 0], "score_1": logits[:, 1], "score_2": logits[:, 2]})
    df_norm = script.normalize_scores_to_probabilities(df, ["score_0", "score_1", "score_2"])
    probabilities = df_norm[[f"prob_class_{i}" for i in range(3)]].to_numpy()
    np.testing.assert_allclose(probabilities, [[1 / 6, 2 / 6, 3 / 6], [0.4, 0.4, 0.2]], rtol=1e-12)
    assert list(df_norm.columns) == ["id", "score_0", "score_1", "score_2", "prob_class_0", "prob_class_1",
                                     "prob_class_2"]


def test_normalize_follows_the_order_of_score_cols_not_the_names():
    df = pd.DataFrame({"cat": [0.2, 0.7], "dog": [0.8, 0.3]})
    df_norm = script.normalize_scores_to_probabilities(df, ["dog", "cat"])
    np.testing.assert_allclose(df_norm["prob_class_0"], [0.8, 0.3])  # the first listed column, "dog"
    np.testing.assert_allclose(df_norm["prob_class_1"], [0.2, 0.7])


def test_normalize_keeps_probability_columns_that_are_already_probabilities():
    df = pd.DataFrame({"prob_class_0": [0.25, 0.5], "prob_class_1": [0.75, 0.5]})
    df_norm = script.normalize_scores_to_probabilities(df, ["prob_class_0", "prob_class_1"])
    pd.testing.assert_frame_equal(df_norm, df)


@pytest.mark.parametrize("columns, wrong", [(["prob_class_1", "prob_class_0"], "'prob_class_1' at position 0"),
                                            (["prob_class_0", "prob_class_2"], "'prob_class_2' at position 1"),
                                            (["prob_class_cat", "prob_class_dog"], "'prob_class_cat' at position 0")])
def test_normalize_refuses_prob_class_columns_that_are_not_at_their_position(columns, wrong):
    df = pd.DataFrame({columns[0]: [0.25, 0.5], columns[1]: [0.75, 0.5]})
    with pytest.raises(ValueError, match=wrong):
        script.normalize_scores_to_probabilities(df, columns)


@pytest.mark.parametrize("name, fmt", [("a.csv", "csv"), ("b.TSV", "tsv"), ("c.parquet", "parquet"),
                                       ("d.pq", "parquet"), ("e.csv.gz", "csv")])
def test_detect_file_format(name, fmt):
    assert script._detect_file_format(name) == fmt
    assert script._detect_file_format(Path("/x") / name) == fmt


def test_detect_file_format_unsupported_is_a_clear_error():
    with pytest.raises(ValueError, match="unsupported data file .*data.json"):
        script._detect_file_format("data.json")


def test_save_selected_samples_and_metadata(tmp_path):
    table = prediction_table(n=5)
    path = script.save_selected_samples(table, str(tmp_path / "out"))
    assert path == str(tmp_path / "out" / "selected_samples.csv")
    assert pd.read_csv(path)["id"].tolist() == table["id"].tolist()
    path = script.save_selected_samples(table, str(tmp_path / "out2"), "Parquet", metadata={"strategy": "x"})
    assert path.endswith("selected_samples.parquet")
    assert json.loads((tmp_path / "out2" / "selection_metadata.json").read_text()) == {"strategy": "x"}
    meta_path = script.save_selection_metadata({"n": 1}, str(tmp_path / "meta"))
    assert json.loads(Path(meta_path).read_text()) == {"n": 1}


def test_validate_strategy_for_use_case():
    script.validate_strategy_for_use_case("uncertainty", "active_learning")
    script.validate_strategy_for_use_case("uncertainty", "auto")
    with pytest.raises(ValueError, match="noisy pseudo-labels"):
        script.validate_strategy_for_use_case("uncertainty", "ssl")
    with pytest.raises(ValueError, match="wastes human labeling"):
        script.validate_strategy_for_use_case("top_k_per_class", "active_learning")


# --- the strategy table: every row wired from the environment to the output --------------------------------

def _other_value(var, current):
    """A valid value of ``var`` that differs from ``current``, the value it takes when unset."""
    if var.choices:
        return next(choice for choice in var.choices if choice != current)
    if var.kind == "int":
        return str(int(current) + 3)
    low, high = var.minimum, var.maximum
    return str((float(current) + high) / 2 if high is not None else float(current) * 2)


def _env(strategy, **extra):
    # COMMITTEE_PREFIXES is read only by the rows that need members; the others ignore it.
    return {"SELECTION_STRATEGY": strategy, "LABEL_FIELD": "label", "BATCH_SIZE": "7",
            "COMMITTEE_PREFIXES": COMMITTEE_PREFIXES, **extra}


@pytest.mark.parametrize("row", script.STRATEGY_TABLE, ids=lambda row: row.name)
def test_every_setting_of_a_row_reaches_its_sampler(row):
    fields = {var.field: var for var in script.ENV_VARS}
    assert set(row.reads) <= set(fields)
    for field, keyword in row.settings.items():
        var = fields[field]
        unset = getattr(script.parse_environment(_env(row.name)), field)
        config = script.parse_environment(_env(row.name, **{var.name: _other_value(var, unset)}))
        sampler = script.make_sampler(config)
        assert type(sampler) is row.sampler
        assert getattr(sampler, keyword) == getattr(config, field) != unset


@pytest.mark.parametrize("row", script.STRATEGY_TABLE, ids=lambda row: row.name)
def test_every_row_runs_end_to_end_through_main(row, tmp_path):
    table = with_committee(prediction_table(n=60, labeled_fraction=0.2, seed=5))
    write_table(table, tmp_path / "in", "csv")
    # The labels here are the model's top class: confident learning would flag none of them.
    env = _env(row.name, CONFIDENCE_THRESHOLD="0.5", K_PER_CLASS="4", REVIEW_METHOD="self_confidence")
    inputs = {"evaluation_data": str(tmp_path / "in")}
    if row.needs_calibration:  # held-out rows labeled as predicted: every class qualifies at a 0.5 target
        calibration = prediction_table(n=30, seed=6).assign(id=lambda frame: "cal-" + frame["id"])
        calibration["label"] = calibration[["prob_class_0", "prob_class_1", "prob_class_2"]].to_numpy().argmax(1)
        write_table(calibration, tmp_path / "cal", "csv")
        inputs["calibration_data"] = str(tmp_path / "cal")
        env.update(LABEL_FIELD="label", TARGET_PRECISION="0.5", PRECISION_CONFIDENCE="0.5")
    outputs = {"selected_samples": str(tmp_path / "s"), "selection_metadata": str(tmp_path / "m")}
    metadata = script.main(inputs, outputs, env, argparse.Namespace(job_type="test"))
    selected = pd.read_csv(tmp_path / "s" / "selected_samples.csv", dtype={"id": str})
    assert metadata["strategy"] == row.name
    assert len(selected) == metadata["selected_count"] > 0
    assert (selected["data_source"] == ("pseudo_labeled" if row.use_case == "ssl" else "active_learning")).all()
    assert ("pseudo_label" in selected.columns) == (row.use_case == "ssl")
    assert ("vector_source" in metadata["details"]) == row.needs_embeddings
    if row.batched:
        assert len(selected) == 7
    candidates = table["label"].notna() if row.candidates == "labeled" else table["label"].isna()
    assert set(selected["id"]) <= set(table.loc[candidates, "id"])


def test_the_table_is_the_only_list_of_strategies():
    assert script.STRATEGIES == tuple(row.name for row in script.STRATEGY_TABLE)
    assert script.ENV_VARS_BY_NAME["SELECTION_STRATEGY"].choices == script.STRATEGIES
    assert set(script.SSL_STRATEGIES) | set(script.ACTIVE_LEARNING_STRATEGIES) == set(script.STRATEGIES)
    assert all(issubclass(row.sampler, script._Sampler) for row in script.STRATEGY_TABLE)


def test_an_unknown_strategy_cannot_fall_through():
    config = script.parse_environment(_env("badge"))._replace(selection_strategy="bagde")
    with pytest.raises(ValueError, match="unknown strategy 'bagde'"):
        script.make_sampler(config)
    with pytest.raises(ValueError, match="unknown strategy 'bagde'"):
        script.select_from_pool(script.pool_from_frame(prediction_table(n=5), script.parse_environment(
            _env("uncertainty"))), config)


def test_selection_config_fields_are_env_vars_in_order_with_their_types():
    kinds = {"int": int, "float": float, "str": str, "choice": str}
    assert script.SelectionConfig._fields == tuple(var.field for var in script.ENV_VARS)
    hints = script.get_type_hints(script.SelectionConfig)  # without the setting declared in each annotation
    for var in script.ENV_VARS:
        expected = kinds[var.kind]
        assert hints[var.field] in ((expected,) if var.default != "" else (script.Optional[expected],)), var.name
