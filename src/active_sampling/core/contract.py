"""What a processing script expects from its container: channels, arguments and environment."""

from typing import Dict, List

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

PROCESSING_INPUT_ROOT = "/opt/ml/processing/input"
PROCESSING_OUTPUT_ROOT = "/opt/ml/processing/output"


def _check_paths_under(paths: Dict[str, str], root: str, kind: str) -> Dict[str, str]:
    for channel, path in paths.items():
        if not path.startswith(root + "/") or path.rstrip("/") == root:
            raise ValueError(
                f"{kind} channel '{channel}' has container path '{path}'; "
                f"it must be a folder under {root}/ (e.g. {root}/{channel})"
            )
    return paths


class ScriptContract(BaseModel):
    """The interface of one processing script as its container sees it.

    Channels map a logical name to a container path; the step specification must name the same
    channels, and the builder mounts S3 locations on these paths.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    entry_point: str = Field(..., pattern=r"^[A-Za-z0-9_.-]+\.py$", description="Script file name.")
    expected_input_paths: Dict[str, str] = Field(
        ..., description="Input channel name -> container path under /opt/ml/processing/input."
    )
    expected_output_paths: Dict[str, str] = Field(
        ..., description="Output channel name -> container path under /opt/ml/processing/output."
    )
    expected_arguments: Dict[str, str] = Field(
        default_factory=dict,
        description="Command-line argument name (passed as --name value) -> what it means.",
    )
    required_env_vars: List[str] = Field(default_factory=list, description="Variables the script cannot run without.")
    optional_env_vars: Dict[str, str] = Field(
        default_factory=dict, description="Variable -> default the script uses when it is unset."
    )
    framework_requirements: Dict[str, str] = Field(
        default_factory=dict, description="Package -> version specifier the script needs in its image."
    )
    description: str = Field("", description="What the script does.")

    @field_validator("expected_input_paths")
    @classmethod
    def _inputs_under_input_root(cls, paths: Dict[str, str]) -> Dict[str, str]:
        return _check_paths_under(paths, PROCESSING_INPUT_ROOT, "input")

    @field_validator("expected_output_paths")
    @classmethod
    def _outputs_under_output_root(cls, paths: Dict[str, str]) -> Dict[str, str]:
        return _check_paths_under(paths, PROCESSING_OUTPUT_ROOT, "output")

    @model_validator(mode="after")
    def _env_vars_listed_once(self) -> "ScriptContract":
        both = sorted(set(self.required_env_vars) & set(self.optional_env_vars))
        if both:
            raise ValueError(
                f"environment variables {both} are both required and optional; list each in one place"
            )
        if len(set(self.required_env_vars)) != len(self.required_env_vars):
            raise ValueError(f"required_env_vars lists a variable twice: {self.required_env_vars}")
        return self

    @property
    def env_var_names(self) -> List[str]:
        return list(self.required_env_vars) + list(self.optional_env_vars)
