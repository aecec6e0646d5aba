"""The command line as users run it: a subprocess with environment variables and local folders."""

import json
import os
import shutil
import subprocess
import sys

from conftest import SCRIPT_PATH, prediction_table, write_table


def run_cli(script_path, args, env_vars, cwd):
    env = {key: value for key, value in os.environ.items() if key not in env_vars}
    env.update(env_vars)
    return subprocess.run([sys.executable, str(script_path)] + args, env=env, cwd=str(cwd),
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True, timeout=120)


def test_cli_selects_with_env_vars_and_local_folders(run, tmp_path):
    # The script runs alone, as SageMaker uploads it: copied away from the package.
    lone_script = tmp_path / "code" / "active_sample_selection.py"
    lone_script.parent.mkdir()
    shutil.copy(str(SCRIPT_PATH), str(lone_script))
    write_table(prediction_table(n=50, labeled_fraction=0.2), run.input_dir, "parquet")
    result = run_cli(lone_script, run.cli_args("active_learning_selection"),
                     {"SELECTION_STRATEGY": "badge", "USE_CASE": "active_learning", "BATCH_SIZE": "6",
                      "LABEL_FIELD": "label", "OUTPUT_FORMAT": "tsv"}, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "Selected 6 of" in result.stderr
    assert len(run.selected()) == 6
    assert (run.samples_dir / "selected_samples.tsv").exists()
    metadata = json.loads((run.metadata_dir / "selection_metadata.json").read_text())
    assert metadata["job_type"] == "active_learning_selection" and metadata["config"]["batch_size"] == 6


def test_cli_bad_input_prints_one_line_and_exits_1(run, tmp_path):
    write_table(prediction_table(n=10), run.input_dir)
    result = run_cli(SCRIPT_PATH, run.cli_args("ssl_selection"),
                     {"SELECTION_STRATEGY": "confidence_threshold", "CONFIDENCE_THRESHOLD": "1.5"}, cwd=tmp_path)
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if "ERROR" in line]
    assert len(errors) == 1 and "CONFIDENCE_THRESHOLD='1.5' is out of range" in errors[0]
    assert "Traceback" not in result.stderr
    assert (run.samples_dir / "_FAILURE").exists() and run.result_files() == []


def test_cli_defaults_to_container_paths(tmp_path):
    result = run_cli(SCRIPT_PATH, ["--help"], {}, cwd=tmp_path)
    assert result.returncode == 0
    assert "/opt/ml/processing/input/evaluation_data" in result.stdout
    assert "/opt/ml/processing/output/selected_samples" in result.stdout
