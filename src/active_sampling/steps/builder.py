"""Builder of the ActiveSampleSelection ProcessingStep (SageMaker scikit-learn image)."""

from typing import Any, Dict, List, Optional

from ..core.builder import ProcessingStepBuilderBase
from ..scripts import active_sample_selection as script
from .config import ActiveSampleSelectionConfig
from .spec import ACTIVE_SAMPLE_SELECTION_SPEC


class ActiveSampleSelectionStepBuilder(ProcessingStepBuilderBase):
    """Creates the ProcessingStep that runs active_sample_selection.py on the SageMaker scikit-learn image.

    ``create_step(inputs=..., outputs=..., dependencies=..., enable_caching=...)``: the
    ``evaluation_data`` input comes from ``inputs`` or, failing that, from a dependency step whose
    specification offers a matching output; outputs default to folders under ``pipeline_s3_loc``.
    """

    def __init__(
        self,
        config: ActiveSampleSelectionConfig,
        sagemaker_session: Optional[Any] = None,
        role: Optional[str] = None,
    ):
        if not isinstance(config, ActiveSampleSelectionConfig):
            raise TypeError(
                f"ActiveSampleSelectionStepBuilder needs an ActiveSampleSelectionConfig, got {type(config).__name__}"
            )
        super().__init__(config, ACTIVE_SAMPLE_SELECTION_SPEC, sagemaker_session=sagemaker_session, role=role)
        self.config: ActiveSampleSelectionConfig = config

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

