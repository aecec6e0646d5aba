"""Tables as SageMaker's own upstream jobs write them (issue 17): Batch Transform outputs, JSON Lines, CSV without
a header, parquet part files without an extension, array columns, and two runs on one output folder.

Every case checks exact ids and values (worked out by hand in the comments) or the whole failure contract through
``test_hostile``'s helpers: exit 1, one error line, ``_FAILURE`` in every writable output folder, no result and no
``_SUCCESS`` left, and the input tree byte-identical.
"""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from conftest import SCRIPT_PATH
from sharding import run_merge, run_shards, single, selected_frame, upload
from test_hostile import fails, run_cli, run_main

UNCERTAINTY = {"SELECTION_STRATEGY": "uncertainty"}
HEADER = "id,prob_class_0,prob_class_1"

# Five rows whose margin uncertainty 1 - |p0 - p1| is a 0.2, b 0.8, c 0.4, d 0.9, e 0.6: the three most
# uncertain are d, b, e (in that order).
P0 = {"a": 0.9, "b": 0.4, "c": 0.2, "d": 0.55, "e": 0.7}
UNCERTAIN_THREE = ["d", "b", "e"]


def csv_rows(ids, header=True):
    lines = [HEADER] if header else []
    lines += ["{},{},{}".format(i, P0[i], round(1 - P0[i], 10)) for i in ids]
    return "\n".join(lines) + "\n"


def json_lines(objects):
    return "".join(json.dumps(obj) + "\n" for obj in objects)


def write(path, text):
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def ids_of(run):
    return run.selected()["id"].astype(str).tolist()


def infos(caplog):
    return [record.getMessage() for record in caplog.records if record.levelname == "INFO"]


def warnings_of(caplog):
    return [record.getMessage() for record in caplog.records if record.levelname == "WARNING"]


# ---- 1. every file is read, or the run fails naming it ---------------------------------------------------------

def test_a_batch_transform_out_file_beside_a_csv_is_read(run, script):
    # part-0.csv has a header; Batch Transform's part-1.csv.out has none: CSV_COLUMNS names both.
    write(run.input_dir / "part-0.csv", csv_rows(["a", "b", "c"]))
    write(run.input_dir / "part-1.csv.out", csv_rows(["d", "e"], header=False))
    assert run_cli(run, script, dict(UNCERTAINTY, BATCH_SIZE="3", CSV_COLUMNS=HEADER)) == 0
    assert ids_of(run) == UNCERTAIN_THREE
    assert run.metadata()["input_files"] == ["part-0.csv", "part-1.csv.out"]
    assert run.metadata()["pool_size"] == 5


def test_a_spark_parquet_part_without_an_extension_is_read_by_its_magic_bytes(run, script):
    table = pd.DataFrame({"id": list(P0), "prob_class_0": list(P0.values()),
                          "prob_class_1": [1 - p for p in P0.values()]})
    table.iloc[:2].to_parquet(str(run.input_dir / "part-00000"), index=False)
    table.iloc[2:].to_parquet(str(run.input_dir / "part-00001"), index=False)
    assert run_cli(run, script, dict(UNCERTAINTY, BATCH_SIZE="3")) == 0
    assert ids_of(run) == UNCERTAIN_THREE
    assert run.metadata()["details"]["input_format"] == "parquet"


def test_markers_checksums_and_hidden_files_are_skipped_and_counted(run, script, caplog):
    write(run.input_dir / "part-0.csv", csv_rows(list(P0)))
    for name in ("_SUCCESS", "_committed_5123", "_started_5123", ".part-0.csv.crc", "part-0.csv.crc", ".DS_Store"):
        write(run.input_dir / name, "not data")
    write(run.input_dir / ".ipynb_checkpoints" / "part-0-checkpoint.csv", csv_rows(["a"]))
    assert run_cli(run, script, dict(UNCERTAINTY, BATCH_SIZE="3")) == 0
    assert ids_of(run) == UNCERTAIN_THREE
    skipped = [line for line in infos(caplog) if line.startswith("Skipped")]
    assert len(skipped) == 1 and skipped[0].startswith("Skipped 7 file(s) that are not data")


@pytest.mark.parametrize("name, text", [("notes.txt", "hello"), ("data", HEADER + "\na,0.5,0.5\n"),
                                        ("predictions.csv.md5", "abc")])
def test_a_file_that_is_not_a_table_fails_naming_it(run, script, caplog, name, text):
    write(run.input_dir / "part-0.csv", csv_rows(list(P0)))
    write(run.input_dir / name, text)
    message = fails(run, script, caplog, UNCERTAINTY, "not a table this step reads")
    assert str(run.input_dir / name) in message


def test_a_spark_temporary_folder_fails_naming_it(run, script, caplog):
    write(run.input_dir / "part-0.csv", csv_rows(list(P0)))
    write(run.input_dir / "_temporary" / "0" / "part-1.csv", csv_rows(["a"]))
    message = fails(run, script, caplog, UNCERTAINTY, "a folder whose name starts with _")
    assert str(run.input_dir / "_temporary") in message


def test_only_markers_is_no_data_and_says_what_was_skipped(run, script, caplog):
    write(run.input_dir / "_SUCCESS", "")
    write(run.input_dir / ".part-0.crc", "")
    fails(run, script, caplog, UNCERTAINTY, "no data files under {}: it holds only markers".format(run.input_dir))


# ---- 2. the formats SageMaker writes ---------------------------------------------------------------------------

def test_batch_transform_json_lines_with_an_array_of_probabilities(run, script):
    # Batch Transform with accept=application/jsonlines: {"id":..,"probabilities":[p0, p1]} per line.
    objects = [{"id": key, "probabilities": [p, round(1 - p, 10)]} for key, p in P0.items()]
    write(run.input_dir / "predictions.jsonl.out", json_lines(objects))
    assert run_cli(run, script, dict(UNCERTAINTY, BATCH_SIZE="3", SCORE_FIELD="probabilities")) == 0
    selected = run.selected()
    assert selected["id"].tolist() == UNCERTAIN_THREE
    # the array is written back as it was read (parquet keeps it a list)
    assert [list(cell) for cell in selected["probabilities"]] == [[P0[i], round(1 - P0[i], 10)]
                                                                  for i in UNCERTAIN_THREE]
    assert run.metadata()["details"]["classes"] == ["0", "1"]


def test_json_lines_with_an_array_of_scores_and_score_field_unset_names_the_setting(run, script, caplog):
    objects = [{"id": key, "probabilities": [p, round(1 - p, 10)]} for key, p in P0.items()]
    write(run.input_dir / "predictions.jsonl", json_lines(objects))
    message = fails(run, script, caplog, UNCERTAINTY, "no score columns found")
    assert message.endswith("column 'probabilities' holds arrays: SCORE_FIELD=probabilities reads it as one score "
                            "per class")


def test_json_lines_joined_with_the_input_reads_the_nested_output(run, script):
    # join_source=Input for JSON: the input object with the model's output under "SageMakerOutput".
    objects = [{"id": key, "text": "t-" + key, "SageMakerOutput": {"predictions": [p, round(1 - p, 10)]}}
               for key, p in P0.items()]
    write(run.input_dir / "input.jsonl.out", json_lines(objects))
    env = dict(UNCERTAINTY, BATCH_SIZE="3", SCORE_FIELD="SageMakerOutput.predictions", OUTPUT_FORMAT="csv")
    assert run_cli(run, script, env) == 0
    selected = run.selected()
    assert selected["id"].tolist() == UNCERTAIN_THREE
    assert selected["text"].tolist() == ["t-d", "t-b", "t-e"]
    assert selected["SageMakerOutput.predictions"].tolist() == [
        json.dumps([P0[i], round(1 - P0[i], 10)], separators=(",", ":")) for i in UNCERTAIN_THREE]


def test_json_lines_with_one_column_per_class_and_exact_integer_ids(run, script):
    big = 2 ** 53 + 1  # not representable as float64: it must not pass through one
    objects = [{"id": big + n, "prob_class_0": p, "prob_class_1": round(1 - p, 10)}
               for n, p in enumerate(P0.values())]
    write(run.input_dir / "part-0.json", json_lines(objects))
    assert run_cli(run, script, dict(UNCERTAINTY, BATCH_SIZE="3")) == 0
    assert run.selected()["id"].tolist() == [big + 3, big + 1, big + 4]


def test_a_json_document_is_not_json_lines(run, script, caplog):
    write(run.input_dir / "predictions.json", json.dumps([{"id": "a", "prob_class_0": 0.5, "prob_class_1": 0.5}]))
    fails(run, script, caplog, UNCERTAINTY, "is not JSON Lines: it starts with '['")


def test_json_lines_whose_column_changes_type_fails_naming_the_file(run, script, caplog):
    write(run.input_dir / "p.jsonl", json_lines([{"id": "a", "prob_class_0": 0.5, "prob_class_1": 0.5},
                                                 {"id": 7, "prob_class_0": 0.5, "prob_class_1": 0.5}]))
    message = fails(run, script, caplog, UNCERTAINTY, "cannot read")
    assert str(run.input_dir / "p.jsonl") in message


def test_json_lines_read_in_small_chunks_give_the_same_rows_and_types(run, script, monkeypatch):
    # 64-byte chunks: each line is its own chunk, so the types are unified across chunks: a null, then an
    # integer, then a float make a float column; a field missing from early lines is filled with nulls.
    monkeypatch.setattr(script, "_JSON_CHUNK_BYTES", 64)
    objects = [{"id": key, "probabilities": [p, round(1 - p, 10)], "w": w}
               for (key, p), w in zip(P0.items(), [None, 3, 2.5, 4, None])]
    objects[4]["late"] = "x"
    write(run.input_dir / "p.jsonl", json_lines(objects))
    assert run_cli(run, script, dict(UNCERTAINTY, BATCH_SIZE="3", SCORE_FIELD="probabilities")) == 0
    written = pq.read_table(str(run.samples_dir / "selected_samples.parquet"))
    assert written.column("id").to_pylist() == UNCERTAIN_THREE
    assert written.schema.field("w").type == pa.float64()
    assert written.column("w").to_pylist() == [4.0, 3.0, None]
    assert written.column("late").to_pylist() == [None, None, "x"]


def test_a_json_field_that_changes_type_between_chunks_fails_naming_it(run, script, caplog, monkeypatch):
    monkeypatch.setattr(script, "_JSON_CHUNK_BYTES", 64)
    write(run.input_dir / "p.jsonl", json_lines([{"id": "a", "prob_class_0": 0.5, "prob_class_1": 0.5, "n": 1},
                                                 {"id": "b", "prob_class_0": 0.5, "prob_class_1": 0.5, "n": "x"}]))
    fails(run, script, caplog, UNCERTAINTY, "cannot read {}: field 'n' is int64 in some lines and string in "
                                            "others".format(run.input_dir / "p.jsonl"))


def test_duplicate_ids_in_json_lines_fail(run, script, caplog):
    write(run.input_dir / "p.jsonl", json_lines([{"id": 1, "prob_class_0": 0.5, "prob_class_1": 0.5},
                                                 {"id": 1, "prob_class_0": 0.2, "prob_class_1": 0.8}]))
    fails(run, script, caplog, UNCERTAINTY, "ID_FIELD column 'id' has 2 row(s) with duplicate ids")


def test_batch_transform_csv_without_a_header(run, script):
    write(run.input_dir / "part-0.csv.out", csv_rows(list(P0), header=False))
    assert run_cli(run, script, dict(UNCERTAINTY, BATCH_SIZE="3", CSV_COLUMNS=HEADER)) == 0
    selected = run.selected()
    assert selected["id"].tolist() == UNCERTAIN_THREE
    assert list(selected.columns[:3]) == ["id", "prob_class_0", "prob_class_1"]
    assert selected["prob_class_0"].tolist() == [0.55, 0.4, 0.7]


def test_batch_transform_csv_joined_with_its_input_record(run, script):
    # join_source=Input: each line is the input record (id, text) followed by the model's output (p0, p1).
    lines = ["{},\"a, {}\",{},{}".format(key, key, p, round(1 - p, 10)) for key, p in P0.items()]
    write(run.input_dir / "input.csv.out", "\n".join(lines) + "\n")
    env = dict(UNCERTAINTY, BATCH_SIZE="3", CSV_COLUMNS="id, text, prob_class_0, prob_class_1")
    assert run_cli(run, script, env) == 0
    selected = run.selected()
    assert selected["id"].tolist() == UNCERTAIN_THREE
    assert selected["text"].tolist() == ["a, d", "a, b", "a, e"]


def test_csv_without_a_header_and_without_csv_columns_fails_naming_the_setting(run, script, caplog):
    write(run.input_dir / "part-0.csv.out", csv_rows(list(P0), header=False))
    message = fails(run, script, caplog, UNCERTAINTY, "set CSV_COLUMNS to the column names")
    assert str(run.input_dir / "part-0.csv.out") in message and "'0.9'" in message


def test_csv_columns_with_the_wrong_number_of_names_fails(run, script, caplog):
    write(run.input_dir / "part-0.csv.out", csv_rows(list(P0), header=False))
    fails(run, script, caplog, dict(UNCERTAINTY, CSV_COLUMNS="id,prob_class_0"),
          "its first line has 3 fields but CSV_COLUMNS names 2 columns")


def test_a_header_that_differs_from_csv_columns_is_never_taken_for_data_silently(run, script, caplog):
    # The first line "id,p0,p1" is not CSV_COLUMNS, so it is a data row: its score cell 'p0' is not a number.
    write(run.input_dir / "part-0.csv", "id,p0,p1\na,0.5,0.5\n")
    fails(run, script, caplog, dict(UNCERTAINTY, CSV_COLUMNS=HEADER), "must hold numbers, but row 1")


def test_csv_columns_repeating_a_name_is_refused(run, script, caplog):
    write(run.input_dir / "part-0.csv", csv_rows(list(P0)))
    fails(run, script, caplog, dict(UNCERTAINTY, CSV_COLUMNS="id,prob_class_0,prob_class_0"),
          "CSV_COLUMNS names prob_class_0 more than once")


def test_json_lines_and_csv_out_go_through_shards_and_merge_as_a_single_run(run, script, tmp_path):
    pool = tmp_path / "pool"
    objects = [{"id": key, "prob_class_0": p, "prob_class_1": round(1 - p, 10)} for key, p in P0.items()]
    write(pool / "part-0.jsonl", json_lines(objects[:3]))
    write(pool / "part-1.jsonl", json_lines(objects[3:]))
    env = dict(UNCERTAINTY, BATCH_SIZE="3", OUTPUT_FORMAT="csv")
    single(pool, tmp_path, env)
    outputs = run_shards(pool, [Path("part-0.jsonl"), Path("part-1.jsonl")], tmp_path, 2, env)
    run_merge(upload(outputs, tmp_path / "s3"), tmp_path, env)
    assert selected_frame(tmp_path / "single" / "out")["id"].tolist() == UNCERTAIN_THREE
    assert selected_frame(tmp_path / "merge" / "out")["id"].tolist() == UNCERTAIN_THREE


# ---- 3. array columns ------------------------------------------------------------------------------------------
# Embeddings r0 (0, 0), r1 (1, 0), r2 (10, 0), r3 (0, 5); no labeled rows, so k-center starts from their mean
# (2.75, 1.25): squared distances 9.125, 4.625, 54.125, 21.625 pick r2; then the nearest-center distances are
# r0 9.125, r1 4.625, r3 21.625 (r2 is 100, 81, 125 away): r3. n_tokens would pick differently.
EMBEDDINGS = [[0.0, 0.0], [1.0, 0.0], [10.0, 0.0], [0.0, 5.0]]
DIVERSE_TWO = ["r0_2", "r0_3"]


def array_table(arrow_type=None):
    table = pd.DataFrame({"id": ["r0_{}".format(i) for i in range(4)], "prob_class_0": 0.5, "prob_class_1": 0.5,
                          "n_tokens": [5, 100, 6, 7]})
    arrays = pa.array(EMBEDDINGS, type=arrow_type or pa.list_(pa.float32()))
    return pa.Table.from_pandas(table, preserve_index=False).append_column("embedding", arrays)


DIVERSITY = {"SELECTION_STRATEGY": "diversity", "BATCH_SIZE": "2"}


@pytest.mark.parametrize("arrow_type", [pa.list_(pa.float32()), pa.list_(pa.float64(), 2),
                                        pa.large_list(pa.float64())], ids=str)
def test_a_parquet_list_column_is_the_embeddings(run, script, arrow_type):
    pq.write_table(array_table(arrow_type), str(run.input_dir / "p.parquet"))
    assert run_cli(run, script, dict(DIVERSITY, EMBEDDING_FIELD="embedding")) == 0
    assert ids_of(run) == DIVERSE_TWO
    assert run.metadata()["details"]["vector_source"] == "embedding field"


def test_a_csv_column_of_json_arrays_is_the_embeddings(run, script):
    lines = ["id,prob_class_0,prob_class_1,n_tokens,embedding"]
    lines += ['r0_{},0.5,0.5,{},"{}"'.format(i, n, json.dumps(e)) for i, (n, e) in
              enumerate(zip([5, 100, 6, 7], EMBEDDINGS))]
    write(run.input_dir / "p.csv", "\n".join(lines) + "\n")
    assert run_cli(run, script, dict(DIVERSITY, EMBEDDING_FIELD="embedding")) == 0
    selected = run.selected()
    assert selected["id"].tolist() == DIVERSE_TWO
    assert selected["embedding"].tolist() == ["[10.0, 0.0]", "[0.0, 5.0]"]  # text as written


def test_json_lines_arrays_are_the_embeddings(run, script):
    objects = [{"id": "r0_{}".format(i), "prob_class_0": 0.5, "prob_class_1": 0.5, "embedding": e}
               for i, e in enumerate(EMBEDDINGS)]
    write(run.input_dir / "p.jsonl", json_lines(objects))
    assert run_cli(run, script, dict(DIVERSITY, EMBEDDING_FIELD="embedding")) == 0
    assert ids_of(run) == DIVERSE_TWO


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_an_array_column_is_never_passed_over_for_numeric_columns(run, script, caplog, fmt):
    table = array_table()
    if fmt == "parquet":
        pq.write_table(table, str(run.input_dir / "p.parquet"))
    else:
        frame = table.to_pandas()
        frame["embedding"] = [json.dumps(list(map(float, e))) for e in frame["embedding"]]
        frame.to_csv(str(run.input_dir / "p.csv"), index=False)
    fails(run, script, caplog, DIVERSITY, "column 'embedding' holds arrays and no column starts with "
                                          "EMBEDDING_FIELD_PREFIX='emb_': set EMBEDDING_FIELD=embedding")


def test_arrays_of_different_lengths_fail_naming_the_rows(run, script, caplog):
    table = array_table().drop(["embedding"]).append_column(
        "embedding", pa.array([[0.0, 0.0], [1.0, 0.0], [10.0], [0.0, 5.0]], type=pa.list_(pa.float32())))
    pq.write_table(table, str(run.input_dir / "p.parquet"))
    fails(run, script, caplog, dict(DIVERSITY, EMBEDDING_FIELD="embedding"),
          "array column 'embedding' holds arrays of different lengths: row 1 has 2 values, row 3 has 1")


def test_a_missing_array_fails_naming_the_row(run, script, caplog):
    table = array_table().drop(["embedding"]).append_column(
        "embedding", pa.array([[0.0, 0.0], None, [10.0, 0.0], [0.0, 5.0]], type=pa.list_(pa.float32())))
    pq.write_table(table, str(run.input_dir / "p.parquet"))
    fails(run, script, caplog, dict(DIVERSITY, EMBEDDING_FIELD="embedding"), "array column 'embedding' is empty "
                                                                             "in row 2")


def test_embedding_field_naming_an_ordinary_column_fails(run, script, caplog):
    pq.write_table(array_table(), str(run.input_dir / "p.parquet"))
    fails(run, script, caplog, dict(DIVERSITY, EMBEDDING_FIELD="n_tokens"),
          "EMBEDDING_FIELD column 'n_tokens' does not hold arrays")


def test_a_parquet_list_column_of_scores(run, script):
    table = pa.table({"id": list(P0), "probs": pa.array([[p, round(1 - p, 10)] for p in P0.values()],
                                                        type=pa.list_(pa.float64()))})
    pq.write_table(table, str(run.input_dir / "p.parquet"))
    assert run_cli(run, script, dict(UNCERTAINTY, BATCH_SIZE="3", SCORE_FIELD="probs")) == 0
    assert ids_of(run) == UNCERTAIN_THREE


def test_a_csv_column_of_json_arrays_of_scores(run, script):
    lines = ["id,probs"] + ['{},"[{}, {}]"'.format(key, p, round(1 - p, 10)) for key, p in P0.items()]
    write(run.input_dir / "p.csv", "\n".join(lines) + "\n")
    assert run_cli(run, script, dict(UNCERTAINTY, BATCH_SIZE="3", SCORE_FIELD="probs")) == 0
    assert ids_of(run) == UNCERTAIN_THREE
    assert run.selected()["probs"].tolist() == ["[0.55, 0.45]", "[0.4, 0.6]", "[0.7, 0.3]"]


def test_list_embeddings_through_shards_and_merge_match_a_single_run(script, tmp_path):
    pool = tmp_path / "pool"
    pool.mkdir()
    table = array_table()
    pq.write_table(table.slice(0, 2), str(pool / "part-0.parquet"))
    pq.write_table(table.slice(2), str(pool / "part-1.parquet"))
    env = dict(DIVERSITY, EMBEDDING_FIELD="embedding")
    single(pool, tmp_path, env)
    outputs = run_shards(pool, [Path("part-0.parquet"), Path("part-1.parquet")], tmp_path, 2, env)
    run_merge(upload(outputs, tmp_path / "s3"), tmp_path, env)
    assert selected_frame(tmp_path / "single" / "out")["id"].tolist() == DIVERSE_TWO
    assert selected_frame(tmp_path / "merge" / "out")["id"].tolist() == DIVERSE_TWO


# ---- 4. array cells written as CSV/TSV -------------------------------------------------------------------------

@pytest.mark.parametrize("fmt", ["csv", "tsv"])
def test_a_wide_float32_list_is_written_as_exact_json(run, script, fmt):
    rng = np.random.default_rng(7)
    vectors = rng.normal(size=(3, 1100)).astype(np.float32)
    table = pa.table({"id": ["a", "b", "c"], "prob_class_0": [0.5, 0.9, 0.2], "prob_class_1": [0.5, 0.1, 0.8],
                      "embedding": pa.array(list(vectors), type=pa.list_(pa.float32()))})
    pq.write_table(table, str(run.input_dir / "p.parquet"))
    assert run_cli(run, script, dict(UNCERTAINTY, BATCH_SIZE="3", OUTPUT_FORMAT=fmt)) == 0
    text = (run.samples_dir / "selected_samples.{}".format(fmt)).read_text()
    assert len(text.splitlines()) == 4 and "..." not in text
    written = pd.read_csv(str(run.samples_dir / "selected_samples.{}".format(fmt)), sep="\t" if fmt == "tsv" else ",")
    assert written["id"].tolist() == ["a", "c", "b"]  # margin 1.0, 0.4, 0.2
    for row, key in zip(written["embedding"], ["a", "c", "b"]):
        values = json.loads(row)
        expected = vectors["abc".index(key)]
        assert len(values) == 1100
        assert np.array_equal(np.array(values, dtype=np.float32), expected)  # every float32 exactly
        assert all(len(repr(v)) <= 16 for v in values)  # shortest float32 text, not 0.6890000104904175


def test_a_float64_list_round_trips_through_csv_exactly(run, script):
    values = [[0.1 + 0.2, 1e-300, -2.5e17], [1 / 3, 2 ** 0.5, 0.0]]
    table = pa.table({"id": ["a", "b"], "prob_class_0": [0.5, 0.9], "prob_class_1": [0.5, 0.1],
                      "v": pa.array(values, type=pa.list_(pa.float64()))})
    pq.write_table(table, str(run.input_dir / "p.parquet"))
    assert run_cli(run, script, dict(UNCERTAINTY, BATCH_SIZE="2", OUTPUT_FORMAT="csv")) == 0
    written = pd.read_csv(str(run.samples_dir / "selected_samples.csv"))
    assert [json.loads(cell) for cell in written["v"]] == values  # a (margin 1.0) then b


def test_parquet_output_keeps_the_list_type(run, script):
    pq.write_table(array_table(), str(run.input_dir / "p.parquet"))
    assert run_cli(run, script, dict(DIVERSITY, EMBEDDING_FIELD="embedding")) == 0
    written = pq.read_table(str(run.samples_dir / "selected_samples.parquet"))
    assert written.schema.field("embedding").type == pa.list_(pa.float32())
    assert written.column("embedding").to_pylist() == [[10.0, 0.0], [0.0, 5.0]]


# ---- 5. one per-class score column -----------------------------------------------------------------------------

@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_a_lone_prob_class_column_is_an_error_asking_for_both_or_score_field(run, script, caplog, fmt):
    frame = pd.DataFrame({"id": ["a", "b"], "prob_class_0": [0.95, 0.05]})
    frame.to_parquet(str(run.input_dir / "p.parquet"), index=False) if fmt == "parquet" else frame.to_csv(
        str(run.input_dir / "p.csv"), index=False)
    fails(run, script, caplog, {"SELECTION_STRATEGY": "confidence_threshold"},
          "'prob_class_0' is the only column starting with SCORE_FIELD_PREFIX='prob_class_'")


def test_score_field_reads_a_lone_column_as_the_probability_of_class_1(run, script):
    # a: p(class 1) = 0.95 -> pseudo-label 1; b: p(class 1) = 0.05 -> class 0 with confidence 0.95; c: 0.5, below.
    pd.DataFrame({"id": ["a", "b", "c"], "prob_class_0": [0.95, 0.05, 0.5]}).to_csv(
        str(run.input_dir / "p.csv"), index=False)
    assert run_cli(run, script, {"SELECTION_STRATEGY": "confidence_threshold", "SCORE_FIELD": "prob_class_0"}) == 0
    selected = run.selected()
    assert selected["id"].tolist() == ["a", "b"]
    assert selected["pseudo_label"].tolist() == [1, 0]


# ---- 6. one writer per output folder, and the step's own leftovers ---------------------------------------------

def hold_lock(folder):
    import fcntl

    folder.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(str(folder / ".active_sample_selection.lock"), os.O_RDWR | os.O_CREAT)
    fcntl.flock(descriptor, fcntl.LOCK_EX)
    return descriptor


@pytest.mark.parametrize("busy", ["samples_dir", "metadata_dir"])
def test_a_folder_another_run_holds_is_refused_and_left_untouched(run, script, caplog, busy):
    write(run.input_dir / "p.csv", csv_rows(list(P0)))
    folder = getattr(run, busy)
    descriptor = hold_lock(folder)
    try:
        write(folder / "_SUCCESS", "selected_samples.csv\n")  # the other run's result, as it is being written
        write(folder / "selected_samples.csv", "id\nx\n")
        before = {path.name: path.read_bytes() for path in folder.iterdir()}
        code = run_cli(run, script, dict(UNCERTAINTY, BATCH_SIZE="3"))
        assert code == 1
        errors = [record.getMessage() for record in caplog.records if record.levelname == "ERROR"]
        assert errors == ["output folder {} is in use by another run of this step (it holds "
                          ".active_sample_selection.lock): wait for that run to finish, or give this run its own "
                          "folders".format(folder)]
        assert {path.name: path.read_bytes() for path in folder.iterdir()} == before
        other = run.metadata_dir if busy == "samples_dir" else run.samples_dir
        assert not other.exists() or not any(other.iterdir())  # this run wrote nowhere
    finally:
        os.close(descriptor)
    # once it is released, the folder is an earlier run's: its listed results are replaced
    assert run_cli(run, script, dict(UNCERTAINTY, BATCH_SIZE="3")) == 0
    assert ids_of(run) == UNCERTAIN_THREE


def test_a_killed_runs_temporary_files_are_removed_and_nothing_else(run, script):
    write(run.input_dir / "p.csv", csv_rows(list(P0)))
    own = [run.samples_dir / ".selected_samples.csv.k2x_9abc.tmp",
           run.metadata_dir / ".selection_metadata.json.zz00aa11.tmp"]
    foreign = [run.samples_dir / ".notes.txt.k2x_9abc.tmp", run.samples_dir / ".selected_samples.csv.tmp",
               run.samples_dir / "selected_samples.csv.k2x_9abc.tmp", run.metadata_dir / ".mine.abcdefgh.tmp"]
    for path in own + foreign:
        write(path, "partial")
    assert run_cli(run, script, dict(UNCERTAINTY, BATCH_SIZE="3")) == 0
    assert [path.exists() for path in own] == [False, False]
    assert all(path.read_text() == "partial" for path in foreign)
    assert pd.read_csv(str(run.samples_dir / "selected_samples.csv"))["id"].tolist() == UNCERTAIN_THREE
    assert not (run.samples_dir / ".active_sample_selection.lock").exists()
    assert not (run.metadata_dir / ".active_sample_selection.lock").exists()


# ---- 7. defaults that change the answer are announced ----------------------------------------------------------

@pytest.mark.parametrize("name", ["label", "Labels", "y", "TARGET"])
def test_a_likely_label_column_with_label_field_unset_is_a_warning(run, script, caplog, name):
    frame = pd.DataFrame({"id": list(P0), "prob_class_0": list(P0.values()),
                          "prob_class_1": [round(1 - p, 10) for p in P0.values()], name: ["x", "", "", "y", ""]})
    frame.to_csv(str(run.input_dir / "p.csv"), index=False)
    assert run_cli(run, script, dict(UNCERTAINTY, BATCH_SIZE="3")) == 0
    assert ids_of(run) == UNCERTAIN_THREE  # unset: every row is a candidate, d included
    assert warnings_of(caplog) == [
        "Column {!r} looks like labels but LABEL_FIELD is unset, so no row counts as labeled and every row may be "
        "selected; set LABEL_FIELD={}, or LABEL_FIELD=none to say there are no labels".format(name, name)]


def test_label_field_none_silences_the_warning_and_label_field_set_uses_it(run, script, caplog):
    frame = pd.DataFrame({"id": list(P0), "prob_class_0": list(P0.values()),
                          "prob_class_1": [round(1 - p, 10) for p in P0.values()], "label": ["x", "", "", "y", ""]})
    frame.to_csv(str(run.input_dir / "p.csv"), index=False)
    assert run_cli(run, script, dict(UNCERTAINTY, BATCH_SIZE="3", LABEL_FIELD="none")) == 0
    assert warnings_of(caplog) == [] and ids_of(run) == UNCERTAIN_THREE
    assert run_cli(run, script, dict(UNCERTAINTY, BATCH_SIZE="3", LABEL_FIELD="label")) == 0
    assert ids_of(run) == ["b", "e", "c"]  # a and d are labeled


def test_the_numeric_column_fallback_is_a_warning_naming_every_column(run, script, caplog):
    frame = pd.DataFrame({"id": ["r0_{}".format(i) for i in range(4)], "prob_class_0": 0.5, "prob_class_1": 0.5,
                          "f1": [e[0] for e in EMBEDDINGS], "f2": [e[1] for e in EMBEDDINGS]})
    frame.to_parquet(str(run.input_dir / "p.parquet"), index=False)
    assert run_cli(run, script, DIVERSITY) == 0
    assert ids_of(run) == DIVERSE_TWO
    assert warnings_of(caplog) == ["No emb_* columns: using the 2 numeric column(s) f1, f2 as embeddings; set "
                                   "EMBEDDING_FIELD, FEATURE_COLUMNS or EMBEDDING_FIELD_PREFIX to choose them"]


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_feature_columns_picks_the_columns(run, script, caplog, fmt):
    # Along f1 alone (0, 1, 10, 0; mean 2.75): r2 first, then r0 and r3 tie at 2.75 and the earlier row wins.
    frame = pd.DataFrame({"id": ["r0_{}".format(i) for i in range(4)], "prob_class_0": 0.5, "prob_class_1": 0.5,
                          "f1": [e[0] for e in EMBEDDINGS], "f2": [e[1] for e in EMBEDDINGS]})
    frame.to_parquet(str(run.input_dir / "p.parquet"), index=False) if fmt == "parquet" else frame.to_csv(
        str(run.input_dir / "p.csv"), index=False)
    assert run_cli(run, script, dict(DIVERSITY, FEATURE_COLUMNS="f1")) == 0
    assert ids_of(run) == ["r0_2", "r0_0"]
    assert warnings_of(caplog) == []
    assert run.metadata()["details"]["vector_source"] == "feature columns"


def test_feature_columns_naming_a_missing_column_fails(run, script, caplog):
    write(run.input_dir / "p.csv", csv_rows(list(P0)))
    fails(run, script, caplog, dict(DIVERSITY, FEATURE_COLUMNS="f1,f9"), "FEATURE_COLUMNS column 'f1' not found")


def test_embedding_field_and_feature_columns_together_are_refused(run, script, caplog):
    write(run.input_dir / "p.csv", csv_rows(list(P0)))
    fails(run, script, caplog, dict(DIVERSITY, FEATURE_COLUMNS="f1", EMBEDDING_FIELD="e"), "both choose the "
                                                                                           "embeddings")


# ---- the checks mutation testing found unguarded ---------------------------------------------------------------

@pytest.mark.parametrize("ids", [[7, 8, 7, 9], ["x", "y", "x", "z"], [1.5, 2.5, 1.5, 3.5]], ids=str)
def test_duplicate_ids_in_parquet_fail(run, script, caplog, ids):
    pd.DataFrame({"id": ids, "prob_class_0": 0.5, "prob_class_1": 0.5}).to_parquet(
        str(run.input_dir / "p.parquet"), index=False)
    message = fails(run, script, caplog, UNCERTAINTY, "ID_FIELD column 'id' has 2 row(s) with duplicate ids")
    assert str(ids[0]) in message


def test_duplicate_ids_across_parquet_parts_fail(run, script, caplog):
    pd.DataFrame({"id": [1, 2], "prob_class_0": 0.5, "prob_class_1": 0.5}).to_parquet(
        str(run.input_dir / "part-0.parquet"), index=False)
    pd.DataFrame({"id": [3, 1], "prob_class_0": 0.5, "prob_class_1": 0.5}).to_parquet(
        str(run.input_dir / "part-1.parquet"), index=False)
    fails(run, script, caplog, UNCERTAINTY, "ID_FIELD column 'id' has 2 row(s) with duplicate ids, e.g. [1]")


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_duplicate_ids_across_shards_fail_in_the_merge(script, tmp_path, fmt):
    pool = tmp_path / "pool"
    pool.mkdir()
    for number, ids in enumerate([["a", "b"], ["c", "a"]]):
        frame = pd.DataFrame({"id": ids, "prob_class_0": [0.5, 0.6], "prob_class_1": [0.5, 0.4]})
        path = pool / "part-{}.{}".format(number, fmt)
        frame.to_parquet(str(path), index=False) if fmt == "parquet" else frame.to_csv(str(path), index=False)
    env = dict(UNCERTAINTY, BATCH_SIZE="4")
    outputs = run_shards(pool, [Path("part-0." + fmt), Path("part-1." + fmt)], tmp_path, 2, env)  # each is fine
    with pytest.raises(script.SelectionError, match=r"ID_FIELD column 'id' has 2 row\(s\) with duplicate ids"):
        run_merge(upload(outputs, tmp_path / "s3"), tmp_path, env)
    for channel in ("selected_samples", "selection_metadata"):
        folder = tmp_path / "merge" / "out" / channel
        assert sorted(path.name for path in folder.iterdir()) == ["_FAILURE"]


KILL = textwrap.dedent("""
    import argparse, importlib.util, os, sys
    spec = importlib.util.spec_from_file_location("active_sample_selection", sys.argv[1])
    script = importlib.util.module_from_spec(spec)
    sys.modules["active_sample_selection"] = script
    spec.loader.exec_module(script)
    original, victim = script._write_atomically, sys.argv[2]

    def dying(path, write):
        if path.name == victim:  # a crash while this file is written: no except or finally runs
            with open(str(path.parent / ("." + path.name + ".partial0.tmp")), "w") as handle:
                handle.write("id,")
            os._exit(9)
        return original(path, write)

    script._write_atomically = dying
    script.main({"evaluation_data": sys.argv[3]},
                {"selected_samples": sys.argv[4], "selection_metadata": sys.argv[5], "labeling_tasks": sys.argv[6]},
                {"SELECTION_STRATEGY": "uncertainty", "BATCH_SIZE": "2", "LABELING_FORMAT": "label_studio",
                 "LABELING_DATA_FIELD": "text"}, argparse.Namespace(job_type="t"))
""")


@pytest.mark.parametrize("victim", ["selected_samples.csv", "label_studio_tasks.json", "selection_metadata.json"])
def test_a_crash_while_writing_a_result_leaves_no_success_marker(run, victim):
    frame = pd.DataFrame({"id": list(P0), "text": ["t"] * 5, "prob_class_0": list(P0.values()),
                          "prob_class_1": [round(1 - p, 10) for p in P0.values()]})
    frame.to_csv(str(run.input_dir / "p.csv"), index=False)
    folders = [run.samples_dir, run.metadata_dir, run.labeling_dir]
    completed = subprocess.run([sys.executable, "-c", KILL, str(SCRIPT_PATH), victim, str(run.input_dir)]
                               + [str(folder) for folder in folders], capture_output=True, timeout=120)
    assert completed.returncode == 9, completed.stderr.decode()
    markers = [folder / "_SUCCESS" for folder in folders if (folder / "_SUCCESS").exists()]
    assert markers == []
    if victim != "selected_samples.csv":
        return  # the results written before the crash are listed by no _SUCCESS: the next run leaves them alone
    # the next run clears the crashed run's temporary file and succeeds
    environ = {"SELECTION_STRATEGY": "uncertainty", "BATCH_SIZE": "2", "LABELING_FORMAT": "label_studio",
               "LABELING_DATA_FIELD": "text"}
    run.main(environ)
    assert not list(Path(run.root / "out").rglob("*.partial0.tmp"))
    assert ids_of(run) == ["d", "b"]


# ---- round trip: list cells and JSON Lines come out exactly as they went in ------------------------------------

from hypothesis import HealthCheck, given, settings, strategies as st  # noqa: E402

from test_hostile import WORDS  # noqa: E402

FINITE = st.floats(allow_nan=False, allow_infinity=False)
FLOAT32 = st.floats(width=32, allow_nan=False, allow_infinity=False)


@st.composite
def tables_with_lists(draw):
    fmt = draw(st.sampled_from(["parquet", "jsonl", "csv"]))
    out = draw(st.sampled_from(["parquet", "csv", "tsv"]))
    n = draw(st.integers(1, 8))
    if fmt != "csv" and draw(st.booleans()):
        ids = draw(st.lists(st.integers(-2**63, 2**63 - 1), min_size=n, max_size=n, unique=True))
    else:
        ids = draw(st.lists(WORDS.filter(lambda word: word.strip()), min_size=n, max_size=n, unique=True))
    width32 = fmt == "parquet" and draw(st.booleans())
    element = FLOAT32 if width32 else FINITE
    cells = draw(st.lists(st.one_of(st.none(), st.lists(element, min_size=1, max_size=4)), min_size=n, max_size=n))
    thousandths = draw(st.lists(st.integers(0, 1000), min_size=n, max_size=n))
    return fmt, out, ids, cells, width32, thousandths


def write_lists(folder, fmt, ids, cells, width32, thousandths):
    p0 = [t / 1000 for t in thousandths]
    p1 = [(1000 - t) / 1000 for t in thousandths]
    if fmt == "parquet":
        element = pa.float32() if width32 else pa.float64()
        pq.write_table(pa.table({"id": ids, "prob_class_0": p0, "prob_class_1": p1,
                                 "vec": pa.array(cells, type=pa.list_(element))}), str(folder / "part-00000"))
    elif fmt == "jsonl":
        write(folder / "p.jsonl.out", json_lines({"id": i, "prob_class_0": a, "prob_class_1": b, "vec": c}
                                                 for i, a, b, c in zip(ids, p0, p1, cells)))
    else:
        pd.DataFrame({"id": ids, "prob_class_0": p0, "prob_class_1": p1,
                      "vec": [json.dumps(c) if c is not None else "" for c in cells]}).to_csv(
            str(folder / "p.csv"), index=False)


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tables_with_lists())
def test_list_cells_and_json_lines_come_out_exactly_as_they_went_in(tmp_path_factory, case):
    import conftest

    fmt, out, ids, cells, width32, thousandths = case
    run = conftest.Run(tmp_path_factory.mktemp("lists"))
    write_lists(run.input_dir, fmt, ids, cells, width32, thousandths)
    run_main(run, conftest.script_module, dict(UNCERTAINTY, BATCH_SIZE="100", OUTPUT_FORMAT=out))
    path = run.samples_dir / "selected_samples.{}".format(out)
    if out == "parquet":
        written = pq.read_table(str(path))
        ids_out, cells_out = written.column("id").to_pylist(), written.column("vec").to_pylist()
        if fmt == "parquet":
            assert written.schema.field("vec").type == pa.list_(pa.float32() if width32 else pa.float64())
    else:
        written = pd.read_csv(str(path), sep="\t" if out == "tsv" else ",", dtype=str, keep_default_na=False)
        ids_out, cells_out = written["id"].tolist(), written["vec"].tolist()
    key = (lambda i: i) if out == "parquet" else str
    assert sorted(ids_out, key=repr) == sorted((key(i) for i in ids), key=repr)
    got = dict(zip(ids_out, cells_out))
    if fmt == "csv":  # a CSV cell is text: written back byte for byte, in CSV and in parquet
        assert got == {key(i): json.dumps(c) if c is not None else "" for i, c in zip(ids, cells)}
        return
    if out != "parquet":
        got = {i: json.loads(text) if text else None for i, text in got.items()}
    for i, cell in zip(ids, cells):
        value = got[key(i)]
        if cell is None:
            assert value is None
        elif width32:
            assert np.array_equal(np.array(value, dtype=np.float32), np.array(cell, dtype=np.float32))
        else:
            assert value == cell and [repr(v) for v in value] == [repr(v) for v in cell]


@pytest.mark.parametrize("chunk_bytes", [1, 2, 3, 4, 54, 1 << 20])
def test_only_the_file_s_leading_byte_order_mark_is_dropped_wherever_the_chunks_are_cut(
        run, script, caplog, monkeypatch, chunk_bytes):
    monkeypatch.setattr(script, "_JSON_CHUNK_BYTES", chunk_bytes)
    lines = [json.dumps({"id": key, "prob_class_0": p, "prob_class_1": round(1 - p, 10)}) + "\n"
             for key, p in P0.items()]
    bom = "\ufeff"
    write(run.input_dir / "p.jsonl", bom + "".join(lines))
    assert run_cli(run, script, dict(UNCERTAINTY, BATCH_SIZE="3")) == 0
    assert ids_of(run) == UNCERTAIN_THREE
    # The first line is 54 bytes long, so 54-byte chunks cut right before the second line's mark.
    assert len(lines[0].encode()) == 54
    write(run.input_dir / "p.jsonl", lines[0] + bom + "".join(lines[1:]))
    message = fails(run, script, caplog, dict(UNCERTAINTY, BATCH_SIZE="3"), "p.jsonl")
    assert "has a byte order mark at the start of a line inside the file (byte 54)" in message, message
