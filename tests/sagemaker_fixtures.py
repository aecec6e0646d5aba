"""Offline SageMaker fixtures: fake credentials, an in-memory S3 (moto) and a PipelineSession.

Import the fixtures into a test module (``from sagemaker_fixtures import aws_env, pipeline_session``)
to use them; nothing here reaches AWS. tests/conftest.py sets the region and fake credentials before
the SDK is imported, and turns the SDK's telemetry off.
"""

import os

import pytest

os.environ.setdefault("SAGEMAKER_SUPPRESS_V2_WARNING", "1")

BUCKET = "test-active-sampling"
ROLE = "arn:aws:iam::123456789012:role/SageMakerRole"
REGION = "us-east-1"

BASE_FIELDS = dict(
    author="tester",
    bucket=BUCKET,
    role=ROLE,
    region=REGION,
    service_name="recsys",
    pipeline_version="v1.0",
    project_root_folder=".",
)


@pytest.fixture
def aws_env(monkeypatch):
    """Fake credentials and region so boto3 never looks for real ones."""
    for name, value in (("AWS_ACCESS_KEY_ID", "testing"), ("AWS_SECRET_ACCESS_KEY", "testing"),
                        ("AWS_SESSION_TOKEN", "testing"), ("AWS_DEFAULT_REGION", REGION),
                        ("SAGEMAKER_SUPPRESS_V2_WARNING", "1")):
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)


@pytest.fixture
def s3(aws_env):
    """moto's in-memory AWS with the test bucket created; code uploads land here."""
    import boto3
    from moto import mock_aws

    with mock_aws():
        boto3.client("s3", region_name=REGION).create_bucket(Bucket=BUCKET)
        yield


@pytest.fixture
def pipeline_session(aws_env):
    from active_sampling.core import sdk

    return sdk.pipeline_session(REGION, BUCKET)


EXECUTION_ID_EXPR = {"Get": "Execution.PipelineExecutionId"}


def under_execution(*parts):
    """The definition of an S3 URI made of ``parts`` with the execution id before the last one, as SageMaker
    receives it: ``{"Std:Join": {"On": "/", "Values": [...]}}``."""
    return {"Std:Join": {"On": "/", "Values": [*parts[:-1], EXECUTION_ID_EXPR, parts[-1]]}}


def expression(value):
    """A pipeline variable as it appears in the definition (its ``expr``); plain values as they are."""
    return getattr(value, "expr", value)
