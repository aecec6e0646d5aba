"""Step specifications: the logical inputs a step needs and the outputs it offers to later steps."""

import re
from enum import Enum
from typing import Dict, List, Optional

from pydantic import BaseModel, ConfigDict, Field, model_validator

from .contract import ScriptContract


class DependencyType(str, Enum):
    PROCESSING_OUTPUT = "processing_output"
    TRAINING_DATA = "training_data"
    MODEL_ARTIFACTS = "model_artifacts"
    HYPERPARAMETERS = "hyperparameters"
    CUSTOM_PROPERTY = "custom_property"


class NodeType(str, Enum):
    """Where a step may sit in the DAG: what it must consume and what it must produce."""

    SOURCE = "source"  # outputs only
    INTERNAL = "internal"  # dependencies and outputs
    SINK = "sink"  # dependencies only
    SINGULAR = "singular"  # neither


_NEEDS_DEPENDENCIES = {NodeType.INTERNAL: True, NodeType.SINK: True, NodeType.SOURCE: False, NodeType.SINGULAR: False}
_NEEDS_OUTPUTS = {NodeType.INTERNAL: True, NodeType.SOURCE: True, NodeType.SINK: False, NodeType.SINGULAR: False}

_LOGICAL_NAME = r"^[A-Za-z][A-Za-z0-9_]*$"


def processing_output_property_path(logical_name: str) -> str:
    """The property path under which a ProcessingStep exposes the S3 URI of one output."""
    return f"properties.ProcessingOutputConfig.Outputs['{logical_name}'].S3Output.S3Uri"


class DependencySpec(BaseModel):
    """One input a step needs, and how to recognise an upstream output that can provide it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    logical_name: str = Field(..., pattern=_LOGICAL_NAME, description="Channel name of the input.")
    dependency_type: DependencyType = Field(..., description="Kind of value the input takes.")
    required: bool = Field(True, description="Whether the step cannot run without it.")
    explicit_only: bool = Field(
        False,
        description="Never resolved from upstream steps' outputs: only an explicit inputs= entry sets it "
                    "(an optional input whose value no upstream step of this execution can give, e.g. last "
                    "round's predictions).",
    )
    compatible_sources: List[str] = Field(
        default_factory=list, description="Step types whose outputs may feed this input."
    )
    semantic_keywords: List[str] = Field(
        default_factory=list, description="Words that, in an output's name or aliases, suggest it fits."
    )
    data_type: str = Field("S3Uri", description="Type of the value, e.g. S3Uri.")
    description: str = Field("", description="What the input holds.")


class OutputSpec(BaseModel):
    """One output a step offers, where to find it on the step and the other names it answers to."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    logical_name: str = Field(..., pattern=_LOGICAL_NAME, description="Channel name of the output.")
    output_type: DependencyType = Field(..., description="Kind of value the output is.")
    property_path: str = Field(..., description="Path of the value on the step, starting at 'properties'.")
    aliases: List[str] = Field(default_factory=list, description="Other logical names this output answers to.")
    data_type: str = Field("S3Uri", description="Type of the value, e.g. S3Uri.")
    description: str = Field("", description="What the output holds.")

    @model_validator(mode="after")
    def _property_path_names_this_output(self) -> "OutputSpec":
        if self.output_type is DependencyType.PROCESSING_OUTPUT:
            expected = processing_output_property_path(self.logical_name)
            if self.property_path != expected:
                raise ValueError(
                    f"output '{self.logical_name}' has property_path '{self.property_path}'; "
                    f"a processing output must use '{expected}'"
                )
        elif not self.property_path.startswith("properties."):
            raise ValueError(
                f"output '{self.logical_name}' has property_path '{self.property_path}'; "
                "it must start with 'properties.'"
            )
        return self

    @property
    def names(self) -> List[str]:
        """The logical name followed by the aliases: every name an input may ask for."""
        return [self.logical_name, *self.aliases]


class StepSpecification(BaseModel):
    """Dependencies and outputs of one step type, checked against its node type and script contract."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    step_type: str = Field(..., pattern=r"^[A-Za-z][A-Za-z0-9]*$", description="Step type name, e.g. ActiveSampleSelection.")
    node_type: NodeType = Field(..., description="Place of the step in a DAG.")
    dependencies: Dict[str, DependencySpec] = Field(default_factory=dict, description="Inputs by logical name.")
    outputs: Dict[str, OutputSpec] = Field(default_factory=dict, description="Outputs by logical name.")
    script_contract: Optional[ScriptContract] = Field(None, description="Contract of the step's script.")

    @model_validator(mode="after")
    def _keys_are_logical_names(self) -> "StepSpecification":
        for kind, items in (("dependency", self.dependencies), ("output", self.outputs)):
            for key, item in items.items():
                if key != item.logical_name:
                    raise ValueError(f"{kind} key '{key}' differs from its logical_name '{item.logical_name}'")
        return self

    @model_validator(mode="after")
    def _node_type_agrees(self) -> "StepSpecification":
        for needs, present, what in (
            (_NEEDS_DEPENDENCIES[self.node_type], bool(self.dependencies), "dependencies"),
            (_NEEDS_OUTPUTS[self.node_type], bool(self.outputs), "outputs"),
        ):
            if needs != present:
                must = "must have" if needs else "cannot have"
                raise ValueError(f"{self.step_type} has node_type {self.node_type.value}, so it {must} {what}")
        return self

    @model_validator(mode="after")
    def _aliases_unambiguous(self) -> "StepSpecification":
        seen: Dict[str, str] = {}
        for output in self.outputs.values():
            for name in output.names:
                if name in seen and seen[name] != output.logical_name:
                    raise ValueError(
                        f"name '{name}' is claimed by outputs '{seen[name]}' and '{output.logical_name}'"
                    )
                seen[name] = output.logical_name
        return self

    @model_validator(mode="after")
    def _channels_match_contract(self) -> "StepSpecification":
        for problem in contract_mismatches(self):
            raise ValueError(problem)
        return self


def contract_mismatches(spec: StepSpecification) -> List[str]:
    """Differences between the channels a specification declares and those its contract maps to paths."""
    contract = spec.script_contract
    if contract is None:
        return []
    problems = []
    for kind, declared, mapped in (
        ("input", set(spec.dependencies), set(contract.expected_input_paths)),
        ("output", set(spec.outputs), set(contract.expected_output_paths)),
    ):
        if declared != mapped:
            problems.append(
                f"{spec.step_type}: the specification's {kind} channels {sorted(declared)} differ from the "
                f"contract's {sorted(mapped)} (only in spec: {sorted(declared - mapped)}, "
                f"only in contract: {sorted(mapped - declared)})"
            )
    return problems


_PATH_TOKEN = re.compile(r"\.?([A-Za-z_][A-Za-z0-9_]*)|\[\s*['\"]([^'\"]+)['\"]\s*\]")


def resolve_property_path(step, property_path: str):
    """Follow a path such as ``properties.ProcessingOutputConfig.Outputs['x'].S3Output.S3Uri`` on a step."""
    value = step
    position = 0
    while position < len(property_path):
        match = _PATH_TOKEN.match(property_path, position)
        if match is None:
            raise ValueError(f"cannot parse property path '{property_path}' at position {position}")
        attribute, key = match.groups()
        value = getattr(value, attribute) if attribute is not None else value[key]
        position = match.end()
    return value
