"""Labeling tasks written by main: a Ground Truth input manifest or Label Studio tasks for every strategy that
selects rows for humans, checked against the tools' documented formats and against the selection itself."""

import argparse
import json
import re
import xml.etree.ElementTree as ElementTree

import numpy as np
import pytest

from conftest import prediction_table, write_table

ACTIVE_LEARNING = ("uncertainty", "diversity", "badge")
CLASS_NAMES = ["0", "1", "2"]

# Ground Truth's input manifest rules, as the Developer Guide states them ("Input manifest files"): UTF-8, one
# complete JSON object per line, at most 100,000 characters per object and 20,000 per attribute, no attribute name
# starting with $, and either source (the text) or source-ref (the S3 object), not both.
GT_MAX_OBJECT = 100000
GT_MAX_ATTRIBUTE = 20000
S3_OBJECT = re.compile(r"^s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]/.+$")


def ground_truth_manifest_problems(raw):
    """Every way ``raw`` (the manifest's bytes) breaks the documented rules; empty when it follows them."""
    problems = []
    for number, line in enumerate(raw.decode("utf-8").split("\n")[:-1], start=1):
        try:
            entry = json.loads(line)
        except ValueError:
            problems.append("line {} is not JSON".format(number))
            continue
        if not isinstance(entry, dict):
            problems.append("line {} is not an object".format(number))
            continue
        if len(line) > GT_MAX_OBJECT:
            problems.append("line {} is over {} characters".format(number, GT_MAX_OBJECT))
        if sum(key in entry for key in ("source", "source-ref")) != 1:
            problems.append("line {} lacks exactly one of source, source-ref".format(number))
        if "source-ref" in entry and not S3_OBJECT.match(entry["source-ref"]):
            problems.append("line {} source-ref is not an S3 object URI".format(number))
        for key, value in entry.items():
            if key.startswith("$"):
                problems.append("line {} attribute {} starts with $".format(number, key))
            if len(json.dumps(value, ensure_ascii=False)) > GT_MAX_ATTRIBUTE:
                problems.append("line {} attribute {} is over {} characters".format(number, key, GT_MAX_ATTRIBUTE))
    if not raw.endswith(b"\n"):
        problems.append("the last line is not terminated")
    return problems


def text_table(n=40, values=None):
    table = prediction_table(n=n, labeled_fraction=0.2)
    table["text"] = values if values is not None else ['review {} said "fine", naïvely'.format(i) for i in range(n)]
    return table


def run_labeling(run, strategy, labeling_format, table=None, fmt="csv", **env):
    table = text_table() if table is None else table
    write_table(table, run.input_dir, fmt)
    environ = {"SELECTION_STRATEGY": strategy, "BATCH_SIZE": "7", "LABEL_FIELD": "label",
               "LABELING_FORMAT": labeling_format, "LABELING_DATA_FIELD": "text"}
    environ.update(env)
    metadata = run.main(environ)
    return table, metadata


def expected_guess(table, ids):
    """The model's top class and its probability for each id, from the input table itself."""
    rows = table.set_index("id").loc[list(ids)]
    probabilities = rows[["prob_class_{}".format(c) for c in range(3)]].to_numpy()
    return [CLASS_NAMES[k] for k in probabilities.argmax(axis=1)], probabilities.max(axis=1)


@pytest.mark.parametrize("strategy", ACTIVE_LEARNING)
def test_ground_truth_manifest_follows_the_selection_in_rank_order(run, strategy):
    table, metadata = run_labeling(run, strategy, "ground_truth")
    selected = run.selected()
    raw = (run.labeling_dir / "ground_truth.manifest").read_bytes()

    assert ground_truth_manifest_problems(raw) == []
    lines = [json.loads(line) for line in raw.decode("utf-8").splitlines()]
    assert len(lines) == len(selected) == metadata["selected_count"] == 7
    assert [line["id"] for line in lines] == selected["id"].tolist()
    assert [line["source"] for line in lines] == table.set_index("id").loc[selected["id"], "text"].tolist()
    assert [line["selection_rank"] for line in lines] == list(range(1, 8))
    np.testing.assert_allclose([line["selection_score"] for line in lines], selected["selection_score"], rtol=1e-12)
    labels, confidence = expected_guess(table, selected["id"])
    assert [line["predicted_label"] for line in lines] == labels
    np.testing.assert_allclose([line["predicted_confidence"] for line in lines], confidence, rtol=1e-12)
    categories = json.loads((run.labeling_dir / "ground_truth_label_categories.json").read_text())
    assert categories == {"document-version": "2018-11-28", "labels": [{"label": c} for c in CLASS_NAMES]}
    assert (run.labeling_dir / "_SUCCESS").exists()
    assert metadata["labeling"] == {"format": "ground_truth", "task_count": 7,
                                    "files": ["ground_truth.manifest", "ground_truth_label_categories.json"]}


@pytest.mark.parametrize("strategy", ACTIVE_LEARNING)
def test_label_studio_tasks_carry_the_model_guess_as_a_prediction(run, strategy):
    table, metadata = run_labeling(run, strategy, "label_studio")
    selected = run.selected()
    tasks = json.loads((run.labeling_dir / "label_studio_tasks.json").read_text(encoding="utf-8"))

    assert [task["data"]["id"] for task in tasks] == selected["id"].tolist()
    assert [task["data"]["text"] for task in tasks] == table.set_index("id").loc[selected["id"], "text"].tolist()
    assert [task["data"]["selection_rank"] for task in tasks] == list(range(1, 8))
    np.testing.assert_allclose([task["data"]["selection_score"] for task in tasks], selected["selection_score"],
                               rtol=1e-12)
    labels, confidence = expected_guess(table, selected["id"])
    for task, label, probability in zip(tasks, labels, confidence):
        assert set(task) == {"data", "predictions"}
        (prediction,) = task["predictions"]
        assert prediction["model_version"] == "active_sampling/" + strategy
        assert prediction["score"] == pytest.approx(probability, rel=1e-12)
        assert prediction["result"] == [{"from_name": "label", "to_name": "text", "type": "choices",
                                         "value": {"choices": [label]}}]
    assert (run.labeling_dir / "_SUCCESS").exists()
    assert metadata["labeling"]["files"] == ["label_studio_config.xml", "label_studio_tasks.json"]


def test_label_studio_config_names_the_shown_field_and_the_score_classes(run):
    run_labeling(run, "uncertainty", "label_studio")
    view = ElementTree.fromstring((run.labeling_dir / "label_studio_config.xml").read_text())
    (shown,) = view.findall("Text")
    (choices,) = view.findall("Choices")
    assert (shown.get("name"), shown.get("value")) == ("text", "$text")
    assert (choices.get("name"), choices.get("toName"), choices.get("choice")) == ("label", "text", "single")
    assert [choice.get("value") for choice in choices.findall("Choice")] == CLASS_NAMES


def test_s3_uris_become_source_ref(run):
    table = text_table(values=["s3://my-bucket/docs/{:03d}.txt".format(i) for i in range(40)])
    run_labeling(run, "badge", "ground_truth", table=table)
    raw = (run.labeling_dir / "ground_truth.manifest").read_bytes()
    assert ground_truth_manifest_problems(raw) == []
    lines = [json.loads(line) for line in raw.decode("utf-8").splitlines()]
    assert all("source" not in line and line["source-ref"].startswith("s3://my-bucket/docs/") for line in lines)


def test_https_uris_are_shown_as_images_in_label_studio(run):
    table = text_table(values=["https://images.example.com/{:03d}.png".format(i) for i in range(40)])
    run_labeling(run, "diversity", "label_studio", table=table)
    view = ElementTree.fromstring((run.labeling_dir / "label_studio_config.xml").read_text())
    (shown,) = view.findall("Image")
    assert (shown.get("name"), shown.get("value"), view.find("Choices").get("toName")) == ("image", "$text", "image")
    tasks = json.loads((run.labeling_dir / "label_studio_tasks.json").read_text())
    assert all(task["predictions"][0]["result"][0]["to_name"] == "image" for task in tasks)


def test_ids_and_texts_come_out_as_the_input_holds_them(run):
    table = text_table()
    table["id"] = ["{:05d}".format(i) for i in range(40)]
    table.loc[0, "text"] = 'line one\nline "two"\ttab, comma; ünïcode'
    table.loc[0, "prob_class_0"], table.loc[0, "prob_class_1"], table.loc[0, "prob_class_2"] = 0.34, 0.33, 0.33
    run_labeling(run, "uncertainty", "ground_truth", table=table, UNCERTAINTY_MODE="least_confidence")
    raw = (run.labeling_dir / "ground_truth.manifest").read_bytes()
    assert ground_truth_manifest_problems(raw) == []
    first = json.loads(raw.decode("utf-8").splitlines()[0])
    assert (first["id"], first["source"]) == ("00000", 'line one\nline "two"\ttab, comma; ünïcode')


def test_parquet_input_with_integer_ids(run):
    table = text_table()
    table["id"] = np.arange(1000, 1040, dtype=np.int64)
    run_labeling(run, "badge", "label_studio", table=table, fmt="parquet")
    tasks = json.loads((run.labeling_dir / "label_studio_tasks.json").read_text())
    assert [task["data"]["id"] for task in tasks] == run.selected()["id"].tolist()
    assert all(isinstance(task["data"]["id"], int) for task in tasks)


def test_without_a_format_the_labeling_folder_is_not_touched(run):
    run.labeling_dir.mkdir(parents=True)
    (run.labeling_dir / "notes.txt").write_text("mine")
    write_table(text_table(), run.input_dir)
    metadata = run.main({"SELECTION_STRATEGY": "uncertainty"})
    assert sorted(p.name for p in run.labeling_dir.iterdir()) == ["notes.txt"]
    assert "labeling" not in metadata


def test_a_format_without_the_labeling_output_path_is_an_error(run, script):
    write_table(text_table(), run.input_dir)
    input_paths, output_paths = run.paths()
    del output_paths["labeling_tasks"]
    with pytest.raises(script.SelectionError, match="LABELING_FORMAT=label_studio needs the output path "
                                                    "'labeling_tasks'"):
        script.main(input_paths, output_paths, {"SELECTION_STRATEGY": "uncertainty", "LABELING_FORMAT": "label_studio",
                                                "LABELING_DATA_FIELD": "text"}, argparse.Namespace(job_type="x"))
    assert (run.samples_dir / "_FAILURE").exists() and (run.metadata_dir / "_FAILURE").exists()


def test_a_failed_run_removes_the_tasks_of_an_earlier_run(run):
    run_labeling(run, "uncertainty", "label_studio")
    assert (run.labeling_dir / "label_studio_tasks.json").exists()
    write_table(text_table(values=[np.nan] * 40), run.input_dir)
    with pytest.raises(ValueError, match="LABELING_DATA_FIELD column 'text' is empty"):
        run.main({"SELECTION_STRATEGY": "uncertainty", "LABELING_FORMAT": "label_studio",
                  "LABELING_DATA_FIELD": "text"})
    assert sorted(p.name for p in run.labeling_dir.iterdir()) == ["_FAILURE"]
    assert run.result_files() == []


def test_the_manifest_checker_catches_what_the_rules_forbid():
    good = {"source": "a text", "id": "1"}
    cases = {
        "both": {"source": "a", "source-ref": "s3://bucket/key", "id": "1"},
        "neither": {"id": "1"},
        "https": {"source-ref": "https://example.com/a.png"},
        "dollar": {"source": "a", "$id": "1"},
        "long": {"source": "x" * 20001},
    }
    assert ground_truth_manifest_problems((json.dumps(good) + "\n").encode()) == []
    for name, entry in cases.items():
        assert ground_truth_manifest_problems((json.dumps(entry) + "\n").encode()) != [], name
    assert ground_truth_manifest_problems(b'{"source": "a"}\n{"source": \n') != []


def test_labeling_folder_shared_with_another_output_is_refused(run, script):
    write_table(text_table(), run.input_dir)
    input_paths, output_paths = run.paths()
    output_paths["labeling_tasks"] = output_paths["selected_samples"]
    with pytest.raises(script.SelectionError, match="selected_samples and labeling_tasks are the same folder"):
        script.main(input_paths, output_paths, {"SELECTION_STRATEGY": "uncertainty", "LABELING_FORMAT": "label_studio",
                                                "LABELING_DATA_FIELD": "text"}, argparse.Namespace(job_type="x"))


def test_tasks_file_no_run_of_this_step_wrote_is_left_alone(run):
    run.labeling_dir.mkdir(parents=True)
    (run.labeling_dir / "label_studio_tasks.json").write_text("[] someone else's")
    with pytest.raises(ValueError, match="already holds label_studio_tasks.json, which no _SUCCESS of this step lists"):
        run_labeling(run, "uncertainty", "label_studio")
    assert (run.labeling_dir / "label_studio_tasks.json").read_text() == "[] someone else's"


def test_a_rerun_replaces_the_tasks_its_success_marker_lists(run):
    run_labeling(run, "uncertainty", "label_studio")
    listed = (run.labeling_dir / "_SUCCESS").read_text().split()
    assert sorted(listed) == ["label_studio_config.xml", "label_studio_tasks.json"]
    run_labeling(run, "badge", "label_studio")
    tasks = json.loads((run.labeling_dir / "label_studio_tasks.json").read_text())
    assert tasks[0]["predictions"][0]["model_version"] == "active_sampling/badge"


def test_a_list_in_the_data_field_is_one_clear_error(run):
    table = text_table()
    table["text"] = [["a", "b"]] * len(table)
    message = r"LABELING_DATA_FIELD column 'text' holds the value \['a',? 'b'\] in the selected row 1"
    with pytest.raises(ValueError, match=message):
        run_labeling(run, "uncertainty", "label_studio", table=table, fmt="parquet")
