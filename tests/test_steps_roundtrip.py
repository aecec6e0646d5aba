"""Every config value reaches the script through the builder's environment and parses back unchanged."""

import argparse
import json

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sagemaker_fixtures import BASE_FIELDS

from active_sampling.scripts import active_sample_selection as script
from active_sampling.steps import ActiveSampleSelectionConfig
from active_sampling.steps.builder import ActiveSampleSelectionStepBuilder

pytestmark = pytest.mark.sdk

USE_CASE_STRATEGIES = {
    "ssl": script.SSL_STRATEGIES,
    "active_learning": script.ACTIVE_LEARNING_STRATEGIES,
    "auto": script.STRATEGIES,
}
COLUMN_NAMES = st.from_regex(r"[A-Za-z_][A-Za-z0-9_ .-]{0,12}", fullmatch=True)
LABEL_STUDIO_NAMES = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,12}", fullmatch=True)


def value_strategy(var):
    if var.kind == "choice":
        values = st.sampled_from(var.choices)
    elif var.kind == "int":
        upper = int(var.maximum) if var.maximum is not None else 10**9
        values = st.integers(int(var.minimum), upper)
    elif var.kind == "float":
        values = st.floats(var.minimum, var.maximum, allow_nan=False, allow_infinity=False)
    else:
        values = COLUMN_NAMES
    return st.one_of(st.none(), values) if var.default == "" else values


@st.composite
def selection_values(draw):
    values = {var.field: draw(value_strategy(var)) for var in script.ENV_VARS}
    values["selection_strategy"] = draw(st.sampled_from(USE_CASE_STRATEGIES[values["use_case"]]))
    # Labeling tasks go with active-learning strategies and need the column annotators see.
    if values["labeling_format"] == "none" or values["selection_strategy"] in script.SSL_STRATEGIES:
        values.update(labeling_format="none", labeling_data_field=None)
    else:
        values["labeling_data_field"] = draw(LABEL_STUDIO_NAMES)
        if values["id_field"] in script.GROUND_TRUTH_SOURCE_KEYS:
            values["id_field"] = "id"
    return values


# Settings a strategy reads take its own default when unset (the hybrid: kmeans behind beta = 3).
STRATEGY_DEFAULTS = {"diversity": {"diversity_method": "kcenter", "uncertainty_prefilter": 0},
                     "hybrid": {"diversity_method": "kmeans", "uncertainty_prefilter": 3}}


def typed_values(config):
    values = {var.field: getattr(config, var.field) for var in script.ENV_VARS}
    for field, default in STRATEGY_DEFAULTS.get(config.selection_strategy, {}).items():
        values[field] = default if values[field] is None else values[field]
    return values


def environment_of(config):
    return ActiveSampleSelectionStepBuilder(config).environment_variables()


@settings(max_examples=300, deadline=None)
@given(selection_values())
def test_any_valid_config_parses_back_to_the_same_values(values):
    config = ActiveSampleSelectionConfig(**BASE_FIELDS, **values)
    environment = environment_of(config)
    assert "None" not in environment.values()
    assert script.parse_environment(environment)._asdict() == typed_values(config)


def prediction_table(rows=200, classes=3, dims=4, seed=0):
    rng = np.random.default_rng(seed)
    logits = rng.normal(scale=3.0, size=(rows, classes))
    probabilities = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    table = pd.DataFrame({"record_id": [f"r{i:04d}" for i in range(rows)]})
    for k in range(classes):
        table[f"p_{k}"] = probabilities[:, k]
    for d in range(dims):
        table[f"vec_{d}"] = rng.normal(size=rows)
    table["gold"] = [str(i % classes) if i % 10 == 0 else None for i in range(rows)]
    return table


NON_DEFAULT = dict(
    use_case="auto",
    id_field="record_id",
    label_field="gold",
    score_field_prefix="p_",
    embedding_field_prefix="vec_",
    random_seed=7,
    confidence_threshold=0.65,
    max_samples=11,
    k_per_class=5,
    uncertainty_mode="entropy",
    batch_size=9,
    metric="cosine",
)


@pytest.mark.parametrize("strategy, output_format", [
    ("confidence_threshold", "parquet"),
    ("top_k_per_class", "tsv"),
    ("uncertainty", "csv"),
    ("diversity", "parquet"),
    ("badge", "csv"),
])
def test_main_run_with_the_builder_environment_reports_the_config_values(tmp_path, strategy, output_format):
    config = ActiveSampleSelectionConfig(**BASE_FIELDS, **NON_DEFAULT, selection_strategy=strategy,
                                         output_format=output_format, job_type="round_trip")
    builder = ActiveSampleSelectionStepBuilder(config)
    input_dir = tmp_path / script.INPUT_CHANNEL
    input_dir.mkdir()
    prediction_table().to_csv(input_dir / "predictions.csv", index=False)
    outputs = {name: str(tmp_path / name) for name in (script.SAMPLES_CHANNEL, script.METADATA_CHANNEL)}
    job_args = argparse.Namespace(**builder.argument_values())

    metadata = script.main({script.INPUT_CHANNEL: str(input_dir)}, outputs, builder.environment_variables(), job_args)

    written = json.loads((tmp_path / script.METADATA_CHANNEL / script.METADATA_FILENAME).read_text())
    typed = typed_values(config)
    assert metadata["config"] == written["config"] == {field: typed[field] for field in metadata["config"]}
    assert set(script.strategy_for(strategy).reads) <= set(metadata["config"])  # only these are strategy-specific
    assert (metadata["strategy"], metadata["job_type"]) == (strategy, "round_trip")
    assert metadata["output_file"] == f"selected_samples.{output_format}"
    assert 0 < metadata["selected_count"] <= 15
