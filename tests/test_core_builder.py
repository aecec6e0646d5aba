from typing import Optional

import pytest
from sagemaker_fixtures import BASE_FIELDS, aws_env, expression, pipeline_session, s3, under_execution  # noqa: F401

from active_sampling.core import (
    DependencySpec,
    DependencyType,
    NodeType,
    OutputSpec,
    ProcessingStepConfigBase,
    ScriptContract,
    StepSpecification,
    processing_output_property_path,
)
from active_sampling.core import sdk
from active_sampling.core.builder import ProcessingStepBuilderBase, kebab_case, spec_of

pytestmark = pytest.mark.sdk


def make_spec(step_type, inputs, outputs, aliases=None, sources=(), keywords=(), required=()):
    """A processing-step spec with one contract path per channel."""
    aliases = aliases or {}
    return StepSpecification(
        step_type=step_type,
        node_type=NodeType.INTERNAL if inputs else NodeType.SOURCE,
        script_contract=ScriptContract(
            entry_point="run.py",
            expected_input_paths={name: f"/opt/ml/processing/input/{name}" for name in inputs},
            expected_output_paths={name: f"/opt/ml/processing/output/{name}" for name in outputs},
            expected_arguments={"job_type": "which job"},
            required_env_vars=["MODE"],
            optional_env_vars={"LIMIT": "10", "LABEL": ""},
        ),
        dependencies={name: DependencySpec(
            logical_name=name, dependency_type=DependencyType.PROCESSING_OUTPUT, required=name in required,
            compatible_sources=list(sources), semantic_keywords=list(keywords)) for name in inputs},
        outputs={name: OutputSpec(
            logical_name=name, output_type=DependencyType.PROCESSING_OUTPUT,
            property_path=processing_output_property_path(name), aliases=aliases.get(name, [])) for name in outputs},
    )


class Config(ProcessingStepConfigBase):
    mode: Optional[str] = "fast"
    limit: int = 10
    label: Optional[str] = None
    job_type: str = "training"


class Builder(ProcessingStepBuilderBase):
    """The base class as it is: a ScriptProcessor on the scikit-learn image."""


@pytest.fixture
def config(tmp_path):
    (tmp_path / "run.py").write_text("print('run')\n")
    return Config(**BASE_FIELDS, processing_source_dir=str(tmp_path), processing_entry_point="run.py")


SELECT = make_spec("Select", inputs=["predictions"], outputs=["picked"], required=["predictions"],
                   sources=["Inference"], keywords=["eval"])


def build(config, spec, session, **kwargs):
    return Builder(config, spec, sagemaker_session=session).create_step(**kwargs)


def upstream(config, session, step_type, output, aliases=None, job_type="training"):
    spec = make_spec(step_type, inputs=[], outputs=[output], aliases=aliases)
    return build(config.model_copy(update={"job_type": job_type}), spec, session)


def request(step):
    """The CreateProcessingJob request the step stands for (uploads its code to moto's S3)."""
    return step.arguments


def source_of(step, name):
    (found,) = [item for item in request(step)["ProcessingInputs"] if item["InputName"] == name]
    return found["S3Input"]["S3Uri"]


def test_environment_leaves_out_unset_optional_values(config):
    builder = Builder(config, SELECT)
    assert builder.environment_variables() == {"MODE": "fast", "LIMIT": "10"}
    config.label = "y"
    assert builder.environment_variables()["LABEL"] == "y"


def test_environment_never_sends_none_for_a_required_value(config):
    config.mode = None
    with pytest.raises(ValueError, match="Config.mode is required: it sets MODE"):
        Builder(config, SELECT).environment_variables()


def test_names_carry_the_job_type_once(config):
    builder = Builder(config, SELECT)
    assert builder.step_name() == "Select-training"
    assert builder.base_job_name() == "select-training"
    assert kebab_case("ActiveSampleSelection-ssl_selection") == "active-sample-selection-ssl-selection"
    assert builder.job_arguments() == ["--job_type", "training"]


def test_step_maps_channels_through_spec_and_contract(config, s3, pipeline_session):
    step = build(config, SELECT, pipeline_session, inputs={"predictions": "s3://b/p"}, enable_caching=False)
    arguments = request(step)
    (data_input,) = [item for item in arguments["ProcessingInputs"] if item["InputName"] == "predictions"]
    assert data_input["S3Input"]["S3Uri"] == "s3://b/p"
    assert data_input["S3Input"]["LocalPath"] == "/opt/ml/processing/input/predictions"
    (picked,) = arguments["ProcessingOutputConfig"]["Outputs"]
    assert picked["S3Output"]["LocalPath"] == "/opt/ml/processing/output/picked"
    assert expression(picked["S3Output"]["S3Uri"]) == under_execution(config.pipeline_s3_loc, "select", "training",
                                                                        "picked")
    assert arguments["Environment"] == {"MODE": "fast", "LIMIT": "10"}
    assert arguments["AppSpecification"]["ContainerArguments"] == ["--job_type", "training"]
    assert step.cache_config.enable_caching is False
    assert step.cache_config.expire_after == "P30D"
    assert spec_of(step) is SELECT


def test_missing_required_input_says_how_to_provide_it(config, pipeline_session):
    with pytest.raises(ValueError, match=r"Select needs input 'predictions': pass inputs=\{'predictions'"):
        build(config, SELECT, pipeline_session)


def test_unknown_channel_names_are_rejected(config, pipeline_session):
    with pytest.raises(ValueError, match=r"Select has no input named \['prediction'\]"):
        build(config, SELECT, pipeline_session, inputs={"prediction": "s3://b/p", "predictions": "s3://b/p"})
    with pytest.raises(ValueError, match=r"no output named \['pick'\]"):
        build(config, SELECT, pipeline_session, inputs={"predictions": "s3://b/p"}, outputs={"pick": "s3://b/o"})


def expr(step, output):
    return step.properties.ProcessingOutputConfig.Outputs[output].S3Output.S3Uri.expr


def test_logical_name_beats_alias_beats_keywords(config, s3, pipeline_session):
    by_name = upstream(config, pipeline_session, "Other", "predictions", job_type="a")
    by_alias = upstream(config, pipeline_session, "Other", "scores", {"scores": ["predictions"]}, job_type="b")
    by_keyword = upstream(config, pipeline_session, "Inference", "eval_output", job_type="c")
    for dependencies, winner, output in (
        ([by_keyword, by_alias, by_name], by_name, "predictions"),
        ([by_keyword, by_alias], by_alias, "scores"),
        ([by_keyword], by_keyword, "eval_output"),
    ):
        step = build(config, SELECT, pipeline_session, dependencies=dependencies)
        assert source_of(step, "predictions").expr == expr(winner, output)


def test_keywords_count_only_for_compatible_sources(config, pipeline_session):
    stranger = upstream(config, pipeline_session, "Stranger", "eval_output")
    with pytest.raises(ValueError, match="Select needs input 'predictions'"):
        build(config, SELECT, pipeline_session, dependencies=[stranger])


def test_steps_without_a_spec_are_ignored(config, pipeline_session):
    step = upstream(config, pipeline_session, "Other", "predictions")
    delattr(step, "_spec")
    with pytest.raises(ValueError, match="Select needs input 'predictions'"):
        build(config, SELECT, pipeline_session, dependencies=[step])


def test_equal_candidates_are_an_error_unless_the_input_is_explicit(config, s3, pipeline_session):
    first = upstream(config, pipeline_session, "Other", "predictions", job_type="a")
    second = upstream(config, pipeline_session, "Other", "predictions", job_type="b")
    with pytest.raises(ValueError, match=r"'predictions' could come from any of Other-a.predictions, Other-b.predictions"):
        build(config, SELECT, pipeline_session, dependencies=[first, second])
    step = build(config, SELECT, pipeline_session, dependencies=[first, second], inputs={"predictions": "s3://b/x"})
    assert source_of(step, "predictions") == "s3://b/x"
    assert [dependency.name for dependency in step.depends_on] == ["Other-a", "Other-b"]


def test_explicit_input_wins_over_a_resolved_one(config, s3, pipeline_session):
    resolvable = upstream(config, pipeline_session, "Other", "predictions")
    step = build(config, SELECT, pipeline_session, dependencies=[resolvable], inputs={"predictions": "s3://b/x"})
    assert source_of(step, "predictions") == "s3://b/x"


def test_a_plain_session_is_refused(config):
    builder = Builder(config, SELECT, sagemaker_session=object())
    with pytest.raises(TypeError, match="sagemaker_session must be a PipelineSession"):
        builder.create_step(inputs={"predictions": "s3://b/p"})


def test_missing_script_names_the_config_fields(config, pipeline_session):
    config.processing_entry_point = "absent.py"
    with pytest.raises(ValueError, match="absent.py does not exist; check processing_source_dir and processing_entry_point"):
        build(config, SELECT, pipeline_session, inputs={"predictions": "s3://b/p"})


class ShardingBuilder(Builder):
    """What a sharded step's builder overrides: its input split across instances, their count a parameter."""

    def input_distribution(self, logical_name):
        return sdk.SHARDED_BY_S3_KEY

    def instance_count(self):
        return sdk.ParameterInteger(name="ShardCount", default_value=3)


def test_builders_choose_the_input_distribution_and_the_instance_count(config, s3, pipeline_session):
    plain = request(build(config, SELECT, pipeline_session, inputs={"predictions": "s3://b/p"}))
    sharded = request(ShardingBuilder(config, SELECT, sagemaker_session=pipeline_session).create_step(
        inputs={"predictions": "s3://b/p"}))
    for arguments, distribution in ((plain, "FullyReplicated"), (sharded, "ShardedByS3Key")):
        (data_input,) = [item for item in arguments["ProcessingInputs"] if item["InputName"] == "predictions"]
        assert data_input["S3Input"]["S3DataDistributionType"] == distribution
    assert plain["ProcessingResources"]["ClusterConfig"]["InstanceCount"] == 1
    assert sharded["ProcessingResources"]["ClusterConfig"]["InstanceCount"].expr == {"Get": "Parameters.ShardCount"}


def test_explicit_only_inputs_are_never_resolved_from_dependencies(config, s3, pipeline_session):
    spec = StepSpecification(
        step_type="Select", node_type=NodeType.INTERNAL,
        script_contract=SELECT.script_contract.model_copy(update={"expected_input_paths": {
            "predictions": "/opt/ml/processing/input/predictions", "last": "/opt/ml/processing/input/last"}}),
        dependencies={**SELECT.dependencies, "last": DependencySpec(
            logical_name="last", dependency_type=DependencyType.PROCESSING_OUTPUT, required=False,
            explicit_only=True)},
        outputs=SELECT.outputs,
    )
    # The upstream step offers an output of the very same name: still not wired.
    offers_both = build(config, make_spec("Other", inputs=[], outputs=["predictions", "last"]), pipeline_session)
    step = build(config, spec, pipeline_session, dependencies=[offers_both])
    assert {item["InputName"] for item in request(step)["ProcessingInputs"]} == {"predictions", "code"}
    step = build(config, spec, pipeline_session, dependencies=[offers_both], inputs={"last": "s3://b/last"})
    assert source_of(step, "last") == "s3://b/last"


def test_caching_is_off_unless_asked_for(config, s3, pipeline_session):
    assert build(config, SELECT, pipeline_session, inputs={"predictions": "s3://b/p"}).cache_config.enable_caching is False
    step = build(config, SELECT, pipeline_session, inputs={"predictions": "s3://b/p"}, enable_caching=True)
    assert step.cache_config.enable_caching is True
