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
from active_sampling.steps.config import settings_model
from active_sampling.steps.contract import script_contract
from active_sampling.steps.docs import render_config_reference

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


class NewSettings(typing.NamedTuple):
    """Settings a developer adds to the script's SelectionConfig, declared once each."""

    knob_count: typing.Annotated[int, script.EnvVar("KNOB_COUNT", "3", "How many knobs.", minimum=1, maximum=9)]
    knob_mode: typing.Annotated[typing.Optional[str], script.EnvVar("KNOB_MODE", "", "Which knob.",
                                                                    choices=("soft", "hard"))]


def test_a_setting_declared_in_the_script_reaches_the_config_contract_and_docs():
    env_vars = script.ENV_VARS + script.declared_env_vars(NewSettings)
    model = settings_model(env_vars)
    count, mode = model.model_fields["knob_count"], model.model_fields["knob_mode"]
    assert (count.annotation, count.default, count.description) == (int, 3, "How many knobs.")
    assert count.json_schema_extra == {"env_var": "KNOB_COUNT"}
    assert [item.ge for item in count.metadata if isinstance(item, Ge)] == [1]
    assert [item.le for item in count.metadata if isinstance(item, Le)] == [9]
    assert mode.annotation == typing.Optional[typing.Literal["soft", "hard"]] and mode.default is None
    made = model(**BASE_FIELDS, selection_strategy="badge", knob_count=9, knob_mode=" ")
    assert (made.knob_count, made.knob_mode) == (9, None)  # blank optional text means unset, as for every setting
    with pytest.raises(ValueError, match="knob_count"):
        model(**BASE_FIELDS, selection_strategy="badge", knob_count=10)

    contract = script_contract(env_vars)
    assert (contract.optional_env_vars["KNOB_COUNT"], contract.optional_env_vars["KNOB_MODE"]) == ("3", "")
    text = render_config_reference(model, contract)
    assert "| `knob_count` | int | `3` | >= 1, <= 9 | `KNOB_COUNT` | How many knobs. |" in text
    assert "| `knob_mode` | `soft` \\| `hard` or None | `None` |  | `KNOB_MODE` | Which knob. |" in text
    assert "| `KNOB_COUNT` | no | `3` |" in text and "| `KNOB_MODE` | no | unset |" in text


def test_each_cross_field_rule_of_the_script_is_a_config_validator(monkeypatch):
    def small_batches_only(config):
        if config.batch_size > 100:
            raise script.SelectionError(f"BATCH_SIZE={config.batch_size} is too large here")

    monkeypatch.setattr(script, "SETTING_RULES", script.SETTING_RULES + (small_batches_only,))
    model = settings_model()
    assert "_small_batches_only" in model.__pydantic_decorators__.model_validators
    assert model(**BASE_FIELDS, selection_strategy="badge", batch_size=100).batch_size == 100
    with pytest.raises(ValueError, match="batch_size=101 is too large here"):  # in config terms
        model(**BASE_FIELDS, selection_strategy="badge", batch_size=101)


def test_the_config_gives_the_scripts_typed_config_without_text():
    config = ActiveSampleSelectionConfig(**BASE_FIELDS, selection_strategy="hybrid", batch_size=12,
                                         label_field="none", confidence_threshold=0.625)
    typed = config.selection_config
    assert typed == script.parse_environment(ActiveSampleSelectionStepBuilder(config).environment_variables())
    assert (typed.batch_size, typed.label_field, typed.diversity_method, typed.uncertainty_prefilter) == (
        12, "", "kmeans", 3)


def test_a_shard_builder_is_built_with_its_shard_count():
    shard = builder().with_role("shard", 4)
    assert (shard.shard_count, shard.instance_count(), shard.config.selection_role) == (4, 4, "shard")
    merge = builder().with_role("merge")
    assert (merge.shard_count, merge.instance_count(), merge.config.selection_role) == (None, 1, "merge")
