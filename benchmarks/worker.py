"""Run one benchmark case in a fresh process and print its measurements as one JSON line.

Called by ``benchmarks/run.py`` as ``python benchmarks/worker.py '<json spec>'``. The inputs are loaded from
``.npy`` files first; the resident set size after loading is the baseline, the kernel's peak-RSS counter is then
reset (``/proc/self/clear_refs`` = 5), and the peak reported afterwards is the peak of the measured call alone.
"""

import json
import sys
import time

import numpy as np


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


CASES = {"kcenter": _kcenter, "badge": _badge}


def main(argv):
    spec = json.loads(argv[1])
    arrays = {name: np.load(path) for name, path in spec["inputs"].items()}
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
        "indices": None if result is None else np.asarray(result).tolist(),
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main(sys.argv)
