from pathlib import Path

import boto3
import pytest
from sagemaker_fixtures import BASE_FIELDS, BUCKET, REGION, aws_env, pipeline_session, s3  # noqa: F401

from active_sampling.core import ProcessingStepConfigBase
from active_sampling.scripts import active_sample_selection as script
from active_sampling.steps import ActiveSampleSelectionConfig
from active_sampling.steps.builder import ActiveSampleSelectionStepBuilder

pytestmark = pytest.mark.sdk


def config(**overrides):
    return ActiveSampleSelectionConfig(**{**BASE_FIELDS, "selection_strategy": "uncertainty", **overrides})


def create(session, made=None, **kwargs):
    builder = ActiveSampleSelectionStepBuilder(made or config(), sagemaker_session=session)
    kwargs.setdefault("inputs", {"evaluation_data": "s3://data/predictions/"})
    return builder.create_step(**kwargs)


def test_step_runs_the_packaged_script_on_the_sklearn_1_2_1_image(s3, pipeline_session):
    step = create(pipeline_session)
    app = step.arguments["AppSpecification"]
    assert app["ImageUri"].endswith("/sagemaker-scikit-learn:1.2-1-cpu-py3")
    assert app["ContainerEntrypoint"] == ["python3", "/opt/ml/processing/input/code/active_sample_selection.py"]
    assert app["ContainerArguments"] == ["--job_type", "active_learning_selection"]
    (code,) = [item for item in step.arguments["ProcessingInputs"] if item["InputName"] == "code"]
    bucket, key = code["S3Input"]["S3Uri"][len("s3://"):].split("/", 1)
    uploaded = boto3.client("s3", region_name=REGION).get_object(Bucket=bucket, Key=key)["Body"].read()
    assert bucket == BUCKET
    assert uploaded == Path(script.__file__).read_bytes()


def test_step_resources_come_from_the_config(s3, pipeline_session):
    made = config(use_large_processing_instance=True, processing_instance_count=2, processing_volume_size=40)
    cluster = create(pipeline_session, made).arguments["ProcessingResources"]["ClusterConfig"]
    assert cluster == {"InstanceType": "ml.m5.4xlarge", "InstanceCount": 2, "VolumeSizeInGB": 40}


def test_environment_omits_unset_optionals(s3, pipeline_session):
    environment = create(pipeline_session, config(batch_size=50)).arguments["Environment"]
    assert environment["SELECTION_STRATEGY"] == "uncertainty"
    assert environment["BATCH_SIZE"] == "50"
    assert not {"LABEL_FIELD", "SCORE_FIELD", "OUTPUT_FORMAT"} & set(environment)
    assert "None" not in environment.values()


def test_channels_and_default_destinations(s3, pipeline_session):
    made = config(job_type="round_2")
    arguments = create(pipeline_session, made, outputs={"selection_metadata": "s3://elsewhere/meta"}).arguments
    inputs = {item["InputName"]: item["S3Input"] for item in arguments["ProcessingInputs"]}
    assert inputs["evaluation_data"]["LocalPath"] == "/opt/ml/processing/input/evaluation_data"
    assert inputs["evaluation_data"]["S3Uri"] == "s3://data/predictions/"
    outputs = {item["OutputName"]: item["S3Output"] for item in arguments["ProcessingOutputConfig"]["Outputs"]}
    assert outputs["selected_samples"]["LocalPath"] == "/opt/ml/processing/output/selected_samples"
    assert outputs["selected_samples"]["S3Uri"] == (
        f"{made.pipeline_s3_loc}/active-sample-selection/round_2/selected_samples")
    assert outputs["selection_metadata"]["S3Uri"] == "s3://elsewhere/meta"


def test_names_and_cache(pipeline_session):
    step = create(pipeline_session, config(selection_strategy="confidence_threshold"), enable_caching=True)
    assert step.name == "ActiveSampleSelection-ssl_selection"
    builder = ActiveSampleSelectionStepBuilder(config(job_type="round_2"))
    assert builder.base_job_name() == "active-sample-selection-round-2"
    assert step.cache_config.enable_caching is True
    assert step.cache_config.expire_after == "P30D"


def test_missing_input_says_how_to_provide_it(pipeline_session):
    with pytest.raises(ValueError, match=r"ActiveSampleSelection needs input 'evaluation_data': pass inputs="):
        create(pipeline_session, inputs={})


def test_builder_refuses_another_config_type():
    other = ProcessingStepConfigBase(**BASE_FIELDS)
    with pytest.raises(TypeError, match="needs an ActiveSampleSelectionConfig, got ProcessingStepConfigBase"):
        ActiveSampleSelectionStepBuilder(other)
