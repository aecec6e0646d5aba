"""Reading answers back: Label Studio JSON exports and Ground Truth output manifests to an id,label table.

The exports below are written by hand in the shapes the tools document (Label Studio's JSON export: tasks with
``data`` and ``annotations`` whose ``result`` holds ``choices``; Ground Truth's output manifest for text
classification: ``<attribute>`` and ``<attribute>-metadata`` with ``class-name``), not produced by our code.
"""

import json

import pandas as pd
import pytest

from active_sampling.labeling import (
    CONFLICTING,
    MISSING,
    NOT_RETURNED,
    LabelReadError,
    read_ground_truth_manifest,
    read_label_studio_export,
    read_sent_ids,
)
from active_sampling.labeling.__main__ import main as cli_main


def choice(label, from_name="label", to_name="text"):
    return {"id": "r1", "from_name": from_name, "to_name": to_name, "type": "choices", "origin": "manual",
            "value": {"choices": [label] if isinstance(label, str) else label}}


def annotation(*results, cancelled=False, annotator=1):
    return {"id": 10, "completed_by": annotator, "result": list(results), "was_cancelled": cancelled,
            "ground_truth": False, "lead_time": 3.2}


def task(row_id, *annotations, text="some text"):
    prediction = {"model_version": "active_sampling", "score": 0.4, "result": [choice("cat")]}
    return {"id": 100, "data": {"text": text, "id": row_id, "selection_rank": 1}, "annotations": list(annotations),
            "predictions": [prediction], "meta": {}, "project": 1}


def rows(frame):
    return [tuple(row) for row in frame.itertuples(index=False)]


def problems(result):
    return {row_id: problem for row_id, problem in zip(result.problems["id"], result.problems["problem"])}


def test_label_studio_agreeing_answers_become_labels_and_ids_keep_their_text():
    export = [
        task("007", annotation(choice("dog"))),
        task("8", annotation(choice("cat"), annotator=1), annotation(choice("cat"), annotator=2)),
        task(9, annotation(choice("bird"))),
    ]
    result = read_label_studio_export(export)
    assert rows(result.labels) == [("007", "dog"), ("8", "cat"), (9, "bird")]
    assert result.problems.empty


def test_label_studio_disagreement_skip_and_no_annotation_are_reported_not_guessed():
    export = [
        task("a", annotation(choice("dog"), annotator=1), annotation(choice("cat"), annotator=2)),
        task("b", annotation(cancelled=True)),
        task("c"),
        task("d", annotation(choice(["dog", "cat"]))),
        task("e", annotation()),
        task("f", annotation(choice("dog"))),
    ]
    result = read_label_studio_export(export)
    assert rows(result.labels) == [("f", "dog")]
    assert problems(result) == {"a": CONFLICTING, "b": MISSING, "c": MISSING, "d": CONFLICTING, "e": MISSING}
    conflict = result.problems.set_index("id").loc["a"]
    assert conflict["answers"] == "dog|cat"
    assert "skipped" in result.problems.set_index("id").loc["b", "detail"]


def test_label_studio_skip_next_to_an_answer_keeps_the_answer():
    export = [task("a", annotation(cancelled=True, annotator=1), annotation(choice("dog"), annotator=2))]
    assert rows(read_label_studio_export(export).labels) == [("a", "dog")]


def test_label_studio_same_id_imported_twice_with_different_answers_conflicts():
    export = [task("a", annotation(choice("dog"))), task("a", annotation(choice("cat")))]
    result = read_label_studio_export(export)
    assert result.labels.empty
    assert problems(result) == {"a": CONFLICTING}


def test_label_studio_predictions_are_not_answers():
    result = read_label_studio_export([task("a")])
    assert result.labels.empty
    assert problems(result) == {"a": MISSING}


def test_label_studio_sent_but_not_exported_ids_are_reported():
    result = read_label_studio_export([task("a", annotation(choice("dog")))], expected_ids=["a", "b"])
    assert rows(result.labels) == [("a", "dog")]
    assert problems(result) == {"b": NOT_RETURNED}


def test_label_studio_several_choices_controls_need_from_name():
    export = [task("a", annotation(choice("dog", from_name="label"), choice("blurry", from_name="quality")))]
    with pytest.raises(LabelReadError, match="several choices controls.*from_name"):
        read_label_studio_export(export)
    assert rows(read_label_studio_export(export, from_name="quality").labels) == [("a", "blurry")]


def test_label_studio_task_without_the_id_is_an_error_naming_it():
    export = [task("a", annotation(choice("dog"))), {"id": 55, "data": {"text": "x"}, "annotations": []}]
    with pytest.raises(LabelReadError, match=r"task 1 \(Label Studio id 55\) has no data.id"):
        read_label_studio_export(export)


def test_label_studio_custom_id_and_label_names(tmp_path):
    export = [{"id": 1, "data": {"doc_id": "x1", "text": "t"}, "annotations": [annotation(choice("spam"))]}]
    path = tmp_path / "export.json"
    path.write_text(json.dumps(export))
    result = read_label_studio_export(path, id_field="doc_id", label_field="is_spam")
    assert list(result.labels.columns) == ["doc_id", "is_spam"]
    assert rows(result.labels) == [("x1", "spam")]


def test_label_studio_export_that_is_not_a_list_is_an_error(tmp_path):
    path = tmp_path / "export.json"
    path.write_text(json.dumps({"text": "min export"}))
    with pytest.raises(LabelReadError, match="not a Label Studio JSON export"):
        read_label_studio_export(path)


def gt_line(row_id, class_name, attribute="mood", **extra):
    line = {"source": "The food was delicious", "id": row_id, "selection_rank": 1, attribute: 1,
            attribute + "-metadata": {"class-name": class_name, "job-name": "labeling-job/" + attribute,
                                      "confidence": 0.8, "type": "groundtruth/text-classification",
                                      "human-annotated": "yes", "creation-date": "2018-10-18T22:18:13.527256"}}
    line.update(extra)
    return line


def write_lines(path, lines):
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return path


def test_ground_truth_text_classification_output_manifest(tmp_path):
    manifest = write_lines(tmp_path / "output.manifest", [gt_line("007", "positive"), gt_line("8", "negative")])
    result = read_ground_truth_manifest(manifest)
    assert rows(result.labels) == [("007", "positive"), ("8", "negative")]
    assert result.problems.empty


def test_ground_truth_failed_and_unlabeled_objects_are_missing(tmp_path):
    failed = {"source": "x", "id": "b", "mood-metadata": {"retry-count": 1, "failure-reason": "ClientError: expired",
                                                          "human-annotated": "yes"}}
    unlabeled = {"source": "y", "id": "c"}
    manifest = write_lines(tmp_path / "output.manifest", [gt_line("a", "positive"), failed, unlabeled])
    result = read_ground_truth_manifest(manifest, expected_ids=["a", "b", "c", "d"])
    assert rows(result.labels) == [("a", "positive")]
    assert problems(result) == {"b": MISSING, "c": MISSING, "d": NOT_RETURNED}
    assert "expired" in result.problems.set_index("id").loc["b", "detail"]


def test_ground_truth_duplicate_id_with_different_classes_conflicts(tmp_path):
    manifest = write_lines(tmp_path / "output.manifest", [gt_line("a", "positive"), gt_line("a", "negative")])
    result = read_ground_truth_manifest(manifest)
    assert result.labels.empty
    assert problems(result) == {"a": CONFLICTING}


def test_ground_truth_chained_jobs_need_the_label_attribute(tmp_path):
    line = gt_line("a", "positive")
    line.update({"topic": 0, "topic-metadata": {"class-name": "food", "type": "groundtruth/text-classification"}})
    manifest = write_lines(tmp_path / "output.manifest", [line])
    with pytest.raises(LabelReadError, match="several jobs.*label_attribute"):
        read_ground_truth_manifest(manifest)
    assert rows(read_ground_truth_manifest(manifest, label_attribute="topic").labels) == [("a", "food")]


def test_ground_truth_line_that_is_not_json_is_named(tmp_path):
    path = tmp_path / "output.manifest"
    path.write_text(json.dumps(gt_line("a", "positive")) + "\n{not json\n")
    with pytest.raises(LabelReadError, match="line 2 is not JSON"):
        read_ground_truth_manifest(path)


def test_ground_truth_line_without_the_id_is_named(tmp_path):
    manifest = write_lines(tmp_path / "output.manifest", [gt_line("a", "positive"), {"source": "x"}])
    with pytest.raises(LabelReadError, match="line 2: no 'id' attribute"):
        read_ground_truth_manifest(manifest)


def test_sent_ids_from_a_tasks_file_and_from_a_manifest(tmp_path):
    tasks = tmp_path / "tasks.json"
    tasks.write_text(json.dumps([{"data": {"id": "a"}}, {"data": {"id": 2}}]))
    manifest = write_lines(tmp_path / "input.manifest", [{"source": "x", "id": "a"}, {"source": "y", "id": 2}])
    assert read_sent_ids(tasks) == ["a", 2]
    assert read_sent_ids(manifest) == ["a", 2]


def test_cli_writes_the_labels_and_exits_0_when_complete(tmp_path, capsys):
    export = tmp_path / "export.json"
    export.write_text(json.dumps([task("007", annotation(choice("dog")))]))
    output = tmp_path / "out" / "labels.csv"
    assert cli_main(["label-studio", str(export), "--output", str(output)]) == 0
    assert output.read_text() == "id,label\n007,dog\n"
    assert "1 label(s) written" in capsys.readouterr().out


def test_cli_reports_problems_and_exits_1_unless_allowed(tmp_path, capsys):
    manifest = write_lines(tmp_path / "output.manifest", [gt_line("a", "positive"), gt_line("b", "x"),
                                                          gt_line("b", "y")])
    sent = write_lines(tmp_path / "input.manifest", [{"source": "s", "id": key} for key in ("a", "b", "c")])
    output, report = tmp_path / "labels.csv", tmp_path / "problems.csv"
    argv = ["ground-truth", str(manifest), "--output", str(output), "--tasks", str(sent), "--problems", str(report)]
    assert cli_main(argv) == 1
    stderr = capsys.readouterr().err
    assert "2 id(s) left out" in stderr and "id=b: conflicting x|y" in stderr and "id=c: not_returned" in stderr
    assert output.read_text() == "id,label\na,positive\n"
    assert pd.read_csv(report)["problem"].tolist() == [CONFLICTING, NOT_RETURNED]
    assert cli_main(argv + ["--allow-problems"]) == 0


def test_cli_unreadable_export_exits_2_with_one_line(tmp_path, capsys):
    path = tmp_path / "export.json"
    path.write_text("{")
    assert cli_main(["label-studio", str(path), "--output", str(tmp_path / "labels.csv")]) == 2
    assert capsys.readouterr().err.startswith("error: cannot read")
    assert not (tmp_path / "labels.csv").exists()


def test_cli_unwritable_output_exits_2_with_one_line(tmp_path, capsys):
    export = tmp_path / "export.json"
    export.write_text(json.dumps([task("a", annotation(choice("dog")))]))
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    assert cli_main(["label-studio", str(export), "--output", str(blocker / "labels.csv")]) == 2
    assert capsys.readouterr().err.startswith("error: cannot write")
