"""Step-agnostic base layer: script contract, step specification, three-tier config and builder base.

SageMaker SDK objects are imported only in ``active_sampling.core.sdk``; import that module (or the
builder) when you need them, so that contracts, specs and configs stay usable without the SDK.
"""

from .config import BasePipelineConfig, ProcessingStepConfigBase
from .contract import ScriptContract
from .spec import (
    DependencySpec,
    DependencyType,
    NodeType,
    OutputSpec,
    StepSpecification,
    contract_mismatches,
    processing_output_property_path,
)

__all__ = [
    "BasePipelineConfig",
    "DependencySpec",
    "DependencyType",
    "NodeType",
    "OutputSpec",
    "ProcessingStepConfigBase",
    "ScriptContract",
    "StepSpecification",
    "contract_mismatches",
    "processing_output_property_path",
]
