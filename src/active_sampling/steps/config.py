"""Configuration of the ActiveSampleSelection step.

Every field that sets an environment variable of the script is named after ``EnvVar.field`` and takes
its choices, range and default from the script (``ENV_VARS``), so the config cannot accept a value the
script would reject at run time.
"""

from pathlib import Path
from typing import Any, Dict, Literal, Optional

from pydantic import Field, field_validator, model_validator

from ..core.config import ProcessingStepConfigBase
from ..scripts import active_sample_selection as script

# Defaults exactly as the script parses them when the variable is unset.
SCRIPT_DEFAULTS: Dict[str, Any] = script.parse_environment(
    {var.name: var.choices[0] for var in script.ENV_VARS if var.required}
)._asdict()

Strategy = Literal[script.STRATEGIES]  # type: ignore[valid-type]
UseCase = Literal[script.USE_CASES]  # type: ignore[valid-type]
UncertaintyMode = Literal[script.UNCERTAINTY_MODES]  # type: ignore[valid-type]
Metric = Literal[script.METRICS]  # type: ignore[valid-type]
DiversityMethod = Literal[script.DIVERSITY_METHODS]  # type: ignore[valid-type]
OutputFormat = Literal[script.OUTPUT_FORMATS]  # type: ignore[valid-type]
SelectionRole = Literal[script.SELECTION_ROLES]  # type: ignore[valid-type]
LabelingFormat = Literal[script.LABELING_FORMATS]  # type: ignore[valid-type]
ReviewMethod = Literal[script.REVIEW_METHODS]  # type: ignore[valid-type]
Disagreement = Literal[script.DISAGREEMENTS]  # type: ignore[valid-type]
ClassBalance = Literal[script.CLASS_BALANCES]  # type: ignore[valid-type]

_OPTIONAL_TEXT_FIELDS = tuple(var.field for var in script.ENV_VARS if var.default == "")


def _in_config_terms(message: str) -> str:
    """A script message with each NAME= of an environment variable replaced by its config field."""
    for var in script.ENV_VARS:
        message = message.replace(f"{var.name}=", f"{var.field}=")
    return message


def env_field(name: str) -> Any:
    """A pydantic Field for the config value of the script's environment variable ``name``."""
    var = script.ENV_VARS_BY_NAME[name]
    if var.required:
        default = ...
    elif var.default == "":
        default = None
    else:
        default = SCRIPT_DEFAULTS[var.field]
    return Field(
        default,
        ge=var.minimum,
        le=var.maximum,
        min_length=1 if var.kind == "str" else None,
        description=var.description,
        json_schema_extra={"env_var": name},
    )


class ActiveSampleSelectionConfig(ProcessingStepConfigBase):
    """Configuration of one ActiveSampleSelection processing step.

    Essential: the base fields (author, bucket, role, region, service_name, pipeline_version,
    project_root_folder) and ``selection_strategy``, because ssl and active learning strategies pick
    opposite rows and no default fits both. Everything else has the script's default.
    """

    selection_strategy: Strategy = env_field("SELECTION_STRATEGY")
    use_case: UseCase = env_field("USE_CASE")
    id_field: str = env_field("ID_FIELD")
    label_field: Optional[str] = env_field("LABEL_FIELD")
    score_field: Optional[str] = env_field("SCORE_FIELD")
    score_field_prefix: str = env_field("SCORE_FIELD_PREFIX")
    embedding_field_prefix: str = env_field("EMBEDDING_FIELD_PREFIX")
    embedding_field: Optional[str] = env_field("EMBEDDING_FIELD")
    feature_columns: Optional[str] = env_field("FEATURE_COLUMNS")
    csv_columns: Optional[str] = env_field("CSV_COLUMNS")
    output_format: Optional[OutputFormat] = env_field("OUTPUT_FORMAT")
    random_seed: int = env_field("RANDOM_SEED")
    confidence_threshold: float = env_field("CONFIDENCE_THRESHOLD")
    max_samples: int = env_field("MAX_SAMPLES")
    k_per_class: int = env_field("K_PER_CLASS")
    uncertainty_mode: UncertaintyMode = env_field("UNCERTAINTY_MODE")
    batch_size: int = env_field("BATCH_SIZE")
    metric: Metric = env_field("METRIC")
    selection_role: SelectionRole = env_field("SELECTION_ROLE")
    oversampling: int = env_field("OVERSAMPLING")
    resource_config_path: str = env_field("RESOURCE_CONFIG_PATH")
    diversity_method: Optional[DiversityMethod] = env_field("DIVERSITY_METHOD")
    uncertainty_prefilter: Optional[int] = env_field("UNCERTAINTY_PREFILTER")
    labeling_format: LabelingFormat = env_field("LABELING_FORMAT")
    labeling_data_field: Optional[str] = env_field("LABELING_DATA_FIELD")
    stop_agreement: float = env_field("STOP_AGREEMENT")
    stop_max_labeled: int = env_field("STOP_MAX_LABELED")
    stop_max_uncertainty: float = env_field("STOP_MAX_UNCERTAINTY")
    review_method: ReviewMethod = env_field("REVIEW_METHOD")
    committee_prefixes: Optional[str] = env_field("COMMITTEE_PREFIXES")
    disagreement: Disagreement = env_field("DISAGREEMENT")
    target_precision: float = env_field("TARGET_PRECISION")
    precision_confidence: float = env_field("PRECISION_CONFIDENCE")
    class_balance: ClassBalance = env_field("CLASS_BALANCE")

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

    @field_validator(*_OPTIONAL_TEXT_FIELDS, mode="before")
    @classmethod
    def _blank_means_unset(cls, value: Any) -> Any:
        return None if isinstance(value, str) and value.strip() == "" else value

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

    @model_validator(mode="after")
    def _one_source_of_embeddings(self) -> "ActiveSampleSelectionConfig":
        if self.embedding_field and self.feature_columns:
            raise ValueError(f"embedding_field={self.embedding_field!r} and feature_columns={self.feature_columns!r} "
                             "both choose the embeddings: set one of them")
        return self

    @model_validator(mode="after")
    def _strategy_fits_use_case(self) -> "ActiveSampleSelectionConfig":
        try:
            script.validate_strategy_for_use_case(self.selection_strategy, self.use_case)
        except script.SelectionError as error:
            raise ValueError(_in_config_terms(str(error))) from None
        return self

    @model_validator(mode="after")
    def _labeling_settings_fit(self) -> "ActiveSampleSelectionConfig":
        try:
            script.validate_labeling_settings(self.labeling_format, self.labeling_data_field,
                                              strategy=self.selection_strategy, id_field=self.id_field)
        except script.SelectionError as error:
            raise ValueError(_in_config_terms(str(error))) from None
        return self

    @model_validator(mode="after")
    def _label_field_for_label_review(self) -> "ActiveSampleSelectionConfig":
        try:
            script.validate_label_settings(self.selection_strategy, self.label_field)
        except script.SelectionError as error:
            raise ValueError(_in_config_terms(str(error))) from None
        return self

    @model_validator(mode="after")
    def _committee_settings_fit(self) -> "ActiveSampleSelectionConfig":
        try:
            script.validate_committee_settings(self.selection_strategy, self.committee_prefixes)
        except script.SelectionError as error:
            raise ValueError(_in_config_terms(str(error))) from None
        return self

    @property
    def writes_labeling_tasks(self) -> bool:
        """Whether the step writes the labeling_tasks output (a labeling_format other than none)."""
        return self.labeling_format != "none"

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
