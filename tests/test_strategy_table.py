"""Every row of the script's STRATEGY_TABLE reaches the step's config, its environment and the docs.

tests/script/test_seed_api.py walks the same table from the environment through the sampler to the output;
this file covers the package side (pydantic config, builder environment) and the documentation.
"""

import re
from pathlib import Path

import pytest
from sagemaker_fixtures import BASE_FIELDS

from active_sampling.scripts import active_sample_selection as script
from active_sampling.steps import ActiveSampleSelectionConfig
from active_sampling.steps.builder import ActiveSampleSelectionStepBuilder

pytestmark = pytest.mark.sdk

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
CONFIG_DOC = (ROOT / "docs" / "config.md").read_text()
VARS_BY_FIELD = {var.field: var for var in script.ENV_VARS}


def readme_table_row(first_cell):
    rows = [line for line in README.splitlines() if line.startswith("| {} |".format(first_cell))]
    assert len(rows) == 1, first_cell
    return rows[0]


@pytest.mark.parametrize("row", script.STRATEGY_TABLE, ids=lambda row: row.name)
def test_the_step_config_accepts_the_strategy_and_forwards_its_settings(row):
    # label_review needs label_field; committee_prefixes is read only by the rows that need members.
    config = ActiveSampleSelectionConfig(**BASE_FIELDS, selection_strategy=row.name, use_case=row.use_case,
                                         label_field="label", committee_prefixes="m0_prob_class_,m1_prob_class_")
    environment = ActiveSampleSelectionStepBuilder(config).environment_variables()
    parsed = script.parse_environment(environment)
    assert script.make_sampler(parsed).__class__ is row.sampler
    for field in row.reads:
        assert field in ActiveSampleSelectionConfig.model_fields, field
        value = getattr(config, field)  # None: unset, the strategy's own default (test_hybrid.py)
        assert value is None or getattr(parsed, field) == value, field


@pytest.mark.parametrize("row", script.STRATEGY_TABLE, ids=lambda row: row.name)
def test_the_docs_describe_the_strategy_and_its_settings(row):
    strategy_row = readme_table_row("`{}`".format(row.name))
    assert strategy_row.count("|") >= 3  # | strategy | what it selects |
    for field in row.reads:
        var = VARS_BY_FIELD[field]
        env_row = readme_table_row("`{}`".format(var.name))
        assert re.search(r"\b{}\b".format(row.name), env_row, flags=re.IGNORECASE), (var.name, row.name)
        assert "`{}`".format(field) in CONFIG_DOC and "`{}`".format(var.name) in CONFIG_DOC
