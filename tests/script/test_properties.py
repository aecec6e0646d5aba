"""Property tests: for any table and any valid configuration, the selection is well-formed."""

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings, strategies as st

from conftest import script_module as script


@st.composite
def pools(draw):
    n = draw(st.integers(1, 40))
    n_classes = draw(st.integers(2, 4))
    dim = draw(st.integers(1, 3))
    seed = draw(st.integers(0, 2**16))
    rng = np.random.default_rng(seed)
    # Coarse values make ties and duplicate rows common.
    weights = rng.integers(0, 4, size=(n, n_classes)).astype(float) + draw(st.sampled_from([0.0, 1e-3]))
    weights[weights.sum(axis=1) == 0, 0] = 1.0
    probabilities = weights / weights.sum(axis=1, keepdims=True)
    table = pd.DataFrame({"id": ["id{}".format(i) for i in range(n)]})
    for c in range(n_classes):
        table["prob_class_{}".format(c)] = probabilities[:, c]
    for d in range(dim):
        table["emb_{}".format(d)] = rng.integers(-2, 3, size=n).astype(float)
    # Two committee members: the model itself and a coarse second opinion (ties and full agreement are common).
    other = rng.integers(0, 3, size=(n, n_classes)).astype(float)
    other[other.sum(axis=1) == 0, -1] = 1.0
    other /= other.sum(axis=1, keepdims=True)
    for c in range(n_classes):
        table["m0_p{}".format(c)] = probabilities[:, c]
        table["m1_p{}".format(c)] = other[:, c]
    labeled = rng.random(n) < draw(st.sampled_from([0.0, 0.3]))
    if labeled.all():
        labeled[0] = False
    given = rng.integers(0, n_classes, size=n).astype(str)  # a class name: label_review reads it
    table["label"] = pd.Series(np.where(labeled, given, None), dtype=object)
    return table


@st.composite
def configs(draw):
    env = {
        "SELECTION_STRATEGY": draw(st.sampled_from([row.name for row in script.STRATEGY_TABLE if not row.needs_calibration])),
        "LABEL_FIELD": "label",
        "BATCH_SIZE": str(draw(st.integers(1, 50))),
        "K_PER_CLASS": str(draw(st.integers(1, 10))),
        "MAX_SAMPLES": str(draw(st.integers(0, 10))),
        "CONFIDENCE_THRESHOLD": str(draw(st.sampled_from([0.5, 0.6, 0.75, 1.0]))),
        "UNCERTAINTY_MODE": draw(st.sampled_from(script.UNCERTAINTY_MODES)),
        "METRIC": draw(st.sampled_from(script.METRICS)),
        "DIVERSITY_METHOD": draw(st.sampled_from(script.DIVERSITY_METHODS)),
        "UNCERTAINTY_PREFILTER": str(draw(st.sampled_from([0, 0, 1, 3]))),
        "RANDOM_SEED": str(draw(st.integers(0, 1000))),
        "REVIEW_METHOD": draw(st.sampled_from(script.REVIEW_METHODS)),
        "COMMITTEE_PREFIXES": "m0_p,m1_p",
        "DISAGREEMENT": draw(st.sampled_from(script.DISAGREEMENTS)),
    }
    return script.parse_environment(env)


def expected_size(config, table, candidates):
    probabilities = table.loc[candidates, [c for c in table.columns if c.startswith("prob_class_")]].to_numpy()
    confidence = probabilities.max(axis=1)
    if config.selection_strategy == "confidence_threshold":
        eligible = int((confidence >= config.confidence_threshold).sum())
        return min(eligible, config.max_samples) if config.max_samples else eligible
    if config.selection_strategy == "top_k_per_class":
        counts = np.bincount(probabilities.argmax(axis=1), minlength=probabilities.shape[1])
        return int(np.minimum(counts, config.k_per_class).sum())
    if script.strategy_for(config.selection_strategy).candidates == "labeled" \
            and config.review_method == "confident_learning":
        return None  # at most BATCH_SIZE: only the flagged rows (tests/test_label_review_cleanlab.py)
    return min(config.batch_size, len(candidates))


def run(table, config):
    return script.run_selection(script.pool_from_frame(table, config), config, lambda rows: table.iloc[rows])


def as_strategy_config(config):
    """The config as select_samples' strategy_config (the seeds' Python API)."""
    fields = config._asdict()
    return {key: fields[key] for key in fields if key not in ("selection_strategy", "batch_size", "id_field")}


@settings(max_examples=150, deadline=None)
@given(pools(), configs())
def test_selection_is_well_formed(table, config):
    reviews_labels = script.strategy_for(config.selection_strategy).candidates == "labeled"
    candidates = table.index[table["label"].notna() if reviews_labels else table["label"].isna()]
    if len(candidates) == 0:
        with pytest.raises(script.SelectionError, match="no candidate rows"):
            run(table, config)
        return
    result = run(table, config)
    selected = result.rows

    assert set(selected.index) <= set(candidates)
    assert selected["id"].is_unique
    size = expected_size(config, table, candidates)
    assert len(selected) == size if size is not None else len(selected) <= min(config.batch_size, len(candidates))
    assert selected["selection_rank"].tolist() == list(range(1, len(selected) + 1))
    assert np.isfinite(selected["selection_score"]).all()
    assert result.counts["candidate_count"] == len(candidates)
    assert result.counts["selected_count"] == len(selected)
    if config.selection_strategy in script.SSL_STRATEGIES:
        assert selected["selection_score"].is_monotonic_decreasing
    if config.selection_strategy == "confidence_threshold":
        assert (selected["confidence"] >= config.confidence_threshold).all()

    # The seeds' select_samples walks the same path: same rows, same columns, same scores.
    again = script.select_samples(table, config.selection_strategy, config.batch_size,
                                  strategy_config=as_strategy_config(config), id_field="id")
    pd.testing.assert_frame_equal(selected, again)


@settings(max_examples=100, deadline=None)
@given(pools(), st.sampled_from(script.UNCERTAINTY_MODES), st.integers(1, 50))
def test_uncertainty_takes_the_highest_scores_with_ties_in_input_order(table, mode, batch_size):
    probabilities = table[[c for c in table.columns if c.startswith("prob_class_")]].to_numpy()
    sampler = script.UncertaintySampler(mode)
    scores = sampler.compute_scores(probabilities)
    chosen = sampler.select_batch(probabilities, batch_size)
    assert chosen.tolist() == np.argsort(-scores, kind="stable")[:batch_size].tolist()
