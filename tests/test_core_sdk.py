"""active_sampling/core/sdk.py: the only importer of the SageMaker SDK, one surface for v2 and v3.

These tests run under both majors (make test-main: v3, tools/sdk_env.sh: v2) and expect the same
CreateProcessingJob request from each, written out here from the API reference.
"""

import ast
import json
import os
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from sagemaker_fixtures import BASE_FIELDS, BUCKET, REGION, aws_env, pipeline_session, s3  # noqa: F401

from active_sampling.core import sdk
from active_sampling.steps import ActiveSampleSelectionConfig
from active_sampling.steps.builder import ActiveSampleSelectionStepBuilder

pytestmark = pytest.mark.sdk

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "active_sampling"
SDK_MODULE = PACKAGE / "core" / "sdk.py"


def imported_modules(path):
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.module


def test_only_the_sdk_module_imports_sagemaker():
    importers = sorted(
        str(path.relative_to(PACKAGE)) for path in PACKAGE.rglob("*.py")
        if any(name.split(".")[0] == "sagemaker" for name in imported_modules(path))
    )
    assert importers == ["core/sdk.py"]


def test_contract_spec_and_config_load_without_the_sdk():
    code = (
        "import sys; sys.modules['sagemaker'] = None\n"
        "from active_sampling.steps import ActiveSampleSelectionConfig, ACTIVE_SAMPLE_SELECTION_SPEC\n"
        "from active_sampling.steps.docs import render_config_reference\n"
        "assert 'sagemaker' not in {m.split('.')[0] for m in sys.modules if sys.modules[m] is not None}\n"
        "print(len(render_config_reference()) > 0)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "True"


@pytest.mark.skipif("SDK_EXPECTED_MAJOR" not in os.environ,
                    reason="make test-main and tools/sdk_env.sh set SDK_EXPECTED_MAJOR")
def test_the_environment_has_the_sdk_major_it_was_built_for():
    # A resolver that quietly installed the other major would otherwise test the same SDK twice.
    assert sdk.SDK_MAJOR == int(os.environ["SDK_EXPECTED_MAJOR"]), sdk.SDK_VERSION


def test_sdk_major_is_the_installed_distribution_major():
    from importlib.metadata import version

    assert sdk.SDK_MAJOR in (2, 3)
    assert version("sagemaker").split(".")[0] == str(sdk.SDK_MAJOR)


def test_v3_without_a_region_fails_at_import_with_the_fix_in_the_message(tmp_path):
    environment = {key: value for key, value in os.environ.items()
                   if key not in ("AWS_DEFAULT_REGION", "AWS_REGION", "AWS_PROFILE")}
    environment.update(HOME=str(tmp_path), AWS_CONFIG_FILE=str(tmp_path / "none"))
    result = subprocess.run([sys.executable, "-c", "from active_sampling.core import sdk"],
                            capture_output=True, text=True, env=environment)
    if sdk.SDK_MAJOR == 2:
        assert result.returncode == 0, result.stderr
    else:
        assert result.returncode == 1
        assert "needs an AWS region when it is imported: set AWS_DEFAULT_REGION" in result.stderr


def select_step(session, **overrides):
    config = ActiveSampleSelectionConfig(**{**BASE_FIELDS, "selection_strategy": "badge", **overrides})
    return ActiveSampleSelectionStepBuilder(config, sagemaker_session=session).create_step(
        inputs={"evaluation_data": "s3://data/predictions/"})


def test_telemetry_is_off_for_the_whole_test_session():
    assert sdk.telemetry_disabled()


def test_building_a_step_looks_up_no_host(monkeypatch, pipeline_session):
    # v3 sends telemetry from a thread on every ScriptProcessor.run, which create_step calls; every
    # request starts with a name lookup, even where there is no network.
    looked_up = []
    real_getaddrinfo = socket.getaddrinfo
    monkeypatch.setattr(socket, "getaddrinfo", lambda host, *args, **kwargs: looked_up.append(host)
                        or real_getaddrinfo(host, *args, **kwargs))
    select_step(pipeline_session)
    for thread in threading.enumerate():
        if thread is not threading.current_thread() and "telemetry" in thread.name:
            thread.join(timeout=30)
    assert looked_up == []


def test_sklearn_image_uri_is_the_1_2_1_processing_image():
    assert sdk.sklearn_image_uri("1.2-1", region="eu-west-1", instance_type="ml.m5.xlarge") == (
        "141502667606.dkr.ecr.eu-west-1.amazonaws.com/sagemaker-scikit-learn:1.2-1-cpu-py3")


def test_unknown_distribution_type_is_refused():
    with pytest.raises(ValueError, match="distribution must be one of FullyReplicated, ShardedByS3Key, got 'Sharded'"):
        sdk.processing_input("data", "s3://b/k", "/opt/ml/processing/input/data", distribution="Sharded")


def test_processor_with_sharded_input_and_an_instance_count_parameter(s3, pipeline_session):
    instances = sdk.ParameterInteger(name="ShardCount", default_value=4)
    processor = sdk.script_processor(
        image_uri="123.dkr.ecr.us-east-1.amazonaws.com/image:1", role=BASE_FIELDS["role"],
        instance_type="ml.m5.xlarge", instance_count=instances, volume_size_in_gb=50, base_job_name="shard",
        sagemaker_session=pipeline_session, env={"MODE": "shard"},
    )
    source = sdk.ParameterString(name="Input", default_value="s3://b/in/")
    step = sdk.ProcessingStep(
        name="Shard",
        step_args=processor.run(
            code=str(PACKAGE / "scripts" / "active_sample_selection.py"),
            inputs=[sdk.processing_input("data", source, "/opt/ml/processing/input/data",
                                         distribution=sdk.SHARDED_BY_S3_KEY)],
            outputs=[sdk.processing_output("part", "/opt/ml/processing/output/part", "s3://b/out/part")],
            arguments=["--job_type", "shard"],
        ),
        cache_config=sdk.CacheConfig(enable_caching=False),
    )
    pipeline = sdk.Pipeline(name="p", parameters=[instances, source], steps=[step], sagemaker_session=pipeline_session)
    arguments = json.loads(pipeline.definition())["Steps"][0]["Arguments"]
    assert arguments["ProcessingResources"]["ClusterConfig"] == {
        "InstanceType": "ml.m5.xlarge", "InstanceCount": {"Get": "Parameters.ShardCount"}, "VolumeSizeInGB": 50}
    (data,) = [item for item in arguments["ProcessingInputs"] if item["InputName"] == "data"]
    assert data == {"InputName": "data", "AppManaged": False, "S3Input": {
        "S3Uri": {"Get": "Parameters.Input"}, "LocalPath": "/opt/ml/processing/input/data", "S3DataType": "S3Prefix",
        "S3InputMode": "File", "S3DataDistributionType": "ShardedByS3Key", "S3CompressionType": "None"}}
    assert arguments["ProcessingOutputConfig"]["Outputs"] == [{"OutputName": "part", "AppManaged": False, "S3Output": {
        "S3Uri": "s3://b/out/part", "LocalPath": "/opt/ml/processing/output/part", "S3UploadMode": "EndOfJob"}}]
    assert arguments["AppSpecification"]["ContainerEntrypoint"] == [
        "python3", "/opt/ml/processing/input/code/active_sample_selection.py"]
    assert arguments["Environment"] == {"MODE": "shard"}
