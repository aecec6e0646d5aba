"""main() end to end: every strategy in every format, the output contract and the metadata."""

import argparse
import gzip
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import prediction_table, write_table

STRATEGY_ENV = {
    "confidence_threshold": {"CONFIDENCE_THRESHOLD": "0.6"},
    "top_k_per_class": {"K_PER_CLASS": "4"},
    "uncertainty": {"BATCH_SIZE": "7", "UNCERTAINTY_MODE": "entropy"},
    "diversity": {"BATCH_SIZE": "7"},
    "badge": {"BATCH_SIZE": "7"},
}
SSL = ("confidence_threshold", "top_k_per_class")


@pytest.mark.parametrize("fmt", ["csv", "tsv", "parquet"])
@pytest.mark.parametrize("strategy", sorted(STRATEGY_ENV))
def test_every_strategy_in_every_format(run, script, strategy, fmt):
    table = prediction_table(n=80, labeled_fraction=0.2, seed=1)
    write_table(table, run.input_dir, fmt)
    env = dict(STRATEGY_ENV[strategy], SELECTION_STRATEGY=strategy, LABEL_FIELD="label")
    metadata = run.main(env)

    selected = run.selected()
    assert (run.samples_dir / "selected_samples.{}".format(fmt)).exists()
    assert sorted(p.name for p in run.samples_dir.iterdir()) == ["_SUCCESS", "selected_samples.{}".format(fmt)]
    assert sorted(p.name for p in run.metadata_dir.iterdir()) == ["_SUCCESS", "selection_metadata.json",
                                                                  "selection_report.html"]
    assert list(selected.columns[:len(table.columns)]) == list(table.columns)
    extra = ["selection_score", "selection_rank", "data_source"] + (["pseudo_label", "confidence"]
                                                                    if strategy in SSL else
                                                                    ["predicted_label", "predicted_confidence"])
    assert list(selected.columns[len(table.columns):]) == extra
    assert selected["selection_rank"].tolist() == list(range(1, len(selected) + 1))
    assert selected["data_source"].unique().tolist() == ["pseudo_labeled" if strategy in SSL else "active_learning"]
    assert len(selected) > 0
    assert selected["selection_score"].nunique() > 1
    labeled_ids = set(table.loc[table["label"].notna(), "id"])
    assert labeled_ids and not labeled_ids & set(selected["id"])
    original = table.set_index("id").loc[selected["id"], "emb_0"].to_numpy()
    assert np.allclose(selected["emb_0"].to_numpy(), original)
    assert metadata["selected_count"] == len(selected)
    assert metadata["candidate_count"] == len(table) - len(labeled_ids)
    assert metadata == run.metadata()


def test_ssl_outputs_pseudo_label_and_confidence(run):
    table = prediction_table(n=50, seed=2)
    write_table(table, run.input_dir)
    run.main({"SELECTION_STRATEGY": "confidence_threshold", "CONFIDENCE_THRESHOLD": "0.7"})
    selected = run.selected()
    probabilities = table.set_index("id").loc[selected["id"], ["prob_class_0", "prob_class_1", "prob_class_2"]]
    assert selected["pseudo_label"].tolist() == probabilities.to_numpy().argmax(axis=1).tolist()
    assert np.allclose(selected["confidence"], probabilities.max(axis=1))
    assert (selected["confidence"] >= 0.7).all()
    assert selected["confidence"].is_monotonic_decreasing


def test_metadata_contents(run, script):
    write_table(prediction_table(n=40, labeled_fraction=0.25, seed=3), run.input_dir, "parquet")
    metadata = run.main({"SELECTION_STRATEGY": "uncertainty", "BATCH_SIZE": "5", "LABEL_FIELD": "label",
                         "USE_CASE": "active_learning"}, job_type="active_learning_selection")
    assert metadata["strategy"] == "uncertainty"
    assert metadata["use_case"] == "active_learning"
    assert metadata["job_type"] == "active_learning_selection"
    assert metadata["config"]["batch_size"] == 5 and metadata["config"]["label_field"] == "label"
    assert metadata["pool_size"] == 40
    assert metadata["candidate_count"] == 40 - metadata["labeled_count"] and metadata["labeled_count"] > 0
    assert metadata["selected_count"] == 5 == sum(metadata["selected_per_class"].values())
    scores = metadata["selection_score"]
    assert scores["min"] <= scores["median"] <= scores["max"]
    assert metadata["input_files"] == ["predictions.parquet"]
    assert metadata["library_versions"]["pandas"] == pd.__version__
    assert metadata["library_versions"]["pyarrow"]
    assert metadata["timestamp"] and metadata["elapsed_seconds"] >= 0
    assert metadata["output_file"] == "selected_samples.parquet"


@pytest.mark.parametrize("requested, expected", [(None, "parquet"), ("csv", "csv"), ("tsv", "tsv")])
def test_output_format_follows_input_unless_set(run, requested, expected):
    write_table(prediction_table(n=30), run.input_dir, "parquet")
    env = {"SELECTION_STRATEGY": "uncertainty", "BATCH_SIZE": "3"}
    if requested:
        env["OUTPUT_FORMAT"] = requested
    run.main(env)
    assert (run.samples_dir / "selected_samples.{}".format(expected)).exists()


def test_reads_part_files_recursively_in_sorted_order_and_ignores_markers(run):
    table = prediction_table(n=30, seed=4)
    write_table(table.iloc[20:], run.input_dir / "b", name="part-00001")
    write_table(table.iloc[:20], run.input_dir / "a", name="part-00000")
    gz_source = write_table(table.iloc[:0], run.root / "scratch")
    (run.input_dir / "_SUCCESS").write_text("")
    (run.input_dir / ".hidden.csv").write_text("garbage")
    (run.input_dir / "notes.txt").write_text("not data")
    metadata = run.main({"SELECTION_STRATEGY": "uncertainty", "BATCH_SIZE": "30"})
    assert metadata["input_files"] == ["a/part-00000.csv", "b/part-00001.csv"]
    assert metadata["pool_size"] == 30
    assert gz_source.exists()


def test_reads_gzip_csv(run):
    table = prediction_table(n=25, seed=5)
    plain = write_table(table, run.root / "plain")
    with open(str(plain), "rb") as source, gzip.open(str(run.input_dir / "predictions.csv.gz"), "wb") as target:
        shutil.copyfileobj(source, target)
    metadata = run.main({"SELECTION_STRATEGY": "top_k_per_class", "K_PER_CLASS": "2"})
    assert metadata["output_format"] == "csv"
    assert len(run.selected()) == 6


def test_ids_keep_their_text_form(run):
    table = prediction_table(n=10)
    table["id"] = ["{:03d}".format(i) for i in range(10)]
    write_table(table, run.input_dir)
    run.main({"SELECTION_STRATEGY": "uncertainty", "BATCH_SIZE": "10"})
    assert sorted(run.selected()["id"]) == sorted(table["id"])


def test_diversity_starts_from_labeled_rows(run):
    # Row a is labeled, so it is the initial center: b is farthest from it, then d is farthest from {a, b}.
    table = pd.DataFrame({"id": ["a", "b", "c", "d"], "prob_class_0": [0.5] * 4, "prob_class_1": [0.5] * 4,
                          "emb_0": [100.0, 0.0, 1.0, 50.0], "label": ["x", None, None, None]})
    write_table(table, run.input_dir)
    run.main({"SELECTION_STRATEGY": "diversity", "BATCH_SIZE": "2", "LABEL_FIELD": "label"})
    selected = run.selected()
    assert selected["id"].tolist() == ["b", "d"]
    assert selected["selection_score"].tolist() == pytest.approx([100.0, 50.0])


def test_diversity_falls_back_to_numeric_features(run):
    table = prediction_table(n=30, dim=0, seed=6)
    table["category"] = "text"
    write_table(table, run.input_dir)
    metadata = run.main({"SELECTION_STRATEGY": "diversity", "BATCH_SIZE": "3", "LABEL_FIELD": "label"})
    assert metadata["details"]["vector_source"] == "numeric feature columns"
    assert metadata["details"]["vector_columns"] == 1


def test_batch_larger_than_candidates_selects_them_all(run):
    write_table(prediction_table(n=12, labeled_fraction=0.3, seed=7), run.input_dir)
    metadata = run.main({"SELECTION_STRATEGY": "badge", "BATCH_SIZE": "500", "LABEL_FIELD": "label"})
    assert metadata["selected_count"] == metadata["candidate_count"]
    assert run.selected()["id"].is_unique


def test_empty_ssl_selection_writes_an_empty_table(run):
    write_table(prediction_table(n=20, n_classes=5, seed=8), run.input_dir, "parquet")
    metadata = run.main({"SELECTION_STRATEGY": "confidence_threshold", "CONFIDENCE_THRESHOLD": "1.0"})
    assert metadata["selected_count"] == 0
    assert metadata["selection_score"] == {"min": None, "median": None, "max": None}
    assert len(run.selected()) == 0 and "selection_rank" in run.selected().columns


@pytest.mark.parametrize("strategy", sorted(STRATEGY_ENV))
def test_same_input_and_seed_same_selection(run, tmp_path, strategy):
    write_table(prediction_table(n=60, seed=9), run.input_dir)
    env = dict(STRATEGY_ENV[strategy], SELECTION_STRATEGY=strategy, RANDOM_SEED="5")
    run.main(env)
    first = run.selected()
    run.main(env)
    pd.testing.assert_frame_equal(first, run.selected())


def test_parquet_projection_returns_the_same_rows_as_a_full_read(run, tmp_path):
    table = prediction_table(n=300, seed=10)
    for i in range(20):
        table["wide_{}".format(i)] = np.arange(300) * i
    write_table(table.iloc[:170], run.input_dir, "parquet", name="part-0")
    write_table(table.iloc[170:], run.input_dir, "parquet", name="part-1")
    env = {"SELECTION_STRATEGY": "badge", "BATCH_SIZE": "25", "OUTPUT_FORMAT": "csv"}
    run.main(env)
    projected = run.selected()
    run.input_dir.joinpath("part-0.parquet").unlink()
    run.input_dir.joinpath("part-1.parquet").unlink()
    write_table(table, run.input_dir, "csv")
    run.main(env)
    pd.testing.assert_frame_equal(projected, run.selected())


@pytest.mark.parametrize("strategy", sorted(STRATEGY_ENV))
def test_parquet_row_groups_select_like_csv(run, strategy):
    table = prediction_table(n=200, labeled_fraction=0.2, seed=11)
    table["note"] = ["n{}".format(i) for i in range(200)]
    run.input_dir.mkdir(exist_ok=True)
    table.iloc[:90].to_parquet(str(run.input_dir / "part-0.parquet"), index=False, row_group_size=37)
    table.iloc[90:].to_parquet(str(run.input_dir / "part-1.parquet"), index=False, row_group_size=50)
    env = dict(STRATEGY_ENV[strategy], SELECTION_STRATEGY=strategy, LABEL_FIELD="label", OUTPUT_FORMAT="csv")
    from_parquet = run.main(env)
    selected_parquet = run.selected()
    for part in run.input_dir.iterdir():
        part.unlink()
    write_table(table, run.input_dir, "csv")
    from_csv = run.main(env)
    pd.testing.assert_frame_equal(selected_parquet, run.selected())
    assert from_parquet["candidate_count"] == from_csv["candidate_count"]


def test_parquet_parts_with_different_column_types(run):
    table = prediction_table(n=40, seed=12)
    table["count"] = np.arange(40)
    first, second = table.iloc[:20].copy(), table.iloc[20:].copy()
    second["count"] = second["count"].astype(float)
    write_table(first, run.input_dir, "parquet", name="part-0")
    write_table(second, run.input_dir, "parquet", name="part-1")
    run.main({"SELECTION_STRATEGY": "uncertainty", "BATCH_SIZE": "40"})
    selected = run.selected().sort_values("id")
    assert selected["count"].tolist() == list(range(40))


def test_logit_scores_are_softmaxed_end_to_end(run):
    table = pd.DataFrame({"id": [1, 2, 3], "score_a": [2.0, -1.0, 0.0], "score_b": [0.0, 1.0, 0.1]})
    write_table(table, run.input_dir)
    metadata = run.main({"SELECTION_STRATEGY": "uncertainty", "SCORE_FIELD_PREFIX": "score_", "BATCH_SIZE": "1"})
    assert metadata["details"]["score_interpretation"] == "logits (softmax)"
    assert run.selected()["id"].tolist() == ["3"]


def test_single_llm_score_column(run):
    table = pd.DataFrame({"id": [1, 2, 3], "confidence_score": [0.99, 0.55, 0.2]})
    write_table(table, run.input_dir)
    run.main({"SELECTION_STRATEGY": "confidence_threshold", "CONFIDENCE_THRESHOLD": "0.75"})
    selected = run.selected()
    assert selected["id"].tolist() == ["1", "3"]
    assert selected["pseudo_label"].tolist() == [1, 0]
    assert selected["confidence"].tolist() == pytest.approx([0.99, 0.8])


def test_a_failed_run_removes_an_earlier_runs_results(run):
    write_table(prediction_table(n=20), run.input_dir)
    run.main({"SELECTION_STRATEGY": "uncertainty"})
    with pytest.raises(ValueError):
        run.main({"SELECTION_STRATEGY": "uncertainty", "BATCH_SIZE": "0"})
    assert run.result_files() == []
    assert (run.samples_dir / "_FAILURE").exists()


# --- pytest's temp dirs: the input in tmp_path, the outputs below it (issue 16) ---------------------------

def tree(folder):
    """Every file under ``folder`` with its bytes (links not followed), and every folder."""
    found = {}
    for path in sorted(Path(folder).rglob("*")):
        found[str(path.relative_to(folder))] = "folder" if path.is_dir() else path.read_bytes()
    return found


def seed_user_paths(tmp_path, labeling=False):
    """What a test written against the seeds passes: the input file in tmp_path, the outputs under it."""
    output_paths = {"selected_samples": str(tmp_path / "output" / "selected"),
                    "selection_metadata": str(tmp_path / "output" / "metadata")}
    if labeling:
        output_paths["labeling_tasks"] = str(tmp_path / "output" / "labeling")
    return {"evaluation_data": str(tmp_path)}, output_paths


def least_confident_ids(table, k):
    """The spec's least_confidence order, 1 - max p, highest first and ties to the earlier row."""
    scores = 1.0 - table.filter(like="prob_class_").to_numpy().max(axis=1)
    return table["id"].to_numpy()[np.argsort(-scores, kind="stable")[:k]].tolist()


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_main_with_input_in_tmp_path_and_outputs_below_it_twice(script, tmp_path, fmt):
    table = prediction_table(n=40, seed=3)
    table["text"] = ["sentence {}".format(i) for i in range(40)]
    data_file = write_table(table, tmp_path, fmt)
    data_bytes = data_file.read_bytes()
    input_paths, output_paths = seed_user_paths(tmp_path, labeling=True)
    environ_vars = {"SELECTION_STRATEGY": "uncertainty", "BATCH_SIZE": "5", "UNCERTAINTY_MODE": "least_confidence",
                    "LABELING_FORMAT": "label_studio", "LABELING_DATA_FIELD": "text"}
    args = argparse.Namespace(job_type="active_learning_selection")
    expected = least_confident_ids(table, 5)
    for _ in range(2):
        # The second run finds the first one's results inside its input: it must not read them back.
        metadata = script.main(input_paths, output_paths, environ_vars, args)
        assert metadata["pool_size"] == 40 and metadata["candidate_count"] == 40
        assert metadata["input_files"] == ["predictions.{}".format(fmt)]
        samples = Path(output_paths["selected_samples"]) / "selected_samples.{}".format(fmt)
        selected = pd.read_parquet(str(samples)) if fmt == "parquet" else pd.read_csv(samples)
        assert selected["id"].tolist() == expected
        tasks = json.loads((Path(output_paths["labeling_tasks"]) / "label_studio_tasks.json").read_text())
        assert len(tasks) == 5
    assert data_file.read_bytes() == data_bytes
    assert sorted(p.name for p in tmp_path.iterdir()) == ["output", "predictions.{}".format(fmt)]


def test_cli_with_outputs_inside_the_input_folder(script, tmp_path):
    write_table(prediction_table(n=12), tmp_path)
    args = ["--job_type", "t", "--evaluation_data", str(tmp_path),
            "--selected_samples", str(tmp_path / "out" / "s"), "--selection_metadata", str(tmp_path / "out" / "m")]
    for _ in range(2):
        assert script.cli(args, environ={"SELECTION_STRATEGY": "uncertainty", "BATCH_SIZE": "3"}) == 0
        assert json.loads((tmp_path / "out" / "m" / "selection_metadata.json").read_text())["pool_size"] == 12


def test_a_failure_after_the_folders_are_accepted_leaves_failure_in_the_outputs_inside_the_input(script, tmp_path):
    write_table(prediction_table(n=12), tmp_path)
    input_paths, output_paths = seed_user_paths(tmp_path)
    args = argparse.Namespace(job_type="t")
    script.main(input_paths, output_paths, {"SELECTION_STRATEGY": "uncertainty"}, args)
    with pytest.raises(ValueError, match="BATCH_SIZE='0'"):
        script.main(input_paths, output_paths, {"SELECTION_STRATEGY": "uncertainty", "BATCH_SIZE": "0"}, args)
    for folder in output_paths.values():
        assert sorted(p.name for p in Path(folder).iterdir()) == ["_FAILURE"]
    # and the next good run is not disturbed by the _FAILURE markers
    assert script.main(input_paths, output_paths, {"SELECTION_STRATEGY": "uncertainty"}, args)["pool_size"] == 12


def refused(script, input_paths, output_paths, words, untouched):
    """main refuses the folders with ``words`` and writes nothing at all under ``untouched``."""
    before = tree(untouched)
    with pytest.raises(ValueError, match=words):
        script.main(input_paths, output_paths, {"SELECTION_STRATEGY": "uncertainty"}, argparse.Namespace(job_type="t"))
    assert tree(untouched) == before


def test_an_output_folder_equal_to_the_input_is_refused(script, tmp_path):
    write_table(prediction_table(n=12), tmp_path)
    input_paths, output_paths = seed_user_paths(tmp_path)
    output_paths["selected_samples"] = str(tmp_path)
    refused(script, input_paths, output_paths, "it is the input folder", tmp_path)


def test_an_output_folder_inside_the_input_holding_a_data_file_is_refused(script, tmp_path):
    write_table(prediction_table(n=12), tmp_path)
    input_paths, output_paths = seed_user_paths(tmp_path)
    write_table(prediction_table(n=5, seed=9), tmp_path / "output" / "selected", name="part-1")
    refused(script, input_paths, output_paths, "holds part-1.csv, which no _SUCCESS of this step lists", tmp_path)


def test_a_result_name_no_success_lists_inside_the_input_is_refused(script, tmp_path):
    write_table(prediction_table(n=12), tmp_path)
    input_paths, output_paths = seed_user_paths(tmp_path)
    write_table(prediction_table(n=5, seed=9), tmp_path / "output" / "metadata", name="selected_samples")
    refused(script, input_paths, output_paths, "holds selected_samples.csv", tmp_path)


def test_a_success_marker_cannot_make_input_data_look_like_results(script, tmp_path):
    write_table(prediction_table(n=12), tmp_path)
    input_paths, output_paths = seed_user_paths(tmp_path)
    selected = tmp_path / "output" / "selected"
    write_table(prediction_table(n=5, seed=9), selected, name="part-1")
    (selected / "_SUCCESS").write_text("part-1.csv\n")
    refused(script, input_paths, output_paths, "holds part-1.csv", tmp_path)


def test_a_sub_folder_inside_an_output_folder_inside_the_input_is_refused(script, tmp_path):
    write_table(prediction_table(n=12), tmp_path)
    input_paths, output_paths = seed_user_paths(tmp_path)
    (tmp_path / "output" / "selected" / "day=1").mkdir(parents=True)
    refused(script, input_paths, output_paths, "holds day=1", tmp_path)


def test_an_output_folder_containing_the_input_is_refused(script, tmp_path):
    write_table(prediction_table(n=12), tmp_path / "outer" / "data")
    output_paths = {"selected_samples": str(tmp_path / "outer"), "selection_metadata": str(tmp_path / "metadata")}
    refused(script, {"evaluation_data": str(tmp_path / "outer" / "data")}, output_paths,
            "it contains the input folder", tmp_path / "outer" / "data")
    assert (tmp_path / "metadata" / "_FAILURE").exists() and (tmp_path / "outer" / "_FAILURE").exists()


def test_a_link_in_the_input_to_an_output_folder_inside_it_is_refused(script, tmp_path):
    write_table(prediction_table(n=12), tmp_path)
    input_paths, output_paths = seed_user_paths(tmp_path)
    script.main(input_paths, output_paths, {"SELECTION_STRATEGY": "uncertainty"}, argparse.Namespace(job_type="t"))
    (tmp_path / "earlier").symlink_to(output_paths["selected_samples"], target_is_directory=True)
    with pytest.raises(ValueError, match="leads to the output folder"):
        script.main(input_paths, output_paths, {"SELECTION_STRATEGY": "uncertainty"}, argparse.Namespace(job_type="t"))


def test_shards_and_the_merge_with_their_outputs_inside_their_inputs(script, tmp_path):
    from sharding import resource_config, run_main as run_in, upload

    table = prediction_table(n=30, seed=4)
    halves = [table.iloc[:15], table.iloc[15:]]
    hosts = ["algo-1", "algo-2"]
    env = {"SELECTION_STRATEGY": "uncertainty", "BATCH_SIZE": "4", "UNCERTAINTY_MODE": "least_confidence"}
    uploaded = []
    for host, half in zip(hosts, halves):
        shard = tmp_path / host
        write_table(half, shard, "parquet")
        config = resource_config(tmp_path / "config" / host, host, hosts)
        for _ in range(2):  # the second shard run must not read the first one's pieces and manifest
            manifest = run_in(shard, shard / "out", dict(env, SELECTION_ROLE="shard", RESOURCE_CONFIG_PATH=str(config)))
            assert manifest["pool_size"] == 15 and manifest["input_files"] == ["predictions.parquet"]
        uploaded.append(shard / "out" / "selected_samples")
    prefix = tmp_path / "prefix"
    upload(uploaded, prefix)
    for _ in range(2):
        metadata = run_in(prefix, prefix / "merged", dict(env, SELECTION_ROLE="merge"))
        assert metadata["pool_size"] == 30
        selected = pd.read_parquet(str(prefix / "merged" / "selected_samples" / "selected_samples.parquet"))
        assert selected["id"].tolist() == least_confident_ids(table, 4)


def test_a_bad_command_line_leaves_failure_in_accepted_outputs_inside_the_input(script, tmp_path):
    write_table(prediction_table(n=12), tmp_path)
    args = ["--job_type", "t", "--evaluation_data", str(tmp_path), "--selected_samples", str(tmp_path / "out" / "s"),
            "--selection_metadata", str(tmp_path / "out" / "m"), "--jobtype", "x"]
    assert script.cli(args, environ={"SELECTION_STRATEGY": "uncertainty"}) == 1
    for name in ("s", "m"):
        assert "bad command line" in (tmp_path / "out" / name / "_FAILURE").read_text()
    # but not when an output folder is the input itself
    args[args.index(str(tmp_path / "out" / "s"))] = str(tmp_path)
    (tmp_path / "out" / "m" / "_FAILURE").unlink()
    assert script.cli(args, environ={"SELECTION_STRATEGY": "uncertainty"}) == 1
    assert not (tmp_path / "_FAILURE").exists() and not (tmp_path / "out" / "m" / "_FAILURE").exists()
