"""Configuration of the ActiveSampleSelection step.

Its settings are derived from the script's declarations (``script.ENV_VARS``, from the fields of the script's
``SelectionConfig``): one field per environment variable, named after it, with its choices as a ``Literal``,
its range, default and description, and one validator per cross-field rule of ``script.SETTING_RULES``. So
the config accepts what the script accepts, and a setting declared in the script appears here unedited.
"""

from pathlib import Path
from typing import Any, Callable, Literal, Optional, Sequence

from pydantic import Field, create_model, field_validator, model_validator

from ..core.config import ProcessingStepConfigBase
from ..scripts import active_sample_selection as script

_TYPES = {"int": int, "float": float, "str": str}


def _in_config_terms(message: str) -> str:
    """A script message with each NAME= of an environment variable replaced by its config field."""
    for var in script.ENV_VARS:
        message = message.replace(f"{var.name}=", f"{var.field}=")
    return message


def setting_annotation(var: script.EnvVar) -> Any:
    """The config type of ``var``: a ``Literal`` of its choices or its kind's type; Optional when it may be unset."""
    value_type = Literal[var.choices] if var.choices else _TYPES[var.kind]  # type: ignore[valid-type]
    return Optional[value_type] if var.default == "" else value_type


def env_field(var: script.EnvVar) -> Any:
    """A pydantic Field for the config value of ``var``: the script's default, range and description."""
    return Field(
        ... if var.required else script.default_value(var),
        ge=var.minimum,
        le=var.maximum,
        min_length=1 if var.kind == "str" else None,
        description=var.description,
        json_schema_extra={"env_var": var.name},
    )


def _script_config(config: Any, rules: Optional[Sequence[Callable[..., None]]] = None) -> script.SelectionConfig:
    """The script's ``SelectionConfig`` of ``config``'s values, with ``rules`` (default: all) checked."""
    return script.config_from_values({var.field: getattr(config, var.field) for var in script.ENV_VARS}, rules)


def _rule_validator(rule: Callable[[script.SelectionConfig], None]) -> Any:
    def check(self: Any) -> Any:
        try:
            rule(_script_config(self, rules=()))
        except script.SelectionError as error:
            raise ValueError(_in_config_terms(str(error))) from None
        return self

    check.__doc__ = rule.__doc__
    return model_validator(mode="after")(check)


def _blank_means_unset(cls: type, value: Any) -> Any:
    return None if isinstance(value, str) and value.strip() == "" else value


def settings_model(env_vars: Sequence[script.EnvVar] = script.ENV_VARS) -> type:
    """A pydantic model with a field for each of ``env_vars`` on ``ProcessingStepConfigBase``, and a validator for
    each rule of ``script.SETTING_RULES``."""
    optional_text = [var.field for var in env_vars if var.default == ""]
    validators = {f"_{rule.__name__}": _rule_validator(rule) for rule in script.SETTING_RULES}
    validators["_blank_means_unset"] = field_validator(*optional_text, mode="before")(classmethod(_blank_means_unset))
    return create_model("ActiveSampleSelectionSettings", __base__=ProcessingStepConfigBase, __module__=__name__,
                        __validators__=validators,
                        **{var.field: (setting_annotation(var), env_field(var)) for var in env_vars})


class ActiveSampleSelectionConfig(settings_model()):  # type: ignore[misc]
    """Configuration of one ActiveSampleSelection processing step.

    Essential: the base fields (author, bucket, role, region, service_name, pipeline_version,
    project_root_folder) and ``selection_strategy``, because ssl and active learning strategies pick
    opposite rows and no default fits both. Everything else has the script's default.
    """

    job_type: Optional[str] = Field(
        None,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_]{0,39}$",
        description="Name of this selection, passed as --job_type and used in the step and job names. "
                    "Unset: ssl_selection for ssl strategies, active_learning_selection otherwise.",
    )
    processing_source_dir: Optional[str] = Field(
        None,
        description="Folder holding the entry point script; unset: the folder of the script installed with "
                    "this package (relative paths are taken from project_root_folder).",
    )
    processing_entry_point: str = Field(
        Path(script.__file__).name,
        pattern=r"^[A-Za-z0-9_.-]+\.py$",
        description="Script file name inside processing_source_dir.",
    )

    @field_validator("id_field", "score_field_prefix", "embedding_field_prefix")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if value.strip() == "":
            raise ValueError("must name a column (or column prefix), not only spaces")
        return value

    @model_validator(mode="after")
    def _one_instance_unless_sharded(self) -> "ActiveSampleSelectionConfig":
        if self.processing_instance_count > 1 and self.selection_role != "shard":
            raise ValueError(
                f"processing_instance_count={self.processing_instance_count} with selection_role="
                f"{self.selection_role} would run {self.processing_instance_count} full selections that overwrite "
                "each other's files; to spread the work, keep processing_instance_count=1 and call "
                f"ActiveSampleSelectionStepBuilder(config).create_sharded_steps(shard_count="
                f"{self.processing_instance_count}) (docs/scaling.md)"
            )
        return self

    @property
    def selection_config(self) -> script.SelectionConfig:
        """The script's SelectionConfig of these settings: what the job parses from its environment."""
        return _script_config(self)

    @property
    def writes_labeling_tasks(self) -> bool:
        """Whether the step writes the labeling_tasks output (a labeling_format that writes tasks)."""
        return bool(script.LABELING_FORMATS_BY_NAME[self.labeling_format].files)

    @property
    def script_path(self) -> str:
        """Local path of the entry point; the packaged script unless processing_source_dir is set."""
        if self.processing_source_dir is None:
            return str(Path(script.__file__).parent / self.processing_entry_point)
        return super().script_path

    @property
    def effective_job_type(self) -> str:
        """The job type passed to the script: job_type, or one named after the strategy's use case."""
        if self.job_type:
            return self.job_type
        return "ssl_selection" if self.selection_strategy in script.SSL_STRATEGIES else "active_learning_selection"
