"""label_review's confident learning against cleanlab, the reference implementation (a test dependency only).

The script computes ``cleanlab.filter.find_label_issues(labels, pred_probs, filter_by="prune_by_noise_rate")``
step for step with its defaults. Where cleanlab sorts with numpy's default (unstable) argsort, the order of
tied values is numpy's own and differs between numpy versions and CPUs (numpy 2 uses SIMD sorting from four
elements on); the script breaks those ties by position on every version. The oracle ``stable_cleanlab`` is
cleanlab with its argsort made stable: it must agree on every input. Plain cleanlab must agree wherever no tie
reaches a sort, which holds for continuous random probabilities with two or three classes.
"""

import argparse
import warnings

import cleanlab.count
import cleanlab.filter
import cleanlab.internal.util
import cleanlab.rank
import numpy as np
import pandas as pd
import pytest
from cleanlab.count import compute_confident_joint, estimate_joint, get_confident_thresholds
from cleanlab.filter import find_label_issues as cleanlab_find_label_issues

from active_sampling.scripts import active_sample_selection as script

CLEANLAB_MODULES = (cleanlab.count, cleanlab.filter, cleanlab.internal.util, cleanlab.rank)


class _StableNumpy:
    """numpy, except that argsort keeps tied values in their order."""

    def __getattr__(self, name):
        return getattr(np, name)

    @staticmethod
    def argsort(values, axis=-1, kind=None, order=None):
        return np.argsort(values, axis=axis, kind="stable", order=order)


@pytest.fixture
def stable_cleanlab(monkeypatch):
    for module in CLEANLAB_MODULES:
        monkeypatch.setattr(module, "np", _StableNumpy())
    return cleanlab_find_label_issues


def noisy_case(seed, n_classes, noise, skew):
    """Labels with ``noise`` of them flipped to a random other class, and softmax probabilities from a model
    that mostly prefers the true class; ``skew`` < 1 makes the classes imbalanced."""
    rng = np.random.default_rng(seed)
    n = int(rng.integers(40, 700))
    prior = rng.dirichlet(np.full(n_classes, skew))
    truth = rng.choice(n_classes, size=n, p=prior)
    flipped = rng.random(n) < noise
    labels = np.where(flipped, (truth + rng.integers(1, n_classes, size=n)) % n_classes, truth)
    logits = rng.normal(size=(n, n_classes)) * rng.uniform(0.5, 3.0)
    logits[np.arange(n), truth] += rng.uniform(0.5, 4.0)
    probabilities = np.exp(logits - logits.max(axis=1, keepdims=True))
    return probabilities / probabilities.sum(axis=1, keepdims=True), labels


def reference(find, labels, probabilities):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        flagged = find(labels, probabilities, filter_by="prune_by_noise_rate", n_jobs=1)
        ranked = find(labels, probabilities, filter_by="prune_by_noise_rate", n_jobs=1,
                      return_indices_ranked_by="self_confidence")
    return flagged, ranked


def assert_agrees(find, probabilities, labels):
    flagged, ranked = reference(find, labels, probabilities)
    issues = script.find_label_issues(probabilities, labels)
    assert np.array_equal(issues.flagged, flagged), np.flatnonzero(issues.flagged != flagged)
    selection = script.label_review_selection(probabilities, labels, labels.size)
    assert selection.indices.tolist() == ranked.tolist()
    np.testing.assert_array_equal(selection.scores, 1.0 - probabilities[ranked, labels[ranked]])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        np.testing.assert_array_equal(issues.thresholds, get_confident_thresholds(labels, probabilities))
        np.testing.assert_array_equal(issues.joint, compute_confident_joint(labels, probabilities))
        share = 1.0 - np.trace(estimate_joint(labels, probabilities))
    assert issues.estimated_issue_share == pytest.approx(share, abs=1e-12)
    return int(flagged.sum())


CASES = [(seed, n_classes, noise, skew) for n_classes in (2, 3, 4, 6, 10, 16, 25, 40)
         for noise in (0.05, 0.1, 0.2, 0.3) for skew in (0.4, 5.0) for seed in range(3)]


@pytest.mark.parametrize("seed, n_classes, noise, skew", CASES)
def test_flags_and_order_equal_cleanlab_with_ties_broken_by_position(stable_cleanlab, seed, n_classes, noise, skew):
    probabilities, labels = noisy_case(seed * 1000 + n_classes, n_classes, noise, skew)
    if np.unique(labels).size < 2:
        pytest.skip("one given class: cleanlab refuses it (covered below)")
    assert_agrees(stable_cleanlab, probabilities, labels)


def test_the_comparison_finds_issues(stable_cleanlab):
    # Not vacuous: across the cases above, most tables have flagged rows.
    flagged = [assert_agrees(stable_cleanlab, *noisy_case(seed, 5, 0.2, 1.0)) for seed in range(20)]
    assert sum(count > 0 for count in flagged) >= 18


@pytest.mark.parametrize("n_classes", [2, 3])
@pytest.mark.parametrize("seed", range(15))
def test_flags_and_order_equal_plain_cleanlab_without_ties(seed, n_classes):
    probabilities, labels = noisy_case(50 + seed, n_classes, 0.05 + 0.25 * seed / 14, 0.5 + seed % 3)
    assert_agrees(cleanlab_find_label_issues, probabilities, labels)


def test_a_class_without_labeled_rows(stable_cleanlab):
    probabilities, labels = noisy_case(7, 5, 0.2, 1.0)
    labels = np.where(labels == 2, 4, labels)  # no row is labeled 2; its column stays
    assert_agrees(stable_cleanlab, probabilities, labels)
    assert script.find_label_issues(probabilities, labels).thresholds[2] == 2.0


def test_a_class_with_a_single_labeled_row(stable_cleanlab):
    probabilities, labels = noisy_case(8, 4, 0.2, 1.0)
    labels = np.where(labels == 3, 0, labels)
    labels[int(np.argmax(probabilities[:, 0]))] = 3  # the row most surely a 0 is the only one labeled 3
    assert assert_agrees(stable_cleanlab, probabilities, labels) > 0
    assert not script.find_label_issues(probabilities, labels).flagged[labels == 3].any()


def test_every_row_labeled_zero_flags_nothing_as_in_cleanlab():
    probabilities, _ = noisy_case(9, 3, 0.2, 1.0)
    labels = np.zeros(len(probabilities), dtype=np.int64)
    flagged, _ = reference(cleanlab_find_label_issues, labels, probabilities)
    assert not flagged.any() and not script.find_label_issues(probabilities, labels).flagged.any()


def test_ties_at_thresholds_and_rows_above_several(stable_cleanlab):
    # Probabilities on a 0.05 grid: many rows sit exactly at a class's mean (its threshold), margins and
    # self-confidences tie, and with thresholds near 1/3 many rows clear two or three of them.
    rng = np.random.default_rng(11)
    for _ in range(30):
        n_classes = int(rng.integers(2, 5))
        counts = rng.integers(1, 40, size=(60, n_classes))
        probabilities = np.round(counts / counts.sum(axis=1, keepdims=True) / 0.05) * 0.05
        probabilities[:, -1] = 1.0 - probabilities[:, :-1].sum(axis=1)
        keep = (probabilities >= 0).all(axis=1)
        probabilities, labels = probabilities[keep], rng.integers(0, n_classes, size=int(keep.sum()))
        if np.unique(labels).size > 1:
            assert_agrees(stable_cleanlab, probabilities, labels)


def test_main_selects_cleanlabs_first_batch_size_rows(tmp_path, stable_cleanlab):
    probabilities, labels = noisy_case(12, 6, 0.15, 1.0)
    classes = ["cat", "dog", "eel", "fox", "gnu", "owl"]
    table = pd.DataFrame({"id": np.arange(len(labels)) * 10})
    for j, name in enumerate(classes):
        table["prob_class_" + name] = probabilities[:, j]
    table["label"] = np.asarray(classes, dtype=object)[labels]
    table.loc[::7, "label"] = None  # unlabeled rows: never candidates
    labeled = table["label"].notna().to_numpy()
    (tmp_path / "in").mkdir()
    table.to_parquet(tmp_path / "in" / "predictions.parquet", index=False)
    metadata = script.main({"evaluation_data": str(tmp_path / "in")},
                           {"selected_samples": str(tmp_path / "s"), "selection_metadata": str(tmp_path / "m")},
                           {"SELECTION_STRATEGY": "label_review", "LABEL_FIELD": "label", "BATCH_SIZE": "12"},
                           argparse.Namespace(job_type="review"))
    flagged, ranked = reference(stable_cleanlab, labels[labeled], probabilities[labeled])
    selected = pd.read_parquet(tmp_path / "s" / "selected_samples.parquet")
    assert selected["id"].tolist() == table["id"][labeled].to_numpy()[ranked[:12]].tolist()
    assert metadata["review"]["flagged_count"] == int(flagged.sum()) > 12
    assert selected["suggested_label"].tolist() == [classes[j] for j in probabilities[labeled][ranked[:12]].argmax(1)]


def test_one_binary_score_column_is_reviewed_as_cleanlab_reads_it(stable_cleanlab):
    probabilities, labels = noisy_case(13, 2, 0.2, 1.0)
    table = pd.DataFrame({"id": np.arange(len(labels)), "score": probabilities[:, 1], "label": labels})
    result = script.select_samples(table, "label_review", 1000, {"label_field": "label", "score_field": "score"})
    _, ranked = reference(stable_cleanlab, labels, np.column_stack([1.0 - table["score"], table["score"]]))
    assert result["id"].tolist() == ranked.tolist()


def test_numpys_default_argsort_is_why_plain_cleanlab_can_differ():
    # The ties the script breaks by position: numpy's default sort orders equal values as it likes.
    tied = np.array([0.5, 0.5, 0.0, 0.5, 0.5, 0.0, 0.5, 0.5, 0.5, 0.5])
    stable = np.argsort(tied, kind="stable")
    assert stable.tolist() == [2, 5, 0, 1, 3, 4, 6, 7, 8, 9]
    assert sorted(np.argsort(tied)[:2].tolist()) == [2, 5]  # the same values, in whatever order among ties
