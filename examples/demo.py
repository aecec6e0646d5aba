"""Run one SSL and one active-learning selection on the committed digits prediction table.

``make demo`` (or ``python examples/demo.py [--output-dir DIR]``) calls the entry script's ``main`` twice on
examples/data/digits_predictions/ and writes to demo_output/<run>/selected_samples and .../selection_metadata:

* ``ssl_confidence_threshold``: rows whose top probability is at least 0.9 become pseudo-labeled; their
  precision is measured against examples/data/digits_truth.csv (the truth of unlabeled rows is never in
  the prediction table);
* ``active_learning_badge``: 20 rows for a human to label, chosen by BADGE from the model's probabilities and
  hidden-layer embeddings.
"""

import argparse
import sys
from pathlib import Path
from typing import Dict, List, Optional

import pandas as pd

from active_sampling.scripts import active_sample_selection as script

EXAMPLES_DIR = Path(__file__).resolve().parent
PREDICTIONS_DIR = EXAMPLES_DIR / "data" / "digits_predictions"
TRUTH_PATH = EXAMPLES_DIR / "data" / "digits_truth.csv"
DEFAULT_OUTPUT_DIR = EXAMPLES_DIR.parent / "demo_output"

RUNS: Dict[str, Dict[str, str]] = {
    "ssl_confidence_threshold": {
        "SELECTION_STRATEGY": "confidence_threshold",
        "USE_CASE": "ssl",
        "LABEL_FIELD": "label",
        "CONFIDENCE_THRESHOLD": "0.9",
    },
    "active_learning_badge": {
        "SELECTION_STRATEGY": "badge",
        "USE_CASE": "active_learning",
        "LABEL_FIELD": "label",
        "BATCH_SIZE": "20",
    },
}
JOB_TYPES = {"ssl": "ssl_selection", "active_learning": "active_learning_selection"}


def run_selection(name: str, environ: Dict[str, str], output_dir: Path) -> dict:
    """Run the script once; return its metadata plus the paths and the selected rows."""
    outputs = {
        script.SAMPLES_CHANNEL: str(output_dir / name / script.SAMPLES_CHANNEL),
        script.METADATA_CHANNEL: str(output_dir / name / script.METADATA_CHANNEL),
    }
    metadata = script.main(
        {script.INPUT_CHANNEL: str(PREDICTIONS_DIR)},
        outputs,
        environ,
        argparse.Namespace(job_type=JOB_TYPES[environ["USE_CASE"]]),
    )
    samples_path = Path(outputs[script.SAMPLES_CHANNEL]) / metadata["output_file"]
    return {
        "metadata": metadata,
        "samples_path": samples_path,
        "metadata_path": Path(outputs[script.METADATA_CHANNEL]) / script.METADATA_FILENAME,
        "selected": pd.read_csv(samples_path),
    }


def pseudo_label_precision(selected: pd.DataFrame) -> float:
    """Share of pseudo-labels equal to the true digit (NaN when nothing was selected)."""
    truth = pd.read_csv(TRUTH_PATH).set_index("id")["label"]
    if selected.empty:
        return float("nan")
    true_labels = truth.reindex(selected["id"]).to_numpy()
    return float((selected[script.PSEUDO_LABEL].to_numpy() == true_labels).mean())


def model_error_rate(rows: pd.DataFrame) -> float:
    """Share of ``rows`` whose predicted digit (argmax of prob_class_*) is wrong."""
    truth = pd.read_csv(TRUTH_PATH).set_index("id")["label"]
    probabilities = rows[[f"prob_class_{digit}" for digit in range(10)]].to_numpy()
    return float((probabilities.argmax(axis=1) != truth.reindex(rows["id"]).to_numpy()).mean())


def run_demo(output_dir: Path = DEFAULT_OUTPUT_DIR) -> Dict[str, dict]:
    results = {name: run_selection(name, environ, Path(output_dir)) for name, environ in RUNS.items()}
    results["ssl_confidence_threshold"]["precision"] = pseudo_label_precision(
        results["ssl_confidence_threshold"]["selected"]
    )
    pool = pd.read_csv(PREDICTIONS_DIR / "predictions.csv")
    results["active_learning_badge"]["error_rates"] = (
        model_error_rate(results["active_learning_badge"]["selected"]),
        model_error_rate(pool[pool["label"].isna()]),
    )
    return results


def summary_lines(results: Dict[str, dict]) -> List[str]:
    lines = []
    for name, result in results.items():
        metadata = result["metadata"]
        per_class = ", ".join(f"{label}: {count}" for label, count in metadata["selected_per_class"].items())
        lines += [
            f"{name} ({metadata['strategy']}):",
            f"  selected {metadata['selected_count']} of {metadata['candidate_count']} candidates "
            f"(pool of {metadata['pool_size']} rows, {metadata['labeled_count']} already labeled)",
            f"  per predicted class: {per_class}",
        ]
        if "precision" in result:
            lines.append(f"  pseudo-label precision against the true digits: {result['precision']:.1%}")
        if "error_rates" in result:
            selected_rate, pool_rate = result["error_rates"]
            lines.append(f"  the model is wrong on {selected_rate:.0%} of the selected rows "
                         f"(on {pool_rate:.0%} of all unlabeled rows): worth a human label")
        lines += [f"  samples:  {result['samples_path']}", f"  metadata: {result['metadata_path']}"]
    return lines


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output-dir", type=Path, default=DEFAULT_OUTPUT_DIR)
    args = parser.parse_args(argv)
    print("\n".join(summary_lines(run_demo(args.output_dir))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
