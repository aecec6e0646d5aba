"""Tables as real upstream jobs and people write them (issue 8).

Every case either checks the exact result (ids and values worked out by hand) or the whole failure
contract: exit 1, one error line, ``_FAILURE`` in every writable output folder, no result and no
``_SUCCESS`` left. Every run goes through ``run_cli`` or ``run_main``, which also check that the input
tree (and the ``shared`` folder that links point to) is byte-identical afterwards.
"""

import argparse
import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import prediction_table, write_table

UNCERTAINTY = {"SELECTION_STRATEGY": "uncertainty"}
RESULT_NAMES = {"selected_samples.csv", "selected_samples.tsv", "selected_samples.parquet",
                "selection_metadata.json", "_SUCCESS"}


def snapshot(*folders):
    """Every path under ``folders`` (links not followed) with its bytes' hash or its link target."""
    state = {}
    for folder in folders:
        for dirpath, dirnames, filenames in os.walk(str(folder)):
            for name in dirnames + filenames:
                path = os.path.join(dirpath, name)
                if os.path.islink(path):
                    state[path] = "-> " + os.readlink(path)
                elif os.path.isfile(path):
                    with open(path, "rb") as handle:
                        state[path] = hashlib.sha256(handle.read()).hexdigest()
                else:
                    state[path] = "folder"
    return state


def guarded(run, action):
    """Run ``action`` and check that no input file (nor a link's target in ``shared``) changed."""
    shared = run.root / "shared"
    before = snapshot(run.input_dir, shared)
    try:
        return action()
    finally:
        assert snapshot(run.input_dir, shared) == before, "the run changed its input"


def run_cli(run, script, env, args=None):
    return guarded(run, lambda: script.cli(run.cli_args() if args is None else args, environ=env))


def run_main(run, script, env, job_args=None, input_paths=None, output_paths=None):
    default_input, default_output = run.paths()
    return guarded(run, lambda: script.main(input_paths or default_input, output_paths or default_output, env,
                                            argparse.Namespace(job_type="t") if job_args is None else job_args))


def assert_failed(run, caplog, code, words, folders=None, no_failure_in=(), kept=()):
    """The whole failure contract, for the run's output folders (or ``folders``); ``kept``: files that
    the step did not write and must leave alone."""
    assert code == 1
    errors = [record.getMessage() for record in caplog.records if record.levelname == "ERROR"]
    assert len(errors) == 1, errors
    assert "\n" not in errors[0] and "Traceback" not in errors[0]
    assert words in errors[0], errors[0]
    for folder in (folders or (run.samples_dir, run.metadata_dir)):
        reason = (Path(folder) / "_FAILURE").read_text()
        assert words in reason and reason.count("\n") == 1
        assert not (RESULT_NAMES - set(kept)) & {p.name for p in Path(folder).iterdir()}
    for folder in no_failure_in:
        assert not (Path(folder) / "_FAILURE").exists()
    return errors[0]


def fails(run, script, caplog, env, words, **kwargs):
    return assert_failed(run, caplog, run_cli(run, script, env), words, **kwargs)


def write_text(path, text, encoding="utf-8"):
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.encode(encoding))
    return path


def selected_text(run):
    """The selected rows as written, every cell as text (no NA words)."""
    files = sorted(run.samples_dir.glob("selected_samples.*"))
    assert len(files) == 1
    if files[0].suffix == ".parquet":
        return pd.read_parquet(str(files[0]))
    return pd.read_csv(str(files[0]), sep="\t" if files[0].suffix == ".tsv" else ",", dtype=str,
                       keep_default_na=False)


# 1. Data loss: the input is never written to, and only provably own files are removed.

def test_output_folder_equal_to_input_is_refused_and_input_kept(run, script, caplog):
    write_table(prediction_table(n=10), run.input_dir, name="selected_samples")
    args = ["--evaluation_data", str(run.input_dir), "--selected_samples", str(run.input_dir),
            "--selection_metadata", str(run.metadata_dir), "--job_type", "t"]
    code = run_cli(run, script, UNCERTAINTY, args)
    assert_failed(run, caplog, code, "overlaps the input folder", folders=[run.metadata_dir],
                  no_failure_in=[run.input_dir])
    assert (run.input_dir / "selected_samples.csv").exists()


def test_output_folder_inside_input_holding_input_data_is_refused(run, script, caplog):
    write_table(prediction_table(n=10), run.input_dir)
    inside = run.input_dir / "out"
    write_table(prediction_table(n=10, seed=1), inside, name="more")
    args = ["--evaluation_data", str(run.input_dir), "--selected_samples", str(inside),
            "--selection_metadata", str(run.metadata_dir), "--job_type", "t"]
    code = run_cli(run, script, UNCERTAINTY, args)
    assert_failed(run, caplog, code, "holds more.csv", folders=[run.metadata_dir], no_failure_in=[inside])
    assert sorted(path.name for path in inside.iterdir()) == ["more.csv"]


def test_an_empty_output_folder_inside_input_is_not_read(run, script, caplog):
    write_table(prediction_table(n=10), run.input_dir)
    inside = run.input_dir / "out"
    args = ["--evaluation_data", str(run.input_dir), "--selected_samples", str(inside),
            "--selection_metadata", str(run.metadata_dir), "--job_type", "t"]
    for _ in range(2):  # the second run finds the first run's results inside the input, and skips them
        assert script.cli(args, environ=dict(UNCERTAINTY, BATCH_SIZE="3")) == 0
        assert json.loads((run.metadata_dir / "selection_metadata.json").read_text())["pool_size"] == 10
    assert sorted(path.name for path in inside.iterdir()) == ["_SUCCESS", "selected_samples.csv"]


def test_input_inside_an_output_folder_is_refused(run, script, caplog):
    outer = run.root / "outer"
    write_table(prediction_table(n=10), outer / "input")
    args = ["--evaluation_data", str(outer / "input"), "--selected_samples", str(outer),
            "--selection_metadata", str(run.metadata_dir), "--job_type", "t"]
    before = snapshot(outer / "input")
    code = script.cli(args, environ=UNCERTAINTY)
    assert_failed(run, caplog, code, "overlaps the input folder", folders=[outer, run.metadata_dir])
    assert snapshot(outer / "input") == before


def test_output_folder_linked_to_the_input_is_refused(run, script, caplog):
    write_table(prediction_table(n=10), run.input_dir)
    link = run.root / "link_to_input"
    link.symlink_to(run.input_dir, target_is_directory=True)
    args = ["--evaluation_data", str(run.input_dir), "--selected_samples", str(link),
            "--selection_metadata", str(run.metadata_dir), "--job_type", "t"]
    code = run_cli(run, script, UNCERTAINTY, args)
    assert_failed(run, caplog, code, "overlaps the input folder", folders=[run.metadata_dir],
                  no_failure_in=[run.input_dir])


def test_both_outputs_in_one_folder_is_refused(run, script, caplog):
    write_table(prediction_table(n=10), run.input_dir)
    args = ["--evaluation_data", str(run.input_dir), "--selected_samples", str(run.samples_dir),
            "--selection_metadata", str(run.samples_dir), "--job_type", "t"]
    code = run_cli(run, script, UNCERTAINTY, args)
    assert_failed(run, caplog, code, "are the same folder", folders=[run.samples_dir])


def test_input_link_into_the_output_folder_is_refused(run, script, caplog):
    write_table(prediction_table(n=10), run.input_dir)
    run.samples_dir.mkdir(parents=True)
    (run.input_dir / "more").symlink_to(run.samples_dir, target_is_directory=True)
    fails(run, script, caplog, UNCERTAINTY, "leads to the output folder")


def test_a_file_link_into_the_output_folder_is_refused(run, script, caplog):
    write_table(prediction_table(n=10), run.input_dir)
    run.samples_dir.mkdir(parents=True)
    earlier = write_text(run.samples_dir / "old.csv", "id,prob_class_0,prob_class_1\na,0.5,0.5\n")
    (run.input_dir / "more.csv").symlink_to(earlier)
    fails(run, script, caplog, UNCERTAINTY, "leads to the output folder")


def test_a_result_file_not_written_by_the_step_is_left_alone(run, script, caplog):
    write_table(prediction_table(n=10), run.input_dir)
    run.samples_dir.mkdir(parents=True)
    foreign = write_text(run.samples_dir / "selected_samples.csv", "someone else's file\n")
    notes = write_text(run.samples_dir / "notes.txt", "keep me\n")
    code = run_cli(run, script, UNCERTAINTY)
    message = assert_failed(run, caplog, code, "already holds selected_samples.csv", kept=["selected_samples.csv"])
    assert "selected_samples.csv" in message
    assert foreign.read_text() == "someone else's file\n" and notes.read_text() == "keep me\n"


def test_a_later_run_removes_exactly_the_files_the_earlier_success_lists(run, script):
    write_table(prediction_table(n=10), run.input_dir)
    notes = write_text(run.samples_dir / "notes.txt", "keep me\n")
    run_main(run, script, dict(UNCERTAINTY, OUTPUT_FORMAT="csv"))
    assert (run.samples_dir / "_SUCCESS").read_text() == "selected_samples.csv\n"
    assert (run.metadata_dir / "_SUCCESS").read_text() == "selection_metadata.json\nselection_report.html\n"
    run_main(run, script, dict(UNCERTAINTY, OUTPUT_FORMAT="parquet"))
    assert sorted(p.name for p in run.samples_dir.iterdir()) == ["_SUCCESS", "notes.txt",
                                                                 "selected_samples.parquet"]
    assert notes.read_text() == "keep me\n"


def test_a_success_marker_cannot_make_the_step_delete_other_files(run, script):
    write_table(prediction_table(n=10), run.input_dir)
    notes = write_text(run.samples_dir / "notes.txt", "keep me\n")
    write_text(run.samples_dir / "_SUCCESS", "notes.txt\n../input/predictions.csv\n")
    run_main(run, script, UNCERTAINTY)
    assert notes.read_text() == "keep me\n"
    assert (run.input_dir / "predictions.csv").exists()


def test_a_failed_run_leaves_no_earlier_success_or_result(run, script, caplog):
    write_table(prediction_table(n=10), run.input_dir)
    run_main(run, script, UNCERTAINTY)
    fails(run, script, caplog, dict(UNCERTAINTY, BATCH_SIZE="0"), "BATCH_SIZE='0'")


# 2. Reading artefacts: what the file holds is what comes out.

def test_duplicated_csv_header_is_an_error_naming_file_and_column(run, script, caplog):
    write_text(run.input_dir / "p.csv", "id,prob_class_0,prob_class_1,prob_class_1\na,0.5,0.5,0.5\n")
    message = fails(run, script, caplog, UNCERTAINTY, "duplicate column name(s) prob_class_1")
    assert "p.csv" in message


def test_blank_csv_header_name_is_an_error(run, script, caplog):
    table = prediction_table(n=5)
    table.to_csv(str(run.input_dir / "p.csv"))  # with the pandas index: a first column without a name
    fails(run, script, caplog, UNCERTAINTY, "column 1 of the header has no name")


def test_trailing_separator_on_data_rows_is_an_error(run, script, caplog):
    write_text(run.input_dir / "p.csv", "id,prob_class_0,prob_class_1\na,0.2,0.8,\nb,0.6,0.4,\n")
    message = fails(run, script, caplog, UNCERTAINTY, "the first data row has 4 fields but the header has 3")
    assert "p.csv" in message


def test_a_later_row_with_an_extra_field_is_an_error_naming_the_line(run, script, caplog):
    write_text(run.input_dir / "p.csv", "id,prob_class_0,prob_class_1\na,0.2,0.8\nb,0.6,0.4,x\n")
    fails(run, script, caplog, UNCERTAINTY, "line 3")


def test_na_like_ids_and_labels_are_text(run, script):
    # Ids are real ids; labels "None" and "NA" are labels; only the blank label is unlabeled.
    write_text(run.input_dir / "p.csv",
               "id,prob_class_0,prob_class_1,label,note\n"
               "NA,0.5,0.5,,null\n"
               "null,0.9,0.1,None,NA\n"
               "None,0.6,0.4,,\n"
               "N/A,0.55,0.45,NA,n/a\n"
               "nan,0.99,0.01,,NaN\n")
    metadata = run_main(run, script, dict(UNCERTAINTY, BATCH_SIZE="10", LABEL_FIELD="label"))
    selected = selected_text(run)
    assert metadata["labeled_count"] == 2
    # margin uncertainty 1 - |p0 - p1|: NA 1.0, None 0.8, nan 0.02
    assert selected["id"].tolist() == ["NA", "None", "nan"]
    assert selected["label"].tolist() == ["", "", ""]
    assert selected["note"].tolist() == ["null", "", "NaN"]


def test_labels_written_back_exactly_for_ssl(run, script):
    write_text(run.input_dir / "p.csv",
               "id,prob_class_0,prob_class_1,label\n007,0.95,0.05,\n7,0.97,0.03, \nx,0.99,0.01,None\n")
    run_main(run, script, {"SELECTION_STRATEGY": "confidence_threshold", "LABEL_FIELD": "label"})
    selected = selected_text(run)
    assert selected["id"].tolist() == ["7", "007"]
    assert selected["label"].tolist() == [" ", ""]


def test_id_as_named_parquet_index_is_the_id_column(run, script):
    table = pd.DataFrame({"id": ["a", "b", "c"], "prob_class_0": [0.5, 0.9, 0.7],
                          "prob_class_1": [0.5, 0.1, 0.3]}).set_index("id")
    table.to_parquet(str(run.input_dir / "p.parquet"))
    run_main(run, script, dict(UNCERTAINTY, BATCH_SIZE="2"))
    selected = selected_text(run)
    assert selected["id"].tolist() == ["a", "c"]


def test_id_as_a_named_range_index_kept_only_as_parquet_metadata(run, script):
    # pandas stores a RangeIndex as (start, stop, step) in the file's metadata, with no column at all.
    table = pd.DataFrame({"prob_class_0": [0.9, 0.5, 0.6, 0.8], "prob_class_1": [0.1, 0.5, 0.4, 0.2]},
                         index=pd.RangeIndex(100, 108, 2, name="id"))
    table.iloc[:2].to_parquet(str(run.input_dir / "part-0.parquet"))
    table.iloc[2:].to_parquet(str(run.input_dir / "part-1.parquet"))
    run_main(run, script, dict(UNCERTAINTY, BATCH_SIZE="3"))
    selected = selected_text(run)
    assert selected["id"].tolist() == [102, 104, 106] and list(selected.columns[:3]) == ["id", "prob_class_0",
                                                                                          "prob_class_1"]


def test_unnamed_parquet_index_is_neither_data_nor_a_feature(run, script):
    table = pd.DataFrame({"id": ["a", "b", "c", "d"], "prob_class_0": [0.5] * 4, "prob_class_1": [0.5] * 4,
                          "x": [0.0, 10.0, 1.0, 5.0]}, index=[1000, 0, 500, 7])
    table.to_parquet(str(run.input_dir / "p.parquet"), index=True)
    metadata = run_main(run, script, {"SELECTION_STRATEGY": "diversity", "BATCH_SIZE": "2"})
    selected = selected_text(run)
    assert metadata["details"]["vector_columns"] == 1
    # k-center from the mean of x (4.0): b (6 away) first; then a (4 from the mean, 10 from b) beats c and d
    assert selected["id"].tolist() == ["b", "a"]
    assert "__index_level_0__" not in selected.columns and list(selected.columns[:4]) == list(table.columns)


def test_big_int_ids_survive_parquet_parts_exactly(run, script):
    ids = [2**53 + 1, 2**62 + 3, -(2**63) + 5, 9007199254740993 * 3]
    table = pd.DataFrame({"id": np.array(ids, dtype=np.int64), "prob_class_0": [0.5, 0.6, 0.7, 0.8],
                          "prob_class_1": [0.5, 0.4, 0.3, 0.2], "count": pd.array([1, None, 3, 4], dtype="Int64")})
    write_table(table.iloc[:2], run.input_dir, "parquet", name="part-0")
    write_table(table.iloc[2:], run.input_dir, "parquet", name="part-1")
    run_main(run, script, dict(UNCERTAINTY, BATCH_SIZE="4"))
    selected = selected_text(run)
    assert [int(value) for value in selected["id"]] == ids
    assert selected["count"].tolist()[:1] == [1] and pd.isna(selected["count"].tolist()[1])
    run_main(run, script, dict(UNCERTAINTY, BATCH_SIZE="4", OUTPUT_FORMAT="csv"))
    assert selected_text(run)["id"].tolist() == [str(value) for value in ids]


def test_unicode_and_leading_zero_ids_and_a_byte_order_mark(run, script):
    text = "\ufeffid,prob_class_0,prob_class_1\n0001,0.5,0.5\n\u00e9t\u00e9,0.6,0.4\n\"a,b\",0.7,0.3\n1e3,0.8,0.2\n"
    write_text(run.input_dir / "p.csv", text)
    run_main(run, script, dict(UNCERTAINTY, BATCH_SIZE="4"))
    assert selected_text(run)["id"].tolist() == ["0001", "\u00e9t\u00e9", "a,b", "1e3"]


def test_csv_text_stays_text_in_parquet_output(run, script):
    write_text(run.input_dir / "p.csv", "id,prob_class_0,prob_class_1,zip\n007,0.5,0.5,02139\n8,0.6,0.4,NA\n")
    run_main(run, script, dict(UNCERTAINTY, BATCH_SIZE="2", OUTPUT_FORMAT="parquet"))
    selected = selected_text(run)
    assert selected["id"].tolist() == ["007", "8"] and selected["zip"].tolist() == ["02139", "NA"]


def test_blank_id_is_an_error(run, script, caplog):
    write_text(run.input_dir / "p.csv", "id,prob_class_0,prob_class_1\na,0.5,0.5\n  ,0.6,0.4\n")
    fails(run, script, caplog, UNCERTAINTY, "ID_FIELD column 'id' is empty in 1 row(s), e.g. row 2")


def test_ids_that_differ_only_as_text_are_different(run, script):
    write_text(run.input_dir / "p.csv", "id,prob_class_0,prob_class_1\n1,0.5,0.5\n01,0.6,0.4\n1.0,0.7,0.3\n")
    run_main(run, script, dict(UNCERTAINTY, BATCH_SIZE="3"))
    assert selected_text(run)["id"].tolist() == ["1", "01", "1.0"]




def test_csv_scores_are_parsed_exactly_on_every_pandas(run, script):
    # pandas 1.1.3's default parser reads about a third of 17-digit floats one unit in the last place off.
    rng = np.random.default_rng(3)
    first = rng.random(200)
    lines = ["id,prob_class_0,prob_class_1"] + ["r{},{!r},{!r}".format(i, float(p), 1.0 - float(p))
                                                for i, p in enumerate(first)]
    write_text(run.input_dir / "p.csv", "\n".join(lines) + "\n")
    run_main(run, script, dict(UNCERTAINTY, BATCH_SIZE="200"))
    selected = selected_text(run).set_index("id")
    written = {line.split(",")[0]: line.split(",")[1:] for line in lines[1:]}
    assert all(selected.loc[key, ["prob_class_0", "prob_class_1"]].tolist() == cells for key, cells in written.items())

@pytest.mark.parametrize("env, words", [
    ({"SCORE_FIELD": "id"}, "ID_FIELD column 'id' cannot also be a score column"),
    ({"LABEL_FIELD": "id"}, "LABEL_FIELD and ID_FIELD are the same column 'id'"),
    ({"LABEL_FIELD": "prob_class_1"}, "LABEL_FIELD column 'prob_class_1' cannot also be a score column"),
])
def test_id_and_label_columns_have_one_role(run, script, caplog, env, words):
    write_text(run.input_dir / "p.csv", "id,prob_class_0,prob_class_1\n007,0.5,0.5\n")
    fails(run, script, caplog, dict(UNCERTAINTY, **env), words)


def test_a_column_name_with_spaces_is_pointed_out(run, script, caplog):
    write_text(run.input_dir / "p.csv", "id ,prob_class_0,prob_class_1\na,0.5,0.5\n")
    fails(run, script, caplog, UNCERTAINTY, "ID_FIELD column 'id' not found in")
    assert "there is 'id ' (names are exact: case and spaces count)" in caplog.records[-1].getMessage()

# 3. Part files that disagree.

def test_int_ids_in_one_part_and_text_ids_in_another_is_one_error(run, script, caplog):
    table = prediction_table(n=10)
    first = table.iloc[:5].assign(id=np.arange(5))
    write_table(first, run.input_dir, "parquet", name="part-0")
    write_table(table.iloc[5:], run.input_dir, "parquet", name="part-1")
    message = fails(run, script, caplog, UNCERTAINTY, "column 'id' is integer in")
    assert "part-0.parquet" in message and "part-1.parquet" in message and "text" in message


def test_int_ids_in_one_part_and_float_ids_in_another_is_an_error(run, script, caplog):
    table = prediction_table(n=10)
    write_table(table.iloc[:5].assign(id=np.arange(5)), run.input_dir, "parquet", name="part-0")
    write_table(table.iloc[5:].assign(id=np.arange(5, 10) + 0.5), run.input_dir, "parquet", name="part-1")
    fails(run, script, caplog, UNCERTAINTY, "column 'id' is integer in")


def test_numeric_column_in_one_part_and_text_in_another_is_an_error(run, script, caplog):
    table = prediction_table(n=10)
    write_table(table.iloc[:5], run.input_dir, "parquet", name="part-0")
    write_table(table.iloc[5:].assign(feature_a="high"), run.input_dir, "parquet", name="part-1")
    fails(run, script, caplog, UNCERTAINTY, "column 'feature_a' is float in")


def test_header_only_csv_part_adds_no_rows_and_no_types(run, script):
    table = prediction_table(n=10)
    write_table(table.iloc[:0], run.input_dir, name="part-0")
    write_table(table, run.input_dir, name="part-1")
    metadata = run_main(run, script, dict(UNCERTAINTY, BATCH_SIZE="10"))
    assert metadata["pool_size"] == 10
    assert sorted(selected_text(run)["id"]) == sorted(table["id"])


def test_empty_parquet_part_and_all_null_column(run, script):
    table = prediction_table(n=10)
    table["comment"] = ["c{}".format(i) for i in range(10)]
    write_table(table.iloc[:0], run.input_dir, "parquet", name="part-0")
    write_table(table.iloc[:5].assign(comment=None), run.input_dir, "parquet", name="part-1")
    write_table(table.iloc[5:], run.input_dir, "parquet", name="part-2")
    metadata = run_main(run, script, dict(UNCERTAINTY, BATCH_SIZE="10", OUTPUT_FORMAT="csv"))
    assert metadata["pool_size"] == 10
    selected = selected_text(run).set_index("id")
    assert selected.loc[table["id"][7], "comment"] == "c7" and selected.loc[table["id"][2], "comment"] == ""


def test_csv_and_parquet_parts_together(run, script):
    table = prediction_table(n=10)
    write_table(table.iloc[:5], run.input_dir, "csv", name="part-0")
    write_table(table.iloc[5:], run.input_dir, "parquet", name="part-1")
    metadata = run_main(run, script, dict(UNCERTAINTY, BATCH_SIZE="10", OUTPUT_FORMAT="csv"))
    assert metadata["pool_size"] == 10
    selected = selected_text(run).set_index("id").loc[table["id"]]
    assert np.allclose(selected["feature_a"].astype(float), table["feature_a"])


def test_csv_text_ids_and_parquet_int_ids_is_an_error(run, script, caplog):
    table = prediction_table(n=10)
    write_table(table.iloc[:5], run.input_dir, "csv", name="part-0")
    write_table(table.iloc[5:].assign(id=np.arange(5)), run.input_dir, "parquet", name="part-1")
    fails(run, script, caplog, dict(UNCERTAINTY, OUTPUT_FORMAT="csv"), "csv cells are text")


def test_an_empty_file_is_an_empty_partition(run, script):
    table = prediction_table(n=10)
    write_text(run.input_dir / "part-0.csv", "")
    write_table(table, run.input_dir, name="part-1")
    metadata = run_main(run, script, dict(UNCERTAINTY, BATCH_SIZE="10"))
    assert metadata["pool_size"] == 10 and metadata["input_files"] == ["part-1.csv"]


# 4. Every data file is read, or the run fails naming it.

def test_parts_in_a_linked_folder_are_read(run, script):
    table = prediction_table(n=10)
    write_table(table.iloc[:5], run.input_dir, name="part-0")
    write_table(table.iloc[5:], run.root / "shared", name="part-1")
    (run.input_dir / "more").symlink_to(run.root / "shared", target_is_directory=True)
    metadata = run_main(run, script, dict(UNCERTAINTY, BATCH_SIZE="10"))
    assert metadata["input_files"] == ["more/part-1.csv", "part-0.csv"]
    assert sorted(selected_text(run)["id"]) == sorted(table["id"])


def test_spark_folder_named_like_a_parquet_file_is_read(run, script):
    table = prediction_table(n=10)
    folder = run.input_dir / "predictions.parquet"
    write_table(table.iloc[:5], folder, "parquet", name="part-00000")
    write_table(table.iloc[5:], folder, "parquet", name="part-00001")
    (folder / "_SUCCESS").write_text("")
    metadata = run_main(run, script, dict(UNCERTAINTY, BATCH_SIZE="10"))
    assert metadata["pool_size"] == 10


def test_a_link_loop_is_read_once(run, script):
    write_table(prediction_table(n=10), run.input_dir / "a")
    (run.input_dir / "a" / "loop").symlink_to(run.input_dir, target_is_directory=True)
    metadata = run_main(run, script, dict(UNCERTAINTY, BATCH_SIZE="3"))
    assert metadata["input_files"] == ["a/predictions.csv"]


def test_a_broken_link_is_an_error_naming_it(run, script, caplog):
    write_table(prediction_table(n=10), run.input_dir)
    (run.input_dir / "part-9.csv").symlink_to(run.root / "gone.csv")
    message = fails(run, script, caplog, UNCERTAINTY, "a broken link")
    assert "part-9.csv" in message


def test_an_unreadable_folder_is_an_error_naming_it(run, script, caplog, monkeypatch):
    write_table(prediction_table(n=10), run.input_dir)
    locked = run.input_dir / "locked"
    locked.mkdir()
    real_listdir = os.listdir

    def listdir(path):
        if os.path.realpath(str(path)) == os.path.realpath(str(locked)):
            raise PermissionError(13, "Permission denied", str(path))
        return real_listdir(path)

    monkeypatch.setattr(script.os, "listdir", listdir)
    message = fails(run, script, caplog, UNCERTAINTY, "cannot read input folder")
    assert str(locked) in message and "Permission denied" in message


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root reads any folder")
def test_an_unreadable_folder_really_locked(run, script, caplog):
    write_table(prediction_table(n=10), run.input_dir)
    locked = run.input_dir / "locked"
    locked.mkdir()
    locked.chmod(0)
    try:
        fails(run, script, caplog, UNCERTAINTY, "cannot read input folder")
    finally:
        locked.chmod(0o755)


@pytest.mark.parametrize("name", ["part-1.csv.bz2", "part-1.orc"])
def test_a_table_the_step_cannot_read_is_an_error(run, script, caplog, name):
    write_table(prediction_table(n=10), run.input_dir, name="part-0")
    write_text(run.input_dir / name, "BZh9")
    message = fails(run, script, caplog, UNCERTAINTY, "a table in a form this step does not read")
    assert name in message

# 5. One defect does not reinterpret the table.

def test_rounding_noise_below_zero_keeps_probabilities(run, script):
    table = pd.DataFrame({"id": ["a", "b", "c"], "prob_class_0": [-1e-9, 0.45, 0.9],
                          "prob_class_1": [1.0, 0.55, 0.1]})
    write_table(table, run.input_dir)
    metadata = run_main(run, script, {"SELECTION_STRATEGY": "confidence_threshold",
                                      "CONFIDENCE_THRESHOLD": "0.9"})
    assert metadata["details"]["score_interpretation"] == "probabilities"
    selected = selected_text(run)
    assert selected["id"].tolist() == ["a", "c"]
    assert [float(value) for value in selected["confidence"]] == [1.0, 0.9]


def test_one_logit_row_in_a_probability_table_is_an_error(run, script, caplog):
    table = prediction_table(n=20)
    table.loc[4, ["prob_class_0", "prob_class_1", "prob_class_2"]] = [2.5, -1.0, 0.3]
    write_table(table, run.input_dir)
    message = fails(run, script, caplog, dict(UNCERTAINTY), "mix probabilities and other scores")
    assert "19 of 20 rows" in message and "row 5" in message


def test_logits_are_still_softmaxed(run, script):
    table = pd.DataFrame({"id": ["a", "b"], "s_0": [3.0, 0.0], "s_1": [-1.0, 0.2]})
    write_table(table, run.input_dir)
    metadata = run_main(run, script, {"SELECTION_STRATEGY": "uncertainty", "SCORE_FIELD_PREFIX": "s_",
                                      "BATCH_SIZE": "1"})
    assert metadata["details"]["score_interpretation"] == "logits (softmax)"
    assert selected_text(run)["id"].tolist() == ["b"]


def test_single_probability_column_with_rounding_noise(run, script):
    write_table(pd.DataFrame({"id": ["a", "b"], "prediction_score": [1.0 + 1e-9, 0.3]}), run.input_dir)
    metadata = run_main(run, script, {"SELECTION_STRATEGY": "confidence_threshold"})
    assert metadata["details"]["score_interpretation"] == "binary probability"
    assert selected_text(run)["id"].tolist() == ["a"]




def test_one_bad_value_in_a_single_probability_column_is_an_error(run, script, caplog):
    scores = [0.1 * (i % 10) for i in range(20)]
    scores[7] = 1.2
    write_table(pd.DataFrame({"id": ["r{}".format(i) for i in range(20)], "prediction_score": scores}),
                run.input_dir)
    fails(run, script, caplog, UNCERTAINTY, "19 of 20 values lie in [0, 1] but 1 do not, e.g. row 8: 1.2")

def test_percentages_are_not_softmaxed_as_logits(run, script, caplog):
    write_table(pd.DataFrame({"id": ["a", "b"], "prob_class_0": [95.0, 40.0], "prob_class_1": [5.0, 60.0]}),
                run.input_dir)
    fails(run, script, caplog, UNCERTAINTY, "look like percentages")

def test_class_suffixes_naming_one_class_twice_is_an_error(run, script, caplog):
    table = pd.DataFrame({"id": ["a"], "prob_class_01": [0.5], "prob_class_1": [0.5]})
    write_table(table, run.input_dir)
    fails(run, script, caplog, UNCERTAINTY, "'prob_class_01' and 'prob_class_1' both name class 1")


def test_non_ascii_digit_suffix_is_a_text_class(run, script):
    table = pd.DataFrame({"id": ["a", "b"], "prob_class_1": [0.2, 0.6], "prob_class_\u00b2": [0.8, 0.4]})
    write_table(table, run.input_dir)
    run_main(run, script, {"SELECTION_STRATEGY": "top_k_per_class", "K_PER_CLASS": "1"})
    selected = selected_text(run)
    assert selected["id"].tolist() == ["a", "b"]
    assert selected["pseudo_label"].tolist() == ["\u00b2", "1"]


# 6. The failure contract has no holes.

def test_output_path_that_is_a_file(run, script, caplog):
    write_table(prediction_table(n=10), run.input_dir)
    blocker = write_text(run.root / "out" / "selected_samples", "a file\n")
    code = run_cli(run, script, UNCERTAINTY)
    assert_failed(run, caplog, code, "exists and is not a folder", folders=[run.metadata_dir])
    assert blocker.read_text() == "a file\n"


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root writes into any folder")
def test_read_only_output_folder(run, script, caplog):
    write_table(prediction_table(n=10), run.input_dir)
    run.samples_dir.mkdir(parents=True)
    run.samples_dir.chmod(0o555)
    try:
        code = run_cli(run, script, UNCERTAINTY)
        assert_failed(run, caplog, code, "cannot write to the output folder", folders=[run.metadata_dir])
    finally:
        run.samples_dir.chmod(0o755)


def test_unwritable_output_folder_reported_by_the_system(run, script, caplog, monkeypatch):
    write_table(prediction_table(n=10), run.input_dir)
    real_access = os.access
    monkeypatch.setattr(script.os, "access", lambda path, mode: False if str(path) == str(run.samples_dir)
                        else real_access(path, mode))
    code = run_cli(run, script, UNCERTAINTY)
    assert_failed(run, caplog, code, "cannot write to the output folder", folders=[run.metadata_dir])


@pytest.mark.parametrize("extra", [["--jobtype", "x"], ["--job_type"], ["stray"], ["--selected_samples"]])
def test_a_bad_command_line_leaves_failure(run, script, caplog, extra):
    write_table(prediction_table(n=10), run.input_dir)
    args = ["--evaluation_data", str(run.input_dir), "--selected_samples", str(run.samples_dir),
            "--selection_metadata", str(run.metadata_dir)] + extra
    code = run_cli(run, script, UNCERTAINTY, args)
    assert_failed(run, caplog, code, "bad command line")


def test_abbreviated_flags_are_not_guessed(run, script, caplog):
    write_table(prediction_table(n=10), run.input_dir)
    args = run.cli_args(job_type=None) + ["--job", "x"]
    assert_failed(run, caplog, run_cli(run, script, UNCERTAINTY, args), "unrecognized arguments: --job")


def test_main_accepts_numbers_as_environment_values_and_a_mapping_as_job_args(run, script):
    write_table(prediction_table(n=10), run.input_dir)
    environ = {"SELECTION_STRATEGY": "uncertainty", "BATCH_SIZE": 3, "RANDOM_SEED": np.int64(7),
               "CONFIDENCE_THRESHOLD": 0.75}
    metadata = run_main(run, script, environ, job_args={"job_type": "active_learning_selection"})
    assert metadata["config"]["batch_size"] == 3
    assert "confidence_threshold" not in metadata["config"]  # the metadata lists only what uncertainty reads
    config = script.parse_environment(environ)
    assert (config.random_seed, config.confidence_threshold) == (7, 0.75)
    assert metadata["job_type"] == "active_learning_selection"
    assert len(selected_text(run)) == 3


def test_main_accepts_path_objects(run, script):
    write_table(prediction_table(n=10), run.input_dir)
    metadata = run_main(run, script, UNCERTAINTY, input_paths={"evaluation_data": run.input_dir},
                        output_paths={"selected_samples": run.samples_dir, "selection_metadata": run.metadata_dir})
    assert metadata["selected_count"] == 10
    assert (run.samples_dir / "_SUCCESS").exists()


@pytest.mark.parametrize("value, kind", [(["5"], "list"), (True, "bool"), ({"n": 5}, "dict")])
def test_main_rejects_other_environment_value_types(run, script, value, kind):
    write_table(prediction_table(n=10), run.input_dir)
    with pytest.raises(script.SelectionError, match="BATCH_SIZE=.* is a {}".format(kind)):
        run_main(run, script, dict(UNCERTAINTY, BATCH_SIZE=value))
    assert "BATCH_SIZE" in (run.samples_dir / "_FAILURE").read_text()
    assert not RESULT_NAMES & {p.name for p in run.samples_dir.iterdir()}


def test_main_with_job_args_missing_job_type(run, script):
    write_table(prediction_table(n=10), run.input_dir)
    with pytest.raises(script.SelectionError, match="--job_type is required"):
        run_main(run, script, UNCERTAINTY, job_args={"other": 1})
    assert (run.metadata_dir / "_FAILURE").exists()


def test_a_write_that_fails_midway_leaves_only_failure(run, script, caplog, monkeypatch):
    # The metadata cannot be written (disk full): the samples file this run already wrote goes too.
    write_table(prediction_table(n=10), run.input_dir)
    real_replace = os.replace

    def replace(source, target):
        if str(target).endswith("selection_metadata.json"):
            raise OSError(28, "No space left on device")
        return real_replace(source, target)

    monkeypatch.setattr(script.os, "replace", replace)
    code = run_cli(run, script, UNCERTAINTY)
    assert_failed(run, caplog, code, "No space left on device")
    assert not [p for p in run.metadata_dir.iterdir() if p.name.endswith(".tmp")]


@pytest.mark.parametrize("change, words, failure_in", [
    (dict(input_paths=[("evaluation_data", "x")]), "input paths must be a mapping", ["samples", "metadata"]),
    (dict(input_paths={"evaluation_data": 5}), "input path 'evaluation_data' must be a string or a path, not int",
     ["samples", "metadata"]),
    (dict(output_paths="selected"), "output paths must be a mapping", []),
    (dict(output_paths="only samples"), "output path 'selection_metadata' is missing", ["samples"]),
    (dict(environ_vars=["SELECTION_STRATEGY"]), "environ_vars must be a mapping", ["samples", "metadata"]),
    (dict(job_args="ssl_selection"), "job_args must be an argparse.Namespace or a mapping", ["samples", "metadata"]),
])
def test_main_arguments_of_the_wrong_shape(run, script, change, words, failure_in):
    write_table(prediction_table(n=10), run.input_dir)
    input_paths, output_paths = run.paths()
    if change.get("output_paths") == "only samples":
        change["output_paths"] = {"selected_samples": output_paths["selected_samples"]}
    arguments = dict(input_paths=input_paths, output_paths=output_paths, environ_vars=UNCERTAINTY,
                     job_args=argparse.Namespace(job_type="t"))
    arguments.update(change)
    with pytest.raises(script.SelectionError, match=words):
        guarded(run, lambda: script.main(**arguments))
    folders = {"samples": run.samples_dir, "metadata": run.metadata_dir}
    assert sorted(name for name, folder in folders.items() if (folder / "_FAILURE").exists()) == sorted(failure_in)
    assert run.result_files() == []

# 7. Messages quote the real culprit.

def test_non_number_score_message_quotes_the_bad_cell(run, script, caplog):
    write_text(run.input_dir / "p.csv", "id,prob_class_0,prob_class_1\na,0.258,0.742\nb,0.5,0.5\nc,abc,0.5\n")
    message = fails(run, script, caplog, UNCERTAINTY, "column 'prob_class_0' must hold numbers, but row 3")
    assert "'abc'" in message and "0.258" not in message


def test_input_confidence_column_is_fine_for_strategies_that_do_not_write_it(run, script, caplog):
    table = prediction_table(n=10)
    table["confidence"] = ["high", "NA"] * 5
    write_table(table, run.input_dir)
    run_main(run, script, dict(UNCERTAINTY, BATCH_SIZE="10"))
    selected = selected_text(run).set_index("id").loc[table["id"]]
    assert selected["confidence"].tolist() == table["confidence"].tolist()
    fails(run, script, caplog, {"SELECTION_STRATEGY": "confidence_threshold"},
          "already has column(s) confidence that confidence_threshold writes")



# Property: whatever the ids and text, every selected row comes out exactly as it went in.

from hypothesis import HealthCheck, given, settings, strategies as st  # noqa: E402

NA_WORDS = ["NA", "N/A", "n/a", "null", "NULL", "None", "nan", "NaN", "-nan", "#N/A", "<NA>", "TRUE", "false",
            "0", "00", "007", "1.0", "1e3", "inf", "-0", " "]
TEXT = st.text(alphabet=st.sampled_from(list("aZ09 ,;\"'-_.\u00e9\u00df\u6f22\u00b2\t\n")), min_size=1, max_size=6)
WORDS = st.one_of(st.sampled_from(NA_WORDS), TEXT, st.integers(-2**63, 2**63 - 1).map(str),
                  st.integers(0, 10**6).map(lambda i: "0" * 3 + str(i)))


@st.composite
def hostile_tables(draw):
    fmt = draw(st.sampled_from(["csv", "tsv", "parquet"]))
    n = draw(st.integers(1, 12))
    id_kind = draw(st.sampled_from(["text", "int", "float"])) if fmt == "parquet" else "text"
    if id_kind == "text":
        ids = draw(st.lists(WORDS.filter(lambda word: word.strip()), min_size=n, max_size=n, unique=True))
    elif id_kind == "int":
        ids = draw(st.lists(st.integers(-2**63, 2**63 - 1), min_size=n, max_size=n, unique=True))
    else:
        ids = draw(st.lists(st.floats(allow_nan=False, allow_infinity=False), min_size=n, max_size=n,
                            unique_by=lambda value: value + 0.0))
    thousandths = draw(st.lists(st.integers(0, 1000), min_size=n, max_size=n))
    labels = draw(st.lists(st.one_of(st.just(""), WORDS), min_size=n, max_size=n))
    labels[0] = ""  # at least one candidate
    notes = draw(st.lists(st.one_of(st.just(""), WORDS), min_size=n, max_size=n))
    table = pd.DataFrame({
        "id": pd.Series(ids, dtype={"text": object, "int": np.int64, "float": np.float64}[id_kind]),
        "prob_class_0": [t / 1000 for t in thousandths],
        "prob_class_1": [(1000 - t) / 1000 for t in thousandths],
        "label": pd.Series(labels, dtype=object),
        "note": pd.Series(notes, dtype=object),
    })
    cuts = sorted(draw(st.lists(st.integers(0, n), max_size=3)))
    parts = [table.iloc[a:b] for a, b in zip([0] + cuts, cuts + [n])]
    index = draw(st.sampled_from(["none", "range", "shuffled", "id"])) if fmt == "parquet" else "none"
    return fmt, table, parts, index


def write_parts(folder, fmt, parts, index):
    folder.mkdir(parents=True, exist_ok=True)
    for number, part in enumerate(parts):
        path = folder / "part-{:05d}.{}".format(number, fmt)
        if fmt != "parquet":
            part.to_csv(str(path), sep="\t" if fmt == "tsv" else ",", index=False)
        elif index == "none":
            part.to_parquet(str(path), index=False)
        elif index == "range":
            part.reset_index(drop=True).to_parquet(str(path))
        elif index == "shuffled":
            part.set_axis(np.arange(len(part))[::-1] * 7 + number, axis=0).to_parquet(str(path), index=True)
        else:
            part.set_index("id").to_parquet(str(path))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(hostile_tables())
def test_selected_rows_come_out_exactly_as_they_went_in(tmp_path_factory, case):
    import conftest

    fmt, table, parts, index = case
    run = conftest.Run(tmp_path_factory.mktemp("hostile"))
    write_parts(run.input_dir, fmt, parts, index)
    metadata = run_main(run, conftest.script_module, {"SELECTION_STRATEGY": "uncertainty", "BATCH_SIZE": "100",
                                                      "LABEL_FIELD": "label"})
    selected = selected_text(run)
    candidates = table[table["label"].map(str.strip) == ""]
    assert metadata["selected_count"] == len(candidates)
    assert list(selected.columns[:5]) == list(table.columns)
    expected = {native(value): record for value, record in zip(candidates["id"], candidates.to_dict("records"))}
    # repr tells 1, 1.0 and "1" apart: the ids come out with their exact values and types.
    assert sorted(repr(native(value)) for value in selected["id"]) == sorted(repr(key) for key in expected)
    for record in selected.to_dict("records"):
        source = expected[native(record["id"])]
        assert record["label"] == source["label"] and record["note"] == source["note"]
        assert float(record["prob_class_0"]) == source["prob_class_0"]
        assert float(record["prob_class_1"]) == source["prob_class_1"]


def native(value):
    return value.item() if isinstance(value, np.generic) else value

