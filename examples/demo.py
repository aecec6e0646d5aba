"""Run one SSL and one active-learning selection on the committed digits prediction table.

``make demo`` (or ``python examples/demo.py [--output-dir DIR]``) calls the entry script's ``main`` twice on
examples/data/digits_predictions/ and writes to demo_output/<run>/selected_samples and .../selection_metadata:

* ``ssl_confidence_threshold``: rows whose top probability is at least 0.9 become pseudo-labeled; their
  precision is measured against examples/data/digits_truth.csv (the truth of unlabeled rows is never in
  the prediction table);
* ``active_learning_hybrid``: 20 rows for a human to label, chosen by the recommended ``hybrid`` strategy (the row
  nearest each of 20 k-means centroids of the hidden-layer embeddings, among the 60 rows the model is least sure
  of), also written as Label Studio tasks (demo_output/active_learning_hybrid/labeling_tasks):
  the table gets a ``picture`` column first, each 8x8 digit drawn in characters, for annotators to look at.
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
    "active_learning_hybrid": {
        "SELECTION_STRATEGY": "hybrid",
        "USE_CASE": "active_learning",
        "LABEL_FIELD": "label",
        "BATCH_SIZE": "20",
        "LABELING_FORMAT": "label_studio",
        "LABELING_DATA_FIELD": "picture",
    },
}
PICTURE_SHADES = " .:-=+*#%@"  # pixel values 0..16, light to dark
PIXEL_MAX = 16
JOB_TYPES = {"ssl": "ssl_selection", "active_learning": "active_learning_selection"}


def draw_digit(pixels) -> str:
    """One 8x8 digit as 8 lines of characters, each pixel two characters wide."""
    shades = [PICTURE_SHADES[round(value / PIXEL_MAX * (len(PICTURE_SHADES) - 1))] * 2 for value in pixels]
    return "\n".join("".join(shades[row * 8:(row + 1) * 8]) for row in range(8))


def predictions_with_pictures(output_dir: Path) -> Path:
    """The committed prediction table plus a ``picture`` column, written under ``output_dir``; returns its folder."""
    table = pd.read_csv(PREDICTIONS_DIR / "predictions.csv", dtype={"id": str})
    pixels = table[[f"pix_{i}" for i in range(64)]].to_numpy()
    pictures = pd.Series([draw_digit(row) for row in pixels], index=table.index, name="picture")
    table = pd.concat([table, pictures], axis=1)  # one concat: the 108-column frame would fragment
    folder = output_dir / "digits_with_pictures"
    folder.mkdir(parents=True, exist_ok=True)
    table.to_csv(folder / "predictions.csv", index=False)
    return folder


def run_selection(name: str, environ: Dict[str, str], output_dir: Path, input_dir: Path = PREDICTIONS_DIR) -> dict:
    """Run the script once; return its metadata plus the paths and the selected rows."""
    channels = [script.SAMPLES_CHANNEL, script.METADATA_CHANNEL]
    if environ.get("LABELING_FORMAT", "none") != "none":
        channels.append(script.LABELING_CHANNEL)
    outputs = {channel: str(output_dir / name / channel) for channel in channels}
    metadata = script.main(
        {script.INPUT_CHANNEL: str(input_dir)},
        outputs,
        environ,
        argparse.Namespace(job_type=JOB_TYPES[environ["USE_CASE"]]),
    )
    samples_path = Path(outputs[script.SAMPLES_CHANNEL]) / metadata["output_file"]
    result = {
        "metadata": metadata,
        "samples_path": samples_path,
        "metadata_path": Path(outputs[script.METADATA_CHANNEL]) / script.METADATA_FILENAME,
        "report_path": Path(outputs[script.METADATA_CHANNEL]) / script.REPORT_FILENAME,
        "selected": pd.read_csv(samples_path),
    }
    if script.LABELING_CHANNEL in outputs:
        result["labeling_dir"] = Path(outputs[script.LABELING_CHANNEL])
    return result


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
    output_dir = Path(output_dir)
    inputs = {"ssl_confidence_threshold": PREDICTIONS_DIR, "active_learning_hybrid": predictions_with_pictures(output_dir)}
    results = {name: run_selection(name, environ, output_dir, inputs[name]) for name, environ in RUNS.items()}
    results["ssl_confidence_threshold"]["precision"] = pseudo_label_precision(
        results["ssl_confidence_threshold"]["selected"]
    )
    pool = pd.read_csv(PREDICTIONS_DIR / "predictions.csv")
    results["active_learning_hybrid"]["error_rates"] = (
        model_error_rate(results["active_learning_hybrid"]["selected"]),
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
        lines += [f"  samples:  {result['samples_path']}", f"  metadata: {result['metadata_path']}",
                  f"  report:   {result['report_path']} (open it in a browser)"]
        if "labeling_dir" in result:
            tasks = result["labeling_dir"] / script.LABEL_STUDIO_TASKS
            lines += [
                f"  Label Studio tasks: {tasks} (the model's guess as a prediction)",
                f"  labeling config:    {result['labeling_dir'] / script.LABEL_STUDIO_CONFIG}",
                "  after labeling, export JSON from Label Studio and read the labels back with",
                f"    python -m active_sampling.labeling label-studio export.json --tasks {tasks} --output labels.csv",
            ]
    return lines


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output-dir", type=Path, default=DEFAULT_OUTPUT_DIR)
    args = parser.parse_args(argv)
    print("\n".join(summary_lines(run_demo(args.output_dir))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
