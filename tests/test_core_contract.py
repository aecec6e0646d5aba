import pytest
from pydantic import ValidationError

from active_sampling.core import ScriptContract


def contract(**overrides):
    fields = dict(
        entry_point="score.py",
        expected_input_paths={"data": "/opt/ml/processing/input/data"},
        expected_output_paths={"result": "/opt/ml/processing/output/result"},
        required_env_vars=["MODE"],
        optional_env_vars={"LIMIT": "10"},
    )
    return ScriptContract(**{**fields, **overrides})


def test_valid_contract_lists_required_then_optional_variables():
    assert contract().env_var_names == ["MODE", "LIMIT"]


@pytest.mark.parametrize("path", [
    "/opt/ml/processing/output/data",
    "/opt/ml/processing/inputs/data",
    "/opt/ml/processing/input",
    "/opt/ml/processing/input/",
    "data",
])
def test_input_paths_must_be_folders_under_the_input_root(path):
    with pytest.raises(ValidationError, match=r"input channel 'data' has container path .* /opt/ml/processing/input/"):
        contract(expected_input_paths={"data": path})


def test_output_paths_must_be_under_the_output_root():
    with pytest.raises(ValidationError, match=r"output channel 'result' .* /opt/ml/processing/output/"):
        contract(expected_output_paths={"result": "/opt/ml/processing/input/result"})


def test_a_variable_cannot_be_both_required_and_optional():
    with pytest.raises(ValidationError, match=r"\['MODE'\] are both required and optional"):
        contract(optional_env_vars={"MODE": "x"})


def test_entry_point_is_a_python_file_name():
    with pytest.raises(ValidationError, match="entry_point"):
        contract(entry_point="scripts/score.sh")


def test_unknown_fields_are_rejected():
    with pytest.raises(ValidationError, match="expected_input_path"):
        contract(expected_input_path={})
