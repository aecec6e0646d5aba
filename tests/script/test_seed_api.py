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

from conftest import prediction_table, script_module as script, write_table

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


def test_confidence_threshold_sampler_by_keyword_and_among_indices():
    sampler = ConfidenceThresholdSampler(confidence_threshold=0.8)
    assert sampler.select_batch(PROBS).tolist() == [3, 0, 2]
    # Among rows 1, 2 and 3 only: rows 3 and 2 qualify, and the returned values are entries of indices.
    assert sampler.select_batch(PROBS, indices=np.array([1, 2, 3])).tolist() == [3, 2]
    assert ConfidenceThresholdSampler(confidence_threshold=0.8, max_samples=1).select_batch(PROBS).tolist() == [3]


def test_top_k_per_class_sampler_among_indices():
    sampler = TopKPerClassSampler(k_per_class=1)
    assert sampler.select_batch(PROBS).tolist() == [3, 2]
    assert sampler.select_batch(PROBS, indices=[1, 4, 5]).tolist() == [5, 1]


def test_uncertainty_sampler_scores_and_indices():
    sampler = UncertaintySampler(strategy="least_confidence")
    assert sampler.compute_scores(PROBS) == pytest.approx([0.05, 0.4, 0.1, 0.03, 0.5, 0.3])
    assert sampler.select_batch(PROBS, 2).tolist() == [4, 1]
    assert sampler.select_batch(PROBS, 2, indices=np.array([0, 2, 5])).tolist() == [5, 2]


def test_uncertainty_sampler_rejects_an_unknown_strategy():
    with pytest.raises(ValueError, match="'variance'"):
        UncertaintySampler(strategy="variance")


@pytest.mark.parametrize("cls", [DiversitySampler, BADGESampler])
def test_embedding_samplers_reject_an_unknown_metric(cls):
    with pytest.raises(ValueError, match="'manhattan'"):
        cls(metric="manhattan")


def test_diversity_sampler_starts_from_the_labeled_rows():
    embeddings = np.array([[0.0, 0.0], [1.0, 0.0], [9.0, 0.0], [10.0, 0.0]])
    # With a labeled row at 10, the farthest candidate is the one at 0.
    picks = DiversitySampler().select_batch(embeddings, 1, labeled_embeddings=np.array([[10.0, 0.0]]))
    assert picks.tolist() == [0]
    # With one at 0 instead, it is the one at 10.
    picks = DiversitySampler().select_batch(embeddings, 1, labeled_embeddings=np.array([[0.0, 0.0]]))
    assert picks.tolist() == [3]


def test_diversity_sampler_chooses_among_indices_and_leaves_the_input_alone():
    embeddings = np.array([[0.0, 0.0], [1.0, 0.0], [9.0, 0.0], [10.0, 0.0]], dtype=np.float32)
    before = embeddings.copy()
    picks = DiversitySampler().select_batch(embeddings, 2, indices=np.array([0, 1, 2]))
    assert set(picks.tolist()) == {0, 2}
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


def test_badge_sampler_among_indices_returns_entries_of_indices():
    table = prediction_table(n=50, dim=3)
    features = table.filter(like="emb_").to_numpy()
    probs = table.filter(like="prob_class_").to_numpy()
    subset = np.arange(10, 40, 3)
    picks = BADGESampler().select_batch(features, probs, 5, indices=subset)
    assert set(picks.tolist()) <= set(subset.tolist()) and len(set(picks.tolist())) == 5
    # The same as selecting from the sub-arrays directly.
    direct = BADGESampler().select_batch(features[subset], probs[subset], 5)
    assert picks.tolist() == subset[direct].tolist()


@pytest.mark.parametrize("indices, message", [
    ([0, 0], "repeat"), ([0, 6], r"\[0, 6\)"), ([-1], r"\[0, 6\)"), ([0.5], "integer"), ([[0, 1]], "1-D"),
])
def test_indices_that_are_not_row_positions_are_refused(indices, message):
    with pytest.raises(ValueError, match=message):
        UncertaintySampler().select_batch(PROBS, 1, indices=np.array(indices))


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


# --- loading, scores, writing -----------------------------------------------------------------------------

def test_load_inference_data_returns_the_table_and_its_format(tmp_path):
    table = prediction_table(n=12)
    write_table(table, tmp_path, "tsv")
    loaded, fmt = script.load_inference_data(str(tmp_path))
    assert fmt == "tsv"
    assert loaded["id"].tolist() == table["id"].tolist()


def test_load_inference_data_without_data_files_is_a_file_not_found_error(tmp_path):
    (tmp_path / "notes.txt").write_text("no data here")
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
    assert list(normalized.columns) == ["id", "logit_x", "logit_y", "prob_class_logit_x", "prob_class_logit_y"]
    np.testing.assert_allclose(normalized["prob_class_logit_x"], [0.5, np.exp(2) / (np.exp(2) + 1)])
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

def _other_value(var):
    """A valid value of ``var`` that differs from its default."""
    if var.choices:
        return next(choice for choice in var.choices if choice != var.default)
    if var.kind == "int":
        return str(int(var.default) + 3)
    low, high = var.minimum, var.maximum
    return str((float(var.default) + high) / 2 if high is not None else float(var.default) * 2)


def _env(strategy, **extra):
    return {"SELECTION_STRATEGY": strategy, "LABEL_FIELD": "label", "BATCH_SIZE": "7", **extra}


@pytest.mark.parametrize("row", script.STRATEGY_TABLE, ids=lambda row: row.name)
def test_every_setting_of_a_row_reaches_its_sampler(row):
    fields = {var.field: var for var in script.ENV_VARS}
    assert set(row.reads) <= set(fields)
    for field, keyword in row.settings.items():
        var = fields[field]
        config = script.parse_environment(_env(row.name, **{var.name: _other_value(var)}))
        sampler = script.make_sampler(config)
        assert type(sampler) is row.sampler
        assert getattr(sampler, keyword) == getattr(config, field) != script.parse_environment(
            _env(row.name)).__getattribute__(field)


@pytest.mark.parametrize("row", script.STRATEGY_TABLE, ids=lambda row: row.name)
def test_every_row_runs_end_to_end_through_main(row, tmp_path):
    table = prediction_table(n=60, labeled_fraction=0.2, seed=5)
    write_table(table, tmp_path / "in", "csv")
    env = _env(row.name, CONFIDENCE_THRESHOLD="0.5", K_PER_CLASS="4")
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
    assert set(selected["id"]) <= set(table.loc[table["label"].isna(), "id"])


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
    hints = script.SelectionConfig.__annotations__
    for var in script.ENV_VARS:
        expected = kinds[var.kind]
        assert hints[var.field] in ((expected,) if var.default != "" else (script.Optional[expected],)), var.name
