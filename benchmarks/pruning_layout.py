"""Prototype: k-center greedy over a periodically re-laid-out copy of the rows, with a prefix bound.

At a re-layout the rows are grouped by their nearest center c_j at that moment and, within a group, sorted by
their key ``d2_L + s |x|^2`` descending (d2_L the computed squared distance to c_j then, s the pruning slack).
For a new center c, a row of group j is ruled out when ``|c_j - c|^2 / 4 - s (|c_j|^2 + |c|^2) / 2 > key``
(the row-level bound of ``_TriangleBound`` with the layout-time center and distance; the row's current distance
is at most d2_L, so the bound stays valid after it moves to a newer center). The live rows of each group are
a prefix of its slice: one ``searchsorted`` finds every prefix, the prefixes (aligned to 64 rows, neighbours
merged) are computed by one ``np.dot`` each into one buffer, and the fold runs over the concatenated live rows.

Prints per table (k = 1000, CPU time, medians of 3 rounds, each / that round's floor of k matrix-vector products):
the rows computed per pick (after alignment and merging), slices per pick, rows gathered, today's unpruned kernel
(``reference_kernels``) and the prototype against the floor, the prototype's products alone (its recorded slices
replayed without anything else), its prefix search, fold and re-layouts, and whether its picks equal today's.
Options as ``name=value``: first_layout, growth, gap_rows, gather_rows, k, rounds. Results and conclusions:
docs/benchmarks.md, "A re-laid-out copy with a prefix bound".

    PYTHONPATH=src .venv/bin/python benchmarks/pruning_layout.py satimage texture optdigits letter:5 penbased:10
"""

import statistics
import sys
import time
from pathlib import Path

import numpy as np

import run

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "script"))
import reference_kernels  # noqa: E402

from active_sampling.scripts import active_sample_selection as script  # noqa: E402

ALIGN = 64  # every BLAS call spans a multiple of this many rows (see _RowDots), but the one ending at n
CALL_ROWS = 300  # fixed cost of one np.dot call, in streamed rows (~1 us against ~3.5 ns a row)
GATHER_COST = 4.0  # a gathered row against a streamed one (the script's _GATHER_COST)
TIMES = dict(windows=0.0, dots=0.0, fold=0.0, layout=0.0)
_LOW32 = np.uint64(0xFFFFFFFF)


def _descending_bits(key):
    """uint64 that sorts float32 ``key`` descending (keys below 0 count as 0): bit patterns of non-negative floats
    are ordered as the floats."""
    return _LOW32 - np.maximum(key, 0).astype(np.float32).view(np.uint32).astype(np.uint64)


def layout_kcenter(X, k, *, first_layout=64, growth=1.5, gap_rows=CALL_ROWS, gather_rows=None, stats=None,
                   record=None):
    """k-center greedy from the column mean, pick for pick ``_k_center_greedy``'s; returns the picks."""
    X = np.ascontiguousarray(X, dtype=np.float32).copy()
    n, D = X.shape
    centers0 = X.mean(axis=0, dtype=np.float64).astype(np.float32)[None, :]
    offset = X.mean(axis=0, dtype=np.float64).astype(np.float32)
    X -= offset
    centers0 = centers0 - offset
    sq = np.einsum("ij,ij->i", X, X)
    d2, nearest = script._nearest_of_centers(X, sq, centers0)
    nc = script._NearestCenter(sq, d2)  # today's fold, used until the first layout
    slack = script._pruning_slack(D)
    margin = 32.0 * float(np.finfo(np.float32).eps)
    tiny = 4.0 * float(np.finfo(np.float32).smallest_subnormal)
    tol = sq * np.float32(script._DUPLICATE_TOLERANCE)
    slack_sq = (slack * sq.astype(np.float64)).astype(np.float32)
    t = n - n % ALIGN if n > ALIGN else 0
    # the rows' state in physical order (identity until the first layout)
    state = None
    all_centers = np.empty((1 + k, D), dtype=np.float64)
    all_centers[0] = centers0[0]
    center_sq = np.empty(1 + k)
    center_sq[0] = float(centers0[0].astype(np.float64) @ centers0[0].astype(np.float64))
    nearest = nearest.astype(np.int64)
    dots = np.empty(n + ALIGN, dtype=np.float32)
    picks = np.empty(k, dtype=np.int64)
    first_layout = max(2, first_layout)  # the first layout takes the fold's keys, built by a full pass
    next_layout = first_layout
    computed = slices = layouts = gathered = 0
    if gather_rows is None:  # a prefix of r rows: streamed costs align(r) + CALL_ROWS, gathered GATHER_COST r
        gather_rows = int(CALL_ROWS // (GATHER_COST - 1))
    for pick in range(k):
        chosen = int(np.argmax(d2))
        picks[pick] = chosen
        c64 = all_centers[1 + pick]
        if state is None:
            c = X[chosen]
        else:
            c = state["X"][state["pos"][chosen]].copy()
        c64[:] = c
        csq = sq[chosen]
        center_sq[1 + pick] = float(c64 @ c64)
        if t > 0 and 1 + pick >= next_layout:
            TL = time.process_time()
            state = _relayout(state, X, sq, tol, slack_sq, nearest, d2, nc, t, all_centers[:1 + pick],
                              center_sq[:1 + pick])
            next_layout = int(np.ceil((1 + pick) * growth))
            layouts += 1
            TIMES["layout"] += time.process_time() - TL
            if pick == first_layout - 1:
                X = None  # the layout holds every row now
        if state is None:
            np.dot(X, c, out=dots[:n])
            down = nc.fold(dots[:n], chosen)
            nearest[down] = 1 + pick
            computed += n
        else:
            s = state
            T0 = time.process_time()  # the sections' CPU times, for the breakdown
            a, b, g = _windows(s, c64, center_sq[1 + pick], slack, gap_rows, gather_rows, t, n)
            if record is not None:
                record.append((s["X"], a, b, g, c))
            lens = b - a
            offsets = np.zeros(a.size + 1, dtype=np.int64)
            np.cumsum(lens, out=offsets[1:])
            total = int(offsets[-1])
            Xp = s["X"]
            T1 = time.process_time()
            for start, stop, o in zip(a.tolist(), b.tolist(), offsets[:-1].tolist()):
                np.dot(Xp[start:stop], c, out=dots[o:o + stop - start])
            pos = np.repeat(a - offsets[:-1], lens) + np.arange(total)
            if g.size:
                padded = np.concatenate([g, np.full((-g.size) % ALIGN, g[0], dtype=g.dtype)])
                dots[total:total + g.size] = np.dot(Xp[padded], c)[:g.size]
                pos = np.concatenate([pos, g])
                total += g.size
                gathered += g.size
            values = dots[:total]
            T2 = time.process_time()
            half = np.float32(float(csq) * (0.5 - margin) - tiny)
            cand = np.flatnonzero((values - s["key"][pos]) > half)
            rows = pos[cand]
            v = values[cand]
            v *= -2
            v += s["sq"][rows]
            v += csq
            thr = s["tol"][rows] + tol[chosen]
            np.copyto(v, 0, where=v <= thr)
            dec = np.flatnonzero(v < s["d2"][rows])
            down = rows[dec]
            vd = v[dec]
            s["d2"][down] = vd
            d2[s["order"][down]] = vd
            s["nearest"][down] = 1 + pick
            with np.errstate(under="ignore"):
                s["key"][down] = s["norm_part"][down] - np.maximum(vd, s["snap"][down]) * np.float32(0.5 + margin)
            computed += total
            slices += a.size
            T3 = time.process_time()
            TIMES["windows"] += T1 - T0
            TIMES["dots"] += T2 - T1
            TIMES["fold"] += T3 - T2
        d2[chosen] = -np.inf
        if state is not None:
            state["d2"][state["pos"][chosen]] = -np.inf
    if stats is not None:
        stats.update(live=computed / (n * k), slices=slices / max(1, k - first_layout + 1), layouts=layouts,
                     gathered=gathered / (n * k))
    return picks


def _relayout(state, X, sq, tol, slack_sq, nearest, d2, nc, t, centers, center_sq):
    """Group the rows [0, t) of the physical order by nearest center, each group by key descending.

    Only X, the norms, the nearest centers, the distances, the fold's keys and the row ids are permuted; the
    rest is recomputed from the permuted norms by the same element-wise arithmetic, so it is bit for bit the
    permuted array."""
    if state is None:  # first layout: today's arrays in the rows' own order
        s = dict(X=X, sq=sq, nearest=nearest, d2=d2.copy(), key=nc._key.copy(), order=np.arange(X.shape[0]),
                 snap_max=tol.max())
    else:
        s = state
    bound_key = s["d2"][:t] + s["slack_sq"][:t] if "slack_sq" in s else d2[:t] + slack_sq[:t]
    combined = (s["nearest"][:t].astype(np.uint64) << np.uint64(32)) + _descending_bits(bound_key)
    perm = np.argsort(combined)
    K = combined[perm]
    perm = np.concatenate([perm, np.arange(t, s["order"].size)])
    for name in ("X", "sq", "nearest", "d2", "key", "order"):
        s[name] = s[name][perm]
    sq = s["sq"]
    s["tol"] = sq * np.float32(script._DUPLICATE_TOLERANCE)
    margin = 32.0 * float(np.finfo(np.float32).eps)
    tiny = 4.0 * float(np.finfo(np.float32).smallest_subnormal)
    with np.errstate(under="ignore"):
        s["snap"] = np.nextafter(s["tol"] + s["snap_max"], np.float32(np.inf))
        s["norm_part"] = sq * np.float32(0.5 - margin) - np.float32(tiny)
    s["slack_sq"] = (script._pruning_slack(s["X"].shape[1]) * sq.astype(np.float64)).astype(np.float32)
    s["pos"] = np.empty_like(s["order"])
    s["pos"][s["order"]] = np.arange(s["order"].size)
    groups = (K >> np.uint64(32)).astype(np.int64)
    starts = np.flatnonzero(np.diff(groups, prepend=-1))
    present = groups[starts]
    s["K"] = K
    s["starts"] = starts
    s["ends"] = np.append(starts[1:], t)
    s["slot"] = present.astype(np.uint64) << np.uint64(32)
    bound_sorted = s["d2"][:t] + s["slack_sq"][:t]
    s["first_key"] = bound_sorted[starts]  # the group's largest bound key
    s["last_key"] = np.maximum(bound_sorted[s["ends"] - 1], 0)  # its smallest (keys below 0 count as 0)
    s["centers"] = centers[present]
    s["center_sq"] = center_sq[present]
    return s


def _windows(s, c64, csq, slack, gap_rows, gather_rows, t, n):
    """(starts, stops) of the streamed windows, and the positions to gather, covering every live row.

    A row of group j is live when its bound key >= limit_j (the check of ``_TriangleBound``)."""
    limit = s["centers"] @ c64
    limit *= -2.0
    limit += s["center_sq"]
    limit += csq
    limit *= 0.25 * (1.0 - 1e-9)
    limit -= slack / 2 * (s["center_sq"] + csq)
    limit = limit.astype(np.float32)
    starts, ends = s["starts"], s["ends"]
    full = limit <= s["last_key"]
    stops = np.where(full, ends, starts)
    partial = np.flatnonzero((limit <= s["first_key"]) & ~full)
    if partial.size:
        stops[partial] = np.searchsorted(s["K"], s["slot"][partial] + _descending_bits(limit[partial]),
                                         side="right")
    live = np.flatnonzero(stops > starts)
    lo, hi = starts[live], stops[live]
    lens = hi - lo
    small = lens <= gather_rows
    g = np.empty(0, dtype=np.int64)
    if small.any():
        sl, sn = lo[small], lens[small]
        g = np.repeat(sl - (np.cumsum(sn) - sn), sn) + np.arange(int(sn.sum()))
        big = ~small
        lo, hi = lo[big], hi[big]
    a = lo & ~(ALIGN - 1)
    b = np.minimum((hi + ALIGN - 1) & ~(ALIGN - 1), t)
    if t < n:  # the rows of the full pass's last partial block, from a call that ends where it ends
        a = np.append(a, max(0, t - ALIGN))
        b = np.append(b, n)
    if a.size == 0:
        return a, b, g
    new = np.empty(a.size, dtype=bool)
    new[0] = True
    np.greater(a[1:], b[:-1] + gap_rows, out=new[1:])
    first = np.flatnonzero(new)
    a, b = a[first], b[np.append(first[1:] - 1, a.size - 1)]
    if g.size and a.size:  # gathered rows inside a streamed window are computed there
        inside = np.searchsorted(b, g, side="right")
        keep = (inside >= a.size) | (g < a[np.minimum(inside, a.size - 1)])
        g = g[keep]
    return a, b, g


def _replay_products(record, n):
    """The streamed and gathered products of a recorded run alone: the least this layout's picks can cost."""
    dots = np.empty(n + ALIGN, dtype=np.float32)
    for Xp, a, b, g, c in record:
        offset = 0
        for start, stop in zip(a.tolist(), b.tolist()):
            np.dot(Xp[start:stop], c, out=dots[offset:offset + stop - start])
            offset += stop - start
        if g.size:
            np.dot(Xp[np.concatenate([g, np.full((-g.size) % ALIGN, g[0], dtype=g.dtype)])], c)


def _cpu(fn):
    start = time.process_time()
    result = fn()
    return time.process_time() - start, result


def main(tables, k=1000, rounds=3, **options):
    """One row per table: medians over ``rounds`` of each CPU time / the same round's floor."""
    print(f"k = {k}, rounds = {rounds}, options {options or 'default'}")
    print("| table | rows x dims | live rows per pick | slices per pick | gathered rows | layouts "
          "| today / floor | layout / floor | products alone / floor | search / fold / re-layouts / floor | picks |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for spec in tables:
        table, _, repeats = spec.partition(":")
        paths = run.keel_data(table, int(repeats or run.KEEL_REPEATS))
        X = np.load(paths["X"])
        vectors = np.random.default_rng(0).standard_normal((k, X.shape[1]), dtype=np.float32)
        out = np.empty(X.shape[0], dtype=np.float32)

        def floor():
            for v in vectors:
                np.dot(X, v, out=out)

        ratios = {name: [] for name in ("today", "layout", "products", "windows", "fold", "layout_time")}
        same = True
        for _ in range(rounds):
            stats, record = {}, []
            for name in TIMES:
                TIMES[name] = 0.0
            f, _ = _cpu(floor)
            t_today, today = _cpu(lambda: reference_kernels.k_center_greedy_reference(X, k)[0])
            t_layout, mine = _cpu(lambda: layout_kcenter(X, k, stats=stats, record=record, **options))
            t_products, _ = _cpu(lambda: _replay_products(record, X.shape[0]))
            del record
            f = (f + _cpu(floor)[0]) / 2
            same = same and np.array_equal(today, mine)
            for name, seconds in (("today", t_today), ("layout", t_layout), ("products", t_products),
                                  ("windows", TIMES["windows"]), ("fold", TIMES["fold"]),
                                  ("layout_time", TIMES["layout"])):
                ratios[name].append(seconds / f)
        m = {name: statistics.median(values) for name, values in ratios.items()}
        print(f"| {table} | {X.shape[0]:,} x {X.shape[1]} | {100 * stats['live']:.0f} % | {stats['slices']:.0f} "
              f"| {100 * stats['gathered']:.1f} % | {stats['layouts']} | {m['today']:.2f} | {m['layout']:.2f} "
              f"| {m['products']:.2f} | {m['windows']:.2f} / {m['fold']:.2f} / {m['layout_time']:.2f} "
              f"| {'identical' if same else 'DIFFERENT'} |", flush=True)


if __name__ == "__main__":
    names = [a for a in sys.argv[1:] if "=" not in a]
    settings = {key: float(value) if "." in value else int(value)
                for key, value in (a.split("=", 1) for a in sys.argv[1:] if "=" in a)}
    main(names or ["satimage", "texture", "optdigits", "letter:5", "penbased:10"], **settings)
