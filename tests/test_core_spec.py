from types import SimpleNamespace

import pytest
from pydantic import ValidationError

from active_sampling.core import (
    DependencySpec,
    DependencyType,
    NodeType,
    OutputSpec,
    ScriptContract,
    StepSpecification,
    processing_output_property_path,
)
from active_sampling.core.spec import resolve_property_path

CONTRACT = ScriptContract(
    entry_point="score.py",
    expected_input_paths={"data": "/opt/ml/processing/input/data"},
    expected_output_paths={"result": "/opt/ml/processing/output/result"},
)


def dependency(name="data"):
    return DependencySpec(logical_name=name, dependency_type=DependencyType.PROCESSING_OUTPUT)


def output(name="result", aliases=()):
    return OutputSpec(logical_name=name, output_type=DependencyType.PROCESSING_OUTPUT,
                      property_path=processing_output_property_path(name), aliases=list(aliases))


def spec(node_type=NodeType.INTERNAL, dependencies=None, outputs=None, contract=CONTRACT):
    return StepSpecification(
        step_type="Score",
        node_type=node_type,
        dependencies={"data": dependency()} if dependencies is None else dependencies,
        outputs={"result": output()} if outputs is None else outputs,
        script_contract=contract,
    )


def test_property_path_of_a_processing_output():
    assert processing_output_property_path("x") == "properties.ProcessingOutputConfig.Outputs['x'].S3Output.S3Uri"


def test_a_processing_output_must_use_its_own_property_path():
    with pytest.raises(ValidationError, match=r"must use 'properties.ProcessingOutputConfig.Outputs\['result'\]"):
        OutputSpec(logical_name="result", output_type=DependencyType.PROCESSING_OUTPUT,
                   property_path=processing_output_property_path("other"))


@pytest.mark.parametrize("node_type, dependencies, outputs, message", [
    (NodeType.SOURCE, None, None, "node_type source, so it cannot have dependencies"),
    (NodeType.SINK, None, None, "node_type sink, so it cannot have outputs"),
    (NodeType.INTERNAL, {}, None, "node_type internal, so it must have dependencies"),
    (NodeType.INTERNAL, None, {}, "node_type internal, so it must have outputs"),
    (NodeType.SINGULAR, None, {}, "node_type singular, so it cannot have dependencies"),
])
def test_node_type_must_agree_with_dependencies_and_outputs(node_type, dependencies, outputs, message):
    with pytest.raises(ValidationError, match=message):
        spec(node_type, dependencies, outputs, contract=None)


def test_source_and_sink_steps_are_accepted_when_consistent():
    assert spec(NodeType.SOURCE, dependencies={}, contract=None).node_type is NodeType.SOURCE
    assert spec(NodeType.SINK, outputs={}, contract=None).node_type is NodeType.SINK


def test_dictionary_key_must_equal_logical_name():
    with pytest.raises(ValidationError, match="dependency key 'input' differs from its logical_name 'data'"):
        spec(dependencies={"input": dependency()}, contract=None)


def test_spec_and_contract_must_name_the_same_channels():
    with pytest.raises(ValidationError, match=r"only in spec: \['extra'\]"):
        spec(outputs={"result": output(), "extra": output("extra")})
    with pytest.raises(ValidationError, match=r"input channels \['other'\] differ .* only in contract: \['data'\]"):
        spec(dependencies={"other": dependency("other")})


def test_an_alias_cannot_point_at_two_outputs():
    outputs = {"result": output(aliases=["shared"]), "extra": output("extra", aliases=["shared"])}
    with pytest.raises(ValidationError, match="name 'shared' is claimed by outputs 'result' and 'extra'"):
        spec(outputs=outputs, contract=None)


def test_resolve_property_path_follows_attributes_and_keys():
    step = SimpleNamespace(properties=SimpleNamespace(
        ProcessingOutputConfig=SimpleNamespace(Outputs={"result": SimpleNamespace(S3Output=SimpleNamespace(S3Uri="s3://b/k"))})
    ))
    assert resolve_property_path(step, processing_output_property_path("result")) == "s3://b/k"
    with pytest.raises(KeyError):
        resolve_property_path(step, processing_output_property_path("missing"))
