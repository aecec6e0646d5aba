"""Every import from the SageMaker Python SDK lives here, for SDK v2 (>=2.254) and v3 alike.

The installed major version is detected once, at import (``SDK_MAJOR``), and this module gives the
builders one surface for both: the step, pipeline, parameter and session classes keep their v2
constructor keywords in v3, and the objects whose shape changed are made by functions
(``processing_input``, ``processing_output``, ``script_processor``, ``sklearn_image_uri``). Nothing
outside this module imports ``sagemaker`` or asks which major is installed.

What differs for users (docs/pipeline.md): v3 needs Python >= 3.10 and an AWS region when its
workflow module is imported, and both send usage telemetry unless it is turned off
(``disable_telemetry()``, or ``TelemetryOptOut`` in a SageMaker config file).
"""

import logging
from importlib import metadata
from typing import Any, Dict, List, Optional, Union

# The SDK announces on stdout, at import, which config files it did not find; keep stdout for results
# unless the application configured those loggers itself.
for _logger_name in ("sagemaker.config", "sagemaker.core.config"):
    if logging.getLogger(_logger_name).level == logging.NOTSET:
        logging.getLogger(_logger_name).setLevel(logging.WARNING)

SDK_VERSION = metadata.version("sagemaker")
SDK_MAJOR = int(SDK_VERSION.split(".")[0])

FULLY_REPLICATED = "FullyReplicated"
SHARDED_BY_S3_KEY = "ShardedByS3Key"
DISTRIBUTION_TYPES = (FULLY_REPLICATED, SHARDED_BY_S3_KEY)

if SDK_MAJOR == 2:
    import sagemaker.telemetry.telemetry_logging as _telemetry_logging
    from sagemaker.image_uris import retrieve as _retrieve_image_uri
    from sagemaker.processing import ProcessingInput as _ProcessingInput
    from sagemaker.processing import ProcessingOutput as _ProcessingOutput
    from sagemaker.processing import ScriptProcessor
    from sagemaker.workflow.parameters import ParameterInteger, ParameterString
    from sagemaker.workflow.pipeline import Pipeline
    from sagemaker.workflow.pipeline_context import PipelineSession
    from sagemaker.workflow.steps import CacheConfig, ProcessingStep, Step
    from sagemaker.workflow.condition_step import ConditionStep
    from sagemaker.workflow.conditions import ConditionEquals, ConditionGreaterThan
    from sagemaker.workflow.execution_variables import ExecutionVariables
    from sagemaker.workflow.functions import Join, JsonGet
    from sagemaker.workflow.properties import PropertyFile
elif SDK_MAJOR == 3:
    import boto3 as _boto3

    if _boto3.session.Session().region_name is None:
        # sagemaker.mlops.workflow creates a boto3 client in a class body at import.
        raise ImportError(
            f"SageMaker Python SDK {SDK_VERSION} needs an AWS region when it is imported: set AWS_DEFAULT_REGION "
            "(or a region in your AWS config) before importing the step builders"
        )
    import sagemaker.core.telemetry.telemetry_logging as _telemetry_logging
    from sagemaker.core.image_uris import retrieve as _retrieve_image_uri
    from sagemaker.core.processing import ScriptProcessor
    from sagemaker.core.shapes import ProcessingInput as _ProcessingInput
    from sagemaker.core.shapes import ProcessingOutput as _ProcessingOutput
    from sagemaker.core.shapes import ProcessingS3Input as _ProcessingS3Input
    from sagemaker.core.shapes import ProcessingS3Output as _ProcessingS3Output
    from sagemaker.core.workflow.parameters import ParameterInteger, ParameterString
    from sagemaker.core.workflow.pipeline_context import PipelineSession
    from sagemaker.mlops.workflow import CacheConfig, Pipeline, ProcessingStep, Step
    from sagemaker.mlops.workflow import ConditionStep
    from sagemaker.core.workflow.conditions import ConditionEquals, ConditionGreaterThan
    from sagemaker.core.workflow.execution_variables import ExecutionVariables
    from sagemaker.core.workflow.functions import Join, JsonGet
    from sagemaker.core.workflow.properties import PropertyFile
else:
    raise ImportError(
        f"active-sampling supports SageMaker Python SDK v2 (>=2.254) and v3; sagemaker {SDK_VERSION} is installed"
    )

__all__ = [
    "DISTRIBUTION_TYPES",
    "FULLY_REPLICATED",
    "SDK_MAJOR",
    "SDK_VERSION",
    "SHARDED_BY_S3_KEY",
    "CacheConfig",
    "ConditionEquals",
    "ConditionGreaterThan",
    "ConditionStep",
    "Join",
    "JsonGet",
    "PropertyFile",
    "ParameterInteger",
    "ParameterString",
    "Pipeline",
    "PipelineSession",
    "ProcessingStep",
    "ScriptProcessor",
    "Step",
    "disable_telemetry",
    "EXECUTION_ID",
    "execution_prefix",
    "json_get",
    "property_file",
    "pipeline_session",
    "processing_input",
    "processing_output",
    "script_processor",
    "sklearn_image_uri",
    "telemetry_disabled",
]


def pipeline_session(region: str, default_bucket: str) -> PipelineSession:
    """A PipelineSession in ``region``: step builders only describe jobs with it, they never start one."""
    import boto3

    return PipelineSession(boto_session=boto3.Session(region_name=region), default_bucket=default_bucket)


def _send_no_telemetry(*args: Any, **kwargs: Any) -> None:
    return None


def disable_telemetry() -> None:
    """From now on, no SDK call in this process sends usage telemetry (the tests and the example call it).

    v3 sends an event from a background thread on every ``ScriptProcessor.run`` (so on every step built),
    v2 on ``Pipeline.create``/``start``. The SDK's own switch is ``TelemetryOptOut: true`` under
    ``SageMaker.PythonSDK.Modules`` in a SageMaker config file; but with any config file, both majors
    validate it against their JSON schema on every config lookup, which makes each step build take
    seconds. This replaces the SDK's sender instead.
    """
    _telemetry_logging._send_telemetry_request = _send_no_telemetry


def telemetry_disabled() -> bool:
    """Whether ``disable_telemetry()`` has been called in this process."""
    return _telemetry_logging._send_telemetry_request is _send_no_telemetry


def sklearn_image_uri(framework_version: str, region: str, instance_type: str) -> str:
    """URI of the SageMaker scikit-learn processing image (what v2's SKLearnProcessor runs on)."""
    return _retrieve_image_uri(
        "sklearn", region=region, version=framework_version, py_version="py3", instance_type=instance_type,
    )


def execution_prefix(*parts: Any) -> Any:
    """``parts`` joined by "/" with the pipeline execution id inserted where ``EXECUTION_ID`` stands.

    The result is a ``Join`` that SageMaker resolves when an execution starts, so every execution (each
    round, each retry) writes under its own prefix.
    """
    values = [ExecutionVariables.PIPELINE_EXECUTION_ID if part is EXECUTION_ID else part for part in parts]
    return Join(on="/", values=values)


EXECUTION_ID = object()  # placeholder for the pipeline execution id in execution_prefix(...)


def property_file(name: str, output_name: str, path: str) -> PropertyFile:
    """A JSON file of a ProcessingStep output that ``JsonGet`` (and so a ``ConditionStep``) can read."""
    return PropertyFile(name=name, output_name=output_name, path=path)


def json_get(step: Any, property_file: PropertyFile, json_path: str) -> JsonGet:
    """The value at ``json_path`` (e.g. "stopping.should_stop") in ``property_file`` of ``step``."""
    return JsonGet(step_name=step.name, property_file=property_file, json_path=json_path)


def _check_distribution(distribution: str) -> None:
    if distribution not in DISTRIBUTION_TYPES:
        raise ValueError(f"distribution must be one of {', '.join(DISTRIBUTION_TYPES)}, got {distribution!r}")


def processing_input(name: str, source: Any, destination: str, *, distribution: str = FULLY_REPLICATED):
    """One S3 input channel: ``source`` (an S3 URI or a pipeline variable) copied to ``destination``.

    ``distribution`` is ``FullyReplicated`` (every instance gets all objects) or ``ShardedByS3Key``
    (each instance gets its share of the objects).
    """
    _check_distribution(distribution)
    if SDK_MAJOR == 2:
        return _ProcessingInput(
            input_name=name, source=source, destination=destination, s3_data_distribution_type=distribution,
        )
    return _ProcessingInput(
        input_name=name,
        app_managed=False,
        s3_input=_ProcessingS3Input(
            s3_uri=source, local_path=destination, s3_data_type="S3Prefix", s3_input_mode="File",
            s3_data_distribution_type=distribution, s3_compression_type="None",
        ),
    )


def processing_output(name: str, source: str, destination: Any):
    """One S3 output channel: the folder ``source`` uploaded to ``destination`` when the job ends."""
    if SDK_MAJOR == 2:
        return _ProcessingOutput(output_name=name, source=source, destination=destination)
    return _ProcessingOutput(
        output_name=name,
        app_managed=False,
        s3_output=_ProcessingS3Output(s3_uri=destination, local_path=source, s3_upload_mode="EndOfJob"),
    )


def script_processor(
    *,
    image_uri: str,
    role: str,
    instance_type: str,
    instance_count: Union[int, "ParameterInteger"],
    volume_size_in_gb: int,
    base_job_name: str,
    sagemaker_session: PipelineSession,
    env: Optional[Dict[str, str]] = None,
    command: Optional[List[str]] = None,
):
    """A ScriptProcessor running ``command`` (default ``python3``) on ``image_uri``.

    Its ``run(code=..., inputs=..., outputs=..., arguments=...)`` returns the step arguments for
    ``ProcessingStep(step_args=...)`` under a PipelineSession, in v2 and v3 alike. ``instance_count``
    may be a ``ParameterInteger``.
    """
    return ScriptProcessor(
        role=role,
        image_uri=image_uri,
        command=list(command or ["python3"]),
        instance_type=instance_type,
        instance_count=instance_count,
        volume_size_in_gb=volume_size_in_gb,
        base_job_name=base_job_name,
        sagemaker_session=sagemaker_session,
        env=env,
    )
