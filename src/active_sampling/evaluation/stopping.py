"""The stopping study: when would stabilizing predictions (STOP_AGREEMENT) have stopped each learning curve?

The simulation records, every round after the first, the agreement between the previous and the current
model's predicted classes over the pool rows unlabeled now, computed by the entry script's own functions
(``agreement_confusion``, ``cohen_kappa``: what its stopping block reports). Here each curve's stop round is
the first round whose agreement reaches the threshold; its cost is the accuracy of the final round minus the
accuracy at the stop round, its saving the labels the remaining rounds would have bought.

``python -m active_sampling.evaluation.stopping [options]`` runs a subset of ``make evaluate`` (no SSL study,
no figures) and writes this section into docs/evaluation.md between its markers, leaving the rest of the file
as it is; ``make evaluate`` writes the same section from its full run.
"""

import argparse
import shlex
import sys
from pathlib import Path
from typing import List, Optional, Sequence

import numpy as np
import pandas as pd

from active_sampling.scripts import active_sample_selection as script

STOP_AGREEMENT = 0.99  # the script's default
STUDY_THRESHOLDS = (0.95, 0.98, STOP_AGREEMENT)
CURVE = ["dataset", "model", "strategy", "seed"]
SECTION_START = "<!-- stopping: written by python -m active_sampling.evaluation.stopping or make evaluate -->"
SECTION_END = "<!-- end of stopping -->"
BUDGET_CAVEAT = ("Each curve ends with its data set's labeling budget: a curve that has not stopped by then might "
                 "stop later, and the cost is measured against the budget's last round, not against a model trained "
                 "on the whole pool.")


def round_agreement(previous_probabilities: Optional[np.ndarray], probabilities: np.ndarray,
                    labeled: Sequence[int]) -> float:
    """Cohen's kappa between two models' predicted classes over the pool rows not in ``labeled``, as the
    script's stopping block computes it; NaN without a previous model or without unlabeled rows."""
    if previous_probabilities is None:
        return float("nan")
    n_rows, n_classes = probabilities.shape
    ids = pd.Series(np.arange(n_rows))
    candidates = np.ones(n_rows, dtype=bool)
    candidates[list(labeled)] = False
    classes = list(range(n_classes))
    previous = script.PredictedClasses(ids, classes, previous_probabilities.argmax(axis=1))
    kappa = script.cohen_kappa(script.agreement_confusion(previous, ids, probabilities.argmax(axis=1), candidates,
                                                          classes))
    return float("nan") if kappa is None else float(kappa)


def stop_points(curves: pd.DataFrame, threshold: float = STOP_AGREEMENT) -> pd.DataFrame:
    """One row per learning curve: where ``threshold`` stops it (or that it never does) against its end.

    Columns: the curve's keys, ``stopped`` (bool), ``stop_round``, ``stop_labels``, ``stop_accuracy`` (the
    final round's when it never stops), ``final_labels``, ``final_accuracy``, ``labels_saved`` and
    ``accuracy_cost`` (final minus stop accuracy).
    """
    rows = []
    for key, curve in curves.groupby(CURVE, sort=False):  # in the run's configuration order
        curve = curve.sort_values("round")
        reached = curve[curve["agreement"] >= threshold]
        final = curve.iloc[-1]
        stop = reached.iloc[0] if len(reached) else final
        rows.append({
            **dict(zip(CURVE, key)), "stopped": bool(len(reached)), "stop_round": int(stop["round"]),
            "stop_labels": int(stop["labels"]), "stop_accuracy": float(stop["accuracy"]),
            "final_labels": int(final["labels"]), "final_accuracy": float(final["accuracy"]),
            "labels_saved": int(final["labels"] - stop["labels"]),
            "accuracy_cost": float(final["accuracy"] - stop["accuracy"]),
        })
    return pd.DataFrame(rows)


def _mean_std(values: pd.Series, digits: int = 3, signed: bool = False) -> str:
    sign = "+" if signed else ""
    std = values.std(ddof=1) if len(values) > 1 else 0.0
    return f"{values.mean():{sign}.{digits}f} ± {std:.{digits}f}"


def summary_table(points: pd.DataFrame) -> pd.DataFrame:
    """Per data set, model and strategy: how often the rule stopped, where, at what cost and saving."""
    rows = []
    for (dataset, model, strategy), group in points.groupby(["dataset", "model", "strategy"], sort=False):
        stopped = group[group["stopped"]]
        rows.append({
            "data set": dataset, "model": model, "strategy": strategy,
            "stopped": f"{len(stopped)} of {len(group)}",
            "stop round (when stopped)": _mean_std(stopped["stop_round"].astype(float), 1) if len(stopped) else "",
            "labels saved": _mean_std(group["labels_saved"].astype(float), 1),
            "accuracy at stop": _mean_std(group["stop_accuracy"]),
            "final accuracy": _mean_std(group["final_accuracy"]),
            "cost (final - stop)": _mean_std(group["accuracy_cost"], signed=True),
            "worst cost": f"{group['accuracy_cost'].max():+.3f}",
        })
    return pd.DataFrame(rows)


def agreement_table(curves: pd.DataFrame) -> pd.DataFrame:
    """Mean agreement with the previous round, per data set / model / strategy (rows) and round (columns)."""
    rounds = curves[curves["round"] > 0]
    table = rounds.groupby(["dataset", "model", "strategy", "round"], sort=False)["agreement"].mean().unstack("round")
    table.columns = [f"r{int(column)}" for column in table.columns]
    return table.map(lambda value: "" if pd.isna(value) else f"{value:.3f}")


def threshold_table(curves: pd.DataFrame, thresholds: Sequence[float] = STUDY_THRESHOLDS) -> pd.DataFrame:
    """Over every curve, per threshold: how many stop, the labels saved and the accuracy given up."""
    rows = []
    for threshold in thresholds:
        points = stop_points(curves, threshold)
        rows.append({
            "STOP_AGREEMENT": f"{threshold:g}", "curves stopped": f"{int(points['stopped'].sum())} of {len(points)}",
            "labels saved (share of the budget)": f"{(points['labels_saved'] / points['final_labels']).mean():.1%}",
            "mean cost": f"{points['accuracy_cost'].mean():+.4f}",
            "curves losing > 1 point": int((points["accuracy_cost"] > 0.01).sum()),
            "worst cost": f"{points['accuracy_cost'].max():+.3f}",
        })
    return pd.DataFrame(rows)


def _markdown(frame: pd.DataFrame, index: bool = False) -> str:
    if index:
        frame = frame.reset_index()
    header = "| " + " | ".join(str(column) for column in frame.columns) + " |"
    rule = "|" + "|".join("---" for _ in frame.columns) + "|"
    body = ["| " + " | ".join(str(value) for value in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join([header, rule] + body)


def stopping_section(curves: pd.DataFrame, command: str, note: str = "") -> List[str]:
    """The Markdown lines of the section, between its markers."""
    points = stop_points(curves)
    stopped = points[points["stopped"]]
    lines = [
        SECTION_START,
        "## Stopping: stabilizing predictions",
        "",
        "Every round after the first, the simulation measures what the step's `stopping.prediction_agreement` "
        "reports: Cohen's kappa between the previous and the current model's predicted classes over the pool "
        "rows unlabeled now (the script's own `agreement_confusion` and `cohen_kappa`). A curve stops at the first "
        f"round whose agreement reaches `STOP_AGREEMENT={STOP_AGREEMENT:g}` (the default): that round's model is "
        "the one kept, and the rounds after it are the labels saved. The cost is the final round's test accuracy "
        "minus the accuracy at the stop (positive: accuracy left on the table); a curve that never stops saves "
        "nothing and costs nothing. " + BUDGET_CAVEAT,
        "",
        f"Measured with `{command}`{note}.",
        "",
        f"Over {len(points)} curves, `STOP_AGREEMENT={STOP_AGREEMENT:g}` stopped {len(stopped)}; where it stopped "
        f"it saved {stopped['labels_saved'].mean() if len(stopped) else 0:.1f} labels on average "
        f"({(stopped['labels_saved'] / stopped['final_labels']).mean() if len(stopped) else 0:.1%} of the final "
        f"budget) and left {stopped['accuracy_cost'].mean() if len(stopped) else 0:+.4f} accuracy on the table "
        f"(worst {stopped['accuracy_cost'].max() if len(stopped) else 0:+.3f}).",
        "",
        _markdown(summary_table(points)),
        "",
        "The same rule at lower thresholds, over all curves (labels saved as a share of each curve's final budget):",
        "",
        _markdown(threshold_table(curves)),
        "",
        "Mean agreement with the previous round, by round (r1 compares the first retrained model with the initial "
        "one):",
        "",
        _markdown(agreement_table(curves), index=True),
        "",
        SECTION_END,
    ]
    return lines


def write_section(document: Path, lines: Sequence[str]) -> None:
    """Replace the section between its markers in ``document``, or append it when it has none."""
    text = document.read_text() if document.exists() else ""
    block = "\n".join(lines)
    if SECTION_START in text:
        before, rest = text.split(SECTION_START, 1)
        after = rest.split(SECTION_END, 1)[1]
        text = before + block + after
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    document.write_text(text)


def main(argv: Optional[List[str]] = None) -> int:
    from active_sampling.evaluation.config import EvaluationConfig
    from active_sampling.evaluation.runner import run_evaluation

    args_list = sys.argv[1:] if argv is None else argv
    defaults = EvaluationConfig()
    parser = argparse.ArgumentParser(prog="python -m active_sampling.evaluation.stopping", description=__doc__)
    parser.add_argument("--document", type=Path, default=Path("docs", "evaluation.md"))
    parser.add_argument("--datasets", nargs="+", default=list(defaults.datasets))
    parser.add_argument("--models", nargs="+", default=list(defaults.models))
    parser.add_argument("--strategies", nargs="+", default=list(defaults.strategies))
    parser.add_argument("--seeds", type=int, default=None)
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--workers", type=int, default=defaults.workers)
    args = parser.parse_args(args_list)
    config = EvaluationConfig(datasets=tuple(args.datasets), models=tuple(args.models),
                              strategies=tuple(args.strategies), seeds=args.seeds, rounds=args.rounds,
                              workers=args.workers, run_ssl=False)
    print(f"evaluating {len(config.jobs)} jobs with {config.workers} worker(s)", flush=True)
    results = run_evaluation(config, progress=lambda message: print(message, flush=True))
    command = "python -m active_sampling.evaluation.stopping " + shlex.join(args_list)
    note = (f" ({len(config.jobs)} jobs, {results.wall_seconds / 60:.1f} min wall on the shared 2-core machine; "
            "a subset of `make evaluate`, whose full run writes this section too)")
    write_section(args.document, stopping_section(results.curves, command, note))
    print(f"wrote the stopping section of {args.document}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
