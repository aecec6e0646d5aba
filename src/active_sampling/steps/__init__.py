"""The ActiveSampleSelection step: script contract, step specification, config and step builder.

The builder (and with it the SageMaker SDK) is imported lazily, so contract, spec and config can be
used where the SDK is not installed.
"""

from .config import ActiveSampleSelectionConfig
from .contract import ACTIVE_SAMPLE_SELECTION_CONTRACT
from .spec import ACTIVE_SAMPLE_SELECTION_SPEC, STEP_TYPE

__all__ = [
    "ACTIVE_SAMPLE_SELECTION_CONTRACT",
    "ACTIVE_SAMPLE_SELECTION_SPEC",
    "STEP_TYPE",
    "ActiveSampleSelectionConfig",
    "ActiveSampleSelectionStepBuilder",
]


def __getattr__(name: str):
    if name == "ActiveSampleSelectionStepBuilder":
        from .builder import ActiveSampleSelectionStepBuilder

        return ActiveSampleSelectionStepBuilder
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
