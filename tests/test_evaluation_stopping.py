"""The stopping study: agreement per round (sklearn's cohen_kappa_score as the oracle), stop points by hand."""

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import cohen_kappa_score

from active_sampling.evaluation import EvaluationConfig, run_evaluation, write_report
from active_sampling.evaluation.stopping import (
    SECTION_END, SECTION_START, round_agreement, stop_points, stopping_section, write_section)


@pytest.mark.parametrize("seed", range(20))
def test_round_agreement_is_sklearns_kappa_over_the_unlabeled_rows(seed):
    rng = np.random.default_rng(seed)
    n, k = int(rng.integers(30, 300)), int(rng.integers(2, 6))
    before, after = rng.dirichlet(np.ones(k), size=n), rng.dirichlet(np.ones(k), size=n)
    same = rng.random(n) < 0.6  # mostly agreeing models
    after[same] = before[same]
    labeled = sorted(rng.choice(n, size=int(rng.integers(0, n // 2)), replace=False).tolist())
    unlabeled = np.setdiff1d(np.arange(n), labeled)
    expected = cohen_kappa_score(before[unlabeled].argmax(axis=1), after[unlabeled].argmax(axis=1))
    assert round_agreement(before, after, labeled) == pytest.approx(expected, abs=1e-12)
    assert np.isnan(round_agreement(None, after, labeled))


def curve(strategy, agreement, accuracy, labels=(10, 20, 30, 40)):
    return pd.DataFrame({"dataset": "d", "model": "m", "strategy": strategy, "seed": 0,
                         "round": range(len(labels)), "labels": labels, "accuracy": accuracy,
                         "agreement": agreement})


def test_stop_points_by_hand():
    curves = pd.concat([
        curve("stops", [np.nan, 0.9, 0.995, 0.999], [0.5, 0.7, 0.8, 0.85]),
        curve("never", [np.nan, 0.9, 0.95, 0.98], [0.5, 0.6, 0.7, 0.9]),
        curve("at_the_end", [np.nan, 0.9, 0.95, 0.99], [0.5, 0.6, 0.7, 0.9]),
    ])
    points = stop_points(curves, 0.99).set_index("strategy")
    # stops: round 2 (0.995 >= 0.99) with 30 labels at 0.80; the final round has 40 at 0.85.
    assert points.loc["stops", ["stopped", "stop_round", "stop_labels", "labels_saved"]].tolist() == [True, 2, 30, 10]
    assert points.loc["stops", "accuracy_cost"] == pytest.approx(0.05)
    assert points.loc["never", ["stopped", "stop_round", "labels_saved", "accuracy_cost"]].tolist() == [False, 3, 0, 0.0]
    assert points.loc["at_the_end", ["stopped", "stop_round", "labels_saved"]].tolist() == [True, 3, 0]
    assert stop_points(curves, 0.9).set_index("strategy").loc["never", "stop_round"] == 1


def test_section_replaces_only_its_own_lines(tmp_path):
    document = tmp_path / "evaluation.md"
    document.write_text("# Evaluation\n\nkept above\n")
    curves = curve("stops", [np.nan, 0.9, 0.995, 0.999], [0.5, 0.7, 0.8, 0.85])
    write_section(document, stopping_section(curves, "cmd one"))
    document.write_text(document.read_text() + "kept below\n")
    write_section(document, stopping_section(curves, "cmd two"))
    text = document.read_text()
    assert text.startswith("# Evaluation\n\nkept above\n") and text.endswith(SECTION_END + "\nkept below\n")
    assert text.count(SECTION_START) == 1 and "cmd two" in text and "cmd one" not in text
    assert "stopped 1" in text


def test_simulation_records_the_agreement_of_every_round_after_the_first(tmp_path):
    results = run_evaluation(EvaluationConfig(datasets=("wine",), models=("logistic_regression",),
                                              strategies=("random", "margin"), seeds=1, rounds=2, run_ssl=False,
                                              workers=1))
    curves = results.curves
    assert curves.loc[curves["round"] == 0, "agreement"].isna().all()
    later = curves.loc[curves["round"] > 0, "agreement"]
    assert later.notna().all() and later.between(-1.0, 1.0).all()
    text = write_report(results, tmp_path, "make evaluate", figures=False).read_text()
    assert text.count(SECTION_START) == 1 and text.count(SECTION_END) == 1  # the full report writes it too
