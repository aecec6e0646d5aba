"""The calibration_data / precision_target study: its split, one real job through the script, its tables."""

import numpy as np
import pandas as pd
import pytest

from active_sampling.evaluation import precision_study as study
from active_sampling.evaluation.models import load_dataset


def test_split_keeps_test_labeled_calibration_and_pool_apart_and_nests_the_calibration_sets():
    _, y = load_dataset("satimage")
    test, labeled, calibration, pool = study.split_rows(y, seed=3)
    parts = [test, labeled, calibration, pool]
    assert sum(len(part) for part in parts) == len(y) == len(np.unique(np.concatenate(parts)))
    assert np.bincount(y[labeled]).tolist() == [study.LABELED_PER_CLASS] * 6
    assert len(calibration) == max(study.CALIBRATION_SIZES) * 6
    again = study.split_rows(y, seed=3)
    assert all(np.array_equal(a, b) for a, b in zip(parts, again))


@pytest.fixture(scope="module")
def job_records():
    return pd.DataFrame(study.run_study_job(study.StudyJob("magic", "logistic_regression", 0)).records)


def test_one_job_measures_every_method_at_every_calibration_size(job_records):
    methods = [name for name, _, _ in study.ssl_methods(1)]
    assert len(job_records) == len(study.CALIBRATION_SIZES) * (len(methods) + 1)
    for method, group in job_records.groupby("method"):
        assert group["calibration_per_class"].tolist() == list(study.CALIBRATION_SIZES), method
        if method.startswith(("confidence_threshold", "top_k")):  # the selection does not read calibration rows
            assert group["selected"].nunique() == 1 and group["accuracy_with"].nunique() == 1
    ssl = job_records[job_records["method"] != study.TRAIN_INSTEAD]
    chosen = ssl[ssl["selected"] > 0]
    assert chosen["true_precision"].between(0, 1).all() and chosen["estimate"].between(0, 1).all()
    assert (chosen["interval_low"] <= chosen["estimate"]).all()
    assert (chosen["estimate"] <= chosen["interval_high"]).all()


def test_method_table_counts_runs_below_the_target():
    records = pd.DataFrame({
        "method": ["m"] * 4, "calibration_per_class": [40] * 4, "pool": [100] * 4, "classes": [2] * 4,
        "selected": [10, 20, 0, 40], "true_precision": [0.99, 0.945, np.nan, 0.90],
        "estimate": [0.98, 0.96, np.nan, 0.93], "interval_low": [0.9, 0.9, np.nan, 0.95],
        "interval_high": [1.0, 1.0, np.nan, 0.99], "classes_with_pseudo_labels": [2, 2, 0, 1],
        "classes_below_target": [0, 1, 0, 1], "class_mix_tv": [0.1, 0.2, np.nan, 0.3],
        "gain": [0.01, -0.02, 0.0, 0.03],
    })
    (row,) = study.method_table(records).to_dict("records")
    assert row["runs with pseudo-labels"] == "3/4"
    assert row["below 0.95"] == "2/3" and row["below 0.94"] == "1/3"
    assert row["classes below 0.95"] == "2/5"
    assert row["interval covers"] == "2/3"  # 0.90 lies outside [0.95, 0.99]
    assert row["estimate error (pp)"] == "1.8"  # (1 + 1.5 + 3) / 3 = 1.83
    assert row["coverage %"] == "17.5" and row["gain > 0"] == "2/4" and row["gain < 0"] == "1/4"


def test_the_section_replaces_its_old_self_and_nothing_else():
    document = "# page\n\nintro\n\n" + study.SECTION_START + "\nold\n" + study.SECTION_END + "\n\n## after\n"
    updated = study.replace_section(document, [study.SECTION_START, "new", study.SECTION_END])
    assert updated == "# page\n\nintro\n\n" + study.SECTION_START + "\nnew\n" + study.SECTION_END + "\n\n## after\n"
    assert study.replace_section("# page\n", ["x"]) == "# page\n\nx\n"
