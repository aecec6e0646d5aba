"""The stopping block against scikit-learn on random tables: cohen_kappa_score as the kappa oracle.

Random ids overlap partly, some rows are labeled now, and last round's score columns come in another order;
the expected kappa is sklearn's over the ids both tables hold that are unlabeled now, and the uncertainty
figures are recomputed here from the probabilities (1 - (p1 - p2)).
"""

import argparse

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import cohen_kappa_score

from active_sampling.scripts import active_sample_selection as script


def random_round(rng, ids, n_classes, concentration):
    probabilities = rng.dirichlet(np.full(n_classes, concentration), size=len(ids))
    table = pd.DataFrame({"id": ids})
    for c in range(n_classes):
        table["prob_class_{}".format(c)] = probabilities[:, c]
    return table, probabilities


@pytest.mark.parametrize("seed", range(40))
def test_block_agrees_with_sklearn(tmp_path, seed):
    rng = np.random.default_rng(seed)
    n_classes = int(rng.integers(2, 6))
    universe = np.array(["id-{}".format(i) for i in range(int(rng.integers(20, 400)))])
    current_ids = rng.choice(universe, size=int(rng.integers(10, len(universe) + 1)), replace=False)
    previous_ids = rng.choice(universe, size=int(rng.integers(10, len(universe) + 1)), replace=False)
    current, p_now = random_round(rng, current_ids, n_classes, float(rng.uniform(0.2, 3)))
    previous, p_before = random_round(rng, previous_ids, n_classes, float(rng.uniform(0.2, 3)))
    labeled = rng.random(len(current)) < rng.uniform(0, 0.5)
    current["label"] = np.where(labeled, "x", "")
    previous = previous[["id"] + list(previous.columns[1:][::-1])]  # other column order

    for name, table in (("current", current), ("previous", previous)):
        (tmp_path / name).mkdir()
        table.to_parquet(str(tmp_path / name / "part.parquet"), index=False)
    metadata = script.main(
        {"evaluation_data": str(tmp_path / "current"), "previous_predictions": str(tmp_path / "previous")},
        {"selected_samples": str(tmp_path / "samples"), "selection_metadata": str(tmp_path / "metadata")},
        {"SELECTION_STRATEGY": "uncertainty", "BATCH_SIZE": "3", "LABEL_FIELD": "label"},
        argparse.Namespace(job_type="oracle"))
    block = metadata["stopping"]

    before = dict(zip(previous_ids, p_before.argmax(axis=1)))
    common = [i for i, row_id in enumerate(current_ids) if row_id in before and not labeled[i]]
    assert block["common_rows"] == len(common)
    now = p_now.argmax(axis=1)[common]
    then = np.array([before[current_ids[i]] for i in common])
    if not common:
        assert block["prediction_agreement"] is None
    elif len(set(now) | set(then)) == 1:
        assert block["prediction_agreement"] == 1.0  # sklearn: 0/0 (nan)
    else:
        assert block["prediction_agreement"] == pytest.approx(
            cohen_kappa_score(then, now, labels=list(range(n_classes))), abs=1e-12)

    top_two = np.sort(p_now[~labeled], axis=1)[:, -2:]
    margin = 1.0 - (top_two[:, 1] - top_two[:, 0])
    assert block["max_uncertainty"] == pytest.approx(margin.max(), abs=1e-12)
    assert block["mean_uncertainty"] == pytest.approx(margin.mean(), abs=1e-11)
    assert block["labeled_count"] == int(labeled.sum())


@pytest.mark.parametrize("seed", range(200))
def test_kappa_matches_sklearn_on_random_confusions(seed):
    rng = np.random.default_rng(1000 + seed)
    n_classes = int(rng.integers(2, 8))
    n = int(rng.integers(2, 500))
    agree = rng.uniform(0, 1)
    first = rng.integers(0, n_classes, size=n)
    second = np.where(rng.random(n) < agree, first, rng.integers(0, n_classes, size=n))
    if len(set(first) | set(second)) == 1:
        pytest.skip("one class everywhere: sklearn's kappa is 0/0")
    confusion = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(confusion, (first, second), 1)
    assert script.cohen_kappa(confusion) == pytest.approx(cohen_kappa_score(first, second), abs=1e-12)
