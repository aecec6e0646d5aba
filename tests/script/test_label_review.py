"""label_review: the labeled rows whose given label the model doubts, found by confident learning or
self-confidence. Expected values here are derived by hand; tests/test_label_review_cleanlab.py proves
agreement with cleanlab on many random tables (cleanlab is not installed in the legacy environment).
"""

import json

import numpy as np
import pandas as pd
import pytest

from conftest import prediction_table, write_table

# Six labeled rows, two classes (p = [p0, p1]). By hand:
#   thresholds t0 = mean p0 over rows labeled 0 = (0.9 + 0.8 + 0.3) / 3 = 2/3, t1 = (0.8 + 0.9 + 0.4) / 3 = 0.7;
#   confident guesses: r0 -> 0, r1 -> 0, r2 -> 1 (0.7 >= t1 - 1e-6), r3 -> 1, r4 -> 1, r5 none;
#   counts [[2, 1], [0, 2]], calibrated to the label counts (3, 3): [[2, 1], [0, 3]] (1/6 off the diagonal);
#   prune 1 row labeled 0 whose true class is 1: the largest p1 - p0 among r0..r2 is r2. Flagged: r2 only.
#   Self-confidence p[given]: r2 0.3, r5 0.4, r1 0.8, r3 0.8, r0 0.9, r4 0.9 (ties to the earlier row).
HAND_P = np.array([[0.9, 0.1], [0.8, 0.2], [0.3, 0.7], [0.2, 0.8], [0.1, 0.9], [0.6, 0.4]])
HAND_LABELS = np.array([0, 0, 0, 1, 1, 1])
HAND_TEXT = ["0", "0", "0", "1", "1.0", " 1"]  # how the labels are written in the csv (1.0 and " 1" are class 1)
UNLABELED_P = np.array([[0.5, 0.5], [0.05, 0.95]])


def hand_table():
    probabilities = np.vstack([HAND_P, UNLABELED_P])
    return pd.DataFrame({"id": ["r{}".format(i) for i in range(8)], "prob_class_0": probabilities[:, 0],
                         "prob_class_1": probabilities[:, 1], "label": HAND_TEXT + ["", ""],
                         "text": ["text {}".format(i) for i in range(8)]})


def review_env(**extra):
    return {"SELECTION_STRATEGY": "label_review", "LABEL_FIELD": "label", "BATCH_SIZE": "4", **extra}


def test_confident_learning_by_hand(script):
    issues = script.find_label_issues(HAND_P, HAND_LABELS)
    assert issues.flagged.tolist() == [False, False, True, False, False, False]
    np.testing.assert_allclose(issues.thresholds, [2 / 3, 0.7])
    assert issues.joint.tolist() == [[2, 1], [0, 3]]
    assert issues.estimated_issue_share == pytest.approx(1 / 6)


def test_self_confidence_ranks_every_labeled_row_lowest_first(script):
    selection = script.label_review_selection(HAND_P, HAND_LABELS, 6, "self_confidence")
    assert selection.indices.tolist() == [2, 5, 1, 3, 0, 4]
    np.testing.assert_allclose(selection.scores, [0.7, 0.6, 0.2, 0.2, 0.1, 0.1])


def test_confident_learning_selects_fewer_when_fewer_are_flagged(script):
    selection = script.label_review_selection(HAND_P, HAND_LABELS, 4, "confident_learning")
    assert selection.indices.tolist() == [2]
    assert selection.facts["flagged_count"] == 1 and selection.facts["labeled_rows"] == 6


def test_main_reviews_labeled_rows_only_and_keeps_the_given_label_byte_for_byte(run, script):
    write_table(hand_table(), run.input_dir)
    metadata = run.main(review_env(REVIEW_METHOD="self_confidence"))
    text = (run.samples_dir / "selected_samples.csv").read_text().splitlines()
    assert text[0] == "id,prob_class_0,prob_class_1,label,text,selection_score,selection_rank,data_source," \
                      "predicted_label,predicted_confidence,suggested_label"
    rows = [line.split(",") for line in text[1:]]
    assert [row[0] for row in rows] == ["r2", "r5", "r1", "r3"]
    assert [row[3] for row in rows] == ["0", " 1", "0", "1"]  # as written, " 1" included
    assert [row[10] for row in rows] == ["1", "0", "0", "1"]  # suggested_label: the model's top class
    assert [row[8] for row in rows] == [row[10] for row in rows]  # the same guess as predicted_label
    assert [float(row[5]) for row in rows] == pytest.approx([0.7, 0.6, 0.2, 0.2])
    assert metadata["candidate_count"] == 6 and metadata["labeled_count"] == 6 and metadata["pool_size"] == 8
    assert metadata["review"] == {"method": "self_confidence", "labeled_rows": 6}


def test_main_confident_learning_reports_flags_and_estimated_share(run, script):
    write_table(hand_table(), run.input_dir, "parquet")
    metadata = run.main(review_env())
    selected = run.selected()
    assert selected["id"].tolist() == ["r2"]
    assert selected["suggested_label"].tolist() == [1]
    review = metadata["review"]
    assert review["flagged_count"] == 1 and review["estimated_issue_share"] == pytest.approx(1 / 6)
    assert review["thresholds"] == pytest.approx([2 / 3, 0.7])
    assert metadata["selected_count"] == 1


def test_integer_labels_of_a_parquet_table_and_text_classes(script):
    table = pd.DataFrame({"id": [1, 2, 3], "prob_class_cat": [0.9, 0.2, 0.6], "prob_class_dog": [0.1, 0.8, 0.4],
                          "label": ["dog", "dog", " cat "]})
    config = script.parse_environment(review_env(REVIEW_METHOD="self_confidence"))
    pool = script.pool_from_frame(table, config)
    assert pool.given.tolist() == [1, 1, 0]
    result = script.select_samples(table, "label_review", 2, {"label_field": "label",
                                                              "review_method": "self_confidence"})
    assert result["id"].tolist() == [1, 3] and result["suggested_label"].tolist() == ["cat", "cat"]
    assert result["label"].tolist() == ["dog", " cat "]


@pytest.mark.parametrize("value, position", [(1, 1), (1.0, 1), ("1", 1), ("01", 1), (" 2 ", 2), ("2.0", 2),
                                             (np.int64(0), 0)])
def test_label_values_that_name_an_integer_class(script, value, position):
    labels = pd.Series([value], dtype=object)
    assert script.given_class_positions(labels, np.array([True]), [0, 1, 2], "label").tolist() == [position]


@pytest.mark.parametrize("value", [True, 1.5, "1.5", "one", "3", -1, "1e0"])
def test_label_values_that_name_no_class_are_an_error(script, value):
    labels = pd.Series(["0", value], dtype=object)
    with pytest.raises(script.SelectionError) as caught:
        script.given_class_positions(labels, np.array([True, True]), [0, 1, 2], "label")
    assert "LABEL_FIELD 'label' holds {!r} in row 2 of the table".format(value) in str(caught.value)


def test_an_unknown_label_names_the_file_and_its_row(run, script):
    table = hand_table()
    write_table(table.iloc[:4], run.input_dir, name="part-0")
    write_table(table.iloc[4:].assign(label=["1", "2", "", ""]), run.input_dir, name="part-1")
    with pytest.raises(script.SelectionError) as caught:
        run.main(review_env())
    message = str(caught.value)
    assert "holds '2' in row 2 of {}".format(run.input_dir / "part-1.csv") in message
    assert "names none of the score columns' classes (0, 1)" in message


def test_an_unknown_label_in_parquet_names_the_file_and_its_row(run, script):
    table = hand_table().assign(label=[0, 0, 0, 1, 1, 1, None, None])
    table["label"] = table["label"].astype("Int64")
    table.loc[1, "label"] = 5
    write_table(table, run.input_dir, "parquet")
    with pytest.raises(script.SelectionError, match=r"holds 5 in row 2 of .*predictions.parquet"):
        run.main(review_env())


def test_label_review_without_label_field_or_labeled_rows(run, script):
    with pytest.raises(script.SelectionError, match="needs LABEL_FIELD=<column>"):
        script.parse_environment({"SELECTION_STRATEGY": "label_review"})
    write_table(hand_table().assign(label=""), run.input_dir)
    with pytest.raises(script.SelectionError, match="none of the 8 rows has LABEL_FIELD 'label' filled"):
        run.main(review_env())


def test_one_given_class_flags_nothing(script, caplog):
    probabilities = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]])
    selection = script.label_review_selection(probabilities, np.zeros(3, dtype=np.int64), 3)
    assert selection.indices.size == 0 and selection.facts["flagged_count"] == 0
    assert any("same given label" in record.getMessage() for record in caplog.records)


def test_a_class_with_one_row_is_never_pruned(script):
    # Row 3 is the only row labeled 1 and the model is sure it is a 0: a class keeps at least one row.
    probabilities = np.array([[0.9, 0.1], [0.8, 0.2], [0.7, 0.3], [0.95, 0.05]])
    issues = script.find_label_issues(probabilities, np.array([0, 0, 0, 1]))
    assert not issues.flagged.any()


def test_the_sampler_validates_at_use_and_returns_ids(script):
    sampler = script.LabelReviewSampler(method="margin")  # stored, not checked
    with pytest.raises(ValueError, match="method must be one of confident_learning, self_confidence"):
        sampler.select_batch(HAND_P, HAND_LABELS, 2)
    sampler = script.LabelReviewSampler(method="self_confidence")
    ids = np.array(["a", "b", "c", "d", "e", "f"])
    assert sampler.select_batch(HAND_P, HAND_LABELS, 2, indices=ids).tolist() == ["c", "f"]
    assert sampler.select_batch(HAND_P, HAND_LABELS, 2).tolist() == [2, 5]
    with pytest.raises(ValueError, match="indices has 2 entries but probabilities has 6 rows"):
        sampler.select_batch(HAND_P, HAND_LABELS, 2, indices=[0, 1])
    with pytest.raises(ValueError, match=r"class positions in \[0, 2\)"):
        sampler.select_batch(HAND_P, np.array([0, 0, 0, 1, 1, 2]), 2)
    np.testing.assert_allclose(sampler.compute_scores(HAND_P, HAND_LABELS), 1 - HAND_P[np.arange(6), HAND_LABELS])
    assert script.LabelReviewSampler().find_label_issues(HAND_P, HAND_LABELS).tolist() == [
        False, False, True, False, False, False]


def test_unlabeled_rows_are_never_selected_on_a_larger_table(script):
    table = prediction_table(n=200, labeled_fraction=0.3, seed=3)
    labeled = table["label"].notna()
    table.loc[labeled & (np.arange(200) % 4 == 0), "label"] = "2"  # some labels now disagree with the model
    result = script.select_samples(table, "label_review", 50, {"label_field": "label"})
    assert len(result) > 0 and result["label"].notna().all()
    assert set(result["id"]) <= set(table.loc[labeled, "id"])
    assert (result["selection_score"].diff().dropna() <= 0).all()


def test_ground_truth_tasks_show_the_given_label_and_the_suggestion(run, script):
    write_table(hand_table(), run.input_dir)
    run.main(review_env(REVIEW_METHOD="self_confidence", LABELING_FORMAT="ground_truth",
                        LABELING_DATA_FIELD="text"))
    lines = [json.loads(line) for line in (run.labeling_dir / "ground_truth.manifest").read_text().splitlines()]
    assert [(line["id"], line["given_label"], line["predicted_label"]) for line in lines] == [
        ("r2", "0", "1"), ("r5", " 1", "0"), ("r1", "0", "0"), ("r3", "1", "1")]


def test_label_studio_tasks_show_the_given_label_and_preselect_the_suggestion(run, script):
    write_table(hand_table(), run.input_dir)
    run.main(review_env(REVIEW_METHOD="self_confidence", LABELING_FORMAT="label_studio",
                        LABELING_DATA_FIELD="text", BATCH_SIZE="1"))
    tasks = json.loads((run.labeling_dir / "label_studio_tasks.json").read_text())
    assert tasks[0]["data"]["given_label"] == "0" and tasks[0]["data"]["id"] == "r2"
    assert tasks[0]["predictions"][0]["result"][0]["value"]["choices"] == ["1"]
    assert '<Header value="Given label: $given_label"/>' in (run.labeling_dir / "label_studio_config.xml").read_text()


def test_other_strategies_write_no_given_label(run, script):
    write_table(hand_table(), run.input_dir)
    run.main({"SELECTION_STRATEGY": "uncertainty", "LABEL_FIELD": "label", "BATCH_SIZE": "1",
              "LABELING_FORMAT": "label_studio", "LABELING_DATA_FIELD": "text"})
    tasks = json.loads((run.labeling_dir / "label_studio_tasks.json").read_text())
    assert "given_label" not in tasks[0]["data"] and "suggested_label" not in run.selected().columns
    assert "Given label" not in (run.labeling_dir / "label_studio_config.xml").read_text()


def noisy_parts(n_files=6, rows=40, seed=4):
    """Part files with labels on 60% of the rows, a fifth of them wrong, and probabilities on a coarse grid
    (ties in every score)."""
    rng = np.random.default_rng(seed)
    table = prediction_table(n=n_files * rows, n_classes=3, seed=seed)
    levels = np.array([[0.8, 0.1, 0.1], [0.1, 0.8, 0.1], [0.45, 0.45, 0.1], [0.6, 0.3, 0.1], [0.3, 0.1, 0.6]])
    chosen = levels[rng.integers(0, len(levels), size=len(table))]
    for c in range(3):
        table["prob_class_{}".format(c)] = chosen[:, c]
    top = chosen.argmax(axis=1)
    wrong = rng.random(len(table)) < 0.2
    labels = np.where(wrong, (top + rng.integers(1, 3, size=len(table))) % 3, top).astype(str)
    table["label"] = pd.Series(np.where(rng.random(len(table)) < 0.6, labels, None), dtype=object)
    return [table.iloc[i * rows:(i + 1) * rows].reset_index(drop=True) for i in range(n_files)]


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
@pytest.mark.parametrize("method", ["confident_learning", "self_confidence"])
@pytest.mark.parametrize("n_shards", [1, 3, 7])
def test_sharded_label_review_matches_a_single_run_byte_for_byte(tmp_path, fmt, method, n_shards):
    import sharding as sim

    pool_dir = tmp_path / "pool"
    relatives = sim.write_parts(noisy_parts(), pool_dir, fmt)
    env = review_env(REVIEW_METHOD=method, BATCH_SIZE="15")
    single_metadata, single_out = sim.single(pool_dir, tmp_path, env)
    merged_metadata, merged_out = sim.sharded(pool_dir, relatives, tmp_path, n_shards, env)
    assert sim.selected_file(merged_out).read_bytes() == sim.selected_file(single_out).read_bytes()
    for key in ("pool_size", "labeled_count", "candidate_count", "selected_count", "review"):
        assert merged_metadata[key] == single_metadata[key], key
    assert merged_metadata["sharding"]["guarantee"].startswith("exact")
    selected = sim.selected_frame(single_out)
    assert len(selected) == 15 and selected["selection_score"].duplicated().any()


def test_select_samples_without_labeled_rows_returns_an_empty_frame(script, caplog):
    table = hand_table().assign(label="")
    result = script.select_samples(table, "label_review", 3, {"label_field": "label"})
    assert len(result) == 0 and list(result.columns)[-6:] == ["selection_score", "selection_rank", "data_source",
                                                              "predicted_label", "predicted_confidence",
                                                              "suggested_label"]
    assert any("none of the 8 rows has label_field 'label' filled" in record.getMessage()
               for record in caplog.records)
