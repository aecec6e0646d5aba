"""Run one benchmark case in a fresh process and print its measurements as one JSON line.

Called by ``benchmarks/run.py`` as ``python benchmarks/worker.py '<json spec>'``. The inputs are loaded from
``.npy`` files first; the resident set size after loading is the baseline, the kernel's peak-RSS counter is then
reset (``/proc/self/clear_refs`` = 5), and the peak reported afterwards is the peak of the measured call alone.
"""

import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent


def _status_kb(field):
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} missing from /proc/self/status")


def _reset_peak():
    try:
        with open("/proc/self/clear_refs", "w") as clear_refs:
            clear_refs.write("5")
        return True
    except OSError:
        return False


def _project():
    from active_sampling.scripts import active_sample_selection as script

    return script


def _kcenter(spec, arrays):
    X, k, metric = arrays["X"], spec["k"], spec.get("metric", "euclidean")
    impl = spec["impl"]
    if impl == "project":
        script = _project()
        return lambda: script.k_center_greedy(X, k, metric=metric)[0]
    if impl == "naive":
        import naive

        return lambda: naive.k_center_greedy(X, k, metric=metric)[0]
    if impl == "floor":
        vectors = np.random.default_rng(0).standard_normal((k, X.shape[1]), dtype=np.float32)

        def floor():
            for v in vectors:
                X @ v

        return floor
    raise ValueError(impl)


def _badge(spec, arrays):
    H, P, k, seed = arrays["H"], arrays["P"], spec["k"], spec.get("seed", 0)
    metric, impl = spec.get("metric", "euclidean"), spec["impl"]
    if impl == "project":
        script = _project()
        return lambda: script.badge_kmeanspp(H, P, k, metric=metric, random_state=seed)[0]
    if impl == "naive":
        import naive

        return lambda: naive.badge(H, P, k, metric=metric, random_seed=seed)[0]
    if impl == "floor":
        rng = np.random.default_rng(0)
        h_vectors = rng.standard_normal((k, H.shape[1]), dtype=np.float32)
        p_vectors = rng.standard_normal((k, P.shape[1]), dtype=np.float32)

        def floor():
            for h, p in zip(h_vectors, p_vectors):
                H @ h
                P @ p

        return floor
    raise ValueError(impl)


def _pruning(spec, arrays):
    """Floor, today's unpruned kernel and the pruned kernel, interleaved in this one process (see run.py)."""
    import logging
    import statistics

    sys.path.insert(0, str(ROOT / "tests" / "script"))
    import reference_kernels  # noqa: E402  today's kernels, kept verbatim for the equality tests

    script = _project()
    X, k, kernel = arrays["X"], spec["k"], spec["kernel"]
    P, seed = arrays.get("P"), spec.get("seed", 0)
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((k, X.shape[1]), dtype=np.float32)
    out = np.empty(X.shape[0], dtype=np.float32)
    if kernel == "badge":
        P32 = np.ascontiguousarray(P, dtype=np.float32)
        p_vectors = rng.standard_normal((k, P.shape[1]), dtype=np.float32)
        p_out = np.empty(X.shape[0], dtype=np.float32)

        def floor():
            for h, p in zip(vectors, p_vectors):
                np.dot(X, h, out=out)
                np.dot(P32, p, out=p_out)

        project = lambda: script.badge_kmeanspp(X, P, k, random_state=seed)[0]  # noqa: E731
        today = lambda: reference_kernels.badge_kmeanspp_reference(X, P, k, random_state=seed)[0]  # noqa: E731
    else:
        def floor():
            for v in vectors:
                np.dot(X, v, out=out)

        project = lambda: script.k_center_greedy(X, k)[0]  # noqa: E731
        today = lambda: reference_kernels.k_center_greedy_reference(X, k)[0]  # noqa: E731

    fractions = []

    class _Fraction(logging.Handler):
        def emit(self, record):
            if "distances computed" in str(record.msg):
                fractions.append(record.args[0] / 100.0)

    script.logger.addHandler(_Fraction())
    script.logger.setLevel(logging.DEBUG)
    times = {"floor": [], "project": [], "today": []}
    picks = {}
    for _ in range(spec["rounds"]):
        for name, run in (("floor", floor), ("project", project), ("today", today)):
            start = time.perf_counter()
            result = run()
            times[name].append(time.perf_counter() - start)
            if result is not None:
                picks[name] = np.asarray(result).tolist()
    ratios = {name: [t / f for t, f in zip(times[name], times["floor"])] for name in ("project", "today")}
    return {
        "times": times,
        "median_seconds": {name: statistics.median(values) for name, values in times.items()},
        "median_ratio_to_floor": {name: statistics.median(values) for name, values in ratios.items()},
        "identical_picks": picks["project"] == picks["today"],
        "fraction_computed": fractions[-1] if fractions else None,
    }


def _class_path(spec, arrays):
    """DiversitySampler().select_batch on float64 input against k float32 matrix-vector products over the same
    matrix (converted once, outside the timing), interleaved ``rounds`` times in this one process."""
    import statistics

    script = _project()
    X64, k = arrays["X"], spec["k"]
    X32 = X64.astype(np.float32)
    vectors = np.random.default_rng(0).standard_normal((k, X64.shape[1]), dtype=np.float32)
    out = np.empty(X64.shape[0], dtype=np.float32)

    def floor():
        for v in vectors:
            np.dot(X32, v, out=out)

    def project():
        script.DiversitySampler().select_batch(X64, k)

    times = {"floor": [], "project": []}
    for _ in range(spec["rounds"]):
        for name, run in (("floor", floor), ("project", project)):
            start = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - start)
    ratios = [p / f for p, f in zip(times["project"], times["floor"])]
    return {"times": times, "median_seconds": {name: statistics.median(v) for name, v in times.items()},
            "median_ratio_to_floor": statistics.median(ratios)}


def _validation(spec, arrays):
    """One public call on the loaded input, for its peak memory (the conversion and check, then k picks)."""
    script = _project()
    X, k, call = arrays["X"], spec["k"], spec["impl"]
    if call.startswith("k_center_greedy"):
        return lambda: script.k_center_greedy(X, k)[0]
    if call == "diversity_select_batch_float64":
        return lambda: script.DiversitySampler().select_batch(X, k)
    raise ValueError(call)


CASES = {"kcenter": _kcenter, "badge": _badge, "validation": _validation}


def main(argv):
    spec = json.loads(argv[1])
    arrays = {name: np.load(path) for name, path in spec["inputs"].items()}
    if spec["case"] == "pruning":
        print(json.dumps(_pruning(spec, arrays)))
        return
    if spec["case"] == "class_path":
        print(json.dumps(_class_path(spec, arrays)))
        return
    run = CASES[spec["case"]](spec, arrays)
    baseline_kb = _status_kb("VmRSS")
    peak_is_call_only = _reset_peak()
    times, result = [], None
    for _ in range(spec.get("repeat", 1)):
        start = time.perf_counter()
        result = run()
        times.append(time.perf_counter() - start)
    peak_kb = _status_kb("VmHWM")
    out = {
        "seconds": min(times),
        "all_seconds": times,
        "baseline_bytes": baseline_kb * 1024,
        "peak_bytes": peak_kb * 1024,
        "peak_above_baseline_bytes": (peak_kb - baseline_kb) * 1024 if peak_is_call_only else None,
        "indices": None if result is None or spec["case"] == "validation" else np.asarray(result).tolist(),
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main(sys.argv)
