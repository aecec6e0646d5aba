import pytest
from pydantic import ValidationError
from sagemaker_fixtures import BASE_FIELDS

from active_sampling.scripts import active_sample_selection as script
from active_sampling.steps import ActiveSampleSelectionConfig


def config(**overrides):
    fields = {**BASE_FIELDS, "selection_strategy": "confidence_threshold", **overrides}
    return ActiveSampleSelectionConfig(**fields)


def error_text(**overrides):
    with pytest.raises(ValidationError) as caught:
        config(**overrides)
    return str(caught.value)


def test_unknown_strategy_names_the_field_and_the_choices():
    text = error_text(selection_strategy="random")
    assert "selection_strategy" in text
    assert all(f"'{name}'" in text for name in script.STRATEGIES)


def test_threshold_out_of_range_names_the_field_and_the_limit():
    text = error_text(confidence_threshold=1.5)
    assert "confidence_threshold" in text and "less than or equal to 1" in text
    assert "greater than or equal to 0.5" in error_text(confidence_threshold=0.2)


@pytest.mark.parametrize("strategy", script.ACTIVE_LEARNING_STRATEGIES)
def test_ssl_refuses_active_learning_strategies(strategy):
    text = error_text(selection_strategy=strategy, use_case="ssl")
    assert f"selection_strategy={strategy} is not allowed with use_case=ssl" in text
    assert "use one of confidence_threshold, top_k_per_class, precision_target (or use_case=auto)" in text


@pytest.mark.parametrize("strategy", script.SSL_STRATEGIES)
def test_active_learning_refuses_ssl_strategies(strategy):
    text = error_text(selection_strategy=strategy, use_case="active_learning")
    assert f"selection_strategy={strategy} is not allowed with use_case=active_learning" in text
    assert "use one of uncertainty, diversity, badge" in text


@pytest.mark.parametrize("use_case, strategies", [
    ("ssl", script.SSL_STRATEGIES),
    ("active_learning", script.ACTIVE_LEARNING_STRATEGIES),
    ("auto", script.STRATEGIES),
])
def test_fitting_strategies_are_accepted(use_case, strategies):
    for strategy in strategies:
        # label_field: label_review needs it; committee_prefixes: read only by the strategies with members.
        accepted = config(selection_strategy=strategy, use_case=use_case, label_field="label",
                          committee_prefixes="m0_,m1_")
        assert accepted.selection_strategy == strategy


def test_label_review_needs_the_label_field():
    text = error_text(selection_strategy="label_review")
    assert "label_field=<column>" in text and "LABEL_FIELD" not in text
    assert config(selection_strategy="label_review", label_field="label").review_method == "confident_learning"


def test_missing_essential_fields_are_named():
    with pytest.raises(ValidationError) as caught:
        ActiveSampleSelectionConfig(use_case="ssl")
    missing = [error["loc"][0] for error in caught.value.errors()]
    assert missing == [*BASE_FIELDS, "selection_strategy"]
    assert "Field required: pass selection_strategy=... (Selection strategy)" in str(caught.value)


def test_a_bad_value_found_on_assignment_is_refused():
    made = config()
    with pytest.raises(ValidationError, match="batch_size"):
        made.batch_size = 0


def test_blank_optional_text_means_unset():
    made = config(label_field="", score_field="  ", output_format="")
    assert (made.label_field, made.score_field, made.output_format) == (None, None, None)


def test_blank_column_names_are_refused():
    assert "id_field" in error_text(id_field="   ")
    assert "must name a column" in error_text(embedding_field_prefix=" ")


def test_job_type_follows_the_use_case_of_the_strategy_unless_set():
    assert config().effective_job_type == "ssl_selection"
    assert config(selection_strategy="badge").effective_job_type == "active_learning_selection"
    assert config(job_type="round_3").effective_job_type == "round_3"
    assert "job_type" in error_text(job_type="round 3")


def test_script_path_is_the_packaged_script_by_default(tmp_path):
    assert config().script_path == script.__file__
    assert config(processing_source_dir=str(tmp_path)).script_path == str(tmp_path / "active_sample_selection.py")


def test_defaults_are_what_the_script_uses_when_a_variable_is_unset():
    required = {var.name: var.choices[0] for var in script.ENV_VARS if var.required}
    script_defaults = script.parse_environment(required)._asdict()
    made = config(selection_strategy=required["SELECTION_STRATEGY"])
    assert {field: getattr(made, field) for field in script_defaults} == script_defaults


def test_framework_and_instance_defaults():
    made = config()
    assert made.processing_framework_version == "1.2-1"
    assert made.effective_instance_type == "ml.m5.2xlarge"
