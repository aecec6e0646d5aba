"""Every import from the SageMaker Python SDK (v2, ``sagemaker>=2.254,<3``) lives here.

The rest of the package names SDK objects only through this module, so a module for SDK v3 can sit
beside it and the builders switch by changing one import.
"""

import logging

# The SDK announces on stdout, at import, which config files it did not find; keep stdout for results
# unless the application configured that logger itself.
if logging.getLogger("sagemaker.config").level == logging.NOTSET:
    logging.getLogger("sagemaker.config").setLevel(logging.WARNING)

from sagemaker.image_uris import retrieve as retrieve_image_uri
from sagemaker.processing import ProcessingInput, ProcessingOutput, Processor
from sagemaker.sklearn import SKLearnProcessor
from sagemaker.workflow.parameters import ParameterInteger, ParameterString
from sagemaker.workflow.pipeline import Pipeline
from sagemaker.workflow.pipeline_context import PipelineSession
from sagemaker.workflow.steps import CacheConfig, ProcessingStep, Step

__all__ = [
    "CacheConfig",
    "ParameterInteger",
    "ParameterString",
    "Pipeline",
    "PipelineSession",
    "ProcessingInput",
    "ProcessingOutput",
    "ProcessingStep",
    "Processor",
    "SKLearnProcessor",
    "Step",
    "pipeline_session",
    "retrieve_image_uri",
]


def pipeline_session(region: str, default_bucket: str) -> PipelineSession:
    """A PipelineSession in ``region``: step builders only describe jobs with it, they never start one."""
    import boto3

    return PipelineSession(boto_session=boto3.Session(region_name=region), default_bucket=default_bucket)
