"""How much of the work the triangle bound can save, per case of ``run.py --only pruning``, and what it cannot.

For k-center greedy (float64, from the column mean, k picks) it prints the mean share of rows per pick that
(a) the row-level bound d(a(x), c) < 2 d(x) leaves live, and (b) a group-level bound leaves, where every row
nearest to center a is ruled out together when d(a, c) >= 2 max d(x) over a's rows (contiguous groups of
rows), with how many groups survive per pick (one BLAS call each). For BADGE it prints the cost of the one
pass the unpruned kernel makes over all rows per draw, ``np.cumsum`` of the float64 D^2, relative to one pick
of BADGE's floor (an n x D and an n x C float32 matrix-vector product); the kernel's draw
(``_BlockedDraw``) now avoids it; ``pruning_badge.py`` times the parts of a BADGE pick. CPU time, medians of 20.

    PYTHONPATH=src .venv/bin/python benchmarks/pruning_shares.py satimage texture optdigits
"""

import statistics
import sys
import time

import numpy as np

import run


def kcenter_shares(X, k):
    X = X.astype(np.float64) - X.mean(axis=0)
    sq = np.einsum("ij,ij->i", X, X)
    d2, nearest, centers = sq.copy(), np.zeros(X.shape[0], dtype=np.intp), [np.zeros(X.shape[1])]
    row_live, group_rows, groups = [], [], []
    for _ in range(k):
        chosen = int(np.argmax(d2))
        gaps = np.sqrt(((np.asarray(centers) - X[chosen]) ** 2).sum(axis=1))
        d = np.sqrt(np.maximum(d2, 0.0))
        radius = np.zeros(len(centers))
        np.maximum.at(radius, nearest, d)
        surviving = gaps < 2 * radius
        row_live.append(np.mean(gaps[nearest] < 2 * d))
        group_rows.append(np.bincount(nearest, minlength=len(centers))[surviving].sum() / X.shape[0])
        groups.append(int(surviving.sum()))
        new = sq - 2 * X @ X[chosen] + sq[chosen]
        down = new < d2
        d2[down], nearest[down] = new[down], len(centers)
        centers.append(X[chosen])
        d2[chosen] = -np.inf
    return np.mean(row_live), np.mean(group_rows), np.mean(groups)


def cpu_median(fn, repeats=20):
    times = []
    for _ in range(repeats):
        start = time.process_time()
        fn()
        times.append(time.process_time() - start)
    return statistics.median(times)


def main(tables, k=1000):
    print("| table | rows x dims | k-center: row-level live | group-level live | groups per pick "
          "| BADGE: cumsum / floor pick |")
    print("|---|---|---|---|---|---|")
    for table in tables:
        paths = run.keel_data(table, run.KEEL_REPEATS)
        X, P = np.load(paths["X"]), np.load(paths["P"])
        row_live, group_live, groups = kcenter_shares(X, k)
        rng = np.random.default_rng(0)
        h, p = rng.standard_normal(X.shape[1], dtype=np.float32), rng.standard_normal(P.shape[1], dtype=np.float32)
        P32 = P.astype(np.float32)
        d2 = rng.random(X.shape[0])
        floor = cpu_median(lambda: (X @ h, P32 @ p))
        cumsum = cpu_median(lambda: np.cumsum(d2))
        print(f"| {table} | {X.shape[0]:,} x {X.shape[1]} | {100 * row_live:.0f} % | {100 * group_live:.0f} % "
              f"| {groups:.0f} | {cumsum / floor:.2f} |")


if __name__ == "__main__":
    main(sys.argv[1:] or ["satimage", "texture", "optdigits"])
