"""SDK v2 and v3 describe the same pipeline: examples/pipeline.py --offline under both, compared.

The test runs the example in this interpreter and under the other SDK major's interpreter
(SDK_PEER_PYTHON; tools/sdk_env.sh points it at the main .venv), with the same arguments, working
folder and script folder, since the code's S3 key hashes the script's path. The definitions must be
equal except for the differences docs/pipeline.md lists, and nothing else is normalized.
"""

import copy
import importlib.util
import json
import os
import subprocess
from pathlib import Path

import pytest
from sagemaker_fixtures import aws_env  # noqa: F401

from active_sampling.core import sdk

pytestmark = pytest.mark.sdk
needs_peer = pytest.mark.skipif("SDK_PEER_PYTHON" not in os.environ,
                                reason="needs the other SDK major's interpreter in SDK_PEER_PYTHON (make test-sdk-other)")

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "pipeline.py"
ARGUMENTS = ["--offline", "--strategy", "badge", "--use-case", "active_learning"]
# The round loop's parts: last round's predictions as a parameter, a sharded selection, the ConditionStep.
LOOP_ARGUMENTS = ["--offline", "--strategy", "uncertainty", "--use-case", "active_learning", "--shards", "3",
                  "--previous-predictions"]


def normalized(definition):
    """The definition without the two documented differences between the majors.

    v3 writes ``"MlflowConfig": null`` at pipeline level (no MLflow tracking, as in v2); v2 writes
    ``"AppManaged": false`` on the code input the SDK makes, v3 leaves it out (false is the API default).
    """
    document = copy.deepcopy(definition)
    assert document.pop("MlflowConfig", None) is None
    for step in _processing_steps(document["Steps"]):
        for channel in step["Arguments"]["ProcessingInputs"]:
            if channel["InputName"] == "code":
                channel.setdefault("AppManaged", False)
    return document


def _processing_steps(steps):
    """The processing steps of a definition, those inside a ConditionStep's branches included."""
    for step in steps:
        if step.get("Type") == "Condition":
            yield from _processing_steps(step["Arguments"]["IfSteps"] + step["Arguments"]["ElseSteps"])
        elif "ProcessingInputs" in step.get("Arguments", {}):
            yield step


def own_definition(work_dir, capsys):
    spec = importlib.util.spec_from_file_location("example_pipeline_golden", EXAMPLE)
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    assert example.main([*ARGUMENTS, "--work-dir", str(work_dir)]) == 0
    return json.loads(capsys.readouterr().out)


def peer_output(*arguments):
    result = subprocess.run([os.environ["SDK_PEER_PYTHON"], *arguments], cwd=os.getcwd(),
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    return result.stdout


@needs_peer
def test_the_other_interpreter_has_the_other_major():
    peer_major = peer_output("-c", "from active_sampling.core import sdk; print(sdk.SDK_MAJOR)").strip()
    assert {int(peer_major), sdk.SDK_MAJOR} == {2, 3}


@needs_peer
def test_v2_and_v3_pipeline_definitions_are_equal_after_normalization(tmp_path, capsys, aws_env):
    own = own_definition(tmp_path, capsys)
    peer = json.loads(peer_output(str(EXAMPLE), *ARGUMENTS, "--work-dir", str(tmp_path)))
    assert normalized(own) == normalized(peer)
    # The comparison covers the parts that matter, not an empty shell.
    selection = normalized(own)["Steps"][1]
    assert selection["Name"] == "ActiveSampleSelection-active_learning_selection"
    assert {"AppSpecification", "Environment", "ProcessingInputs", "ProcessingOutputConfig",
            "ProcessingResources"} <= set(selection["Arguments"])
    assert selection["CacheConfig"] == {"Enabled": False, "ExpireAfter": "P30D"}
    assert [item["PropertyFileName"] for item in selection["PropertyFiles"]] == ["SelectionMetadata"]


@needs_peer
def test_v2_and_v3_describe_the_same_round_loop(tmp_path, capsys, aws_env):
    spec = importlib.util.spec_from_file_location("example_pipeline_golden_loop", EXAMPLE)
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    assert example.main([*LOOP_ARGUMENTS, "--work-dir", str(tmp_path)]) == 0
    own = json.loads(capsys.readouterr().out)
    peer = json.loads(peer_output(str(EXAMPLE), *LOOP_ARGUMENTS, "--work-dir", str(tmp_path)))
    assert normalized(own) == normalized(peer)
    names = [step["Name"] for step in normalized(own)["Steps"]]
    assert names == ["XGBoostModelInference", "ActiveSampleSelection-active_learning_selection-shard",
                     "ActiveSampleSelection-active_learning_selection", "CheckSelection"]
    merge = normalized(own)["Steps"][2]
    assert merge["PropertyFiles"][0]["PropertyFileName"] == "SelectionMetadata"
    outputs = merge["Arguments"]["ProcessingOutputConfig"]["Outputs"]
    assert all({"Get": "Execution.PipelineExecutionId"} in item["S3Output"]["S3Uri"]["Std:Join"]["Values"]
               for item in outputs)


def test_normalization_removes_only_the_documented_differences():
    v3_style = {"MlflowConfig": None, "Steps": [{"Arguments": {"ProcessingInputs": [
        {"InputName": "code", "S3Input": {}}, {"InputName": "data", "S3Input": {}}]}}]}
    assert normalized(v3_style) == {"Steps": [{"Arguments": {"ProcessingInputs": [
        {"InputName": "code", "AppManaged": False, "S3Input": {}}, {"InputName": "data", "S3Input": {}}]}}]}
    with pytest.raises(AssertionError):
        normalized({**v3_style, "MlflowConfig": {"MlflowResourceArn": "arn"}})
