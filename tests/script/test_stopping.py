"""The stopping block: Cohen's kappa against previous_predictions, margin uncertainty, the STOP_* criteria.

Expected values are computed by hand in the comments; sklearn's cohen_kappa_score is the oracle on random
inputs in tests/test_stopping_oracle.py (sklearn is not in the legacy environment).
"""

import argparse
import json
import logging
import shutil

import numpy as np
import pandas as pd
import pytest

from conftest import script_module as script
from sharding import resource_config

AL = {"SELECTION_STRATEGY": "uncertainty", "BATCH_SIZE": "2", "LABEL_FIELD": "label"}

# This round: a..f; c is labeled now. Margin uncertainty 1 - (p1 - p2) of the candidates a, b, d, e, f:
# 0.2, 0.4, 0.8, 0.8, 0.4 -> mean 2.6 / 5 = 0.52, max 0.8.
CURRENT = pd.DataFrame({
    "id": ["a", "b", "c", "d", "e", "f"],
    "prob_class_0": [0.9, 0.8, 0.3, 0.4, 0.6, 0.2],
    "prob_class_1": [0.1, 0.2, 0.7, 0.6, 0.4, 0.8],
    "label": [None, None, "1", None, None, None],
})
# Last round: b..g, its columns in the other class order. Predicted: b 0, c 0, d 0, e 0, f 1, g 1.
PREVIOUS = pd.DataFrame({
    "id": ["b", "c", "d", "e", "f", "g"],
    "prob_class_1": [0.3, 0.2, 0.45, 0.1, 0.9, 0.7],
    "prob_class_0": [0.7, 0.8, 0.55, 0.9, 0.1, 0.3],
})
# Common and unlabeled now: b, d, e, f (a is new, c is labeled now, g is gone).
# previous b0 d0 e0 f1, current b0 d1 e0 f1: confusion [[2, 1], [0, 1]], p_o = 3/4,
# p_e = (3 * 2 + 1 * 2) / 16 = 1/2, kappa = (3/4 - 1/2) / (1 - 1/2) = 0.5.
HAND_KAPPA = 0.5


def write(table, folder, fmt="csv"):
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "predictions.{}".format(fmt)
    if fmt == "parquet":
        table.to_parquet(str(path), index=False)
    else:
        table.to_csv(str(path), index=False)
    return folder


def run_main(tmp_path, environ, current=CURRENT, previous=PREVIOUS, fmt="csv"):
    inputs = {"evaluation_data": str(write(current, tmp_path / "current", fmt))}
    if previous is not None:
        inputs["previous_predictions"] = str(write(previous, tmp_path / "previous", fmt))
    outputs = {"selected_samples": str(tmp_path / "out" / "samples"),
               "selection_metadata": str(tmp_path / "out" / "metadata")}
    return script.main(inputs, outputs, dict(environ), argparse.Namespace(job_type="round"))


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_block_against_hand_computation(tmp_path, fmt):
    block = run_main(tmp_path, AL, fmt=fmt)["stopping"]
    assert block["prediction_agreement"] == pytest.approx(HAND_KAPPA, abs=1e-12)
    assert block["common_rows"] == 4
    assert block["mean_uncertainty"] == pytest.approx(0.52, abs=1e-12)
    assert block["max_uncertainty"] == pytest.approx(0.8, abs=1e-12)
    assert block["labeled_count"] == 1
    assert block["should_stop"] is False and block["reasons"] == []
    assert "note" not in block
    written = json.loads((tmp_path / "out" / "metadata" / "selection_metadata.json").read_text())
    assert written["stopping"] == block


def test_block_without_previous_table(tmp_path):
    block = run_main(tmp_path, AL, previous=None)["stopping"]
    assert block["prediction_agreement"] is None and block["common_rows"] == 0
    assert "no previous_predictions given" in block["note"]
    assert block["mean_uncertainty"] == pytest.approx(0.52, abs=1e-12)
    assert block["should_stop"] is False  # STOP_AGREEMENT is on by default but has nothing to measure


@pytest.mark.parametrize("setting, value, stops", [
    ("STOP_AGREEMENT", "0.5", True),  # kappa 0.5 >= 0.5
    ("STOP_AGREEMENT", "0.51", False),
    ("STOP_AGREEMENT", "0", False),  # off
    ("STOP_MAX_LABELED", "1", True),  # one labeled row >= 1
    ("STOP_MAX_LABELED", "2", False),
    ("STOP_MAX_LABELED", "0", False),  # off
    ("STOP_MAX_UNCERTAINTY", "0.81", True),  # max 0.8 < 0.81
    ("STOP_MAX_UNCERTAINTY", "0.79", False),
    ("STOP_MAX_UNCERTAINTY", "0", False),  # off
])
def test_each_criterion_on_and_off(tmp_path, setting, value, stops):
    block = run_main(tmp_path, dict(AL, **{setting: value}))["stopping"]
    assert block["should_stop"] is stops
    assert [reason.split(":")[0] for reason in block["reasons"]] == ([setting] if stops else [])
    assert block["criteria"][setting] == float(value)


def test_all_criteria_off_never_stops_even_on_full_agreement(tmp_path):
    environ = dict(AL, STOP_AGREEMENT="0", STOP_MAX_LABELED="0", STOP_MAX_UNCERTAINTY="0")
    block = run_main(tmp_path, environ, previous=CURRENT.drop(columns="label"))["stopping"]
    assert block["prediction_agreement"] == 1.0  # same predictions: b0 d1 e0 f1 and a0 twice
    assert block["should_stop"] is False and block["reasons"] == []


def test_several_criteria_met_are_all_reasons(tmp_path):
    environ = dict(AL, STOP_AGREEMENT="0.4", STOP_MAX_LABELED="1", STOP_MAX_UNCERTAINTY="0.9")
    block = run_main(tmp_path, environ)["stopping"]
    assert [reason.split(":")[0] for reason in block["reasons"]] == [
        "STOP_AGREEMENT", "STOP_MAX_LABELED", "STOP_MAX_UNCERTAINTY"]


def test_stopping_never_changes_the_selection(tmp_path):
    plain = run_main(tmp_path / "plain", AL, previous=None)
    signalled = run_main(tmp_path / "stop", dict(AL, STOP_AGREEMENT="0.1", STOP_MAX_LABELED="1"))
    assert signalled["stopping"]["should_stop"] is True
    frames = [pd.read_csv(str(root / "out" / "samples" / "selected_samples.csv")) for root in
              (tmp_path / "plain", tmp_path / "stop")]
    pd.testing.assert_frame_equal(frames[0], frames[1])
    assert plain["selected_count"] == signalled["selected_count"] == 2


def test_no_common_ids_is_null_with_a_note_and_a_warning(tmp_path, caplog):
    previous = PREVIOUS.assign(id=["x{}".format(i) for i in range(len(PREVIOUS))])
    with caplog.at_level(logging.WARNING, logger="active_sample_selection"):
        block = run_main(tmp_path, AL, previous=previous)["stopping"]
    assert block["prediction_agreement"] is None and block["common_rows"] == 0
    assert "no id of previous_predictions" in block["note"]
    assert any("no id of previous_predictions" in record.getMessage() for record in caplog.records)


def test_labeled_rows_are_left_out_of_the_agreement(tmp_path):
    # Label b, d, e and f now: no common unlabeled id remains.
    current = CURRENT.assign(label=["", "0", "1", "1", "0", "1"])
    block = run_main(tmp_path, AL, current=current)["stopping"]
    assert block["common_rows"] == 0 and block["prediction_agreement"] is None
    assert block["labeled_count"] == 5
    assert block["max_uncertainty"] == pytest.approx(0.2, abs=1e-12)  # only a is a candidate


def test_one_class_everywhere_is_full_agreement_with_a_note(tmp_path):
    current = pd.DataFrame({"id": ["a", "b", "c"], "prob_class_0": [0.9, 0.8, 0.7], "prob_class_1": [0.1, 0.2, 0.3]})
    previous = current.assign(prob_class_0=[0.6, 0.9, 0.55], prob_class_1=[0.4, 0.1, 0.45])
    block = run_main(tmp_path, {"SELECTION_STRATEGY": "uncertainty", "BATCH_SIZE": "1"}, current, previous)["stopping"]
    assert block["prediction_agreement"] == 1.0 and block["common_rows"] == 3
    assert "one class" in block["note"]
    assert block["should_stop"] is True  # 1.0 >= the default STOP_AGREEMENT 0.99


def test_other_classes_are_one_line_naming_both_sets(tmp_path):
    previous = PREVIOUS.assign(prob_class_2=0.0)
    with pytest.raises(script.SelectionError) as error:
        run_main(tmp_path, AL, previous=previous)
    message = str(error.value)
    assert "\n" not in message
    assert "previous_predictions" in message and "['0', '1', '2']" in message and "['0', '1']" in message
    for folder in ("samples", "metadata"):
        names = sorted(path.name for path in (tmp_path / "out" / folder).iterdir())
        assert names == ["_FAILURE"]


def test_unreadable_previous_table_names_the_channel(tmp_path):
    previous = PREVIOUS.assign(id=["b", "b", "d", "e", "f", "g"])
    with pytest.raises(script.SelectionError, match=r"^previous_predictions .*duplicate ids"):
        run_main(tmp_path, AL, previous=previous)


def test_missing_previous_folder_is_an_error(tmp_path):
    inputs = {"evaluation_data": str(write(CURRENT, tmp_path / "current")),
              "previous_predictions": str(tmp_path / "nowhere")}
    outputs = {"selected_samples": str(tmp_path / "samples"), "selection_metadata": str(tmp_path / "metadata")}
    with pytest.raises(script.SelectionError, match="previous_predictions"):
        script.main(inputs, outputs, AL, {"job_type": "round"})
    assert (tmp_path / "samples" / "_FAILURE").is_file()


def test_previous_folder_may_not_hold_an_output(tmp_path):
    previous = write(PREVIOUS, tmp_path / "previous")
    inputs = {"evaluation_data": str(write(CURRENT, tmp_path / "current")), "previous_predictions": str(previous)}
    outputs = {"selected_samples": str(previous / "samples"), "selection_metadata": str(tmp_path / "metadata")}
    with pytest.raises(script.SelectionError, match="overlaps the input folder"):
        script.main(inputs, outputs, AL, {"job_type": "round"})
    assert sorted(path.name for path in previous.iterdir()) == ["predictions.csv"]  # nothing written into it


def test_stop_settings_are_range_checked():
    for name, raw in (("STOP_AGREEMENT", "1.5"), ("STOP_MAX_LABELED", "-1"), ("STOP_MAX_UNCERTAINTY", "x")):
        with pytest.raises(script.SelectionError, match=name):
            script.parse_environment(dict(AL, **{name: raw}))


def test_command_line_reads_previous_predictions(tmp_path):
    current = write(CURRENT, tmp_path / "current")
    previous = write(PREVIOUS, tmp_path / "previous")
    metadata_dir = tmp_path / "metadata"
    code = script.cli(["--job_type", "round", "--evaluation_data", str(current), "--previous_predictions",
                       str(previous), "--selected_samples", str(tmp_path / "samples"),
                       "--selection_metadata", str(metadata_dir)], environ=AL)
    assert code == 0
    block = json.loads((metadata_dir / "selection_metadata.json").read_text())["stopping"]
    assert block["prediction_agreement"] == pytest.approx(HAND_KAPPA, abs=1e-12)


def test_confusion_matches_classes_by_name_not_position():
    # Last round's classes listed as [1, 0]: its predicted positions 0, 1, 1 mean classes 1, 0, 0.
    previous = script.PredictedClasses(pd.Series(["p", "q", "r"]), [1, 0], np.array([0, 1, 1]))
    ids = pd.Series(["r", "q", "p", "s"])
    predicted = np.array([0, 1, 1, 0])  # positions in [0, 1]: r 0, q 1, p 1, s 0
    candidates = np.array([True, True, True, True])
    confusion = script.agreement_confusion(previous, ids, predicted, candidates, [0, 1])
    # p: 1 -> 1, q: 0 -> 1, r: 0 -> 0; s is new.
    np.testing.assert_array_equal(confusion, [[1, 1], [0, 1]])
    confusion = script.agreement_confusion(previous, ids, predicted, np.array([False, True, True, True]), [0, 1])
    np.testing.assert_array_equal(confusion, [[0, 1], [0, 1]])  # r labeled now


def test_kappa_hand_cases():
    assert script.cohen_kappa([[3, 0], [0, 2]]) == 1.0
    # p_o = 0, p_e = (2 * 2 + 2 * 2) / 16 = 1/2: kappa = -1.
    assert script.cohen_kappa([[0, 2], [2, 0]]) == -1.0
    # p_o = 4/6, row sums 3 2 1, column sums 2 2 2: p_e = 12/36 = 1/3, kappa = (2/3 - 1/3) / (2/3) = 0.5.
    assert script.cohen_kappa([[2, 1, 0], [0, 1, 1], [0, 0, 1]]) == pytest.approx(0.5, abs=1e-15)
    assert script.cohen_kappa(np.zeros((2, 2), dtype=int)) is None
    assert script.cohen_kappa([[5, 0], [0, 0]]) == 1.0  # one class everywhere


# ---- Sharded: the merge's block equals a single run's -----------------------------------------------------------

def _sharded_block(tmp_path, environ, parts, previous):
    hosts = ["algo-1", "algo-2"]
    previous_dir = write(previous, tmp_path / "previous")
    prefix = tmp_path / "s3" / "shards"
    prefix.mkdir(parents=True)
    for host, part in zip(hosts, parts):
        root = tmp_path / host
        config = resource_config(root, host, hosts)
        inputs = {"evaluation_data": str(write(part, root / "input")), "previous_predictions": str(previous_dir)}
        outputs = {"selected_samples": str(root / "samples"), "selection_metadata": str(root / "metadata")}
        script.main(inputs, outputs, dict(environ, SELECTION_ROLE="shard", RESOURCE_CONFIG_PATH=str(config)),
                    {"job_type": "round"})
        for path in (root / "samples").iterdir():
            shutil.copy(str(path), str(prefix / path.name))
    outputs = {"selected_samples": str(tmp_path / "merge" / "samples"),
               "selection_metadata": str(tmp_path / "merge" / "metadata")}
    merged = script.main({"evaluation_data": str(prefix)}, outputs, dict(environ, SELECTION_ROLE="merge"),
                         {"job_type": "round"})
    return merged["stopping"]


def test_merge_adds_up_the_shards_counts(tmp_path):
    environ = dict(AL, STOP_AGREEMENT="0.5")
    single = run_main(tmp_path / "single", environ)["stopping"]
    merged = _sharded_block(tmp_path / "sharded", environ, [CURRENT.iloc[:3], CURRENT.iloc[3:]], PREVIOUS)
    assert merged == single
    assert merged["prediction_agreement"] == pytest.approx(HAND_KAPPA, abs=1e-12) and merged["should_stop"] is True


def test_merge_refuses_previous_predictions(tmp_path):
    inputs = {"evaluation_data": str(write(CURRENT, tmp_path / "merge_input")),
              "previous_predictions": str(write(PREVIOUS, tmp_path / "previous"))}
    outputs = {"selected_samples": str(tmp_path / "samples"), "selection_metadata": str(tmp_path / "metadata")}
    with pytest.raises(script.SelectionError, match="give it to the shard step"):
        script.main(inputs, outputs, dict(AL, SELECTION_ROLE="merge"), {"job_type": "round"})
