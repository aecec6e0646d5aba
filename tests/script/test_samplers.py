"""Hand-checked expectations for every sampler's core function."""

import numpy as np
import pytest


def probs(*rows):
    return np.array(rows, dtype=np.float64)


def test_confidence_threshold_keeps_rows_at_or_above_threshold_most_confident_first(script):
    p = probs([0.95, 0.05], [0.6, 0.4], [0.1, 0.9], [0.97, 0.03])
    selection = script.confidence_threshold_selection(p, 0.9)
    assert selection.indices.tolist() == [3, 0, 2]
    assert selection.scores.tolist() == [0.97, 0.95, 0.9]


def test_confidence_threshold_max_samples_keeps_the_most_confident(script):
    p = probs([0.95, 0.05], [0.6, 0.4], [0.1, 0.9], [0.97, 0.03])
    assert script.ConfidenceThresholdSampler(0.9, max_samples=2).select_batch(p).tolist() == [3, 0]


def test_top_k_per_class_takes_k_most_confident_of_each_predicted_class(script):
    p = probs([0.9, 0.1, 0.0], [0.8, 0.2, 0.0], [0.1, 0.7, 0.2], [0.2, 0.75, 0.05], [0.0, 0.1, 0.9], [0.99, 0.01, 0])
    selection = script.top_k_per_class_selection(p, 1)
    assert selection.indices.tolist() == [5, 4, 3]
    assert selection.scores.tolist() == [0.99, 0.9, 0.75]


def test_top_k_per_class_with_fewer_rows_than_k_takes_them_all(script):
    p = probs([0.9, 0.1], [0.8, 0.2], [0.3, 0.7])
    assert sorted(script.TopKPerClassSampler(k_per_class=5).select_batch(p).tolist()) == [0, 1, 2]


@pytest.mark.parametrize("mode", ["margin", "entropy", "least_confidence"])
def test_uncertainty_picks_the_even_split_first(script, mode):
    p = probs([0.9, 0.1], [0.5, 0.5], [0.7, 0.3], [0.99, 0.01])
    assert script.UncertaintySampler(mode).select_batch(p, 2).tolist() == [1, 2]


def test_uncertainty_scores_by_hand(script):
    p = probs([0.5, 0.3, 0.2], [1.0, 0.0, 0.0])
    assert script.UncertaintySampler("margin").compute_scores(p) == pytest.approx([0.8, 0.0])
    assert script.UncertaintySampler("least_confidence").compute_scores(p) == pytest.approx([0.5, 0.0])
    expected_entropy = -(0.5 * np.log(0.5) + 0.3 * np.log(0.3) + 0.2 * np.log(0.2))
    assert script.UncertaintySampler("entropy").compute_scores(p) == pytest.approx([expected_entropy, 0.0])


def test_margin_and_entropy_can_disagree(script):
    # Two close leading classes (small margin) vs a flat tail (high entropy).
    p = probs([0.45, 0.45, 0.1, 0.0], [0.4, 0.2, 0.2, 0.2])
    assert script.UncertaintySampler("margin").select_batch(p, 1).tolist() == [0]
    assert script.UncertaintySampler("entropy").select_batch(p, 1).tolist() == [1]


def test_ties_are_broken_by_input_order(script):
    p = probs([0.6, 0.4], [0.5, 0.5], [0.5, 0.5], [0.5, 0.5], [0.9, 0.1])
    assert script.UncertaintySampler("margin").select_batch(p, 2).tolist() == [1, 2]
    assert script.top_k_indices(np.array([1.0, 3.0, 3.0, 2.0, 3.0]), 2).tolist() == [1, 2]


def test_top_k_indices_matches_a_stable_sort(script):
    rng = np.random.default_rng(3)
    scores = rng.integers(0, 5, size=200).astype(float)
    for k in (1, 7, 50, 199, 200, 500):
        expected = np.argsort(-scores, kind="stable")[:k]
        assert script.top_k_indices(scores, k).tolist() == expected.tolist()


def test_k_center_picks_the_far_point(script):
    X = np.array([[0.0, 0.0], [1.0, 0.0], [10.0, 0.0]])
    indices, distances = script.k_center_greedy(X, 1, initial_centers=X[:1])
    assert indices.tolist() == [2]
    assert distances.tolist() == pytest.approx([10.0])


def test_k_center_without_labeled_rows_starts_from_the_mean(script):
    X = np.array([[0.0, 0.0], [1.0, 0.0], [2.0, 0.0], [9.0, 0.0]])  # mean (3, 0)
    indices, distances = script.k_center_greedy(X, 2)
    assert indices.tolist() == [3, 0]
    assert distances.tolist() == pytest.approx([6.0, 3.0])


def test_k_center_never_repeats_a_row_even_with_duplicates(script):
    X = np.array([[1.0, 1.0]] * 4 + [[5.0, 5.0]])
    indices, distances = script.k_center_greedy(X, 5)
    assert sorted(indices.tolist()) == [0, 1, 2, 3, 4]
    assert distances[-1] == 0.0


def test_k_center_leaves_its_input_alone_unless_told(script):
    X = np.random.default_rng(2).normal(size=(50, 3)).astype(np.float32) + 5
    before = X.copy()
    first = script.k_center_greedy(X, 5)
    assert np.array_equal(X, before)
    second = script.k_center_greedy(X, 5, copy=False)
    assert not np.array_equal(X, before)
    assert first[0].tolist() == second[0].tolist()
    assert np.allclose(first[1], second[1])


def test_k_center_cosine_ignores_length(script):
    X = np.array([[1.0, 0.0], [100.0, 1.0], [0.0, 1.0]])
    indices, distances = script.k_center_greedy(X, 1, initial_centers=np.array([[5.0, 0.0]]), metric="cosine")
    assert indices.tolist() == [2]
    assert distances.tolist() == pytest.approx([1.0])


def test_badge_first_pick_is_the_largest_gradient_norm(script):
    H = np.array([[1.0, 0.0], [3.0, 0.0], [0.0, 1.0], [0.0, 2.0]])
    P = probs([0.5, 0.5], [0.9, 0.1], [0.6, 0.4], [0.5, 0.5])
    norms = np.linalg.norm(script.gradient_embeddings(H, P), axis=1)
    indices, distances = script.badge_kmeanspp(H, P, 1, random_state=0)
    assert indices.tolist() == [int(np.argmax(norms))] == [3]
    assert distances[0] == pytest.approx(norms[3])


def test_badge_factorized_distance_equals_materialized_distance(script):
    rng = np.random.default_rng(1)
    H = rng.normal(size=(30, 5))
    P = rng.dirichlet(np.ones(4), size=30)
    G = script.gradient_embeddings(H, P)
    indices, distances = script.badge_kmeanspp(H, P, 6, random_state=7)
    for pick in range(1, 6):
        previous = G[indices[:pick]]
        expected = np.min(np.linalg.norm(previous - G[indices[pick]], axis=1))
        assert distances[pick] == pytest.approx(expected, rel=1e-4)


def test_badge_is_d2_sampling_not_farthest_first(script):
    # The second pick must sometimes be a near point: farthest-first would always take row 2.
    H = np.array([[0.0, 0.0], [1.0, 0.0], [3.0, 0.0]], dtype=float)
    H[0] = [10.0, 0.0]
    P = probs([0.5, 0.5], [0.5, 0.5], [0.5, 0.5])
    seconds = [int(script.badge_kmeanspp(H, P, 2, random_state=seed)[0][1]) for seed in range(400)]
    counts = np.bincount(seconds, minlength=3)
    G = script.gradient_embeddings(H, P)
    d2 = np.sum((G - G[0]) ** 2, axis=1)
    expected = d2 / d2.sum() * 400
    assert counts[0] == 0
    assert counts[1] > 0 and counts[2] > 0
    assert np.abs(counts - expected).max() < 4 * np.sqrt(expected.max())


def test_badge_never_picks_duplicates_twice_and_handles_all_zero_distances(script):
    H = np.array([[1.0, 2.0]] * 5)
    P = probs(*([[0.7, 0.3]] * 5))
    indices, distances = script.badge_kmeanspp(H, P, 5, random_state=0)
    assert sorted(indices.tolist()) == [0, 1, 2, 3, 4]
    assert distances[1:].tolist() == [0.0] * 4


def test_badge_with_confident_one_hot_predictions_does_not_divide_by_zero(script):
    H = np.random.default_rng(0).normal(size=(6, 3))
    P = probs(*([[1.0, 0.0]] * 6))
    with np.errstate(all="raise"):
        indices, _ = script.badge_kmeanspp(H, P, 3, random_state=0)
    assert len(set(indices.tolist())) == 3


def test_badge_same_seed_same_selection(script):
    rng = np.random.default_rng(5)
    H, P = rng.normal(size=(200, 8)), rng.dirichlet(np.ones(3), size=200)
    first = script.badge_kmeanspp(H, P, 20, random_state=11)[0]
    assert first.tolist() == script.badge_kmeanspp(H, P, 20, random_state=11)[0].tolist()
    assert first.tolist() != script.badge_kmeanspp(H, P, 20, random_state=12)[0].tolist()


def test_gradient_embedding_is_residual_outer_embedding(script):
    G = script.gradient_embeddings(np.array([[2.0, 3.0]]), probs([0.25, 0.75]))
    assert G.tolist() == [[0.5, 0.75, -0.5, -0.75]]


def test_single_probability_column_becomes_two_classes(script):
    import pandas as pd

    df = pd.DataFrame({"s": [0.2, 0.9]})
    p, how = script.probabilities_from_frame(df, ["s"])
    assert np.allclose(p, [[0.8, 0.2], [0.1, 0.9]])
    assert how == "binary probability"


def test_single_logit_column_is_a_sigmoid_not_a_softmax_of_one(script):
    import pandas as pd

    df = pd.DataFrame({"s": [-2.0, 0.0, 3.0]})
    p, how = script.probabilities_from_frame(df, ["s"])
    assert p[:, 1] == pytest.approx(1 / (1 + np.exp(-np.array([-2.0, 0.0, 3.0]))))
    assert how.startswith("binary logit")


def test_several_logit_columns_are_softmaxed(script, caplog):
    import pandas as pd

    df = pd.DataFrame({"a": [1.0, -1.0], "b": [2.0, 0.5]})
    p, how = script.probabilities_from_frame(df, ["a", "b"])
    assert p.sum(axis=1) == pytest.approx([1.0, 1.0])
    assert p[0, 1] == pytest.approx(np.exp(2) / (np.exp(1) + np.exp(2)))
    assert how == "logits (softmax)"
    assert "softmax" in caplog.text


def test_probability_columns_are_kept_as_they_are(script):
    import pandas as pd

    df = pd.DataFrame({"a": [0.2, 0.5], "b": [0.8, 0.5]})
    p, how = script.probabilities_from_frame(df, ["a", "b"])
    assert p.tolist() == [[0.2, 0.8], [0.5, 0.5]]
    assert how == "probabilities"


def test_score_column_priority(script):
    cols = ["id", "confidence_score", "rule_score", "prob_class_10", "prob_class_2", "prob_class_1"]
    assert script.extract_score_columns(cols, "rule_score", "prob_class_") == ["rule_score"]
    assert script.extract_score_columns(cols, None, "prob_class_") == ["prob_class_1", "prob_class_2",
                                                                       "prob_class_10"]
    assert script.extract_score_columns(cols[:3], None, "prob_class_") == ["confidence_score"]
    assert script.extract_score_columns(["id", "rule_score"], None, "prob_class_") == ["rule_score"]


def test_parse_environment_types_and_defaults(script):
    config = script.parse_environment({"SELECTION_STRATEGY": " Uncertainty ", "BATCH_SIZE": "7",
                                       "CONFIDENCE_THRESHOLD": "0.95", "LABEL_FIELD": "", "SCORE_FIELD": None})
    assert config.selection_strategy == "uncertainty"
    assert config.batch_size == 7 and isinstance(config.batch_size, int)
    assert config.confidence_threshold == 0.95
    assert config.label_field is None and config.score_field is None and config.output_format is None
    assert config.metric == "euclidean" and config.random_seed == 42


def test_env_var_table_defaults_parse(script):
    defaults = {var.name: var.default for var in script.ENV_VARS if not var.required}
    config = script.parse_environment(dict(defaults, SELECTION_STRATEGY="badge"))
    assert config == script.parse_environment({"SELECTION_STRATEGY": "badge"})


def test_long_selections_log_their_progress(script, caplog):
    import logging

    caplog.set_level(logging.INFO, logger="active_sample_selection")
    X = np.random.default_rng(4).normal(size=(300, 4))
    P = np.random.default_rng(5).dirichlet(np.ones(3), size=300)
    script.k_center_greedy(X, 100)
    script.badge_kmeanspp(X, P, 100, random_state=0)
    lines = [record.getMessage() for record in caplog.records]
    for label in ("k-center greedy", "BADGE k-means++"):
        progress = [line for line in lines if line.startswith(label + ":")]
        assert len(progress) == 10, progress
        assert progress[0].startswith(label + ": 10/100 picks") and "remaining" in progress[0]
        assert progress[-1].startswith(label + ": 100/100 picks")
