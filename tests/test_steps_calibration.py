"""The builder's calibration_data input: explicit only, required by precision_target, refused where unread."""

import pytest
from sagemaker_fixtures import BASE_FIELDS, aws_env, pipeline_session, s3  # noqa: F401

from active_sampling.core.builder import SPEC_ATTRIBUTE, ProcessingStepBuilderBase
from active_sampling.core.spec import DependencyType, OutputSpec, processing_output_property_path
from active_sampling.scripts import active_sample_selection as script
from active_sampling.steps import ACTIVE_SAMPLE_SELECTION_SPEC, ActiveSampleSelectionConfig
from active_sampling.steps.builder import ActiveSampleSelectionStepBuilder

pytestmark = pytest.mark.sdk

EVALUATION = {"evaluation_data": "s3://data/predictions/"}
CALIBRATION = {"calibration_data": "s3://data/held-out-predictions/"}


def builder(session, **overrides):
    config = ActiveSampleSelectionConfig(**{**BASE_FIELDS, "selection_strategy": "precision_target", **overrides})
    return ActiveSampleSelectionStepBuilder(config, sagemaker_session=session)


def inputs_of(step):
    return {item["InputName"]: item["S3Input"] for item in step.arguments["ProcessingInputs"]}


def test_calibration_data_reaches_its_container_path(s3, pipeline_session):
    step = builder(pipeline_session, label_field="label", class_balance="align").create_step(
        inputs={**EVALUATION, **CALIBRATION})
    calibration = inputs_of(step)["calibration_data"]
    assert calibration["S3Uri"] == CALIBRATION["calibration_data"]
    assert calibration["LocalPath"] == script.CONTAINER_INPUT_PATHS["calibration_data"]
    assert calibration["S3DataDistributionType"] == "FullyReplicated"
    environment = step.arguments["Environment"]
    assert (environment["TARGET_PRECISION"], environment["CLASS_BALANCE"]) == ("0.95", "align")


def test_precision_target_without_calibration_data_is_refused_when_the_step_is_built(s3, pipeline_session):
    with pytest.raises(ValueError, match="needs input 'calibration_data'"):
        builder(pipeline_session).create_step(inputs=EVALUATION)


def test_other_ssl_strategies_take_it_optionally_and_active_learning_refuses_it(s3, pipeline_session):
    step = builder(pipeline_session, selection_strategy="confidence_threshold").create_step(inputs=EVALUATION)
    assert "calibration_data" not in inputs_of(step)
    step = builder(pipeline_session, selection_strategy="top_k_per_class").create_step(
        inputs={**EVALUATION, **CALIBRATION})
    assert "calibration_data" in inputs_of(step)
    with pytest.raises(ValueError, match="does not pseudo-label"):
        builder(pipeline_session, selection_strategy="badge").create_step(inputs={**EVALUATION, **CALIBRATION})


def test_calibration_data_is_never_wired_from_an_upstream_step(s3, pipeline_session):
    dependency = ACTIVE_SAMPLE_SELECTION_SPEC.dependencies["calibration_data"]
    assert dependency.required is False
    upstream = builder(pipeline_session, selection_strategy="confidence_threshold").create_step(inputs=EVALUATION)
    # An upstream step that offers an output named calibration_data: the generic resolution would wire it.
    offered = OutputSpec(logical_name="calibration_data", output_type=DependencyType.PROCESSING_OUTPUT,
                         property_path=processing_output_property_path("calibration_data"))
    spec = ACTIVE_SAMPLE_SELECTION_SPEC.model_copy(
        update={"outputs": {**ACTIVE_SAMPLE_SELECTION_SPEC.outputs, "calibration_data": offered}})
    setattr(upstream, SPEC_ATTRIBUTE, spec)
    selection = builder(pipeline_session, selection_strategy="confidence_threshold")
    assert dependency.explicit_only is True
    assert "calibration_data" not in selection.resolve_inputs([upstream])
    # the same output does wire to an input that is not explicit only: the upstream step really offers it
    loose = ACTIVE_SAMPLE_SELECTION_SPEC.model_copy(update={"dependencies": {
        **ACTIVE_SAMPLE_SELECTION_SPEC.dependencies,
        "calibration_data": dependency.model_copy(update={"explicit_only": False})}})
    assert "calibration_data" in ProcessingStepBuilderBase.resolve_inputs(
        type("Loose", (), {"spec": loose})(), [upstream])


def test_a_sharded_selection_gives_calibration_data_to_every_shard_and_to_the_merge(s3, pipeline_session):
    steps = builder(pipeline_session, label_field="label").create_sharded_steps(
        3, inputs={**EVALUATION, **CALIBRATION})
    shard, merge = inputs_of(steps.shard), inputs_of(steps.merge)
    assert shard["evaluation_data"]["S3DataDistributionType"] == "ShardedByS3Key"
    for inputs in (shard, merge):
        assert inputs["calibration_data"]["S3Uri"] == CALIBRATION["calibration_data"]
        assert inputs["calibration_data"]["S3DataDistributionType"] == "FullyReplicated"
    with pytest.raises(ValueError, match="needs input 'calibration_data'"):
        builder(pipeline_session).create_sharded_steps(2, inputs=EVALUATION)
