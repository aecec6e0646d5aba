"""Script contract of active_sample_selection.py, built from the constants the script itself defines."""

from pathlib import Path
from typing import Sequence

from ..core.contract import ScriptContract
from ..scripts import active_sample_selection as script

ARGUMENT_DESCRIPTIONS = {
    "job_type": "Name of this selection (e.g. ssl_selection); recorded in selection_metadata.json.",
}


def script_contract(env_vars: Sequence[script.EnvVar] = script.ENV_VARS) -> ScriptContract:
    """The contract of the script whose environment variables are ``env_vars`` (the script's own by default)."""
    return ScriptContract(
        entry_point=Path(script.__file__).name,
        expected_input_paths=dict(script.CONTAINER_INPUT_PATHS),
        expected_output_paths=dict(script.CONTAINER_OUTPUT_PATHS),
        expected_arguments={name: ARGUMENT_DESCRIPTIONS.get(name, "") for name in script.JOB_ARGUMENTS},
        required_env_vars=[var.name for var in env_vars if var.required],
        optional_env_vars={var.name: var.default for var in env_vars if not var.required},
        framework_requirements={"python": ">=3.9", "numpy": ">=1.24.1", "pandas": ">=1.1.3", "pyarrow": ">=14"},
        description=(script.__doc__ or "").strip(),
    )


ACTIVE_SAMPLE_SELECTION_CONTRACT = script_contract()
