"""Fixtures for the entry script's own tests.

These tests load the script by path and use only numpy, pandas, pyarrow, pytest and hypothesis, so
they also run under the SageMaker sklearn 1.2-1 library versions (see tools/legacy_env.sh).
"""

import argparse
import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

SCRIPT_PATH = Path(__file__).resolve().parents[2] / "src" / "active_sampling" / "scripts" / "active_sample_selection.py"


def _load_script():
    name = "active_sample_selection"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, SCRIPT_PATH)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


script_module = _load_script()


@pytest.fixture
def script():
    return script_module


def prediction_table(n=60, n_classes=3, dim=4, labeled_fraction=0.0, seed=0):
    """A small synthetic prediction table: id, prob_class_*, emb_*, a numeric feature and a label column."""
    rng = np.random.default_rng(seed)
    probabilities = rng.dirichlet(np.full(n_classes, 0.7), size=n)
    table = pd.DataFrame({"id": ["row-{:04d}".format(i) for i in range(n)]})
    for c in range(n_classes):
        table["prob_class_{}".format(c)] = probabilities[:, c]
    for d in range(dim):
        table["emb_{}".format(d)] = rng.normal(size=n)
    table["feature_a"] = rng.normal(size=n)
    labeled = rng.random(n) < labeled_fraction
    table["label"] = pd.Series(np.where(labeled, probabilities.argmax(axis=1).astype(str), None), dtype=object)
    return table


def write_table(table, folder, fmt="csv", name="predictions"):
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "{}.{}".format(name, fmt)
    if fmt == "parquet":
        table.to_parquet(str(path), index=False)
    else:
        table.to_csv(str(path), sep="\t" if fmt.startswith("tsv") else ",", index=False)
    return path


RESULT_NAMES = ("selected_samples.csv", "selected_samples.tsv", "selected_samples.parquet", "selection_metadata.json",
                "selection_report.html",
                "ground_truth.manifest", "ground_truth_label_categories.json", "label_studio_tasks.json",
                "label_studio_config.xml", "_SUCCESS")


class Run:
    """Paths of one main() invocation inside a temporary folder (``extra_args`` end its command line)."""

    def __init__(self, root):
        self.root = Path(root)
        self.input_dir = self.root / "input"
        self.samples_dir = self.root / "out" / "selected_samples"
        self.metadata_dir = self.root / "out" / "selection_metadata"
        self.labeling_dir = self.root / "out" / "labeling_tasks"
        self.input_dir.mkdir(parents=True, exist_ok=True)
        self.extra_args = []

    def paths(self):
        return ({"evaluation_data": str(self.input_dir)},
                {"selected_samples": str(self.samples_dir), "selection_metadata": str(self.metadata_dir),
                 "labeling_tasks": str(self.labeling_dir)})

    def main(self, environ, job_type="test_selection"):
        input_paths, output_paths = self.paths()
        return script_module.main(input_paths, output_paths, dict(environ), argparse.Namespace(job_type=job_type))

    def cli_args(self, job_type="test_selection"):
        args = ["--evaluation_data", str(self.input_dir), "--selected_samples", str(self.samples_dir),
                "--selection_metadata", str(self.metadata_dir), "--labeling_tasks", str(self.labeling_dir)]
        return args + (["--job_type", job_type] if job_type else []) + self.extra_args

    def selected(self):
        files = sorted(self.samples_dir.glob("selected_samples.*"))
        assert len(files) == 1, files
        path = files[0]
        if path.suffix == ".parquet":
            return pd.read_parquet(str(path))
        return pd.read_csv(str(path), sep="\t" if path.suffix == ".tsv" else ",", dtype={"id": str})

    def metadata(self):
        return json.loads((self.metadata_dir / "selection_metadata.json").read_text())

    def result_files(self):
        """This step's result files, success markers and temporary files left in the output folders."""
        return sorted(p.name for folder in (self.samples_dir, self.metadata_dir, self.labeling_dir)
                      if folder.exists() for p in folder.iterdir()
                      if p.name in RESULT_NAMES or p.name.endswith(".tmp"))


@pytest.fixture
def run(tmp_path):
    return Run(tmp_path)
