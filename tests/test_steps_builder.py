from pathlib import Path

import boto3
import pytest
from sagemaker_fixtures import (  # noqa: F401
    BASE_FIELDS, BUCKET, REGION, aws_env, expression, pipeline_session, s3, under_execution)

from active_sampling.core import ProcessingStepConfigBase, sdk
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
    made = config(use_large_processing_instance=True, processing_instance_count=2, processing_volume_size=40,
                  selection_role="shard")
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
    assert expression(outputs["selected_samples"]["S3Uri"]) == under_execution(
        made.pipeline_s3_loc, "active-sample-selection", "round_2", "selected_samples")
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


def test_several_instances_without_sharding_is_a_config_error():
    with pytest.raises(ValueError, match=r"processing_instance_count=3 with selection_role=single would run 3 full "
                                         r"selections.*create_sharded_steps\(shard_count=3\)"):
        config(processing_instance_count=3)


def test_sharded_steps_with_an_int_count(s3, pipeline_session):
    builder = ActiveSampleSelectionStepBuilder(config(job_type="round_2"), sagemaker_session=pipeline_session)
    shard, merge = builder.create_sharded_steps(3, inputs={"evaluation_data": "s3://data/predictions/"},
                                                outputs={"selected_samples": "s3://elsewhere/selected"})
    assert (shard.name, merge.name) == ("ActiveSampleSelection-round_2-shard", "ActiveSampleSelection-round_2")
    assert shard.arguments["ProcessingResources"]["ClusterConfig"]["InstanceCount"] == 3
    assert shard.arguments["Environment"]["SELECTION_ROLE"] == "shard"
    merge_outputs = {item["OutputName"]: item["S3Output"]["S3Uri"]
                     for item in merge.arguments["ProcessingOutputConfig"]["Outputs"]}
    assert merge_outputs["selected_samples"] == "s3://elsewhere/selected"
    assert builder.config.selection_role == "single", "the caller's config is left as it was"


@pytest.mark.parametrize("count, error", [(0, ValueError), (101, ValueError), (True, ValueError), ("4", TypeError)])
def test_sharded_steps_refuse_a_bad_count(pipeline_session, count, error):
    builder = ActiveSampleSelectionStepBuilder(config(), sagemaker_session=pipeline_session)
    with pytest.raises(error, match="shard_count"):
        builder.create_sharded_steps(count, inputs={"evaluation_data": "s3://data/predictions/"})


def test_labeling_tasks_output_only_with_a_labeling_format(s3, pipeline_session):
    def output_names(made, **kwargs):
        arguments = create(pipeline_session, made, **kwargs).arguments
        return {item["OutputName"]: item["S3Output"] for item in arguments["ProcessingOutputConfig"]["Outputs"]}

    assert set(output_names(config())) == {"selected_samples", "selection_metadata"}
    made = config(labeling_format="label_studio", labeling_data_field="text", job_type="round_3")
    outputs = output_names(made)
    assert set(outputs) == {"selected_samples", "selection_metadata", "labeling_tasks"}
    assert outputs["labeling_tasks"]["LocalPath"] == "/opt/ml/processing/output/labeling_tasks"
    assert expression(outputs["labeling_tasks"]["S3Uri"]) == under_execution(
        made.pipeline_s3_loc, "active-sample-selection", "round_3", "labeling_tasks")
    environment = create(pipeline_session, made).arguments["Environment"]
    assert (environment["LABELING_FORMAT"], environment["LABELING_DATA_FIELD"]) == ("label_studio", "text")
    with pytest.raises(ValueError, match=r"no output named \['labeling_tasks'\]"):
        create(pipeline_session, config(), outputs={"labeling_tasks": "s3://elsewhere/tasks"})


@pytest.mark.parametrize("overrides, message", [
    ({"labeling_format": "ground_truth"}, "labeling_format=ground_truth needs labeling_data_field=<column>"),
    ({"labeling_data_field": "text"}, "labeling_data_field='text' is set but labeling_format=none"),
    ({"labeling_format": "label_studio", "labeling_data_field": "text", "selection_strategy": "top_k_per_class"},
     "labeling_format=label_studio is not allowed with selection_strategy=top_k_per_class"),
    ({"labeling_format": "label_studio", "labeling_data_field": "my text"}, "cannot be a Label Studio variable"),
])
def test_config_refuses_labeling_settings_the_script_would_refuse(overrides, message):
    with pytest.raises(ValueError, match=message):
        config(**overrides)


def test_sharded_steps_write_labeling_tasks_from_the_merge_only(s3, pipeline_session):
    made = config(labeling_format="label_studio", labeling_data_field="text")
    shard, merge = ActiveSampleSelectionStepBuilder(made, sagemaker_session=pipeline_session).create_sharded_steps(
        2, inputs={"evaluation_data": "s3://data/predictions/"})

    def outputs(step):
        return {item["OutputName"] for item in step.arguments["ProcessingOutputConfig"]["Outputs"]}

    assert outputs(shard) == {"selected_samples", "selection_metadata"}
    assert outputs(merge) == {"selected_samples", "selection_metadata", "labeling_tasks"}
    assert shard.arguments["Environment"]["LABELING_FORMAT"] == "none"
    assert merge.arguments["Environment"]["LABELING_FORMAT"] == "label_studio"


def test_sharded_steps_refuse_a_strategy_whose_row_has_no_sharding_rule(pipeline_session, monkeypatch):
    unshardable = script.STRATEGIES_BY_NAME["badge"]._replace(sharding=None)
    monkeypatch.setitem(script.STRATEGIES_BY_NAME, "badge", unshardable)
    builder = ActiveSampleSelectionStepBuilder(config(selection_strategy="badge"), sagemaker_session=pipeline_session)
    with pytest.raises(ValueError, match="SELECTION_STRATEGY=badge cannot be sharded: use SELECTION_ROLE=single"):
        builder.create_sharded_steps(2, inputs={"evaluation_data": "s3://data/predictions/"})


@pytest.mark.parametrize("strategy", ["hybrid", "diversity"])
def test_sharded_steps_for_the_hybrid_and_kmeans_diversity(s3, pipeline_session, strategy):
    builder = ActiveSampleSelectionStepBuilder(config(selection_strategy=strategy, diversity_method="kmeans"),
                                               sagemaker_session=pipeline_session)
    shard, merge = builder.create_sharded_steps(2, inputs={"evaluation_data": "s3://data/predictions/"})
    assert shard.arguments["Environment"]["SELECTION_ROLE"] == "shard"
    assert merge.arguments["Environment"]["DIVERSITY_METHOD"] == "kmeans"


def test_step_carries_the_selection_metadata_property_file(s3, pipeline_session):
    builder = ActiveSampleSelectionStepBuilder(config(), sagemaker_session=pipeline_session)
    step = builder.create_step(inputs={"evaluation_data": "s3://data/predictions/"})
    assert [item.expr for item in step.property_files] == [
        {"PropertyFileName": "SelectionMetadata", "OutputName": "selection_metadata",
         "FilePath": "selection_metadata.json"}]
    assert step.property_files[0] is builder.property_file
    for path in ("stopping.should_stop", "selected_count"):
        assert sdk.json_get(step, builder.property_file, path).expr == {"Std:JsonGet": {
            "PropertyFile": {"Get": f"Steps.{step.name}.PropertyFiles.SelectionMetadata"}, "Path": path}}


def test_previous_predictions_only_from_inputs(s3, pipeline_session):
    made = config()
    arguments = create(pipeline_session, made).arguments
    assert {item["InputName"] for item in arguments["ProcessingInputs"]} == {"evaluation_data", "code"}
    arguments = create(pipeline_session, made, inputs={"evaluation_data": "s3://data/predictions/",
                                                       "previous_predictions": "s3://data/round_1/"}).arguments
    inputs = {item["InputName"]: item["S3Input"] for item in arguments["ProcessingInputs"]}
    assert inputs["previous_predictions"]["S3Uri"] == "s3://data/round_1/"
    assert inputs["previous_predictions"]["LocalPath"] == "/opt/ml/processing/input/previous_predictions"


def test_sharded_steps_previous_predictions_go_whole_to_every_shard(s3, pipeline_session):
    builder = ActiveSampleSelectionStepBuilder(config(job_type="round_2"), sagemaker_session=pipeline_session)
    shard, merge = builder.create_sharded_steps(3, inputs={"evaluation_data": "s3://data/predictions/",
                                                           "previous_predictions": "s3://data/round_1/"})
    shard_inputs = {item["InputName"]: item["S3Input"] for item in shard.arguments["ProcessingInputs"]}
    assert shard_inputs["previous_predictions"]["S3DataDistributionType"] == "FullyReplicated"
    assert shard_inputs["evaluation_data"]["S3DataDistributionType"] == "ShardedByS3Key"
    assert "previous_predictions" not in {item["InputName"] for item in merge.arguments["ProcessingInputs"]}
    assert shard.property_files == [] and [item.name for item in merge.property_files] == ["SelectionMetadata"]
    assert (shard.cache_config.enable_caching, merge.cache_config.enable_caching) == (False, False)
    made = builder.config
    shard_outputs = {item["OutputName"]: expression(item["S3Output"]["S3Uri"])
                     for item in shard.arguments["ProcessingOutputConfig"]["Outputs"]}
    merge_outputs = {item["OutputName"]: expression(item["S3Output"]["S3Uri"])
                     for item in merge.arguments["ProcessingOutputConfig"]["Outputs"]}
    for name in ("selected_samples", "selection_metadata"):
        expected = under_execution(made.pipeline_s3_loc, "active-sample-selection", "round_2", name)
        assert merge_outputs[name] == expected
        expected["Std:Join"]["Values"].insert(-1, "shards")
        assert shard_outputs[name] == expected
