"""The seams of one engine: every table source answers through one interface, every role returns one kind of
result, and one rule agrees on a column's Arrow type."""

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

import sharding as sim
from conftest import prediction_table, script_module as script, write_table

ENV = {"SELECTION_STRATEGY": "uncertainty", "BATCH_SIZE": "5", "UNCERTAINTY_MODE": "least_confidence"}


def least_confident_ids(table, k):
    """The spec's least_confidence order, 1 - max p, highest first and ties to the earlier row."""
    scores = 1.0 - table.filter(like="prob_class_").to_numpy().max(axis=1)
    return table["id"].to_numpy()[np.argsort(-scores, kind="stable")[:k]].tolist()


class ColumnStoreSource(script.TableSource):
    """A third storage, written against the interface alone: rows kept as one Python list per column."""

    opened = 0

    def __init__(self, table):
        frame, row_counts = script.read_input_table(table)
        super().__init__(table, row_counts)
        self.store = {name: frame[name].tolist() for name in frame.columns}
        ColumnStoreSource.opened += 1

    def _frame(self, positions):
        return pd.DataFrame({name: [values[p] for p in positions] for name, values in self.store.items()},
                            columns=list(self.store))

    def pool(self, config, keep_ids=False):
        frame = self._frame(range(sum(self.row_counts)))
        script._check_ids(frame[config.id_field], config.id_field)
        return script.pool_from_frame(frame, config, index_columns=self.table.index_columns)

    def rows_at(self, positions):
        return self._frame(np.asarray(positions).tolist())

    def _file_rows(self, index, rows, positions):
        return pa.Table.from_pandas(self.rows_at(positions), preserve_index=False)


@pytest.fixture
def third_source(monkeypatch):
    ColumnStoreSource.opened = 0
    monkeypatch.setattr(script, "open_source", ColumnStoreSource)
    return ColumnStoreSource


def test_a_third_source_type_runs_single_through_the_interface(third_source, tmp_path):
    table = prediction_table(n=40, seed=3)
    write_table(table, tmp_path / "input")
    metadata = sim.run_main(tmp_path / "input", tmp_path / "out", ENV)
    assert third_source.opened == 1
    assert sim.selected_frame(tmp_path / "out")["id"].tolist() == least_confident_ids(table, 5)
    assert metadata["pool_size"] == 40


def test_a_third_source_type_runs_sharded_through_the_interface(third_source, tmp_path):
    table = prediction_table(n=60, seed=5)
    parts = [table.iloc[i::4].reset_index(drop=True) for i in range(4)]
    relatives = sim.write_parts(parts, tmp_path / "pool", fmt="csv")
    metadata, out = sim.sharded(tmp_path / "pool", relatives, tmp_path, 2, ENV)
    assert third_source.opened == 2  # once per shard; the merge reads the shards' pieces
    expected = least_confident_ids(pd.concat(parts, ignore_index=True), 5)
    assert sim.selected_frame(out)["id"].tolist() == expected
    assert metadata["pool_size"] == 60


def test_file_pieces_cut_sorted_positions_at_the_file_boundaries(tmp_path):
    write_table(prediction_table(n=7, seed=1), tmp_path / "a", name="p0")
    write_table(prediction_table(n=5, seed=2).assign(id=lambda t: "b" + t["id"]), tmp_path / "a", name="p1")
    config = script.parse_environment(ENV)
    source = script.open_source(script.scan_input(tmp_path / "a", config))
    pieces = source.file_pieces(np.array([1, 6, 7, 11]))
    assert [(index, local.tolist(), table.num_rows) for index, local, table in pieces] == [
        (0, [1, 6], 2), (1, [0, 4], 2)]
    assert pieces[1][2].column("id").to_pylist() == ["brow-0000", "brow-0004"]


def _main(tmp_path, input_dir, name, env):
    return script.main({"evaluation_data": str(input_dir)},
                       {"selected_samples": str(tmp_path / name / "selected_samples"),
                        "selection_metadata": str(tmp_path / name / "selection_metadata")},
                       env, argparse.Namespace(job_type="roles"))


def test_single_shard_and_merge_return_one_kind_of_result(tmp_path):
    table = prediction_table(n=30, seed=4)
    hosts = ["algo-1", "algo-2"]
    for host, half in zip(hosts, (table.iloc[:18], table.iloc[18:])):
        write_table(half, tmp_path / host, "parquet")
    write_table(table, tmp_path / "whole", "parquet")
    single = _main(tmp_path, tmp_path / "whole", "single", ENV)
    shards = []
    for host in hosts:
        config = sim.resource_config(tmp_path / "config" / host, host, hosts)
        shards.append(_main(tmp_path, tmp_path / host, host,
                            dict(ENV, SELECTION_ROLE="shard", RESOURCE_CONFIG_PATH=str(config))))
    sim.upload([tmp_path / host / "selected_samples" for host in hosts], tmp_path / "prefix")
    merged = _main(tmp_path, tmp_path / "prefix", "merge", dict(ENV, SELECTION_ROLE="merge"))
    shared = {"strategy", "use_case", "job_type", "config", "pool_size", "labeled_count", "candidate_count",
              "output_format", "output_file", "input_files", "details", "library_versions", "timestamp",
              "stopping", "elapsed_seconds"}
    for metadata in [single, merged] + shards:
        assert isinstance(metadata, dict) and shared <= set(metadata), sorted(shared - set(metadata))
    assert [single["pool_size"], merged["pool_size"]] + [shard["pool_size"] for shard in shards] == [30, 30, 18, 12]
    assert [shard["input_files"] for shard in shards] == [["predictions.parquet"]] * 2
    for host, shard in zip(hosts, shards):  # a shard's result holds the manifest it wrote
        written = tmp_path / host / "selection_metadata" / "shard-{}.json".format(host)
        assert json.loads(json.dumps(shard["sharding"], default=script._json_default)) == json.loads(
            written.read_text())
        assert not (tmp_path / host / "selection_metadata" / "selection_metadata.json").exists()
    assert single["stopping"] == merged["stopping"]
    assert merged["selected_count"] == single["selected_count"] == 5


def test_json_lines_evaluation_data_with_calibration_data(tmp_path):
    """calibration_data's ids are checked against the pool, whatever the input's format."""
    rng = np.random.default_rng(7)
    evaluation = prediction_table(n=50, n_classes=2, seed=8).drop(columns=["label"]).assign(label=None)
    calibration = prediction_table(n=40, n_classes=2, seed=9).assign(
        id=lambda t: "c" + t["id"], label=lambda t: rng.integers(0, 2, len(t)).astype(str))
    (tmp_path / "jsonl").mkdir()
    evaluation.to_json(str(tmp_path / "jsonl" / "predictions.jsonl"), orient="records", lines=True)
    write_table(evaluation, tmp_path / "csv")
    write_table(calibration, tmp_path / "calibration")
    env = {"SELECTION_STRATEGY": "confidence_threshold", "CONFIDENCE_THRESHOLD": "0.8", "LABEL_FIELD": "label"}
    results = {}
    for fmt in ("jsonl", "csv"):
        results[fmt] = script.main(
            {"evaluation_data": str(tmp_path / fmt), "calibration_data": str(tmp_path / "calibration")},
            {"selected_samples": str(tmp_path / (fmt + "-out") / "s"),
             "selection_metadata": str(tmp_path / (fmt + "-out") / "m")}, env, {"job_type": "t"})
    confident = evaluation.filter(like="prob_class_").to_numpy().max(axis=1) >= 0.8
    assert results["jsonl"]["selected_count"] == int(confident.sum()) > 0
    assert results["jsonl"]["precision_estimate"]["calibration_rows"] == 40
    assert results["jsonl"]["precision_estimate"] == results["csv"]["precision_estimate"]


def test_a_shared_calibration_id_is_refused_for_json_lines_input(tmp_path):
    evaluation = prediction_table(n=20, n_classes=2, seed=1).drop(columns=["label"]).assign(label=None)
    calibration = prediction_table(n=20, n_classes=2, seed=2).assign(label="0")
    calibration.loc[3, "id"] = evaluation["id"].iloc[5]
    (tmp_path / "in").mkdir()
    evaluation.to_json(str(tmp_path / "in" / "p.jsonl"), orient="records", lines=True)
    write_table(calibration.assign(id=lambda t: t["id"].where(t.index == 3, "c" + t["id"])), tmp_path / "cal")
    with pytest.raises(script.SelectionError, match="value 'row-0005' is in both evaluation_data and calibration"):
        script.main({"evaluation_data": str(tmp_path / "in"), "calibration_data": str(tmp_path / "cal")},
                    {"selected_samples": str(tmp_path / "o" / "s"), "selection_metadata": str(tmp_path / "o" / "m")},
                    {"SELECTION_STRATEGY": "confidence_threshold", "LABEL_FIELD": "label"}, {"job_type": "t"})


@pytest.mark.parametrize("types, agreed", [
    ([pa.int32(), pa.int32()], pa.int32()),
    ([pa.int32(), pa.int64(), pa.int8()], pa.int64()),
    ([pa.int64(), pa.float32()], pa.float64()),
    ([pa.string(), pa.large_string()], pa.large_string()),
    ([pa.null(), pa.int16()], pa.int16()),
    ([pa.null(), pa.null()], pa.null()),
    ([pa.list_(pa.float32()), pa.list_(pa.float64())], pa.list_(pa.float32())),
])
def test_one_rule_agrees_on_a_columns_arrow_type(types, agreed):
    assert script.agreed_arrow_type(types) == agreed
