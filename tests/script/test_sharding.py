"""Sharded selection (SELECTION_ROLE=shard on N simulated instances, then merge) against one single run.

See tests/script/sharding.py for how N instances and the S3 upload are simulated on one machine.
"""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import sharding as sim
from conftest import prediction_table

EXACT_CASES = {
    "uncertainty_margin": dict(SELECTION_STRATEGY="uncertainty", BATCH_SIZE="25"),
    "uncertainty_entropy": dict(SELECTION_STRATEGY="uncertainty", UNCERTAINTY_MODE="entropy", BATCH_SIZE="40"),
    "top_k_per_class": dict(SELECTION_STRATEGY="top_k_per_class", K_PER_CLASS="9"),
    "confidence_threshold_capped": dict(SELECTION_STRATEGY="confidence_threshold", CONFIDENCE_THRESHOLD="0.6",
                                        MAX_SAMPLES="30"),
    "confidence_threshold_all": dict(SELECTION_STRATEGY="confidence_threshold", CONFIDENCE_THRESHOLD="0.6"),
}
COMPARED_METADATA = ("strategy", "pool_size", "labeled_count", "candidate_count", "selected_count",
                     "selected_per_class", "selection_score", "output_format", "output_file", "input_files", "details",
                     "pool_per_class", "confidence_mean", "confidence_histogram", "threshold_coverage",
                     "label_agreement")


def tied_parts(n_files=10, rows=40, seed=0):
    """Part files whose probabilities take few distinct values, so many rows tie on every score."""
    table = prediction_table(n=n_files * rows, n_classes=3, labeled_fraction=0.15, seed=seed)
    rng = np.random.default_rng(seed)
    levels = np.array([[0.8, 0.1, 0.1], [0.1, 0.8, 0.1], [0.45, 0.45, 0.1], [0.6, 0.3, 0.1], [0.3, 0.1, 0.6]])
    chosen = levels[rng.integers(0, len(levels), size=len(table))]
    for c in range(3):
        table["prob_class_{}".format(c)] = chosen[:, c]
    table["count"] = rng.integers(0, 1000, size=len(table))
    return [table.iloc[i * rows:(i + 1) * rows].reset_index(drop=True) for i in range(n_files)]


@pytest.fixture(scope="module", params=["parquet", "csv"])
def tied_pool(request, tmp_path_factory):
    folder = tmp_path_factory.mktemp("pool_" + request.param)
    parts = tied_parts()
    parts[4] = parts[4].assign(count=parts[4]["count"].astype(float))  # int64 in some files, float64 in one
    parts[4].loc[3, "count"] = np.nan
    return folder, sim.write_parts(parts, folder, request.param)


@pytest.mark.parametrize("n_shards", [1, 3, 8, 13])
@pytest.mark.parametrize("case", sorted(EXACT_CASES))
def test_exact_strategies_match_a_single_run_byte_for_byte(tied_pool, tmp_path, case, n_shards):
    pool_dir, relatives = tied_pool
    env = dict(EXACT_CASES[case], LABEL_FIELD="label")
    single_metadata, single_out = sim.single(pool_dir, tmp_path, env)
    merged_metadata, merged_out = sim.sharded(pool_dir, relatives, tmp_path, n_shards, env)
    single_bytes = sim.selected_file(single_out).read_bytes()
    assert sim.selected_file(merged_out).read_bytes() == single_bytes
    assert {key: merged_metadata.get(key) for key in COMPARED_METADATA} == \
        {key: single_metadata.get(key) for key in COMPARED_METADATA}
    assert "label_agreement" in single_metadata and ("threshold_coverage" in single_metadata) == (case[0] != "u")
    scores = sim.selected_frame(single_out)["selection_score"]
    assert scores.duplicated().any(), "the case must contain ties to test their order"
    sharding = merged_metadata["sharding"]
    assert sharding["hosts"] == sim.hosts_of(n_shards) and sharding["guarantee"] == "exact"
    assert sum(shard["pool_size"] for shard in sharding["shards"]) == single_metadata["pool_size"]


def test_more_shards_than_files_leaves_empty_shards_that_succeed(tied_pool, tmp_path):
    pool_dir, relatives = tied_pool
    env = dict(EXACT_CASES["uncertainty_margin"], LABEL_FIELD="label")
    outputs = sim.run_shards(pool_dir, relatives, tmp_path, 13, env)
    empty = json.loads((outputs[12] / "shard-algo-13.json").read_text())
    assert (empty["pool_size"], empty["forwarded_count"], empty["candidate_files"]) == (0, 0, [])
    assert (outputs[12] / "_SUCCESS").exists()


def test_a_shard_writes_only_files_named_after_its_host(tied_pool, tmp_path):
    pool_dir, relatives = tied_pool
    outputs = sim.run_shards(pool_dir, relatives, tmp_path, 2, dict(SELECTION_STRATEGY="diversity",
                                                                     LABEL_FIELD="label", BATCH_SIZE="5"))
    names = sorted(p.name for p in outputs[1].iterdir())
    assert names[0] == "_SUCCESS" and {"shard-algo-2.json", "shard-algo-2.labeled.npy"} <= set(names)
    pieces = [name for name in names[1:] if name.endswith(".parquet")]
    assert len(pieces) == len(relatives) // 2 and all(name.startswith("shard-algo-2.") for name in names[1:])


# ----------------------------------------------------------------------------------------------------------
# k-center


def mixture(n=6000, dim=16, clusters=20, seed=0, sorted_by_cluster=False):
    """Gaussian clusters of different sizes and spreads, with a few labeled rows."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(scale=6.0, size=(clusters, dim))
    sizes = rng.dirichlet(np.full(clusters, 2.0))
    member = np.sort(rng.choice(clusters, size=n, p=sizes)) if sorted_by_cluster else rng.choice(clusters, size=n,
                                                                                                   p=sizes)
    spread = rng.uniform(0.5, 2.0, size=clusters)[member, None]
    vectors = centers[member] + spread * rng.normal(size=(n, dim))
    table = prediction_table(n=n, n_classes=3, dim=0, labeled_fraction=0.01, seed=seed)
    for d in range(dim):
        table["emb_{}".format(d)] = vectors[:, d]
    return table


def covering_radius(table, selected_ids, metric="euclidean"):
    """Largest distance from an unlabeled row to its nearest selected or labeled row (float64, brute force)."""
    vectors = table.filter(like="emb_").to_numpy(dtype=np.float32).astype(np.float64)
    labeled = table["label"].notna().to_numpy()
    centers = vectors[labeled | table["id"].isin(selected_ids).to_numpy()]
    rows = vectors[~labeled]
    if metric == "cosine":
        rows = rows / np.linalg.norm(rows, axis=1, keepdims=True)
        centers = centers / np.linalg.norm(centers, axis=1, keepdims=True)
        return float((1.0 - rows @ centers.T).min(axis=1).max())
    d2 = (rows ** 2).sum(1)[:, None] + (centers ** 2).sum(1)[None, :] - 2 * rows @ centers.T
    return float(np.sqrt(np.maximum(d2.min(axis=1), 0)).max())


def radii(tmp_path, table, n_files, n_shards, env, assignment=None):
    parts = np.array_split(np.arange(len(table)), n_files)
    relatives = sim.write_parts([table.iloc[p].reset_index(drop=True) for p in parts], tmp_path / "pool")
    _, single_out = sim.single(tmp_path / "pool", tmp_path, env)
    metadata, merged_out = sim.sharded(tmp_path / "pool", relatives, tmp_path, n_shards, env, assignment)
    single_radius = covering_radius(table, sim.selected_frame(single_out)["id"], env.get("METRIC", "euclidean"))
    merged = sim.selected_frame(merged_out)
    merged_radius = covering_radius(table, merged["id"], env.get("METRIC", "euclidean"))
    assert merged["id"].is_unique and not merged["label"].notna().any()
    return single_radius, merged_radius, metadata["sharding"]["covering_radius_bound"]


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_kcenter_radius_close_to_single_on_a_mixture(tmp_path, metric):
    table = mixture(seed=1)
    env = dict(SELECTION_STRATEGY="diversity", LABEL_FIELD="label", BATCH_SIZE="40", METRIC=metric)
    single_radius, merged_radius, bound = radii(tmp_path, table, n_files=16, n_shards=4, env=env)
    assert merged_radius <= 1.10 * single_radius
    assert merged_radius <= bound


def test_kcenter_radius_within_twice_single_when_each_shard_sees_some_clusters(tmp_path):
    table = mixture(seed=2, sorted_by_cluster=True)
    env = dict(SELECTION_STRATEGY="diversity", LABEL_FIELD="label", BATCH_SIZE="30")
    assignment = [i * 4 // 16 for i in range(16)]  # contiguous files: each shard holds a few clusters only
    single_radius, merged_radius, bound = radii(tmp_path, table, n_files=16, n_shards=4, env=env,
                                                assignment=assignment)
    assert merged_radius <= 2.0 * single_radius
    assert merged_radius <= bound


def test_kcenter_without_labeled_rows_starts_from_the_mean_of_all_candidates(tmp_path):
    table = mixture(n=2000, seed=3).assign(label=None)
    env = dict(SELECTION_STRATEGY="diversity", LABEL_FIELD="label", BATCH_SIZE="1")
    parts = np.array_split(np.arange(len(table)), 5)
    relatives = sim.write_parts([table.iloc[p].reset_index(drop=True) for p in parts], tmp_path / "pool")
    _, single_out = sim.single(tmp_path / "pool", tmp_path, env)
    metadata, merged_out = sim.sharded(tmp_path / "pool", relatives, tmp_path, 3, env)
    # The row farthest from the pool's mean is the first pick of its shard: both runs pick it.
    assert list(sim.selected_frame(merged_out)["id"]) == list(sim.selected_frame(single_out)["id"])
    assert covering_radius(table, sim.selected_frame(merged_out)["id"]) <= metadata["sharding"][
        "covering_radius_bound"]


# ----------------------------------------------------------------------------------------------------------
# BADGE


def badge_table(n=3000, seed=0):
    table = mixture(n=n, dim=8, clusters=12, seed=seed)
    rng = np.random.default_rng(seed + 100)
    logits = table.filter(like="emb_").to_numpy()[:, :3] + rng.normal(scale=2.0, size=(n, 3))
    probabilities = np.exp(logits - logits.max(axis=1, keepdims=True))
    probabilities /= probabilities.sum(axis=1, keepdims=True)
    for c in range(3):
        table["prob_class_{}".format(c)] = probabilities[:, c]
    return table


def d2_potential(script, table, selected_ids):
    """sum over candidates of the squared gradient-embedding distance to the nearest selected row."""
    gradients = script.gradient_embeddings(table.filter(like="emb_").to_numpy(dtype=np.float32),
                                           table.filter(like="prob_class_").to_numpy())
    candidates = gradients[table["label"].isna().to_numpy()]
    chosen = gradients[table["id"].isin(selected_ids).to_numpy()]
    d2 = (candidates ** 2).sum(1)[:, None] + (chosen ** 2).sum(1)[None, :] - 2 * candidates @ chosen.T
    return float(np.maximum(d2.min(axis=1), 0).sum())


def test_badge_potential_close_to_single_on_average_first_pick_identical(script, tmp_path):
    table = badge_table()
    parts = np.array_split(np.arange(len(table)), 12)
    relatives = sim.write_parts([table.iloc[p].reset_index(drop=True) for p in parts], tmp_path / "pool")
    ratios = []
    for seed in range(5):
        env = dict(SELECTION_STRATEGY="badge", LABEL_FIELD="label", BATCH_SIZE="30", RANDOM_SEED=str(seed))
        root = tmp_path / "seed{}".format(seed)
        _, single_out = sim.single(tmp_path / "pool", root, env)
        metadata, merged_out = sim.sharded(tmp_path / "pool", relatives, root, 4, env)
        single, merged = sim.selected_frame(single_out), sim.selected_frame(merged_out)
        assert merged["id"].iloc[0] == single["id"].iloc[0]
        assert merged["id"].is_unique and len(merged) == 30
        assert not table.set_index("id").loc[merged["id"], "label"].notna().any()
        assert metadata["sharding"]["represented_rows"] == metadata["candidate_count"]
        ratios.append(d2_potential(script, table, merged["id"]) / d2_potential(script, table, single["id"]))
    assert np.mean(ratios) <= 1.10, ratios


# ----------------------------------------------------------------------------------------------------------
# failures: the merge names the host


def uncertainty_env(**extra):
    return dict(dict(SELECTION_STRATEGY="uncertainty", LABEL_FIELD="label", BATCH_SIZE="10"), **extra)


@pytest.fixture
def small_pool(tmp_path):
    folder = tmp_path / "pool"
    return folder, sim.write_parts(tied_parts(n_files=6, rows=20), folder)


def assert_merge_fails(root, merge_input, env, *fragments):
    with pytest.raises(sim.script.SelectionError) as caught:
        sim.run_merge(merge_input, root, env)
    message = str(caught.value)
    assert all(fragment in message for fragment in fragments), message
    out = Path(root) / "merge" / "out"
    assert sorted(p.name for p in (out / "selected_samples").iterdir()) == ["_FAILURE"]
    return message


def test_merge_names_a_missing_host(small_pool, tmp_path):
    outputs = sim.run_shards(*small_pool, tmp_path, 3, uncertainty_env())
    merge_input = sim.upload([outputs[0], outputs[2]], tmp_path / "s3")
    assert_merge_fails(tmp_path, merge_input, uncertainty_env(), "algo-2", "missing")


def test_two_instances_claiming_one_host_leave_the_other_missing(small_pool, tmp_path):
    hosts = ["algo-1", "algo-1", "algo-3"]  # two instances wrongly believe they are algo-1

    def run(index, host):
        shard_root = tmp_path / "shards" / str(index)
        for relative in small_pool[1][index::3]:
            (shard_root / "input" / relative).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(str(small_pool[0] / relative), str(shard_root / "input" / relative))
        config = sim.resource_config(shard_root, host, ["algo-1", "algo-2", "algo-3"])
        sim.run_main(shard_root / "input", shard_root / "out",
                     dict(uncertainty_env(), SELECTION_ROLE="shard", RESOURCE_CONFIG_PATH=str(config)))
        return shard_root / "out" / "selected_samples"

    merge_input = sim.upload([run(i, host) for i, host in enumerate(hosts)], tmp_path / "s3")
    assert_merge_fails(tmp_path, merge_input, uncertainty_env(), "algo-2", "missing")


def test_merge_names_a_host_whose_output_appears_twice(small_pool, tmp_path):
    outputs = sim.run_shards(*small_pool, tmp_path, 2, uncertainty_env())
    merge_input = sim.upload(outputs, tmp_path / "s3")
    sim.upload([outputs[1]], merge_input / "old-run")
    assert_merge_fails(tmp_path, merge_input, uncertainty_env(), "algo-2", "twice")


def test_merge_names_a_host_from_a_run_with_other_hosts(small_pool, tmp_path):
    old = sim.run_shards(*small_pool, tmp_path / "old", 3, uncertainty_env())
    new = sim.run_shards(*small_pool, tmp_path / "new", 2, uncertainty_env())
    merge_input = sim.upload(old + new, tmp_path / "s3")  # algo-3 of the old run is left over
    assert_merge_fails(tmp_path, merge_input, uncertainty_env(), "algo-")


def test_merge_names_the_host_and_variable_of_a_different_configuration(small_pool, tmp_path):
    outputs = sim.run_shards(*small_pool, tmp_path, 2, uncertainty_env())
    sim.run_shards(*small_pool, tmp_path / "other", 2, uncertainty_env(BATCH_SIZE="11"))
    merge_input = sim.upload(outputs, tmp_path / "s3")
    for path in (tmp_path / "other" / "shards" / "instance-1" / "out" / "selected_samples").glob("shard-*"):
        shutil.copy(str(path), str(merge_input / path.name))
    assert_merge_fails(tmp_path, merge_input, uncertainty_env(), "algo-2", "BATCH_SIZE=11")


def test_merge_names_a_host_that_read_scores_differently(tmp_path):
    parts = tied_parts(n_files=4, rows=20)
    parts[1] = parts[1].assign(prob_class_0=parts[1]["prob_class_0"] + 0.5)  # rows no longer sum to 1: logits
    relatives = sim.write_parts(parts, tmp_path / "pool")
    outputs = sim.run_shards(tmp_path / "pool", relatives, tmp_path, 2, uncertainty_env(), assignment=[0, 1, 0, 0])
    assert_merge_fails(tmp_path, sim.upload(outputs, tmp_path / "s3"), uncertainty_env(), "algo-2",
                       "how scores were read")


def test_merge_names_a_host_whose_files_type_a_column_differently(tmp_path):
    parts = tied_parts(n_files=4, rows=20)
    parts[1] = parts[1].assign(count=parts[1]["count"].astype(str))  # text in one file, integers in the others
    relatives = sim.write_parts(parts, tmp_path / "pool")
    outputs = sim.run_shards(tmp_path / "pool", relatives, tmp_path, 2, uncertainty_env(), assignment=[0, 1, 0, 0])
    assert_merge_fails(tmp_path, sim.upload(outputs, tmp_path / "s3"), uncertainty_env(), "algo-2", "'count'",
                       "type")


def test_merge_without_shard_outputs_says_where_to_point_it(tmp_path, small_pool):
    assert_merge_fails(tmp_path, small_pool[0], uncertainty_env(), "no shard outputs")


# ----------------------------------------------------------------------------------------------------------
# roles and instances


def test_single_role_on_several_instances_is_refused(small_pool, tmp_path):
    config = sim.resource_config(tmp_path, "algo-1", ["algo-1", "algo-2"])
    with pytest.raises(sim.script.SelectionError, match="SELECTION_ROLE=single runs on one instance"):
        sim.run_main(small_pool[0], tmp_path / "out", dict(uncertainty_env(), RESOURCE_CONFIG_PATH=str(config)))


def test_shard_without_resource_config_names_the_variable(small_pool, tmp_path):
    with pytest.raises(sim.script.SelectionError, match="RESOURCE_CONFIG_PATH"):
        sim.run_main(small_pool[0], tmp_path / "out", dict(uncertainty_env(), SELECTION_ROLE="shard",
                                                           RESOURCE_CONFIG_PATH=str(tmp_path / "none.json")))


@pytest.mark.parametrize("document, fragment", [
    ({"current_host": "algo-3", "hosts": ["algo-1", "algo-2"]}, "not among hosts"),
    ({"current_host": "algo-1", "hosts": ["algo-1", "algo-1"]}, "twice"),
    ({"current_host": "algo-1", "hosts": []}, "non-empty list"),
    ({"current_host": "../x", "hosts": ["../x"]}, "host names"),
])
def test_resource_config_is_validated(script, tmp_path, document, fragment):
    path = tmp_path / "resourceconfig.json"
    path.write_text(json.dumps(document))
    with pytest.raises(script.SelectionError, match=fragment):
        script.read_resource_config(path)


# ----------------------------------------------------------------------------------------------------------
# the pure functions


def test_merge_ranked_orders_ties_by_keys_and_limits_per_group(script):
    scores = np.array([0.5, 0.9, 0.5, 0.9, 0.1])
    files = np.array([1, 1, 0, 0, 0])
    rows = np.array([0, 1, 5, 2, 0])
    assert list(script.merge_ranked(scores, (files, rows), 3)) == [3, 1, 2]
    assert list(script.merge_ranked(scores, (files, rows), 0)) == [3, 1, 2, 0, 4]
    groups = np.array([0, 0, 0, 1, 1])
    assert list(script.merge_ranked(scores, (files, rows), 1, groups)) == [3, 1]


def test_config_fingerprint_ignores_role_and_resource_config_only(script):
    base = script.parse_environment({"SELECTION_STRATEGY": "badge"})
    assert script.config_fingerprint(base) == script.config_fingerprint(script.parse_environment(
        {"SELECTION_STRATEGY": "badge", "SELECTION_ROLE": "merge", "RESOURCE_CONFIG_PATH": "/tmp/x.json"}))
    assert script.config_fingerprint(base) != script.config_fingerprint(script.parse_environment(
        {"SELECTION_STRATEGY": "badge", "OVERSAMPLING": "5"}))


def test_covering_radius_bound_adds_radii_in_chord_space(script):
    assert script.covering_radius_bound([1.0, 2.0], 0.5, "euclidean") == pytest.approx(2.5, rel=1e-3)
    # radii come as chords of unit vectors: 1 and 0.5 add up to 1.5, which is 1 - cos = 1.5^2 / 2
    assert script.covering_radius_bound([1.0], 0.5, "cosine") == pytest.approx(1.125, rel=1e-3)


@pytest.mark.parametrize("labeled", [0, 5])
def test_k_center_with_radius_bounds_the_true_radius_and_keeps_the_greedy_picks(script, labeled):
    rng = np.random.default_rng(4)
    X = rng.normal(size=(500, 6)).astype(np.float32)
    initial = rng.normal(size=(labeled, 6)).astype(np.float32) if labeled else None
    indices, distances, radius = script.k_center_with_radius(X, 12, initial_centers=initial)
    expected_indices, expected_distances = script.k_center_greedy(X, 12, initial_centers=initial)
    np.testing.assert_array_equal(indices, expected_indices)
    np.testing.assert_array_equal(distances, expected_distances)
    centers = X[indices] if initial is None else np.vstack([X[indices], initial])
    true = np.sqrt(((X[:, None, :].astype(np.float64) - centers[None]) ** 2).sum(-1).min(axis=1).max())
    assert true <= radius * (1 + 1e-4)
    if labeled:
        assert radius == pytest.approx(true, rel=1e-4)


def test_nearest_pick_counts_match_brute_force_on_gradients(script):
    rng = np.random.default_rng(5)
    H = rng.normal(size=(200, 4)).astype(np.float32)
    P = rng.dirichlet(np.ones(3), size=200)
    picks = np.array([3, 50, 120, 7])
    G = script.gradient_embeddings(H, P)
    nearest = ((G[:, None, :] - G[picks][None]) ** 2).sum(-1).argmin(axis=1)
    np.testing.assert_array_equal(script.nearest_pick_counts(H, P, picks), np.bincount(nearest, minlength=4))
    assert script.nearest_pick_counts(H, P, picks)[:].sum() == 200


def test_badge_sample_weight_of_ones_changes_nothing_and_zero_weight_is_never_drawn(script):
    rng = np.random.default_rng(6)
    H = rng.normal(size=(300, 5))
    P = rng.dirichlet(np.ones(4), size=300)
    plain = script.badge_kmeanspp(H, P, 20, random_state=3)
    weighted = script.badge_kmeanspp(H, P, 20, random_state=3, sample_weight=np.ones(300))
    np.testing.assert_array_equal(plain[0], weighted[0])
    weights = np.zeros(300)
    weights[::3] = 1.0
    first, _ = script.badge_kmeanspp(H, P, 20, random_state=3, sample_weight=weights)
    assert all(index % 3 == 0 for index in first[1:])
    with pytest.raises(ValueError, match="sample_weight"):
        script.badge_kmeanspp(H, P, 5, sample_weight=-np.ones(300))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, 4), min_size=1, max_size=60), st.integers(1, 6), st.integers(1, 70),
       st.integers(0, 2**16))
def test_merging_each_shards_top_k_gives_the_global_top_k(levels, n_shards, k, seed):
    """Any split of ordered files among shards: the best k of the shards' best k are the whole pool's best k."""
    scores = np.array(levels, dtype=np.float64) / 4.0  # few values: many ties
    rng = np.random.default_rng(seed)
    n = scores.size
    file_of_row = np.sort(rng.integers(0, 5, size=n))  # rows in input order, grouped into 5 files
    row_in_file = np.concatenate([np.arange((file_of_row == f).sum()) for f in range(5)])
    shard_of_file = rng.integers(0, n_shards, size=5)
    script = sim.script
    sent = [members[script.top_k_indices(scores[members], k)]
            for members in (np.flatnonzero(shard_of_file[file_of_row] == s) for s in range(n_shards))]
    union = np.concatenate(sent)
    merged = union[script.merge_ranked(scores[union], (file_of_row[union], row_in_file[union]), k)]
    np.testing.assert_array_equal(merged, script.top_k_indices(scores, k))


def test_merge_writes_the_labeling_tasks_a_single_run_writes(tmp_path):
    parts = tied_parts(n_files=6, rows=20)
    for part in parts:
        part["text"] = "row " + part["id"]
    relatives = sim.write_parts(parts, tmp_path / "pool")
    env = uncertainty_env(BATCH_SIZE="7")
    labeling = dict(LABELING_FORMAT="label_studio", LABELING_DATA_FIELD="text")
    outputs = sim.run_shards(tmp_path / "pool", relatives, tmp_path, 3, env)  # shards never write tasks
    merge_input = sim.upload(outputs, tmp_path / "s3")
    tasks = {}
    for role, input_dir in (("single", tmp_path / "pool"), ("merge", merge_input)):
        out = tmp_path / role
        sim.script.main({"evaluation_data": str(input_dir)},
                        {"selected_samples": str(out / "samples"), "selection_metadata": str(out / "metadata"),
                         "labeling_tasks": str(out / "tasks")},
                        dict(env, SELECTION_ROLE=role, **labeling), {"job_type": "labeling_test"})
        tasks[role] = (out / "tasks" / "label_studio_tasks.json").read_bytes()
    assert tasks["merge"] == tasks["single"]


def kmeans_cost(table, selected_ids):
    """k-means cost of the candidates with the selected rows as centers: sum of squared distances (float64)."""
    vectors = table.filter(like="emb_").to_numpy(dtype=np.float32).astype(np.float64)
    rows = vectors[table["label"].isna().to_numpy()]
    centers = vectors[table["id"].isin(selected_ids).to_numpy()]
    d2 = (rows ** 2).sum(1)[:, None] + (centers ** 2).sum(1)[None, :] - 2 * rows @ centers.T
    return float(np.maximum(d2.min(axis=1), 0).sum())


@pytest.mark.parametrize("n_shards", [3, 8])
def test_kmeans_without_prefilter_shards_by_weighted_representatives(tmp_path, n_shards):
    table = mixture(n=3000, seed=4)
    parts = np.array_split(np.arange(len(table)), 16)
    relatives = sim.write_parts([table.iloc[p].reset_index(drop=True) for p in parts], tmp_path / "pool")
    ratios = []
    for seed in range(5):
        env = dict(SELECTION_STRATEGY="diversity", DIVERSITY_METHOD="kmeans", LABEL_FIELD="label", BATCH_SIZE="25",
                   RANDOM_SEED=str(seed))
        root = tmp_path / "seed{}".format(seed)
        single_metadata, single_out = sim.single(tmp_path / "pool", root, env)
        metadata, merged_out = sim.sharded(tmp_path / "pool", relatives, root, n_shards, env)
        merged = sim.selected_frame(merged_out)
        assert merged["id"].is_unique and len(merged) == 25
        assert not table.set_index("id").loc[merged["id"], "label"].notna().any()
        # Each pick's score is the number of candidates its cluster stands for; together, every candidate.
        assert metadata["sharding"]["represented_rows"] == single_metadata["candidate_count"]
        assert merged["selection_score"].sum() == single_metadata["candidate_count"]
        ratios.append(kmeans_cost(table, merged["id"]) / kmeans_cost(table, sim.selected_frame(single_out)["id"]))
    assert np.mean(ratios) <= 1.10, ratios


# Five probability levels: the rows kept (beta x BATCH_SIZE of about 340 candidates) span more than one
# uncertainty level, so their rank order differs from input order, and the cut falls inside a tie.
HYBRID_CASES = {
    "kcenter_beta3": dict(DIVERSITY_METHOD="kcenter", UNCERTAINTY_PREFILTER="3", BATCH_SIZE="40"),
    "kmeans_beta3": dict(DIVERSITY_METHOD="kmeans", UNCERTAINTY_PREFILTER="3", BATCH_SIZE="40"),
    "kmeans_beta2_entropy_cosine": dict(DIVERSITY_METHOD="kmeans", UNCERTAINTY_PREFILTER="2", BATCH_SIZE="50",
                                        UNCERTAINTY_MODE="entropy", METRIC="cosine"),
    "kcenter_beta10_keeps_all": dict(DIVERSITY_METHOD="kcenter", UNCERTAINTY_PREFILTER="10", BATCH_SIZE="40"),
}


@pytest.mark.parametrize("n_shards", [1, 3, 8])
@pytest.mark.parametrize("case", sorted(HYBRID_CASES))
def test_the_hybrid_shards_exactly(tied_pool, tmp_path, case, n_shards):
    """The pre-filter is a top-k: the merge runs the sampler on the rows a single run keeps, ties included."""
    pool_dir, relatives = tied_pool
    env = dict(HYBRID_CASES[case], SELECTION_STRATEGY="diversity", LABEL_FIELD="label")
    single_metadata, single_out = sim.single(pool_dir, tmp_path, env)
    merged_metadata, merged_out = sim.sharded(pool_dir, relatives, tmp_path, n_shards, env)
    assert sim.selected_file(merged_out).read_bytes() == sim.selected_file(single_out).read_bytes()
    assert {key: merged_metadata.get(key) for key in COMPARED_METADATA} == \
        {key: single_metadata.get(key) for key in COMPARED_METADATA}
    assert merged_metadata["sharding"]["guarantee"] == "exact"
    assert len(sim.selected_frame(single_out)) == int(env["BATCH_SIZE"])
