"""Builder of the ActiveSampleSelection ProcessingStep (SageMaker scikit-learn image)."""

from typing import Any, Dict, List, Mapping, NamedTuple, Optional, Sequence

from ..core import sdk
from ..core.builder import ProcessingStepBuilderBase
from ..scripts import active_sample_selection as script
from .config import ActiveSampleSelectionConfig
from .spec import ACTIVE_SAMPLE_SELECTION_SPEC


PROPERTY_FILE_NAME = "SelectionMetadata"


class ActiveSampleSelectionStepBuilder(ProcessingStepBuilderBase):
    """Creates the ProcessingStep that runs active_sample_selection.py on the SageMaker scikit-learn image.

    ``create_sharded_steps(shard_count, ...)`` creates instead a shard step on ``shard_count`` instances
    and the one-instance merge step that reads its output (docs/scaling.md).

    ``create_step(inputs=..., outputs=..., dependencies=..., enable_caching=...)``: the
    ``evaluation_data`` input comes from ``inputs`` or, failing that, from a dependency step whose
    specification offers a matching output; the optional ``previous_predictions`` (last round's
    predictions, for the stopping block) only from ``inputs``. Outputs default to folders under
    ``pipeline_s3_loc`` and the pipeline execution id. The step carries ``property_file``
    (selection_metadata.json as the PropertyFile "SelectionMetadata"), so that
    ``sdk.json_get(step, builder.property_file, "stopping.should_stop")`` can drive a ConditionStep.
    """

    def __init__(
        self,
        config: ActiveSampleSelectionConfig,
        sagemaker_session: Optional[Any] = None,
        role: Optional[str] = None,
        *,
        shard_count: Optional[Any] = None,
    ):
        if not isinstance(config, ActiveSampleSelectionConfig):
            raise TypeError(
                f"ActiveSampleSelectionStepBuilder needs an ActiveSampleSelectionConfig, got {type(config).__name__}"
            )
        super().__init__(config, ACTIVE_SAMPLE_SELECTION_SPEC, sagemaker_session=sagemaker_session, role=role)
        self.config: ActiveSampleSelectionConfig = config
        self.shard_count = shard_count  # a shard step's instances (create_sharded_steps); None: the config's
        self.property_file = sdk.property_file(PROPERTY_FILE_NAME, output_name=script.METADATA_CHANNEL,
                                               path=script.METADATA_FILENAME)

    def _config_field(self, env_var: str) -> str:
        return script.ENV_VARS_BY_NAME[env_var].field

    def job_type(self) -> str:
        return self.config.effective_job_type

    def argument_values(self) -> Dict[str, Any]:
        return {"job_type": self.job_type()}

    def output_names(self) -> List[str]:
        """Every output of the spec; labeling_tasks only when the config sets a labeling_format."""
        return [name for name in self.spec.outputs
                if name != script.LABELING_CHANNEL or self.config.writes_labeling_tasks]

    def processing_inputs(self, inputs: Mapping[str, Any]) -> list:
        """As for any step; precision_target needs calibration_data, which only SSL strategies read."""
        strategy = script.strategy_for(self.config.selection_strategy)
        if strategy.needs_calibration and script.CALIBRATION_CHANNEL not in inputs:
            raise ValueError(
                f"selection_strategy={strategy.name} needs input '{script.CALIBRATION_CHANNEL}': pass "
                f"inputs={{'{script.CALIBRATION_CHANNEL}': 's3://...'}}, the model's predictions on held-out "
                "labeled rows"
            )
        if script.CALIBRATION_CHANNEL in inputs and strategy.use_case != "ssl":
            raise ValueError(
                f"input '{script.CALIBRATION_CHANNEL}' measures pseudo-label precision; selection_strategy="
                f"{strategy.name} does not pseudo-label: leave it out"
            )
        return super().processing_inputs(inputs)

    def input_distribution(self, logical_name: str) -> str:
        """A shard step's instances each read a share of the input files (ShardedByS3Key)."""
        if self.config.selection_role == "shard" and logical_name == script.INPUT_CHANNEL:
            return sdk.SHARDED_BY_S3_KEY
        return super().input_distribution(logical_name)

    def instance_count(self) -> Any:
        """The config's instance count, or the shard count ``create_sharded_steps`` gave a shard step."""
        return super().instance_count() if self.shard_count is None else self.shard_count

    def step_name(self) -> str:
        """As for any step; a shard step adds "-shard" (its merge keeps the plain name)."""
        name = super().step_name()
        return f"{name}-shard" if self.config.selection_role == "shard" else name

    def default_output_parts(self, logical_name: str) -> List[Any]:
        """As for any step; a shard step's outputs go under ``.../<execution id>/shards/``, apart from the merge's."""
        parts = super().default_output_parts(logical_name)
        return parts[:-1] + ["shards", parts[-1]] if self.config.selection_role == "shard" else parts

    def property_files(self) -> list:
        """selection_metadata.json as ``property_file``; a shard step writes only its manifest there: none."""
        return [] if self.config.selection_role == "shard" else [self.property_file]

    def with_role(self, role: str, shard_count: Optional[Any] = None) -> "ActiveSampleSelectionStepBuilder":
        """A builder for the same selection in another SELECTION_ROLE (a merge runs on one instance; a
        shard step on ``shard_count`` instances, an int or a pipeline parameter)."""
        if role == "shard":  # labeling tasks come from the merge's selection only: the shards' setting is unset
            unset = type(self.config).model_fields["labeling_format"].default
            update = {"selection_role": role, "labeling_format": unset, "labeling_data_field": None}
        else:
            update = {"selection_role": role, "processing_instance_count": 1}
        return ActiveSampleSelectionStepBuilder(self.config.model_copy(update=update), sagemaker_session=self.session,
                                                role=self.role, shard_count=shard_count)

    def create_sharded_steps(
        self,
        shard_count: Any,
        inputs: Optional[Mapping[str, Any]] = None,
        outputs: Optional[Mapping[str, Any]] = None,
        dependencies: Optional[Sequence[Any]] = None,
        enable_caching: bool = False,
    ) -> "ShardedSteps":
        """The selection spread over ``shard_count`` instances, then merged on one.

        The shard step runs on ``shard_count`` instances (an int, or a pipeline parameter such as
        ``sdk.ParameterInteger``) and receives the input objects split between them (ShardedByS3Key);
        its outputs go under ``.../shards/``. The merge step reads the shard step's selected_samples
        and writes ``outputs`` exactly as a single step would, so downstream steps wire to ``merge``, and
        it carries ``property_file``. ``inputs`` and ``dependencies`` are those of the shard step; a
        ``previous_predictions`` input goes whole to every shard instance (each counts its own rows' agreement),
        a ``calibration_data`` input whole to every shard instance and to the merge.
        """
        if isinstance(shard_count, bool) or (isinstance(shard_count, int) and not 1 <= shard_count <= 100):
            raise ValueError(f"shard_count must be from 1 to 100 (or a pipeline parameter), got {shard_count!r}")
        if not isinstance(shard_count, (int, sdk.ParameterInteger)):
            raise TypeError(f"shard_count must be an int or a ParameterInteger, got {type(shard_count).__name__}")
        unsupported = script.sharding_unsupported(self.config.selection_config)
        if unsupported:
            raise ValueError(unsupported)
        shard = self.with_role("shard", shard_count).create_step(
            inputs=inputs, dependencies=dependencies, enable_caching=enable_caching,
        )
        shard_output = shard.properties.ProcessingOutputConfig.Outputs[script.SAMPLES_CHANNEL].S3Output.S3Uri
        # calibration_data is small: every shard and the merge read all of it
        calibration = {name: value for name, value in (inputs or {}).items() if name == script.CALIBRATION_CHANNEL}
        merge = self.with_role("merge").create_step(
            inputs={script.INPUT_CHANNEL: shard_output, **calibration}, outputs=outputs, dependencies=[shard],
            enable_caching=enable_caching,
        )
        return ShardedSteps(shard, merge)


class ShardedSteps(NamedTuple):
    """The two steps of a sharded selection: add both to the pipeline, wire downstream steps to ``merge``."""

    shard: Any
    merge: Any
