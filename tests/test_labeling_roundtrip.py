"""From the tasks the script writes to the id,label table the reader returns, for Ground Truth.

Ground Truth cannot run here, so its output manifest is made the way the Developer Guide describes it ("Labeling
job output data"): every input manifest line unchanged, plus the label attribute (the class index) and
``<attribute>-metadata`` with ``class-name``, ``confidence``, ``type: groundtruth/text-classification``,
``job-name``, ``human-annotated`` and ``creation-date``; an object whose task failed carries ``failure-reason``
instead of a label.
"""

import argparse
import json

import numpy as np
import pandas as pd

from active_sampling.labeling import CONFLICTING, MISSING, NOT_RETURNED, read_ground_truth_manifest, read_sent_ids
from active_sampling.labeling.__main__ import main as labels_cli
from active_sampling.scripts import active_sample_selection as script

CLASSES = ["0", "1", "2"]


def write_selection(root, labeling_format):
    rng = np.random.default_rng(5)
    n = 50
    probabilities = rng.dirichlet(np.ones(3), size=n)
    table = pd.DataFrame({"id": ["{:04d}".format(i) for i in range(n)],
                          "text": ["support ticket {}".format(i) for i in range(n)]})
    for k in range(3):
        table["prob_class_{}".format(k)] = probabilities[:, k]
    for d in range(4):
        table["emb_{}".format(d)] = rng.normal(size=n)
    (root / "input").mkdir()
    table.to_csv(root / "input" / "predictions.csv", index=False)
    outputs = {channel: str(root / channel) for channel in script.CONTAINER_OUTPUT_PATHS}
    script.main({script.INPUT_CHANNEL: str(root / "input")}, outputs,
                {"SELECTION_STRATEGY": "badge", "BATCH_SIZE": "6", "LABELING_FORMAT": labeling_format,
                 "LABELING_DATA_FIELD": "text"}, argparse.Namespace(job_type="round_1"))
    return root / script.LABELING_CHANNEL


def ground_truth_output(input_lines, answers, job="ticket-topic"):
    """Output manifest lines for ``answers`` (class name, or None for a task that expired)."""
    output = []
    for line, answer in zip(input_lines, answers):
        entry = dict(line)
        if answer is None:
            entry[job + "-metadata"] = {"retry-count": 1, "failure-reason": "ClientError: task expired",
                                        "human-annotated": "yes"}
        else:
            entry[job] = CLASSES.index(answer)
            entry[job + "-metadata"] = {"class-name": answer, "job-name": "labeling-job/" + job, "confidence": 0.91,
                                        "type": "groundtruth/text-classification", "human-annotated": "yes",
                                        "creation-date": "2026-11-21T10:00:00.000000"}
        output.append(json.dumps(entry))
    return "\n".join(output) + "\n"


def test_ground_truth_output_manifest_reads_back_to_id_label(tmp_path):
    folder = write_selection(tmp_path, "ground_truth")
    manifest = folder / script.GROUND_TRUTH_MANIFEST
    sent = [json.loads(line) for line in manifest.read_text(encoding="utf-8").splitlines()]
    answers = ["2", "0", "1", "1", None]  # the sixth object never came back
    output = tmp_path / "output.manifest"
    output.write_text(ground_truth_output(sent[:5], answers), encoding="utf-8")

    result = read_ground_truth_manifest(output, expected_ids=read_sent_ids(manifest))

    ids = [line["id"] for line in sent]
    assert list(zip(result.labels["id"], result.labels["label"])) == list(zip(ids[:4], answers[:4]))
    assert dict(zip(result.problems["id"], result.problems["problem"])) == {ids[4]: MISSING, ids[5]: NOT_RETURNED}


def test_two_jobs_disagreeing_on_an_object_is_a_conflict_in_the_table_command(tmp_path):
    folder = write_selection(tmp_path, "ground_truth")
    manifest = folder / script.GROUND_TRUTH_MANIFEST
    sent = [json.loads(line) for line in manifest.read_text(encoding="utf-8").splitlines()]
    first = ground_truth_output(sent, ["0", "1", "2", "0", "1", "2"])
    again = ground_truth_output(sent[:1], ["2"])
    output = tmp_path / "output.manifest"
    output.write_text(first + again, encoding="utf-8")
    labels, problems = tmp_path / "labels.csv", tmp_path / "problems.csv"

    code = labels_cli(["ground-truth", str(output), "--tasks", str(manifest), "--output", str(labels),
                       "--problems", str(problems)])

    assert code == 1
    table = pd.read_csv(labels, dtype=str)
    assert table["id"].tolist() == [line["id"] for line in sent[1:]]  # ids keep their leading zeros
    assert table["label"].tolist() == ["1", "2", "0", "1", "2"]
    report = pd.read_csv(problems, dtype=str)
    assert report.values.tolist() == [[sent[0]["id"], CONFLICTING, "0|2", "0 x1, 2 x1"]]


def test_label_categories_match_the_classes_ground_truth_will_answer_with(tmp_path):
    folder = write_selection(tmp_path, "ground_truth")
    categories = json.loads((folder / script.GROUND_TRUTH_CATEGORIES).read_text())
    assert [item["label"] for item in categories["labels"]] == CLASSES
