"""The committed digits prediction table and the demo that runs the script on it."""

import importlib.util
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
PREDICTIONS = EXAMPLES / "data" / "digits_predictions" / "predictions.csv"
TRUTH = EXAMPLES / "data" / "digits_truth.csv"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"examples_{name}", EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def committed() -> pd.DataFrame:
    return pd.read_csv(PREDICTIONS)


def test_table_has_the_documented_columns_and_size(committed):
    expected = (
        ["id"]
        + [f"pix_{j}" for j in range(64)]
        + [f"prob_class_{k}" for k in range(10)]
        + [f"emb_{j}" for j in range(32)]
        + ["label"]
    )
    assert list(committed.columns) == expected
    assert PREDICTIONS.stat().st_size < 1_000_000
    assert committed["id"].is_unique and len(committed) == 1797
    probabilities = committed.filter(like="prob_class_").to_numpy()
    assert np.abs(probabilities.sum(axis=1) - 1.0).max() <= 1e-3


def test_only_the_training_rows_carry_their_true_label(committed):
    truth = pd.read_csv(TRUTH).set_index("id")["label"]
    labeled = committed.dropna(subset=["label"])
    assert len(labeled) == 100
    assert labeled["label"].value_counts().eq(10).all()
    assert (labeled["label"].astype(int).to_numpy() == truth.reindex(labeled["id"]).to_numpy()).all()


def test_committed_table_is_what_the_script_regenerates(committed):
    predictions, truth = _load("make_example_data").build_tables()
    assert list(predictions.columns) == list(committed.columns)
    assert (predictions["id"] == committed["id"]).all()
    exact = [c for c in committed.columns if c.startswith("pix_")]
    assert (predictions[exact].to_numpy() == committed[exact].to_numpy()).all()
    assert np.array_equal(predictions["label"].to_numpy(dtype=float, na_value=np.nan),
                          committed["label"].to_numpy(dtype=float), equal_nan=True)
    # BLAS and library versions may move the last rounded digit; anything larger means a stale table.
    model_columns = [c for c in committed.columns if c.startswith(("prob_class_", "emb_"))]
    np.testing.assert_allclose(predictions[model_columns].to_numpy(dtype=float),
                               committed[model_columns].to_numpy(), atol=2e-3)
    assert truth.equals(pd.read_csv(TRUTH))


def test_demo_writes_both_selections_and_a_summary(tmp_path, capsys):
    demo = _load("demo")
    assert demo.main(["--output-dir", str(tmp_path)]) == 0
    printed = capsys.readouterr().out
    committed_labeled = set(pd.read_csv(PREDICTIONS).dropna(subset=["label"])["id"])
    for name in demo.RUNS:
        samples = tmp_path / name / "selected_samples" / "selected_samples.csv"
        metadata = json.loads((tmp_path / name / "selection_metadata" / "selection_metadata.json").read_text())
        selected = pd.read_csv(samples)
        assert str(samples) in printed
        assert len(selected) == metadata["selected_count"] > 0
        assert not committed_labeled & set(selected["id"])
        assert sum(metadata["selected_per_class"].values()) == len(selected)
    tasks_path = tmp_path / "active_learning_hybrid" / "labeling_tasks" / "label_studio_tasks.json"
    tasks = json.loads(tasks_path.read_text())
    hybrid = pd.read_csv(tmp_path / "active_learning_hybrid" / "selected_samples" / "selected_samples.csv")
    assert str(tasks_path) in printed
    assert [task["data"]["id"] for task in tasks] == hybrid["id"].astype(str).tolist()
    assert all(len(task["data"]["picture"].split("\n")) == 8 for task in tasks)
    config = (tmp_path / "active_learning_hybrid" / "labeling_tasks" / "label_studio_config.xml").read_text()
    assert [f'<Choice value="{digit}"/>' in config for digit in range(10)] == [True] * 10
    ssl = pd.read_csv(tmp_path / "ssl_confidence_threshold" / "selected_samples" / "selected_samples.csv")
    assert ssl["confidence"].min() >= 0.9
    assert len(pd.read_csv(tmp_path / "active_learning_hybrid" / "selected_samples" / "selected_samples.csv")) == 20
    assert "pseudo-label precision against the true digits" in printed


def test_pseudo_label_precision_is_measured_against_the_truth_file(tmp_path):
    demo = _load("demo")
    results = demo.run_demo(tmp_path)
    selected = results["ssl_confidence_threshold"]["selected"]
    truth = pd.read_csv(TRUTH).set_index("id")["label"]
    wrong = selected.assign(pseudo_label=(truth.reindex(selected["id"]).to_numpy() + 1) % 10)
    assert demo.pseudo_label_precision(wrong) == 0.0
    assert 0.9 < results["ssl_confidence_threshold"]["precision"] <= 1.0


def test_the_hybrid_picks_rows_the_model_gets_wrong_more_often_than_the_pool(tmp_path):
    demo = _load("demo")
    selected_rate, pool_rate = demo.run_demo(tmp_path)["active_learning_hybrid"]["error_rates"]
    assert selected_rate > 2 * pool_rate
