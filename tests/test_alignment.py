"""The script, its contract, the step spec, the config and the builder must describe the same interface.

Each test compares two sides directly, so changing one (a new env var, a renamed channel, a new
choice) without the other fails here.
"""

import argparse
import typing
from pathlib import Path

import pandas as pd
import pytest
from annotated_types import Ge, Le
from sagemaker_fixtures import BASE_FIELDS

from active_sampling.core import contract_mismatches
from active_sampling.scripts import active_sample_selection as script
from active_sampling.steps import (
    ACTIVE_SAMPLE_SELECTION_CONTRACT as CONTRACT,
    ACTIVE_SAMPLE_SELECTION_SPEC as SPEC,
    ActiveSampleSelectionConfig,
)
from active_sampling.steps.builder import ActiveSampleSelectionStepBuilder

pytestmark = pytest.mark.sdk

FIELDS = ActiveSampleSelectionConfig.model_fields
_NONE = type(None)
_KIND_TYPES = {"int": int, "float": float, "str": str}


def builder(**overrides):
    config = ActiveSampleSelectionConfig(**{**BASE_FIELDS, "selection_strategy": "badge", **overrides})
    return ActiveSampleSelectionStepBuilder(config)


def test_contract_env_vars_are_the_scripts():
    assert CONTRACT.required_env_vars == [var.name for var in script.ENV_VARS if var.default is None]
    assert CONTRACT.optional_env_vars == {var.name: var.default for var in script.ENV_VARS if var.default is not None}


def test_contract_paths_entry_point_and_arguments_are_the_scripts():
    assert CONTRACT.expected_input_paths == script.CONTAINER_INPUT_PATHS
    assert CONTRACT.expected_output_paths == script.CONTAINER_OUTPUT_PATHS
    assert CONTRACT.entry_point == Path(script.__file__).name
    assert tuple(CONTRACT.expected_arguments) == script.JOB_ARGUMENTS


def test_script_command_line_offers_the_contract_channels_and_arguments():
    parser = script.build_argument_parser()
    defaults = {action.dest: action.default for action in parser._actions if action.dest != "help"}
    channels = {**CONTRACT.expected_input_paths, **CONTRACT.expected_output_paths}
    assert set(defaults) == set(channels) | set(CONTRACT.expected_arguments)
    assert {name: defaults[name] for name in channels} == channels


def test_main_reads_and_writes_the_contract_channels(tmp_path):
    inputs = {name: tmp_path / name for name in CONTRACT.expected_input_paths}
    outputs = {name: tmp_path / name for name in CONTRACT.expected_output_paths}
    assert set(inputs) == {script.INPUT_CHANNEL, *script.OPTIONAL_INPUT_CHANNELS}
    predictions = pd.DataFrame({"id": [1, 2, 3], "prob_class_0": [0.99, 0.5, 0.02], "prob_class_1": [0.01, 0.5, 0.98],
                                "label": [None, None, None]})
    held_out = pd.DataFrame({"id": [7, 8], "prob_class_0": [0.97, 0.05], "prob_class_1": [0.03, 0.95], "label": [0, 1]})
    for name, input_dir in inputs.items():  # the same table as evaluation_data and as previous_predictions
        input_dir.mkdir()
        (held_out if name == script.CALIBRATION_CHANNEL else predictions).to_csv(input_dir / "predictions.csv",
                                                                                  index=False)
    metadata = script.main({k: str(v) for k, v in inputs.items()}, {k: str(v) for k, v in outputs.items()},
                           {"SELECTION_STRATEGY": "confidence_threshold", "LABEL_FIELD": "label"},
                           argparse.Namespace(job_type="alignment"))
    assert (outputs[script.SAMPLES_CHANNEL] / "selected_samples.csv").is_file()
    assert (outputs[script.METADATA_CHANNEL] / script.METADATA_FILENAME).is_file()
    assert metadata["stopping"]["common_rows"] == 3  # previous_predictions was read
    assert metadata["precision_estimate"]["calibration_rows"] == 2  # and calibration_data


def test_optional_inputs_are_optional_and_explicit_only_in_the_spec():
    for name in script.OPTIONAL_INPUT_CHANNELS:
        assert SPEC.dependencies[name].required is False
        assert SPEC.dependencies[name].explicit_only is True
    assert SPEC.dependencies[script.INPUT_CHANNEL].required is True


def test_spec_channels_are_the_contracts():
    assert SPEC.script_contract is CONTRACT
    assert contract_mismatches(SPEC) == []
    assert set(SPEC.dependencies) == set(CONTRACT.expected_input_paths)
    assert set(SPEC.outputs) == set(CONTRACT.expected_output_paths)


@pytest.mark.parametrize("var", script.ENV_VARS, ids=lambda var: var.name)
def test_config_field_of_each_env_var_matches_its_type_choices_range_and_default(var):
    info = FIELDS[var.field]
    annotation = info.annotation
    optional = _NONE in typing.get_args(annotation)
    assert optional == (var.default == ""), "optional text variables are Optional[...] = None in the config"
    if optional:
        (annotation,) = [arg for arg in typing.get_args(annotation) if arg is not _NONE]
    if var.kind == "choice":
        assert typing.get_origin(annotation) is typing.Literal
        assert typing.get_args(annotation) == var.choices
    else:
        assert annotation is _KIND_TYPES[var.kind]
    bounds = {type(item): item for item in info.metadata if isinstance(item, (Ge, Le))}
    assert (bounds[Ge].ge if Ge in bounds else None) == var.minimum
    assert (bounds[Le].le if Le in bounds else None) == var.maximum
    assert info.is_required() == var.required
    assert info.json_schema_extra == {"env_var": var.name}


def test_config_has_a_field_for_no_other_env_var():
    claimed = {name for name, info in FIELDS.items() if info.json_schema_extra}
    assert claimed == {var.field for var in script.ENV_VARS}


def test_builder_environment_covers_every_required_variable_and_nothing_else():
    environment = builder().environment_variables()
    assert set(CONTRACT.required_env_vars) <= set(environment)
    assert set(environment) <= set(CONTRACT.env_var_names)


def test_builder_sends_every_variable_once_all_values_are_set():
    # EMBEDDING_FIELD and FEATURE_COLUMNS exclude each other: each is set in one of two configs.
    common = dict(label_field="label", score_field="score", output_format="parquet", csv_columns="id,score",
                  labeling_format="label_studio", labeling_data_field="text", diversity_method="kmeans",
                  uncertainty_prefilter=2, committee_prefixes="m0_,m1_")
    with_field = list(builder(embedding_field="embedding", **common).environment_variables())
    with_features = list(builder(feature_columns="f1,f2", **common).environment_variables())
    assert with_field == [var.name for var in script.ENV_VARS if var.name != "FEATURE_COLUMNS"]
    assert with_features == [var.name for var in script.ENV_VARS if var.name != "EMBEDDING_FIELD"]


def test_config_refuses_embedding_field_with_feature_columns():
    with pytest.raises(ValueError, match="both choose the embeddings"):
        builder(embedding_field="embedding", feature_columns="f1")


def test_builder_arguments_are_the_contracts():
    assert list(builder().argument_values()) == list(CONTRACT.expected_arguments)


def test_builder_declares_every_contract_output_once_labeling_tasks_are_asked_for():
    with_tasks = builder(labeling_format="ground_truth", labeling_data_field="text").output_names()
    assert with_tasks == list(CONTRACT.expected_output_paths)
    assert builder().output_names() == [name for name in CONTRACT.expected_output_paths
                                        if name != script.LABELING_CHANNEL]
