"""calibration_data, precision estimates and the precision_target strategy.

Expected values come from closed forms (a lower bound with no error is ``(1 - c) ** (1 / n)``), from published
Clopper-Pearson intervals, from the binomial tail the bound is defined by (summed here with ``math.comb``), and
from brute-force counts written out below; scipy appears only where a test re-derives a beta quantile itself.
"""

import argparse
import logging
import math

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import sharding as sim
from conftest import script_module as script, write_table

scipy_stats = pytest.importorskip("scipy.stats")


# ---- Clopper-Pearson -----------------------------------------------------------------------------------------

def binomial_tail(k, n, p):
    """P(X >= k) for X ~ Binomial(n, p), summed term by term."""
    return sum(math.comb(n, j) * p ** j * (1 - p) ** (n - j) for j in range(k, n + 1))


def test_59_of_59_correct_is_just_above_95_percent_and_58_of_58_is_not():
    assert script.clopper_pearson_lower(59, 59, 0.95) == pytest.approx(0.05 ** (1 / 59), abs=1e-12)
    assert 0.95 < script.clopper_pearson_lower(59, 59, 0.95) < 0.9506
    assert script.clopper_pearson_lower(58, 58, 0.95) < 0.95
    assert script.minimum_calibration_rows(0.95, 0.95) == 59


@pytest.mark.parametrize("target, confidence", [(0.95, 0.95), (0.9, 0.95), (0.99, 0.9), (0.8, 0.5), (0.97, 0.99)])
def test_minimum_rows_is_the_smallest_count_whose_all_correct_bound_reaches_the_target(target, confidence):
    n = next(n for n in range(1, 100000) if (1 - confidence) ** (1 / n) >= target)
    assert script.minimum_calibration_rows(target, confidence) == n


@pytest.mark.parametrize("k, n, low, high", [
    (5, 10, 0.187086, 0.812914),   # the classic table values
    (1, 10, 0.002529, 0.445016),
    (0, 10, 0.0, 0.308497),
    (10, 10, 0.691503, 1.0),
    (50, 100, 0.398321, 0.601679),
])
def test_two_sided_interval_matches_published_values(k, n, low, high):
    lower, upper = script.clopper_pearson_interval(k, n, 0.95)
    assert float(lower) == pytest.approx(low, abs=2e-6)
    assert float(upper) == pytest.approx(high, abs=2e-6)


def test_interval_ends_have_closed_forms_at_zero_and_all_successes():
    for n in (1, 3, 17, 200):
        lower, upper = script.clopper_pearson_interval(0, n, 0.95)
        assert lower == 0.0 and upper == pytest.approx(1 - 0.025 ** (1 / n), abs=1e-12)
        lower, upper = script.clopper_pearson_interval(n, n, 0.95)
        assert upper == 1.0 and lower == pytest.approx(0.025 ** (1 / n), abs=1e-12)


@pytest.mark.parametrize("seed", range(5))
def test_bounds_are_where_the_binomial_tail_equals_the_error_rate(seed):
    rng = np.random.default_rng(seed)
    for _ in range(20):
        n = int(rng.integers(1, 80))
        k = int(rng.integers(1, n + 1))
        confidence = float(rng.choice([0.8, 0.9, 0.95, 0.99]))
        lower = float(script.clopper_pearson_lower(k, n, confidence))
        assert binomial_tail(k, n, lower) == pytest.approx(1 - confidence, abs=1e-9)
        two_low, two_high = script.clopper_pearson_interval(k, n, confidence)
        assert binomial_tail(k, n, float(two_low)) == pytest.approx((1 - confidence) / 2, abs=1e-9)
        if k < n:  # P(X <= k | p = upper) = alpha / 2
            assert 1 - binomial_tail(k + 1, n, float(two_high)) == pytest.approx((1 - confidence) / 2, abs=1e-9)


@pytest.mark.parametrize("precision, target, confidence", [(0.99, 0.95, 0.95), (0.97, 0.95, 0.95), (0.9, 0.8, 0.9)])
def test_rows_needed_is_where_the_bound_at_that_precision_first_reaches_the_target(precision, target, confidence):
    needed = script.rows_needed(precision, target, confidence)
    bound = lambda n: float(script.clopper_pearson_lower(math.floor(precision * n), n, confidence))  # noqa: E731
    assert bound(needed) >= target
    assert bound(int(needed * 0.98) - 1) < target  # within the 1 % the search allows
    assert script.rows_needed(target, target, confidence) is None  # a precision at the target never suffices
    assert script.rows_needed(1.0, target, confidence) == script.minimum_calibration_rows(target, confidence)


def test_no_trials_give_no_bound_and_impossible_counts_are_refused():
    assert np.isnan(script.clopper_pearson_lower(0, 0, 0.95))
    assert all(np.isnan(end) for end in script.clopper_pearson_interval(0, 0))
    with pytest.raises(ValueError):
        script.clopper_pearson_lower(5, 4, 0.95)


# ---- The fixed-sequence scan ---------------------------------------------------------------------------------

def naive_scan(confidence, correct, target, level, fixed_sequence=True):
    """Straight from the definition: distinct confidences from the highest down, counts by a loop."""
    minimum = next(n for n in range(1, 10**6) if (1 - level) ** (1 / n) >= target)
    accepted = math.inf
    for threshold in sorted(set(confidence.tolist()), reverse=True):
        above = confidence >= threshold
        n, k = int(above.sum()), int((above & correct).sum())
        if n < minimum:
            continue
        bound = scipy_stats.beta.ppf(1 - level, k, n - k + 1) if k else 0.0
        if bound >= target:
            accepted = threshold
        elif fixed_sequence:
            break
    return accepted


def test_a_threshold_where_noise_crosses_the_bar_again_is_not_chosen():
    # 70 correct rows, then 8 errors, then 400 correct: over all rows the bound passes again (470/478), but the
    # fixed sequence stops at the first failure, right after the 70th row.
    correct = np.r_[np.ones(70), np.zeros(8), np.ones(400)].astype(bool)
    confidence = np.linspace(0.999, 0.6, correct.size)
    found = script.fixed_sequence_threshold(confidence, correct, 0.95, 0.95)
    assert found.threshold == confidence[69] and (found.rows, found.correct) == (70, 70)
    lowest_passing = naive_scan(confidence, correct, 0.95, 0.95, fixed_sequence=False)
    assert lowest_passing == confidence[-1] < found.threshold  # what the other rule would have taken


def test_at_a_precision_just_at_the_target_the_scan_accepts_about_as_often_as_its_level_allows():
    # Every row is correct with probability 0.95 = the target: any accepted threshold is a false acceptance.
    # The fixed sequence keeps that near 1 - level = 5 %; taking the lowest threshold that passes anywhere does not.
    rng = np.random.default_rng(0)
    confidence = np.linspace(0.999, 0.5, 400)
    fixed = anywhere = 0
    trials = 400
    for _ in range(trials):
        correct = rng.random(400) < 0.95
        fixed += math.isfinite(script.fixed_sequence_threshold(confidence, correct, 0.95, 0.95).threshold)
        rows = np.arange(1, 401)
        bounds = script.clopper_pearson_lower(np.cumsum(correct), rows, 0.95)
        anywhere += bool((bounds[rows >= 59] >= 0.95).any())
    assert fixed / trials <= 0.075
    assert anywhere / trials > 1.5 * fixed / trials


def test_fewer_rows_than_can_ever_pass_give_no_threshold():
    confidence = np.linspace(0.99, 0.9, 58)
    assert script.fixed_sequence_threshold(confidence, np.ones(58, bool), 0.95, 0.95).threshold == math.inf
    found = script.fixed_sequence_threshold(np.linspace(0.99, 0.9, 59), np.ones(59, bool), 0.95, 0.95)
    assert (found.threshold, found.rows) == (0.9, 59)


def test_an_early_error_stops_the_scan_before_it_starts():
    correct = np.ones(300, bool)
    correct[3] = False  # 58 of the first 59 correct: the first testable threshold fails
    confidence = np.linspace(0.999, 0.7, 300)
    assert script.fixed_sequence_threshold(confidence, correct, 0.95, 0.95).threshold == math.inf


def test_tied_confidences_are_one_threshold():
    # 80 rows at 0.99 (one wrong) and 100 at 0.9: the 80 are tested together, never split.
    confidence = np.r_[np.full(80, 0.99), np.full(100, 0.9)]
    correct = np.ones(180, bool)
    correct[0] = False
    found = script.fixed_sequence_threshold(confidence, correct, 0.9, 0.95)
    assert found == (0.9, 180, 179)


@pytest.mark.parametrize("seed", range(30))
def test_scan_agrees_with_the_definition_on_random_calibration_sets(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(20, 400))
    confidence = np.round(rng.uniform(0.5, 1.0, n), int(rng.integers(2, 5)))  # coarse values: many ties
    correct = rng.random(n) < np.clip(confidence + rng.uniform(-0.1, 0.1), 0, 1)
    target = float(rng.choice([0.8, 0.9, 0.95]))
    level = float(rng.choice([0.8, 0.95]))
    found = script.fixed_sequence_threshold(confidence, correct, target, level)
    assert found.threshold == naive_scan(confidence, correct, target, level)
    if math.isfinite(found.threshold):
        above = confidence >= found.threshold
        assert (found.rows, found.correct) == (int(above.sum()), int((above & correct).sum()))


# ---- The precision_target sampler ----------------------------------------------------------------------------

def two_class_probabilities(confidence, predicted):
    probabilities = np.empty((len(confidence), 2))
    probabilities[np.arange(len(confidence)), predicted] = confidence
    probabilities[np.arange(len(confidence)), 1 - predicted] = 1 - confidence
    return probabilities


def calibration_set(rows_per_class, wrong_per_class, seed=0):
    """Two classes; each class's wrong rows are its least confident ones."""
    rng = np.random.default_rng(seed)
    confidence, predicted, labels = [], [], []
    for position, (rows, wrong) in enumerate(zip(rows_per_class, wrong_per_class)):
        values = np.sort(rng.uniform(0.6, 1.0, rows))[::-1]
        confidence.append(values)
        predicted.append(np.full(rows, position))
        labels.append(np.where(np.arange(rows) >= rows - wrong, 1 - position, position))
    predicted = np.concatenate(predicted)
    return two_class_probabilities(np.concatenate(confidence), predicted), np.concatenate(labels)


def test_a_class_that_cannot_be_shown_precise_gets_no_pseudo_labels():
    calibration = calibration_set([200, 40], [0, 0])  # class 1: 40 rows, fewer than the 59 needed
    pool = two_class_probabilities(np.linspace(0.99, 0.61, 100), np.arange(100) % 2)
    chosen = script.PrecisionTargetSampler().select_batch(pool, *calibration)
    assert len(chosen) > 0 and set(pool[chosen].argmax(axis=1)) == {0}
    # class 0's threshold is its lowest calibration confidence (every row is correct)
    threshold = calibration[0][:200, 0].min()
    assert sorted(chosen.tolist()) == [i for i in range(0, 100, 2) if pool[i, 0] >= threshold]


def test_align_caps_each_class_at_its_calibration_share_of_the_total():
    calibration = calibration_set([300, 300], [0, 0])  # calibration labels half and half
    confidence = np.r_[np.linspace(0.999, 0.95, 300), np.linspace(0.999, 0.95, 100)]
    pool = two_class_probabilities(confidence, np.r_[np.zeros(300, int), np.ones(100, int)])
    free = script.PrecisionTargetSampler().select_batch(pool, *calibration)
    aligned = script.PrecisionTargetSampler(class_balance="align").select_batch(pool, *calibration)
    assert np.bincount(pool[free].argmax(1), minlength=2).tolist() == [300, 100]
    # total 400, shares 0.5: class 0 keeps its 200 most confident rows, class 1 all 100
    assert np.bincount(pool[aligned].argmax(1), minlength=2).tolist() == [200, 100]
    assert set(aligned[pool[aligned].argmax(1) == 0].tolist()) == set(range(200))


def test_select_batch_returns_entries_of_indices_one_per_row():
    calibration = calibration_set([100, 100], [0, 0])
    pool = two_class_probabilities(np.array([0.99, 0.5, 0.98]), np.array([0, 1, 1]))
    sampler = script.PrecisionTargetSampler()
    assert sampler.select_batch(pool, *calibration).tolist() == [0, 2]
    labels = np.array(["a", "b", "c"])
    assert sampler.select_batch(pool, *calibration, indices=labels).tolist() == ["a", "c"]
    with pytest.raises(ValueError, match="indices has 2 entries but probabilities has 3 rows"):
        sampler.select_batch(pool, *calibration, indices=np.array([10, 20]))


@pytest.mark.parametrize("settings, message", [
    ({"target_precision": 1.5}, "target_precision"),
    ({"precision_confidence": 0.0}, "precision_confidence"),
    ({"class_balance": "equal"}, "class_balance"),
])
def test_settings_are_checked_when_used_not_when_stored(settings, message):
    sampler = script.PrecisionTargetSampler(**settings)  # storing is fine
    calibration = calibration_set([100, 100], [0, 0])
    with pytest.raises(ValueError, match=message):
        sampler.select_batch(two_class_probabilities(np.array([0.9]), np.array([0])), *calibration)


def test_calibration_arrays_must_fit_the_candidates():
    sampler = script.PrecisionTargetSampler()
    pool = two_class_probabilities(np.array([0.9]), np.array([0]))
    with pytest.raises(ValueError, match="3 columns but the candidates have 2"):
        sampler.select_batch(pool, np.full((4, 3), 1 / 3), np.zeros(4, int))
    with pytest.raises(ValueError, match="class positions"):
        sampler.select_batch(pool, np.full((4, 2), 0.5), np.array([0, 1, 2, 0]))
    with pytest.raises(ValueError, match="needs calibration"):
        sampler.select(script.Candidates(pool))


# ---- Through main: estimates against brute-force counts, refusal, errors ------------------------------------

N_CLASSES = 3


def predictions(n, seed, prefix, labeled):
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, N_CLASSES, n)
    logits = rng.normal(size=(n, N_CLASSES)) * 1.5
    logits[np.arange(n), truth] += rng.uniform(0.5, 4.0, n)
    probabilities = np.exp(logits)
    probabilities /= probabilities.sum(axis=1, keepdims=True)
    table = pd.DataFrame({"id": ["{}{:05d}".format(prefix, i) for i in range(n)]})
    for c in range(N_CLASSES):
        table["prob_class_{}".format(c)] = probabilities[:, c]
    table["label"] = truth if labeled else np.nan
    return table


SCORES = ["prob_class_{}".format(c) for c in range(N_CLASSES)]


def setup_run(run, calibration, evaluation=None, fmt="csv"):
    write_table(predictions(600, 1, "e", False) if evaluation is None else evaluation, run.input_dir, fmt)
    write_table(calibration, run.root / "calibration", fmt)
    return {"evaluation_data": str(run.input_dir), "calibration_data": str(run.root / "calibration")}


def main_with(run, inputs, env):
    _, outputs = run.paths()
    return script.main(inputs, outputs, dict(env), {"job_type": "test"})


def brute_force_estimate(calibration, thresholds):
    """Per predicted class: (selected, correct) over the calibration rows at or above that class's threshold."""
    probabilities = calibration[SCORES].to_numpy()
    counts = {}
    for c in range(N_CLASSES):
        selected = correct = 0
        for row, label in zip(probabilities, calibration["label"]):
            if row.argmax() == c and row.max() >= thresholds[c]:
                selected += 1
                correct += int(label == c)
        counts[str(c)] = (selected, correct)
    return counts


def check_estimate(estimate, calibration, thresholds, selected):
    expected = brute_force_estimate(calibration, thresholds)
    for label, (n, k) in expected.items():
        entry = estimate["per_class"][label]
        assert (entry["selected_calibration_rows"], entry["correct"]) == (n, k)
        if n:
            assert entry["precision"] == pytest.approx(k / n)
            low = scipy_stats.beta.ppf(0.025, k, n - k + 1) if k else 0.0
            high = scipy_stats.beta.ppf(0.975, k + 1, n - k) if k < n else 1.0
            assert entry["interval"] == pytest.approx([low, high])
        else:
            assert entry["precision"] is None and entry["interval"] is None
    n_all = sum(n for n, _ in expected.values())
    k_all = sum(k for _, k in expected.values())
    assert (estimate["overall"]["selected_calibration_rows"], estimate["overall"]["correct"]) == (n_all, k_all)
    pseudo = selected["pseudo_label"].astype(int).value_counts(normalize=True)
    truth = calibration["label"].astype(int).value_counts(normalize=True)
    distance = 0.5 * sum(abs(pseudo.get(c, 0.0) - truth.get(c, 0.0)) for c in range(N_CLASSES))
    assert estimate["class_mix_total_variation"] == pytest.approx(distance)
    assert estimate["calibration_rows"] == len(calibration)


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
@pytest.mark.parametrize("max_samples", [0, 40])
def test_confidence_threshold_estimate_is_the_brute_force_count(run, fmt, max_samples):
    calibration = predictions(500, 2, "c", True)
    inputs = setup_run(run, calibration, fmt=fmt)
    metadata = main_with(run, inputs, {"SELECTION_STRATEGY": "confidence_threshold", "LABEL_FIELD": "label",
                                       "CONFIDENCE_THRESHOLD": "0.8", "MAX_SAMPLES": str(max_samples)})
    selected = run.selected()
    threshold = 0.8 if not max_samples else selected["confidence"].min()
    if max_samples:
        assert len(selected) == 40 and threshold > 0.8  # MAX_SAMPLES cut the list: the rule is the last confidence
    estimate = metadata["precision_estimate"]
    check_estimate(estimate, calibration, [threshold] * N_CLASSES, selected)
    assert all(entry["threshold"] == pytest.approx(threshold) for entry in estimate["per_class"].values())


def test_top_k_per_class_estimate_uses_each_class_k_th_confidence(run):
    calibration = predictions(500, 3, "c", True)
    evaluation = predictions(600, 4, "e", False)
    inputs = setup_run(run, calibration, evaluation)
    metadata = main_with(run, inputs, {"SELECTION_STRATEGY": "top_k_per_class", "LABEL_FIELD": "label",
                                       "K_PER_CLASS": "25"})
    pool = evaluation[SCORES].to_numpy()
    thresholds = [np.sort(pool.max(axis=1)[pool.argmax(axis=1) == c])[::-1][24] for c in range(N_CLASSES)]
    check_estimate(metadata["precision_estimate"], calibration, thresholds, run.selected())


def test_precision_target_estimate_and_rule_through_main(run, caplog):
    calibration = predictions(900, 5, "c", True)
    inputs = setup_run(run, calibration)
    with caplog.at_level(logging.INFO):
        metadata = main_with(run, inputs, {"SELECTION_STRATEGY": "precision_target", "LABEL_FIELD": "label",
                                           "TARGET_PRECISION": "0.9"})
    rule = metadata["precision_estimate"]["rule"]
    probabilities = calibration[SCORES].to_numpy()
    thresholds = []
    for c in range(N_CLASSES):
        mine = probabilities.argmax(axis=1) == c
        found = naive_scan(probabilities[mine].max(axis=1), (calibration["label"].to_numpy() == c)[mine], 0.9, 0.95)
        thresholds.append(found)
        assert rule["classes"][str(c)]["threshold"] == (None if math.isinf(found) else found)
    selected = run.selected()
    assert len(selected) == metadata["selected_count"] > 0
    pool = predictions(600, 1, "e", False)[SCORES].to_numpy()
    qualifying = [i for i, row in enumerate(pool) if row.max() >= thresholds[row.argmax()]]
    assert sorted(selected["id"]) == sorted("e{:05d}".format(i) for i in qualifying)
    check_estimate(metadata["precision_estimate"], calibration, thresholds, selected)
    assert rule["minimum_rows"] == script.minimum_calibration_rows(0.9, 0.95)


def test_no_class_qualifies_succeeds_with_zero_rows_and_a_warning_with_the_rows_needed(run, caplog):
    calibration = predictions(90, 6, "c", True)  # about 30 rows per class: fewer than 59
    inputs = setup_run(run, calibration)
    with caplog.at_level(logging.WARNING):
        metadata = main_with(run, inputs, {"SELECTION_STRATEGY": "precision_target", "LABEL_FIELD": "label"})
    assert metadata["selected_count"] == 0 and len(run.selected()) == 0
    assert (run.samples_dir / "_SUCCESS").is_file()
    warnings = [record.getMessage() for record in caplog.records if record.levelname == "WARNING"]
    assert any("No class reached" in text and "at least 59 calibration rows" in text and "Selecting no rows" in text
               for text in warnings), warnings
    assert all(not entry["qualified"] for entry in metadata["precision_estimate"]["rule"]["classes"].values())
    assert metadata["precision_estimate"]["class_mix_total_variation"] is None


def test_without_calibration_the_metadata_says_no_estimate_was_possible(run):
    write_table(predictions(100, 7, "e", False), run.input_dir)
    metadata = run.main({"SELECTION_STRATEGY": "confidence_threshold"})
    assert metadata["precision_estimate"]["available"] is False
    assert "calibration_data" in metadata["precision_estimate"]["reason"]
    metadata = run.main({"SELECTION_STRATEGY": "uncertainty"})
    assert "precision_estimate" not in metadata


def test_the_command_line_reads_calibration_data(run):
    calibration = predictions(300, 8, "c", True)
    inputs = setup_run(run, calibration)
    run.extra_args = ["--calibration_data", inputs["calibration_data"]]
    env = {"SELECTION_STRATEGY": "confidence_threshold", "LABEL_FIELD": "label"}
    assert script.cli(run.cli_args(), environ=env) == 0
    assert run.metadata()["precision_estimate"]["calibration_rows"] == 300
    run.extra_args = []  # the container folder does not exist here: no calibration, no error
    assert script.cli(run.cli_args(), environ=env) == 0
    assert run.metadata()["precision_estimate"]["available"] is False


def shared_id(calibration):
    return calibration.assign(id=["e00003"] + calibration["id"].tolist()[1:])


def unlabeled_row(calibration):
    calibration = calibration.copy()
    calibration["label"] = calibration["label"].astype(object)
    calibration.loc[4, "label"] = None
    return calibration


# (what is wrong, environment, change to the calibration table, words of the one-line error)
ERRORS = [
    ("precision_target without calibration", {"SELECTION_STRATEGY": "precision_target"}, None,
     "SELECTION_STRATEGY=precision_target needs the input 'calibration_data'"),
    ("calibration with an active-learning strategy", {"SELECTION_STRATEGY": "uncertainty"}, lambda t: t,
     "calibration_data is given but SELECTION_STRATEGY=uncertainty selects rows for humans to label"),
    ("calibration without LABEL_FIELD", {"SELECTION_STRATEGY": "confidence_threshold", "LABEL_FIELD": ""},
     lambda t: t, "calibration_data needs LABEL_FIELD"),
    ("a calibration row without its label", {}, unlabeled_row, "is empty in 1 row(s), e.g. row 5"),
    ("a label that names no class", {}, lambda t: t.assign(label=["7"] + ["0"] * (len(t) - 1)),
     "label '7' in row 1 is not one of the classes"),
    ("an id in both tables", {}, shared_id, "value 'e00003' is in both evaluation_data and calibration_data"),
    ("other score columns", {}, lambda t: t.assign(prob_class_3=0.0),
     "calibration_data has score columns"),
    ("logits in calibration, probabilities in evaluation", {},
     lambda t: t.assign(**{name: np.log(t[name]) for name in SCORES}), "calibration_data's scores read as"),
    ("duplicate calibration ids", {}, lambda t: t.assign(id=["c1"] * len(t)), "duplicate ids"),
    ("TARGET_PRECISION=1", {"TARGET_PRECISION": "1"}, lambda t: t, "TARGET_PRECISION='1' is out of range"),
    ("CLASS_BALANCE=equal", {"CLASS_BALANCE": "equal"}, lambda t: t, "CLASS_BALANCE='equal' is not allowed"),
]


@pytest.mark.parametrize("what, env, change, message", ERRORS, ids=[case[0] for case in ERRORS])
def test_calibration_errors_fail_cleanly_with_one_line(run, caplog, what, env, change, message):
    write_table(predictions(200, 9, "e", False), run.input_dir)
    if change is not None:
        write_table(change(predictions(150, 10, "c", True)), run.root / "calibration")
        run.extra_args = ["--calibration_data", str(run.root / "calibration")]
    environ = dict({"SELECTION_STRATEGY": "confidence_threshold", "LABEL_FIELD": "label"}, **env)
    assert script.cli(run.cli_args(), environ=environ) == 1
    errors = [record.getMessage() for record in caplog.records if record.levelname == "ERROR"]
    assert len(errors) == 1 and message in errors[0], errors
    for folder in (run.samples_dir, run.metadata_dir):
        assert message in (folder / "_FAILURE").read_text()
    assert run.result_files() == []


def test_a_missing_calibration_folder_and_one_around_an_output_are_errors(run):
    write_table(predictions(50, 11, "e", False), run.input_dir)
    env = {"SELECTION_STRATEGY": "confidence_threshold", "LABEL_FIELD": "label"}
    inputs = {"evaluation_data": str(run.input_dir), "calibration_data": str(run.root / "nowhere")}
    with pytest.raises(script.SelectionError, match="nowhere .calibration_data. does not exist"):
        main_with(run, inputs, env)
    for folder in (run.samples_dir, run.metadata_dir):
        (folder / "_FAILURE").unlink()
    inputs["calibration_data"] = str(run.root / "out")  # holds the output folders
    write_table(predictions(100, 16, "c", True), run.root / "out", name="held_out")
    with pytest.raises(script.SelectionError, match="overlaps the input folder"):
        main_with(run, inputs, env)
    assert not (run.samples_dir / "_FAILURE").exists()  # the calibration folder is input: nothing written there
    assert not (run.metadata_dir / "_FAILURE").exists()


# Label cells and what they name, written out by hand: integer classes take integer-valued numbers and their
# digits; text classes take stripped text only; a bool names no class in either.
LABEL_CELLS = [
    ([0, 1, 2], [2, "2", " 02 ", "2.0", 2.0, np.int64(2)], 2),
    ([0, 1, 2], [2.5, "2.5", "x", True, None], None),
    (["cat", "dog"], ["dog", " dog "], 1),
    (["3", "x"], [3.0, True, np.float64(3.0)], None),
]


@pytest.mark.parametrize("classes, cells, position", LABEL_CELLS)
def test_calibration_labels_and_label_field_read_a_cell_by_the_same_rule(classes, cells, position):
    for cell in cells:
        labels = pd.Series([cell], dtype=object)
        if position is None:
            with pytest.raises(script.SelectionError, match="names none of|not one of the classes"):
                script.given_class_positions(labels, np.array([True]), classes, "label")
            with pytest.raises(script.SelectionError, match="not one of the classes"):
                script.calibration_label_positions(labels, classes, "calibration_data")
        else:
            assert script.given_class_positions(labels, np.array([True]), classes, "label").tolist() == [position]
            assert script.calibration_label_positions(labels, classes, "calibration_data").tolist() == [position]


def test_a_missing_label_among_labeled_rows_names_no_class_rather_than_another_row_s():
    labels = pd.Series([2, None], dtype=object)
    with pytest.raises(script.SelectionError, match="holds None in row 2 of the table"):
        script.given_class_positions(labels, np.array([True, True]), [0, 1, 2], "label")
