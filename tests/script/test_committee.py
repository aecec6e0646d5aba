"""SELECTION_STRATEGY=committee: query by committee over the members' score columns.

Every expected value here is computed by hand (the formulas written out with ``math.log`` row by row), never
taken from the script's own output.
"""

import json
import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings, strategies as st

import sharding as sim
from conftest import COMMITTEE_PREFIXES, prediction_table, script_module as script, with_committee, write_table

CommitteeSampler = script.CommitteeSampler
LN2 = math.log(2.0)


def H(*p):
    """Entropy, natural log, 0 log 0 = 0, written out."""
    return -sum(x * math.log(x) for x in p if x > 0)


# Two members, two classes. Row by row (member 1 | member 2):
#   r0: [.5 .5] | [.5 .5]   both vote class 0 (a tie goes to the first class): agree
#   r1: [1 0]   | [0 1]     opposite certain votes
#   r2: [.8 .2] | [.8 .2]   identical, confident
#   r3: [.9 .1] | [.3 .7]   opposite votes, consensus [.6 .4]
#   r4: [0 1]   | [1 0]     as r1, mirrored
MEMBER_1 = [[0.5, 0.5], [1.0, 0.0], [0.8, 0.2], [0.9, 0.1], [0.0, 1.0]]
MEMBER_2 = [[0.5, 0.5], [0.0, 1.0], [0.8, 0.2], [0.3, 0.7], [1.0, 0.0]]
BY_HAND = {
    "vote_entropy": [0.0, LN2, 0.0, LN2, LN2],
    "consensus_entropy": [LN2, LN2, H(0.8, 0.2), H(0.6, 0.4), LN2],
    "bald": [LN2 - LN2, LN2 - 0.0, H(0.8, 0.2) - H(0.8, 0.2), H(0.6, 0.4) - (H(0.9, 0.1) + H(0.3, 0.7)) / 2,
             LN2 - 0.0],
}
# r1 is labeled. Highest first, ties to the earlier row:
#   vote_entropy: r3, r4 (ln 2), then r0, r2 (0);
#   consensus_entropy: r0, r4 (ln 2), r3 (.673), r2 (.500);
#   bald: r4 (ln 2), r3 (.205), then r0, r2 (0).
SELECTED = {"vote_entropy": ["r3", "r4", "r0"], "consensus_entropy": ["r0", "r4", "r3"],
            "bald": ["r4", "r3", "r0"]}


def small_table():
    table = pd.DataFrame({"id": ["r{}".format(i) for i in range(5)], "label": [None, "1", None, None, None]})
    for prefix, member in (("a_", MEMBER_1), ("b_", MEMBER_2)):
        for c in range(2):
            table["{}{}".format(prefix, c)] = [row[c] for row in member]
    return table


def members_of(table, prefixes, n_classes):
    return np.stack([table[["{}{}".format(p, c) for c in range(n_classes)]].to_numpy(dtype=float)
                     for p in prefixes])


@pytest.mark.parametrize("disagreement", script.DISAGREEMENTS)
def test_each_measure_matches_the_hand_computation(disagreement):
    scores = CommitteeSampler(disagreement).compute_scores(members_of(small_table(), ["a_", "b_"], 2))
    np.testing.assert_allclose(scores, BY_HAND[disagreement], rtol=0, atol=1e-12)


def test_vote_entropy_counts_votes_over_three_classes_and_ties_go_to_the_first_class():
    # Votes: r0 (0, 0, 1) -> shares 2/3, 1/3; r1 each member ties classes 1 and 2 -> all vote 1; r2 (0, 1, 2).
    members = np.array([
        [[0.6, 0.3, 0.1], [0.2, 0.4, 0.4], [0.5, 0.25, 0.25]],
        [[0.5, 0.4, 0.1], [0.0, 0.5, 0.5], [0.1, 0.8, 0.1]],
        [[0.2, 0.7, 0.1], [0.1, 0.45, 0.45], [0.1, 0.1, 0.8]],
    ])
    scores = CommitteeSampler("vote_entropy").compute_scores(members)
    np.testing.assert_allclose(scores, [H(2 / 3, 1 / 3), 0.0, math.log(3.0)], rtol=0, atol=1e-12)


@pytest.mark.parametrize("disagreement", script.DISAGREEMENTS)
@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_main_selects_by_disagreement_skips_labeled_rows_and_orders_ties_by_row(run, disagreement, fmt):
    write_table(small_table(), run.input_dir, fmt)
    metadata = run.main({"SELECTION_STRATEGY": "committee", "COMMITTEE_PREFIXES": "a_,b_", "LABEL_FIELD": "label",
                         "DISAGREEMENT": disagreement, "BATCH_SIZE": "3"})
    selected = run.selected()
    assert selected["id"].tolist() == SELECTED[disagreement]
    expected = [BY_HAND[disagreement][int(row_id[1:])] for row_id in SELECTED[disagreement]]
    np.testing.assert_allclose(selected["selection_score"], expected, rtol=0, atol=1e-12)
    assert metadata["strategy"] == "committee" and metadata["candidate_count"] == 4
    assert metadata["details"]["score_columns"] == ["a_0", "a_1", "b_0", "b_1"]
    assert metadata["details"]["score_interpretation"] == "probabilities (2 committee members)"


def test_bald_is_the_mean_kl_divergence_of_the_members_from_the_consensus():
    rng = np.random.default_rng(7)
    for trial in range(200):
        n_members, n_rows, n_classes = rng.integers(2, 9), rng.integers(1, 30), rng.integers(2, 12)
        members = rng.dirichlet(np.full(n_classes, rng.choice([0.1, 1.0, 10.0])), size=(n_members, n_rows))
        members[0, 0] = np.eye(n_classes)[0]  # zeros: 0 log 0 = 0 on both sides
        consensus = members.mean(axis=0)
        ratio = np.where(members > 0, members / np.where(consensus > 0, consensus, 1.0), 1.0)
        mean_kl = (members * np.log(ratio)).sum(axis=2).mean(axis=0)
        bald = CommitteeSampler("bald").compute_scores(members)
        np.testing.assert_allclose(bald, np.maximum(mean_kl, 0.0), rtol=1e-9, atol=1e-12)


def test_the_consensus_is_the_prediction_not_the_main_score_columns(run):
    # The main model's prob_class_* say class 1 everywhere; the members' mean says class 0 for r0 and r2.
    table = small_table()
    table["prob_class_0"], table["prob_class_1"] = 0.1, 0.9
    table["text"] = "row " + table["id"]
    write_table(table, run.input_dir)
    metadata = run.main({"SELECTION_STRATEGY": "committee", "COMMITTEE_PREFIXES": "a_, b_", "LABEL_FIELD": "label",
                         "DISAGREEMENT": "consensus_entropy", "BATCH_SIZE": "4", "LABELING_FORMAT": "label_studio",
                         "LABELING_DATA_FIELD": "text"})
    # Selected r0, r4, r3, r2; consensus r0 [.5 .5] -> 0 (first of a tie), r4 [.5 .5] -> 0, r3 [.6 .4] -> 0,
    # r2 [.8 .2] -> 0.
    assert metadata["selected_per_class"] == {"0": 4, "1": 0}
    tasks = json.loads((run.labeling_dir / "label_studio_tasks.json").read_text())
    guesses = [(task["predictions"][0]["result"][0]["value"]["choices"], task["predictions"][0]["score"])
               for task in tasks]
    assert guesses == [(["0"], 0.5), (["0"], 0.5), (["0"], pytest.approx(0.6)), (["0"], pytest.approx(0.8))]


def test_each_member_is_read_by_the_score_column_rules_logits_and_a_single_column(run, script):
    # Member a: logits (softmax); member b: one column, the positive-class probability ([1 - p, p]).
    logits = np.array([[0.0, 0.0], [3.0, -1.0], [-2.0, 2.0]])
    table = pd.DataFrame({"id": ["x", "y", "z"], "a_0": logits[:, 0], "a_1": logits[:, 1],
                          "b_1": [0.5, 0.02, 0.9]})
    write_table(table, run.input_dir)
    metadata = run.main({"SELECTION_STRATEGY": "committee", "COMMITTEE_PREFIXES": "a_,b_", "BATCH_SIZE": "3"})
    assert metadata["details"]["score_interpretation"] == "a_: logits (softmax); b_: binary probability"
    softmax = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    member_b = np.array([[0.5, 0.5], [0.98, 0.02], [0.1, 0.9]])
    expected = [H(*((softmax[i] + member_b[i]) / 2)) - (H(*softmax[i]) + H(*member_b[i])) / 2 for i in range(3)]
    selected = run.selected().set_index("id").loc[["x", "y", "z"]]
    np.testing.assert_allclose(selected["selection_score"], expected, rtol=1e-9, atol=1e-12)


def test_select_samples_reads_the_members_like_main():
    selected = script.select_samples(small_table(), "committee", 3,
                                     {"committee_prefixes": "a_,b_", "label_field": "label",
                                      "disagreement": "vote_entropy"})
    assert selected["id"].tolist() == SELECTED["vote_entropy"]


# --- the Python API --------------------------------------------------------------------------------------

def test_select_batch_returns_positions_or_the_ids_passed_in():
    members = members_of(small_table(), ["a_", "b_"], 2)
    sampler = CommitteeSampler()
    assert sampler.select_batch(members, 2).tolist() == [1, 4]  # bald: r1 and r4 (ln 2), in row order
    assert sampler.select_batch(members, 2, indices=np.array([10, 11, 12, 13, 14])).tolist() == [11, 14]
    assert sampler.select_batch(members, 2, indices=np.array(["a", "b", "c", "d", "e"])).tolist() == ["b", "e"]
    permutation = np.array([4, 3, 2, 1, 0])
    assert sampler.select_batch(members, 2, indices=permutation).tolist() == [3, 0]
    unlabeled = np.array([True, False, True, True, True])
    subset = sampler.select_batch(members[:, unlabeled], 2, indices=np.flatnonzero(unlabeled))
    assert subset.tolist() == [4, 3]
    with pytest.raises(ValueError, match="indices has 3 entries but member_probabilities has 5 rows"):
        sampler.select_batch(members, 2, indices=np.arange(3))


def test_parameters_are_checked_when_used_not_when_stored():
    sampler = CommitteeSampler(disagreement="variance", random_seed=None)
    assert sampler.disagreement == "variance"
    members = members_of(small_table(), ["a_", "b_"], 2)
    for use in (lambda: sampler.compute_scores(members), lambda: sampler.select_batch(members, 2)):
        with pytest.raises(ValueError, match="disagreement must be one of vote_entropy, consensus_entropy, bald"):
            use()
    with pytest.raises(ValueError, match="batch_size must be an integer >= 1"):
        CommitteeSampler().select_batch(members, 0)


@pytest.mark.parametrize("members, message", [
    (np.full((1, 3, 2), 0.5), "1 member: a committee needs at least 2"),
    (np.full((3, 2), 0.5), "3-D array"),
    (np.array([[[0.5, np.nan]], [[0.5, 0.5]]]), "NaN or inf"),
    (np.array([[[0.5, 0.6]], [[0.5, 0.5]]]), "probability rows"),
    (np.array([[[1.5, -0.5]], [[0.5, 0.5]]]), "probability rows"),
])
def test_bad_member_arrays_are_value_errors(members, message):
    with pytest.raises(ValueError, match=message):
        CommitteeSampler().compute_scores(members)


# --- settings --------------------------------------------------------------------------------------------

def test_committee_prefixes_are_read_only_by_the_committee():
    config = script.parse_environment({"SELECTION_STRATEGY": "uncertainty", "COMMITTEE_PREFIXES": "x"})
    assert config.committee_prefixes == "x"  # ignored: uncertainty reads no members
    assert script.committee_prefixes(" m0_ ,m1_,  m2_") == ("m0_", "m1_", "m2_")


@pytest.mark.parametrize("prefixes, message", [
    (None, "SELECTION_STRATEGY=committee needs COMMITTEE_PREFIXES=<prefix>,<prefix>[,...]"),
    ("m0_", "COMMITTEE_PREFIXES='m0_' names one member: a committee needs at least 2"),
    ("m0_,,m1_", "COMMITTEE_PREFIXES='m0_,,m1_' has an empty entry"),
    ("m0_, m0_", "COMMITTEE_PREFIXES='m0_, m0_' names 'm0_' more than once"),
])
def test_bad_committee_prefixes_are_refused_before_any_data_is_read(prefixes, message):
    with pytest.raises(script.SelectionError) as caught:
        script.parse_environment({"SELECTION_STRATEGY": "committee", "COMMITTEE_PREFIXES": prefixes})
    assert str(caught.value).startswith(message) and "\n" not in str(caught.value)


@pytest.mark.parametrize("columns, message", [
    (["id", "a_0", "a_1", "b_0", "b_1"], None),
    (["id", "a_0", "a_1"], "COMMITTEE_PREFIXES member 'b_' has no columns"),
    (["id", "a_0", "a_1", "b_0", "b_2"], "committee member 'b_' has classes 0, 2 but member 'a_' has 0, 1"),
    (["id", "a_0", "a_1", "a_b_0", "a_b_1"], "column 'a_b_0' starts with two COMMITTEE_PREFIXES, 'a_' and 'a_b_'"),
])
def test_member_columns_are_found_by_prefix_and_must_name_the_same_classes(columns, message):
    prefixes = ("a_", "a_b_") if "a_b_0" in columns else ("a_", "b_")
    if message is None:
        committee = script.committee_columns(columns, prefixes)
        assert committee.columns == [["a_0", "a_1"], ["b_0", "b_1"]] and committee.classes == [0, 1]
        return
    with pytest.raises(script.SelectionError, match=message):
        script.committee_columns(columns, prefixes)


def test_member_columns_are_in_class_order_like_the_score_columns():
    committee = script.committee_columns(["m_10", "m_9", "m_2", "n_2", "n_10", "n_9"], ("m_", "n_"))
    assert committee.columns == [["m_2", "m_9", "m_10"], ["n_2", "n_9", "n_10"]]


# --- sharded: exact, like uncertainty --------------------------------------------------------------------

def tied_committee_parts(n_files=10, rows=40, seed=3):
    """Three members whose rows take few distinct values, so many rows tie on every measure."""
    table = prediction_table(n=n_files * rows, n_classes=3, labeled_fraction=0.15, seed=seed)
    rng = np.random.default_rng(seed)
    levels = np.array([[0.8, 0.1, 0.1], [0.1, 0.8, 0.1], [0.45, 0.45, 0.1], [0.3, 0.1, 0.6]])
    for j in range(3):
        chosen = levels[rng.integers(0, len(levels), size=len(table))]
        for c in range(3):
            table["m{}_prob_class_{}".format(j, c)] = chosen[:, c]
    return [table.iloc[i * rows:(i + 1) * rows].reset_index(drop=True) for i in range(n_files)]


@pytest.fixture(scope="module", params=["parquet", "csv"])
def committee_pool(request, tmp_path_factory):
    folder = tmp_path_factory.mktemp("committee_" + request.param)
    return folder, sim.write_parts(tied_committee_parts(), folder, request.param)


@pytest.mark.parametrize("n_shards", [1, 3, 8])
@pytest.mark.parametrize("disagreement", script.DISAGREEMENTS)
def test_sharded_committee_matches_a_single_run_byte_for_byte(committee_pool, tmp_path, disagreement, n_shards):
    pool_dir, relatives = committee_pool
    env = {"SELECTION_STRATEGY": "committee", "COMMITTEE_PREFIXES": COMMITTEE_PREFIXES, "LABEL_FIELD": "label",
           "DISAGREEMENT": disagreement, "BATCH_SIZE": "30"}
    single_metadata, single_out = sim.single(pool_dir, tmp_path, env)
    merged_metadata, merged_out = sim.sharded(pool_dir, relatives, tmp_path, n_shards, env)
    assert sim.selected_file(merged_out).read_bytes() == sim.selected_file(single_out).read_bytes()
    for key in ("pool_size", "candidate_count", "selected_count", "selected_per_class", "selection_score",
                "details"):
        assert merged_metadata[key] == single_metadata[key], key
    assert sim.selected_frame(single_out)["selection_score"].duplicated().any(), "the case must contain ties"
    assert merged_metadata["sharding"]["guarantee"] == "exact"


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 2**16), st.integers(2, 5), st.integers(1, 40), st.sampled_from(script.DISAGREEMENTS))
def test_the_selection_is_the_top_scores_in_row_order(seed, n_members, batch_size, disagreement):
    rng = np.random.default_rng(seed)
    members = rng.integers(0, 3, size=(n_members, 30, 3)).astype(float) + 1e-3
    members /= members.sum(axis=2, keepdims=True)
    sampler = CommitteeSampler(disagreement)
    scores = sampler.compute_scores(members)
    assert sampler.select_batch(members, batch_size).tolist() == \
        np.argsort(-scores, kind="stable")[:batch_size].tolist()


def test_with_committee_fixture_gives_members_that_disagree_somewhere():
    table = with_committee(prediction_table(n=40))
    members = members_of(table, ["m0_prob_class_", "m1_prob_class_", "m2_prob_class_"], 3)
    assert (CommitteeSampler("vote_entropy").compute_scores(members) > 0).any()


def test_every_measure_agrees_with_scipy_entropy_on_random_committees():
    stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(11)
    for trial in range(100):
        n_members, n_rows, n_classes = rng.integers(2, 8), rng.integers(1, 20), rng.integers(2, 8)
        members = rng.dirichlet(np.full(n_classes, rng.choice([0.2, 1.0, 5.0])), size=(n_members, n_rows))
        consensus = members.mean(axis=0)
        votes = np.stack([np.bincount(members[:, i].argmax(axis=1), minlength=n_classes) / n_members
                          for i in range(n_rows)])
        expected = {
            "vote_entropy": stats.entropy(votes, axis=1),
            "consensus_entropy": stats.entropy(consensus, axis=1),
            "bald": np.mean([stats.entropy(members[j], consensus, axis=1) for j in range(n_members)], axis=0),
        }
        for disagreement, oracle in expected.items():
            np.testing.assert_allclose(CommitteeSampler(disagreement).compute_scores(members),
                                       np.maximum(oracle, 0.0), rtol=1e-9, atol=1e-12, err_msg=disagreement)


def test_rows_that_differ_only_in_class_order_tie_exactly_and_keep_row_order():
    # Votes (0, 1, 2, 2) / (2, 0, 1, 1) / (1, 2, 0, 0): the same shares in another class order; then a row of
    # full agreement. Three identical members of value p: bald must be exactly 0, not 3p/3 - p rounding.
    p = [0.1, 0.2, 0.7]
    votes = np.array([[0, 1, 2, 2], [2, 0, 1, 1], [1, 2, 0, 0], [1, 1, 1, 1]]).T  # row x member -> member x row
    members = np.full((4, 4, 3), 0.05)
    members[np.arange(4)[:, None], np.arange(4)[None, :], votes] = 0.9
    scores = CommitteeSampler("vote_entropy").compute_scores(members)
    assert scores[0] == scores[1] == scores[2] > 0 == scores[3]
    assert CommitteeSampler("vote_entropy").select_batch(members, 2).tolist() == [0, 1]
    same = np.array([[p, p[::-1], p[1:] + p[:1]]] * 3)  # 3 identical members, rows are permutations of p
    assert CommitteeSampler("bald").compute_scores(same).tolist() == [0.0, 0.0, 0.0]
    consensus = CommitteeSampler("consensus_entropy").compute_scores(same)
    assert consensus[0] == consensus[1] == consensus[2]


def test_metadata_lists_the_committee_settings_and_not_the_score_columns_it_does_not_read():
    config = script.parse_environment({"SELECTION_STRATEGY": "committee", "COMMITTEE_PREFIXES": "a_,b_"})
    read = set(script.settings_read(config))
    assert {"committee_prefixes", "disagreement", "batch_size", "label_field", "id_field"} <= read
    assert not read & {"score_field", "score_field_prefix", "embedding_field_prefix", "uncertainty_mode", "metric"}
    other = script.parse_environment({"SELECTION_STRATEGY": "uncertainty"})
    assert not set(script.settings_read(other)) & {"committee_prefixes", "disagreement"}
