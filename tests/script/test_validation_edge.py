"""The validation line as scikit-learn draws it: public kernels and the samplers' select/select_batch check their
arrays once, with one ValueError naming the argument; the private kernels trust them, and the engine runs only
the private path after the pool's own checks. Samplers never modify what they are given. The seeds' spellings
(random_seed=, UncertaintySampler(strategy=...)) keep working."""

import tracemalloc

import numpy as np
import pytest

import sharding as sim
from conftest import COMMITTEE_PREFIXES, prediction_table, script_module as script, with_committee, write_table

RNG = np.random.default_rng(5)
P = RNG.dirichlet(np.ones(3), size=12)
X = RNG.normal(size=(12, 4))
MEMBERS = np.stack([RNG.dirichlet(np.ones(3), size=12) for _ in range(3)])
LABELS = P.argmax(axis=1)


def with_nan(array):
    bad = np.array(array, dtype=np.float64, copy=True)
    bad.flat[7] = np.nan
    return bad


# (call, the argument its error must name, the start of the message)
PUBLIC_KERNEL_ERRORS = [
    (lambda: script.confidence_threshold_selection(with_nan(P), 0.5), "probabilities contains NaN or inf"),
    (lambda: script.confidence_threshold_selection(P, 1.5), "threshold must be a number in [0, 1]"),
    (lambda: script.confidence_threshold_selection(P, 0.5, -1), "max_samples must be an integer >= 0"),
    (lambda: script.top_k_per_class_selection(P[0], 2), "probabilities must be a non-empty 2-D array"),
    (lambda: script.top_k_per_class_selection(P, 0), "k_per_class must be an integer >= 1"),
    (lambda: script.uncertainty_scores([[0.5, 0.5], [1.0]]), "probabilities must hold numbers"),
    (lambda: script.k_center_greedy([["a", "b"]], 1), "X must hold numbers"),
    (lambda: script.uncertainty_scores(with_nan(P)), "probabilities contains NaN or inf"),
    (lambda: script.uncertainty_scores(P, "variance"), "mode must be one of margin, entropy, least_confidence"),
    (lambda: script.uncertainty_prefilter(P, 0), "n_keep must be an integer >= 1"),
    (lambda: script.uncertainty_prefilter(with_nan(P), 3), "probabilities contains NaN or inf"),
    (lambda: script.kmeans_representatives(with_nan(X), 2), "X contains NaN or inf"),
    (lambda: script.kmeans_representatives(X, -1), "n_select must be an integer >= 0"),
    (lambda: script.kmeans_representatives(X, 2, sample_weight=np.ones(5)), "sample_weight must be 12 finite"),
    (lambda: script.k_center_greedy(with_nan(X), 2), "X contains NaN or inf"),
    (lambda: script.k_center_greedy(X, 2, initial_centers=with_nan(X[:3])), "initial_centers contains NaN or inf"),
    (lambda: script.k_center_greedy(X, 2, initial_centers=np.zeros((2, 3))), "initial_centers have 3 columns, X 4"),
    (lambda: script.k_center_greedy(X, 2, metric="manhattan"), "metric must be one of euclidean, cosine"),
    (lambda: script.gradient_embeddings(X[:5], P), "embeddings and probabilities have different row counts: 5 and 12"),
    (lambda: script.badge_kmeanspp(with_nan(X), P, 2), "embeddings contains NaN or inf"),
    (lambda: script.badge_kmeanspp(X, with_nan(P), 2), "probabilities contains NaN or inf"),
    (lambda: script.badge_kmeanspp(X[:5], P, 2), "embeddings and probabilities have different row counts: 5 and 12"),
    (lambda: script.label_review_selection(P, LABELS + 3, 2), "labels must be class positions in [0, 3)"),
    (lambda: script.label_review_selection(P, LABELS, 0), "batch_size must be an integer >= 1"),
    (lambda: script.label_review_selection(P, LABELS, 2, "vote"), "method must be one of confident_learning"),
    (lambda: script.committee_disagreement(with_nan(MEMBERS)), "member_probabilities contains NaN or inf"),
    (lambda: script.committee_disagreement(MEMBERS, "variance"), "disagreement must be one of vote_entropy"),
]


@pytest.mark.parametrize("call, message", PUBLIC_KERNEL_ERRORS, ids=[m for _, m in PUBLIC_KERNEL_ERRORS])
def test_each_public_kernel_refuses_bad_input_with_one_value_error_naming_the_argument(call, message):
    with pytest.raises(ValueError) as error:
        call()
    assert str(error.value).startswith(message)


def samplers():
    return [script.ConfidenceThresholdSampler(0.5), script.TopKPerClassSampler(2), script.UncertaintySampler(),
            script.DiversitySampler(), script.DiversitySampler(method="kmeans", uncertainty_prefilter=2),
            script.HybridSampler(), script.BADGESampler(), script.LabelReviewSampler("self_confidence"),
            script.CommitteeSampler()]


def candidates_for(sampler, probabilities=P, embeddings=X, members=MEMBERS):
    if isinstance(sampler, script.CommitteeSampler):
        return script.Candidates(probabilities, members=members)
    if isinstance(sampler, script.LabelReviewSampler):
        return script.Candidates(probabilities, labels=LABELS)
    if isinstance(sampler, (script.DiversitySampler, script.BADGESampler)):
        return script.Candidates(probabilities, embeddings)
    return script.Candidates(probabilities)


@pytest.mark.parametrize("sampler", samplers(), ids=lambda s: type(s).__name__)
def test_public_select_checks_its_candidates(sampler):
    """select used to trust its arrays while select_batch checked them; both check now."""
    if isinstance(sampler, script.CommitteeSampler):
        bad, message = candidates_for(sampler, members=with_nan(MEMBERS)), "member_probabilities contains NaN"
    elif isinstance(sampler, (script.DiversitySampler, script.BADGESampler)):
        bad, message = candidates_for(sampler, embeddings=with_nan(X)), "embeddings contains NaN"
    else:
        bad, message = candidates_for(sampler, probabilities=with_nan(P)), "probabilities contains NaN"
    with pytest.raises(ValueError, match=message):
        sampler.select(bad, 3)


def test_select_names_a_missing_candidates_field():
    with pytest.raises(ValueError, match="DiversitySampler needs candidates.embeddings"):
        script.DiversitySampler().select(script.Candidates(P), 3)
    with pytest.raises(ValueError, match="batch_size must be an integer >= 1, got None"):
        script.UncertaintySampler().select(script.Candidates(P))


@pytest.mark.parametrize("sampler", samplers(), ids=lambda s: type(s).__name__)
def test_select_leaves_every_array_it_was_given_alone(sampler):
    candidates = candidates_for(sampler, embeddings=X.astype(np.float32))
    before = [None if a is None else np.array(a, copy=True) for a in candidates]
    sampler.select(candidates, 3)
    for field, old, new in zip(script.Candidates._fields, before, candidates):
        if old is not None:
            np.testing.assert_array_equal(new, old, err_msg=field)


@pytest.mark.parametrize("method", ["kcenter", "kmeans"])
def test_select_and_select_batch_agree_and_equal_the_kernel(method):
    X32 = RNG.normal(size=(40, 3)).astype(np.float32)
    sampler = script.DiversitySampler(method=method)
    picks = sampler.select(script.Candidates(None, X32), 5).indices
    assert sampler.select_batch(X32, 5).tolist() == picks.tolist()
    kernel = (script.k_center_greedy(X32, 5) if method == "kcenter"
              else script.kmeans_representatives(X32, 5, random_state=42))
    assert kernel[0].tolist() == picks.tolist()


def counting(monkeypatch, name):
    """Count the calls of the script's ``name`` (by the argument name each call checks)."""
    calls = []
    original = getattr(script, name)

    def counted(values, what=None, *args, **kwargs):
        calls.append(what)
        return original(values, what, *args, **kwargs) if what is not None else original(values, *args, **kwargs)

    monkeypatch.setattr(script, name, counted)
    return calls


@pytest.mark.parametrize("call, checked", [
    (lambda: script.DiversitySampler().select_batch(X, 3), ["embeddings"]),
    (lambda: script.DiversitySampler(method="kmeans").select_batch(X, 3), ["embeddings"]),
    (lambda: script.DiversitySampler(uncertainty_prefilter=2).select_batch(X, 3, probabilities=P),
     ["embeddings", "probabilities"]),
    (lambda: script.BADGESampler().select_batch(X, P, 3), ["features", "probabilities"]),
    (lambda: script.UncertaintySampler().select_batch(P, 3), ["probabilities"]),
    (lambda: script.k_center_greedy(X, 3, initial_centers=X[:2]), ["X", "initial_centers"]),
    (lambda: script.badge_kmeanspp(X, P, 3), ["embeddings", "probabilities"]),
])
def test_the_public_path_checks_each_array_once(monkeypatch, call, checked):
    calls = counting(monkeypatch, "_as_matrix")
    call()
    assert sorted(calls) == sorted(checked)


def test_conversion_and_check_make_no_temporary_of_the_whole_array():
    X64 = np.random.default_rng(0).normal(size=(200_000, 16))
    tracemalloc.start()
    try:
        matrix = script._as_matrix(X64, "X", np.float32)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert matrix.dtype == np.float32 and np.array_equal(matrix, X64.astype(np.float32))
    # the float32 result plus a block; a boolean mask of all of X would add X.size bytes (3.2 MB) on top
    assert peak < matrix.nbytes + X64.size // 2


def test_committee_members_are_checked_in_blocks():
    members = np.full((3, 1_000_000, 2), 0.5)
    tracemalloc.start()
    try:
        script._as_members(members)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < members.size // 2  # a mask of every entry would be members.size bytes


@pytest.mark.parametrize("strategy, extra", [
    ("diversity", {}), ("diversity", {"DIVERSITY_METHOD": "kmeans"}), ("hybrid", {}), ("badge", {}),
    ("uncertainty", {}), ("confidence_threshold", {"CONFIDENCE_THRESHOLD": "0.5"}),
    ("committee", {"COMMITTEE_PREFIXES": COMMITTEE_PREFIXES}), ("label_review", {"REVIEW_METHOD": "self_confidence"}),
])
@pytest.mark.parametrize("shards", [1, 3])
def test_the_engine_runs_only_the_private_path(tmp_path, monkeypatch, strategy, extra, shards):
    """After the pool's chunked checks, nothing checks the arrays again, single or sharded."""
    table = with_committee(prediction_table(n=90, dim=5, labeled_fraction=0.2))
    env = dict(SELECTION_STRATEGY=strategy, BATCH_SIZE="6", ID_FIELD="id", LABEL_FIELD="label", **extra)

    def refused(*args, **kwargs):
        raise AssertionError("the engine checked an array again")

    for name in ("_as_matrix", "_as_members", "_checked_candidates"):
        monkeypatch.setattr(script, name, refused)
    if shards == 1:
        write_table(table, tmp_path / "in")
        metadata = sim.run_main(tmp_path / "in", tmp_path / "out", env)
    else:
        relatives = sim.write_parts([table.iloc[i::3] for i in range(3)], tmp_path / "in")
        metadata, _ = sim.sharded(tmp_path / "in", relatives, tmp_path / "root", shards, env)
    assert metadata["selected_count"] > 0


def test_the_engine_leaves_the_pool_alone():
    table = prediction_table(n=50, dim=3)
    config = script.parse_environment({"SELECTION_STRATEGY": "diversity", "BATCH_SIZE": "5", "ID_FIELD": "id"})
    pool = script.pool_from_frame(table, config)
    before = pool.vectors.copy()
    script.select_from_pool(pool, config)
    np.testing.assert_array_equal(pool.vectors, before)


# --- the seeds' spellings ------------------------------------------------------------------------------------

def test_the_seeds_spellings_are_the_samplers_names():
    sampler = script.UncertaintySampler(strategy="entropy", random_seed=7)
    assert (sampler.mode, sampler.random_state) == ("entropy", 7)
    assert (sampler.strategy, sampler.random_seed) == ("entropy", 7)
    assert sampler.get_params() == {"mode": "entropy", "random_state": 7}
    sampler.set_params(strategy="margin", random_seed=3)
    assert sampler.get_params() == {"mode": "margin", "random_state": 3}
    sampler.random_seed = 11
    assert sampler.random_state == 11
    assert script.DiversitySampler(random_seed=3).get_params()["random_state"] == 3


def test_both_names_of_one_parameter_are_refused():
    with pytest.raises(TypeError, match="random_seed and random_state"):
        script.BADGESampler(random_seed=1, random_state=2)
    with pytest.raises(TypeError, match="strategy and mode"):
        script.UncertaintySampler(strategy="margin", mode="entropy")
    with pytest.raises(TypeError, match="strategy and mode"):
        script.UncertaintySampler().set_params(strategy="margin", mode="entropy")


def test_options_after_the_first_are_keyword_only():
    with pytest.raises(TypeError):
        script.DiversitySampler("euclidean", "kmeans")


@pytest.mark.parametrize("seed_name", ["random_seed", "random_state"])
def test_either_seed_name_draws_the_same_picks(seed_name):
    H = RNG.normal(size=(60, 3))
    probabilities = RNG.dirichlet(np.ones(3), size=60)
    picks = script.BADGESampler(**{seed_name: 9}).select_batch(H, probabilities, 8)
    assert picks.tolist() == script.badge_kmeanspp(H, probabilities, 8, random_state=9)[0].tolist()


def test_clone_keeps_the_current_names():
    base = pytest.importorskip("sklearn.base")
    clone = base.clone(script.DiversitySampler(method="kmeans", random_seed=5))
    assert clone.get_params() == script.DiversitySampler(method="kmeans", random_state=5).get_params()
    assert clone.random_seed == 5
