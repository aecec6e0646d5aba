"""Does label_review find the wrong labels? Injected label noise, cross-validated predictions, the real step.

For each data set, noise rate and seed: flip that share of the labels to another class (uniformly), fit a
logistic regression with 5-fold cross-validation to get out-of-sample probabilities of every row, write the
prediction table (id, prob_class_*, the noisy label) and run the entry script's ``main`` with
SELECTION_STRATEGY=label_review, as a pipeline would. The first BATCH_SIZE selected rows are scored against
the rows whose label was truly flipped (precision, recall), beside a random review of as many rows.

``python -m active_sampling.evaluation.label_review`` replaces its section of docs/evaluation.md (between
the markers below; appended when they are missing); ``make evaluate`` runs it after the other studies.
"""

import argparse
import shlex
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np
import pandas as pd

from active_sampling.evaluation.models import load_dataset
from active_sampling.scripts import active_sample_selection as script

DATASETS = ("digits", "pendigits")
NOISE_RATES = (0.1, 0.2)
BUDGETS = (0.5, 1.0)  # BATCH_SIZE as a multiple of the number of flipped rows
SEEDS = 3
METHODS = script.REVIEW_METHODS + ("random",)
FOLDS = 5
SECTION_START = "<!-- label_review:start -->"
SECTION_END = "<!-- label_review:end -->"
DEFAULT_COMMAND = "python -m active_sampling.evaluation.label_review"


def flip_labels(y: np.ndarray, rate: float, n_classes: int, rng: np.random.Generator) -> np.ndarray:
    """A copy of ``y`` with round(rate * n) rows, drawn without replacement, moved to another class uniformly."""
    noisy = y.copy()
    flipped = rng.choice(y.size, size=int(round(rate * y.size)), replace=False)
    noisy[flipped] = (y[flipped] + rng.integers(1, n_classes, size=flipped.size)) % n_classes
    return noisy


def cross_validated_probabilities(X: np.ndarray, labels: np.ndarray, seed: int) -> np.ndarray:
    """Out-of-sample class probabilities of every row: each fold's model never saw that fold's labels."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    folds = StratifiedKFold(n_splits=FOLDS, shuffle=True, random_state=seed)
    return cross_val_predict(model, X, labels, cv=folds, method="predict_proba")


def review_with_the_step(probabilities: np.ndarray, labels: np.ndarray, method: str, batch_size: int,
                         work_dir: Path) -> Dict[str, object]:
    """The ids main selects for review (rank order) and its metadata's label_review entry."""
    table = pd.DataFrame({"id": np.arange(labels.size)})
    for j in range(probabilities.shape[1]):
        table["prob_class_{}".format(j)] = probabilities[:, j]
    table["label"] = labels
    input_dir, samples_dir, metadata_dir = (work_dir / name for name in ("input", "selected", "metadata"))
    input_dir.mkdir(parents=True, exist_ok=True)
    table.to_csv(input_dir / "predictions.csv", index=False)
    metadata = script.main({"evaluation_data": str(input_dir)},
                           {"selected_samples": str(samples_dir), "selection_metadata": str(metadata_dir)},
                           {"SELECTION_STRATEGY": "label_review", "LABEL_FIELD": "label", "REVIEW_METHOD": method,
                            "BATCH_SIZE": str(batch_size)},
                           {"job_type": "label_review_evaluation"})
    selected = pd.read_csv(samples_dir / "selected_samples.csv")
    return {"ids": selected["id"].to_numpy(), "facts": metadata["review"]}


def run_study(datasets: Sequence[str] = DATASETS, noise_rates: Sequence[float] = NOISE_RATES, seeds: int = SEEDS,
              progress=print) -> pd.DataFrame:
    """One row per data set, noise rate, seed, budget and method: selected, precision, recall, and for
    confident learning the flagged count and the estimated share of label issues."""
    import logging

    logging.getLogger("active_sample_selection").setLevel(logging.WARNING)
    records: List[Dict[str, object]] = []
    for dataset in datasets:
        X, y = load_dataset(dataset)
        n_classes = int(y.max()) + 1
        for rate in noise_rates:
            for seed in range(seeds):
                rng = np.random.default_rng([seed, int(rate * 1000)])
                noisy = flip_labels(y, rate, n_classes, rng)
                wrong = noisy != y
                probabilities = cross_validated_probabilities(X, noisy, seed)
                for budget in BUDGETS:
                    batch_size = max(1, int(round(budget * wrong.sum())))
                    for method in METHODS:
                        facts: Dict[str, object] = {}
                        if method == "random":
                            ids = rng.choice(y.size, size=batch_size, replace=False)
                        else:
                            with tempfile.TemporaryDirectory() as work:
                                found = review_with_the_step(probabilities, noisy, method, batch_size, Path(work))
                            ids, facts = found["ids"], found["facts"]
                        hits = int(wrong[ids].sum())
                        records.append({
                            "dataset": dataset, "noise": rate, "seed": seed, "budget": budget,
                            "batch_size": batch_size, "method": method, "selected": int(ids.size),
                            "precision": hits / ids.size if ids.size else float("nan"),
                            "recall": hits / int(wrong.sum()),
                            "flagged": facts.get("flagged_count"),
                            "estimated_share": facts.get("estimated_issue_share"),
                        })
                progress("label_review: {} noise {:.0%} seed {} done".format(dataset, rate, seed))
    return pd.DataFrame(records)


def _mean_std(values: pd.Series, digits: int = 3) -> str:
    values = values.dropna().astype(float)
    return "{:.{d}f} ± {:.{d}f}".format(values.mean(), values.std(ddof=0), d=digits) if len(values) else "-"


def summary_table(results: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for (dataset, noise, budget, method), group in results.groupby(["dataset", "noise", "budget", "method"],
                                                                   sort=False):
        rows.append({"data set": dataset, "noise": "{:.0%}".format(noise),
                     "BATCH_SIZE": "{:g} x flipped ({:.0f})".format(budget, group["batch_size"].mean()),
                     "method": method, "selected": "{:.0f}".format(group["selected"].mean()),
                     "precision": _mean_std(group["precision"]), "recall": _mean_std(group["recall"])})
    return pd.DataFrame(rows)


def estimate_table(results: pd.DataFrame) -> pd.DataFrame:
    learned = results[(results["method"] == "confident_learning") & (results["budget"] == BUDGETS[0])]
    rows = []
    for (dataset, noise), group in learned.groupby(["dataset", "noise"], sort=False):
        rows.append({"data set": dataset, "true share of wrong labels": "{:.0%}".format(noise),
                     "flagged rows": "{:.0f}".format(group["flagged"].astype(float).mean()),
                     "estimated share (metadata)": _mean_std(group["estimated_share"])})
    return pd.DataFrame(rows)


def _markdown(frame: pd.DataFrame) -> str:
    lines = ["| " + " | ".join(frame.columns) + " |", "|" + "---|" * len(frame.columns)]
    lines += ["| " + " | ".join(str(value) for value in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join(lines)


def section(results: pd.DataFrame, command: str, seconds: float) -> str:
    import sklearn

    seeds = results["seed"].nunique()
    return "\n".join([
        SECTION_START,
        "## Label review: finding the wrong labels (`label_review`)",
        "",
        "Reproduce with:",
        "",
        "```",
        command,
        "```",
        "",
        "Each data set gets {} label noise (that share of the rows moved to another class, uniformly), "
        "{} seeds each. A logistic regression (standardized features) gives every row out-of-sample "
        "probabilities by {}-fold cross-validation on the noisy labels; the prediction table (id, "
        "`prob_class_*`, the noisy label) goes through the entry script's `main` with "
        "`SELECTION_STRATEGY=label_review`. Precision is the share of the selected rows whose label was truly "
        "flipped, recall the share of the flipped rows selected; `BATCH_SIZE` is half of, or exactly, the "
        "number of flipped rows. `random` reviews as many rows drawn uniformly (its expected precision is the "
        "noise rate). `confident_learning` selects fewer rows than `BATCH_SIZE` when it flags fewer; "
        "`selected` is the mean count. Means ± standard deviations over the seeds.".format(
            " and ".join("{:.0%}".format(rate) for rate in sorted(results["noise"].unique())), seeds, FOLDS),
        "",
        _markdown(summary_table(results)),
        "",
        "What the metadata reports (`review.flagged_count`, `review.estimated_issue_share`, the "
        "off-diagonal share of the calibrated confident joint) against the truth:",
        "",
        _markdown(estimate_table(results)),
        "",
        "This run: {:.1f} min on the shared 2-core machine; numpy {}, pandas {}, scikit-learn {}.".format(
            seconds / 60, np.__version__, pd.__version__, sklearn.__version__),
        SECTION_END,
    ])


def replace_section(document: str, text: str) -> str:
    """``document`` with its label-review section replaced by ``text`` (appended when it has none)."""
    start, end = document.find(SECTION_START), document.find(SECTION_END)
    if start < 0 or end < start:
        return document.rstrip("\n") + "\n\n" + text + "\n"
    return document[:start] + text + document[end + len(SECTION_END):]


def write_section(path: Path, results: pd.DataFrame, command: str, seconds: float) -> Path:
    path = Path(path)
    document = path.read_text() if path.exists() else ""
    path.write_text(replace_section(document, section(results, command, seconds)))
    return path


def main(argv: Optional[List[str]] = None) -> int:
    args_list = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog=DEFAULT_COMMAND, description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=Path("docs") / "evaluation.md",
                        help="the markdown file whose label-review section is replaced (default: docs/evaluation.md)")
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS))
    parser.add_argument("--seeds", type=int, default=SEEDS)
    args = parser.parse_args(args_list)
    command = DEFAULT_COMMAND + ("" if not args_list else " " + shlex.join(args_list))
    started = time.time()
    results = run_study(args.datasets, NOISE_RATES, args.seeds, progress=lambda message: print(message, flush=True))
    path = write_section(args.output, results, command, time.time() - started)
    print("wrote the label-review section of {}".format(path))
    return 0


if __name__ == "__main__":
    sys.exit(main())
