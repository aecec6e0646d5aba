"""Each setting is declared once, in the annotation of its SelectionConfig field; the environment and Python
values are parsed from that declaration, and the cross-field rules are one list."""

from typing import Annotated, NamedTuple, Optional

import numpy as np
import pytest

from conftest import prediction_table, script_module as script


class Declared(NamedTuple):
    count: Annotated[int, script.EnvVar("COUNT", "3", "How many.", minimum=1, maximum=9)]
    share: Annotated[Optional[float], script.EnvVar("SHARE", "", "Which share.", minimum=0.0, maximum=1.0)]
    mode: Annotated[str, script.EnvVar("MODE", "soft", "Which mode.", choices=("soft", "hard"))]
    late: Annotated[Optional[str], script.EnvVar("LATE", "", "Choices of a later table.", choices=lambda: ("a", "b"))]
    column: Annotated[str, script.EnvVar("COLUMN", None, "A column.")]


def test_each_field_declares_its_variable_and_its_kind_follows_from_the_annotation():
    declared = script.declared_env_vars(Declared)
    assert [(var.name, var.field, var.kind, var.default, var.choices) for var in declared] == [
        ("COUNT", "count", "int", "3", ()),
        ("SHARE", "share", "float", "", ()),
        ("MODE", "mode", "choice", "soft", ("soft", "hard")),
        ("LATE", "late", "choice", "", ("a", "b")),
        ("COLUMN", "column", "str", None, ()),
    ]
    assert [var.required for var in declared] == [False, False, False, False, True]


def test_env_vars_are_the_selection_config_fields_in_order():
    assert tuple(var.field for var in script.ENV_VARS) == script.SelectionConfig._fields


def _config(**values):
    return script.config_from_values(dict(selection_strategy="uncertainty", **values))


def test_python_values_are_taken_as_they_are_not_through_text():
    threshold = np.float32(0.7)  # its text, "0.7", is another number
    config = _config(confidence_threshold=threshold, k_per_class=np.int64(5), stop_agreement=1)
    assert config.confidence_threshold == float(threshold) != 0.7
    assert (config.k_per_class, type(config.k_per_class)) == (5, int)
    assert (config.stop_agreement, type(config.stop_agreement)) == (1.0, float)


@pytest.mark.parametrize("field, value, message", [
    ("k_per_class", 5.0, "K_PER_CLASS=5.0 is not valid: expected an integer >= 1"),
    ("batch_size", True, "BATCH_SIZE=True is not valid: expected an integer >= 1"),
    ("batch_size", 0, "BATCH_SIZE=0 is out of range: expected an integer >= 1"),
    ("confidence_threshold", float("nan"), "CONFIDENCE_THRESHOLD=nan is out of range: expected a number from 0.5 to 1"),
    ("stop_agreement", 10**400, "STOP_AGREEMENT={} is out of range: expected a number from 0 to 1".format(10**400)),
    ("metric", "manhattan", "METRIC='manhattan' is not allowed: expected one of euclidean, cosine"),
])
def test_python_values_are_checked_as_the_environment_is(field, value, message):
    with pytest.raises(script.SelectionError) as caught:
        _config(**{field: value})
    assert str(caught.value) == message


def test_text_values_parse_as_in_the_environment():
    text = {"BATCH_SIZE": "7", "METRIC": " Cosine ", "CONFIDENCE_THRESHOLD": "0.75", "LABEL_FIELD": "none",
            "SCORE_FIELD": "  ", "SELECTION_STRATEGY": "hybrid"}
    from_env = script.parse_environment(text)
    from_values = script.config_from_values({script.ENV_VARS_BY_NAME[name].field: value for name, value in text.items()})
    assert from_env == from_values
    assert (from_env.batch_size, from_env.metric, from_env.label_field, from_env.score_field) == (7, "cosine", "", None)
    assert (from_env.diversity_method, from_env.uncertainty_prefilter) == ("kmeans", 3)  # hybrid's own defaults


def test_a_rule_added_to_setting_rules_checks_every_config(monkeypatch):
    def small_batches_only(config):
        if config.batch_size > 100:
            raise script.SelectionError("BATCH_SIZE={} is too large here".format(config.batch_size))

    monkeypatch.setattr(script, "SETTING_RULES", script.SETTING_RULES + (small_batches_only,))
    assert script.parse_environment({"SELECTION_STRATEGY": "uncertainty", "BATCH_SIZE": "100"}).batch_size == 100
    with pytest.raises(script.SelectionError, match="BATCH_SIZE=101 is too large here"):
        script.parse_environment({"SELECTION_STRATEGY": "uncertainty", "BATCH_SIZE": "101"})
    with pytest.raises(script.SelectionError, match="BATCH_SIZE=101 is too large here"):
        script.select_samples(prediction_table(n=5), "uncertainty", 101)
