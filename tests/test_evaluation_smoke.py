"""A seconds-long version of ``make evaluate``: one data set, one seed, two rounds, two strategies."""

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from active_sampling.evaluation import EvaluationConfig, run_evaluation, write_report
from active_sampling.evaluation.__main__ import main as evaluation_cli
from active_sampling.evaluation.committee import dropout_members, stratified_bootstrap
from active_sampling.evaluation.config import COMMITTEE_STRATEGIES, HYBRID_STRATEGIES
from active_sampling.evaluation.models import fit_model, load_dataset
from active_sampling.evaluation.report import area_under_curve, head_to_head, per_seed_metrics
from active_sampling.evaluation.simulation import initial_labeled_set

TINY = dict(datasets=("wine",), models=("logistic_regression",), strategies=("random", "margin"), seeds=1,
            rounds=2, ssl_thresholds=(0.9,), workers=1, run_precision_study=False)


@pytest.fixture(scope="module")
def results():
    return run_evaluation(EvaluationConfig(**TINY))


def test_learning_curves_have_one_row_per_budget_and_valid_scores(results):
    curves = results.curves
    setting = results.config.setting("wine")
    assert set(curves["strategy"]) == {"random", "margin"}
    for _, curve in curves.groupby("strategy"):
        expected = [setting.initial_size + r * setting.batch_size for r in range(setting.rounds + 1)]
        assert curve["labels"].tolist() == expected
    assert curves[["accuracy", "macro_f1"]].stack().between(0.0, 1.0).all()
    first_round = curves[curves["round"] == 0]
    assert first_round["accuracy"].nunique() == 1, "every strategy must start from the same labeled set"


def test_the_script_ran_for_every_non_random_round_and_every_ssl_method(results):
    rounds_of_margin = results.config.setting("wine").rounds
    ssl_methods = len(results.config.ssl_thresholds) + 1
    assert results.script_calls == rounds_of_margin + ssl_methods


def test_ssl_measurements_are_shares_and_gains_of_real_retraining(results):
    ssl = results.ssl
    assert ssl["method"].tolist() == ["confidence_threshold 0.9", ssl["method"].iloc[1]]
    assert ssl["method"].iloc[1].startswith("top_k_per_class k=")
    assert ssl["coverage"].between(0.0, 1.0).all() and ssl["precision"].dropna().between(0.0, 1.0).all()
    assert (ssl["selected"] <= ssl["unlabeled"]).all()
    assert ssl[["accuracy_with", "accuracy_without"]].stack().between(0.0, 1.0).all()


def test_report_has_tables_and_figures(results, tmp_path):
    path = write_report(results, tmp_path, "python -m active_sampling.evaluation --tiny")
    text = path.read_text()
    assert "python -m active_sampling.evaluation --tiny" in text
    for heading in ("## Summary", "## wine / logistic_regression", "## Semi-supervised learning"):
        assert heading in text
    assert "| margin |" in text and "| random |" in text
    figures = sorted(p.name for p in (tmp_path / "figures").glob("*.png"))
    assert figures == ["al_wine_logistic_regression.png", "ssl_precision_coverage.png"]
    for figure in figures:
        assert (tmp_path / "figures" / figure).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_area_under_curve_is_the_mean_accuracy_over_the_label_range():
    assert area_under_curve(np.array([10, 20, 40]), np.array([0.8, 0.8, 0.8])) == pytest.approx(0.8)
    assert area_under_curve(np.array([0, 10, 30]), np.array([0.0, 0.25, 0.75])) == pytest.approx(0.375)


def test_label_savings_count_the_labels_needed_to_reach_randoms_final_accuracy():
    curves = pd.DataFrame({
        "dataset": "d", "model": "m", "seed": 0, "labels": [10, 20, 30] * 3,
        "strategy": ["random"] * 3 + ["fast"] * 3 + ["slow"] * 3,
        "accuracy": [0.5, 0.6, 0.7, 0.5, 0.7, 0.8, 0.5, 0.55, 0.6],
    }).assign(macro_f1=lambda frame: frame["accuracy"])
    metrics = per_seed_metrics(curves).set_index("strategy")
    assert metrics.loc["fast", "labels_to_random_final"] == 20
    assert metrics.loc["fast", "label_savings_pct"] == pytest.approx(100 / 3)
    assert np.isnan(metrics.loc["slow", "labels_to_random_final"])
    assert metrics.loc["slow", "aulc_vs_random"] < 0 < metrics.loc["fast", "aulc_vs_random"]


def test_initial_set_holds_every_class_and_is_seeded():
    y = np.repeat([0, 1, 2], [50, 5, 1])
    first = initial_labeled_set(y, 6, np.random.default_rng(3))
    assert set(y[first]) == {0, 1, 2} and len(set(first)) == 6
    assert first == initial_labeled_set(y, 6, np.random.default_rng(3))


def test_random_baseline_is_required():
    with pytest.raises(ValidationError, match="random"):
        EvaluationConfig(strategies=("margin", "badge"))


def test_cli_rejects_unknown_strategy_without_running(capsys):
    assert evaluation_cli(["--strategies", "random", "coin_flip", "--no-figures"]) == 2
    assert "coin_flip" in capsys.readouterr().err


def test_head_to_head_calls_wins_ties_and_losses_by_two_standard_errors():
    # Paired differences per seed: a = +0.02, +0.03, +0.04 (mean 0.03, se 0.0058): wins;
    # b = +0.05, -0.04, +0.02 (mean 0.01, se 0.026): ties; c = -0.01, -0.01, -0.02: loses.
    reference = [0.80, 0.70, 0.90]
    offsets = {"a": [0.02, 0.03, 0.04], "b": [0.05, -0.04, 0.02], "c": [-0.01, -0.01, -0.02]}
    rows = [{"dataset": "d", "model": "m", "strategy": "ref", "seed": seed, "aulc": value}
            for seed, value in enumerate(reference)]
    rows += [{"dataset": "d", "model": "m", "strategy": name, "seed": seed, "aulc": reference[seed] + offset}
             for name, values in offsets.items() for seed, offset in enumerate(values)]
    duels = head_to_head(pd.DataFrame(rows), ["a", "b", "c", "absent"], ["ref"]).set_index("strategy")
    assert duels["verdict"].to_dict() == {"a": "wins", "b": "ties", "c": "loses"}
    assert duels.loc["a", "difference"] == "+0.030 ± 0.010"


def test_pendigits_is_the_whole_uci_set_shipped_offline():
    X, y = load_dataset("pendigits")
    assert X.shape == (10992, 16)
    assert np.bincount(y).tolist() == [1143, 1143, 1144, 1055, 1144, 1055, 1056, 1142, 1055, 1055]
    assert X.min() == 0 and X.max() == 100


def test_mlp_embedding_is_the_input_of_its_softmax_layer():
    X, y = load_dataset("wine")
    model = fit_model("mlp", X[::3], y[::3], X, n_classes=3, seed=0)
    hidden = model.embed(X)
    assert hidden.shape == (len(X), 64) and (hidden >= 0).all()
    # A softmax layer on the embedding must reproduce predict_proba: refit the same output layer by hand.
    probabilities = model.predict_proba(X)
    logits = np.log(probabilities)
    centered = logits - logits.mean(axis=1, keepdims=True)
    solution, *_ = np.linalg.lstsq(np.c_[hidden, np.ones(len(X))], centered, rcond=None)
    assert np.allclose(np.c_[hidden, np.ones(len(X))] @ solution, centered, atol=1e-6)


def test_every_hybrid_configuration_runs_through_the_script():
    results = run_evaluation(EvaluationConfig(**dict(TINY, strategies=("random",) + HYBRID_STRATEGIES), run_ssl=False))
    assert set(results.curves["strategy"]) == {"random", *HYBRID_STRATEGIES}
    assert results.script_calls == len(HYBRID_STRATEGIES) * results.config.setting("wine").rounds


def test_committee_runs_through_the_script_and_dropout_only_with_the_mlp():
    config = EvaluationConfig(**dict(TINY, models=("logistic_regression", "gradient_boosting"),
                                     strategies=("random",) + COMMITTEE_STRATEGIES), run_ssl=False)
    bagged = ("committee_bagged", "committee_bagged_vote")
    assert {job.strategies for job in config.jobs} == {("random",) + bagged}
    results = run_evaluation(config)
    assert set(results.curves["strategy"]) == {"random", *bagged}
    assert results.script_calls == 2 * len(bagged) * results.config.setting("wine").rounds


def test_dropout_passes_at_rate_zero_are_the_mlp_itself_and_differ_otherwise():
    X, y = load_dataset("breast_cancer")
    model = fit_model("mlp", X[::4], y[::4], X, n_classes=2, seed=0)  # two classes: one logistic output unit
    rng = np.random.default_rng(0)
    np.testing.assert_allclose(model.hidden_passes(X, rng, 0.0), model.predict_proba(X), rtol=1e-10, atol=1e-12)
    members = dropout_members(model, X, rng, n_passes=4, rate=0.2)
    assert members.shape == (4, len(X), 2) and np.allclose(members.sum(axis=2), 1.0)
    assert not np.allclose(members[0], members[1])
    X, y = load_dataset("wine")
    model = fit_model("mlp", X[::3], y[::3], X, n_classes=3, seed=0)  # softmax output
    np.testing.assert_allclose(model.hidden_passes(X, rng, 0.0), model.predict_proba(X), rtol=1e-10, atol=1e-12)
    with pytest.raises(ValueError, match="needs the mlp"):
        dropout_members(fit_model("logistic_regression", X, y, X, 3, 0), X, rng)


def test_bagged_members_resample_within_each_class():
    y = np.array([0, 0, 0, 1, 1, 2])
    rows = stratified_bootstrap(y, np.random.default_rng(1))
    assert np.bincount(y[rows]).tolist() == [3, 2, 1]
