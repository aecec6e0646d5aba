"""Where the time of one BADGE pick goes, per KEEL case of ``run.py --only pruning`` (k = 1000).

Runs ``_badge_kmeanspp``'s loop step by step with a timer around each part: the bound's check
(``_TriangleBound.live_rows``), the distances (streamed or gathered products), the fold into D^2, the
bound's bookkeeping and the draw; and the floor (one n x D and one n x C float32 matrix-vector product per
pick). It also prints the share of rows the bound leaves live per pick, how many picks streamed, the rows
whose D^2 went down per pick, and how many 2048-row blocks those rows touch. Wall time, BLAS single-threaded.

    OPENBLAS_NUM_THREADS=1 PYTHONPATH=src .venv/bin/python benchmarks/pruning_badge.py satimage texture optdigits
"""

import math
import sys
import time
from collections import defaultdict

import numpy as np

import run
from active_sampling.scripts import active_sample_selection as script

BLOCK = 2048


def profile(X, P, k, seed):
    """The kernel's loop as ``_badge_kmeanspp`` runs it (euclidean, no weights), timed part by part."""
    timers = defaultdict(float)
    counts = defaultdict(int)

    def timed(name, fn, *args):
        start = time.perf_counter()
        value = fn(*args)
        timers[name] += time.perf_counter() - start
        return value

    start_all = time.perf_counter()
    X = np.ascontiguousarray(X, dtype=np.float32)
    residual = script._prediction_residuals(np.ascontiguousarray(P, dtype=np.float64))
    rng = np.random.default_rng(seed)
    n_rows = X.shape[0]
    sq_norms = np.einsum("ij,ij->i", residual, residual) * np.einsum("ij,ij->i", X, X, dtype=np.float64)
    residual_by_class = np.ascontiguousarray(residual.T)
    nearest = script._NearestCenter(sq_norms, np.full(n_rows, np.inf))
    min_d2 = nearest.d2
    n_classes = residual_by_class.shape[0]
    bound = script._TriangleBound(
        sq_norms, min_d2, np.zeros(n_rows, dtype=np.intp), np.empty((0, n_classes * X.shape[1])), np.empty(0), k,
        script._pruning_slack(X.shape[1]), gather_cost=script._GATHER_COST["badge_kmeanspp"],
        check_cost=script._CHECK_BYTES["badge_kmeanspp"] / (4 * X.shape[1] + 8 * n_classes))
    h_row_dots, residual_row_dots = script._RowDots(X, rows_axis=0), script._RowDots(residual_by_class, rows_axis=1)
    h_dot = np.empty(n_rows, dtype=np.float32)
    dots = np.empty(n_rows, dtype=np.float64)
    draw = script._BlockedDraw(n_rows)
    chosen = int(np.argmax(sq_norms))
    picks = [chosen]
    timers["setup"] = time.perf_counter() - start_all
    for pick in range(1, k + 1):
        gradient = timed("gradient", lambda: np.multiply.outer(residual_by_class[:, chosen],
                                                                X[chosen].astype(np.float64)).ravel())
        rows = timed("check", bound.live_rows, gradient, float(sq_norms[chosen]))
        if rows is None:
            counts["streamed"] += 1
            counts["live"] += n_rows

            def stream():
                np.dot(X, X[chosen], out=h_dot)
                np.dot(residual_by_class[:, chosen], residual_by_class, out=dots)
                dots[:] *= h_dot
            timed("distances (stream)", stream)
            moved = timed("fold", lambda: script._with_row(nearest.fold(dots, chosen), chosen))
        else:
            counts["live"] += rows.size

            def gather():
                row_dots = residual_row_dots(residual_by_class[:, chosen], rows)
                row_dots *= h_row_dots(X[chosen], rows)
                return row_dots
            row_dots = timed("distances (gather)", gather)
            moved = timed("fold", lambda: script._with_row(nearest.fold(row_dots, chosen, rows), chosen))
        counts["moved"] += moved.size
        counts["blocks touched"] += np.unique(moved // BLOCK).size
        min_d2[chosen] = 0.0
        timed("bookkeeping", bound.add_center, gradient, float(sq_norms[chosen]), moved)
        if pick == k:
            break
        twin = np.random.default_rng()
        twin.bit_generator.state = rng.bit_generator.state
        today = timed("aside: today's draw", script._draw_proportional, min_d2, twin)
        chosen = timed("draw", draw, min_d2, rng)
        counts["draws differing from today's"] += chosen != today
        picks.append(chosen)
    total = time.perf_counter() - start_all - timers["aside: today's draw"]
    counts["fallbacks"] = draw.fallbacks
    return picks, total, timers, counts


def floor_time(X, P, k):
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((k, X.shape[1]), dtype=np.float32)
    p_vectors = rng.standard_normal((k, P.shape[1]), dtype=np.float32)
    P32 = np.ascontiguousarray(P, dtype=np.float32)
    out, p_out = np.empty(X.shape[0], dtype=np.float32), np.empty(X.shape[0], dtype=np.float32)
    start = time.perf_counter()
    for h, p in zip(vectors, p_vectors):
        np.dot(X, h, out=out)
        np.dot(P32, p, out=p_out)
    return time.perf_counter() - start


def main(tables, k=1000, seed=0):
    for table in tables:
        paths = run.keel_data(table, run.KEEL_REPEATS)
        X, P = np.load(paths["X"]), np.load(paths["P"])
        floor = min(floor_time(X, P, k) for _ in range(3))
        picks, total, timers, counts = profile(X, P, k, seed)
        expected = script.badge_kmeanspp(X, P, k, random_state=seed)[0].tolist()
        n_blocks = math.ceil(X.shape[0] / BLOCK)
        print(f"## {table}: {X.shape[0]:,} x {X.shape[1]}, C = {P.shape[1]}, k = {k}; floor {floor:.3f} s, "
              f"instrumented kernel {total:.3f} s = {total / floor:.2f}x floor; picks as the kernel's: "
              f"{picks == expected}")
        for name, seconds in sorted(timers.items(), key=lambda item: -item[1]):
            print(f"  {name:20s} {seconds:7.3f} s  {seconds / floor:5.2f}x floor")
        print(f"  live rows per pick {100 * counts['live'] / (k * X.shape[0]):.0f} %, streamed picks "
              f"{counts['streamed']}, moved rows per pick {counts['moved'] / k:.0f}, {BLOCK}-row blocks touched "
              f"per pick {counts['blocks touched'] / k:.1f} of {n_blocks}; draws that summed every row "
              f"{counts['fallbacks']}, draws differing from today's {counts['draws differing from today' + chr(39) + 's']}")


if __name__ == "__main__":
    main(sys.argv[1:] or ["satimage", "texture", "optdigits"])
