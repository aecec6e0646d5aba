"""Offline AWS settings for every test, set before any test module imports the SageMaker SDK.

SDK v3 creates a boto3 client when its workflow module is imported, so the region must be known at
collection time, not only inside the ``aws_env`` fixture. The credentials are fake: nothing reaches AWS.
Standard library only: tests/script also runs under the legacy environment.
"""

import importlib.util
import os
import warnings

for _name, _value in (
    ("AWS_ACCESS_KEY_ID", "testing"),
    ("AWS_SECRET_ACCESS_KEY", "testing"),
    ("AWS_SESSION_TOKEN", "testing"),
    ("AWS_DEFAULT_REGION", "us-east-1"),
    ("SAGEMAKER_SUPPRESS_V2_WARNING", "1"),
):
    os.environ[_name] = _value
os.environ.pop("AWS_PROFILE", None)


def pytest_configure(config):
    """No usage telemetry from the SageMaker SDK in any test (the legacy environment has neither)."""
    if importlib.util.find_spec("sagemaker") and importlib.util.find_spec("active_sampling"):
        # SDK v3 imports its own deprecated shims; pytest does not capture warnings this early.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            from active_sampling.core import sdk
        sdk.disable_telemetry()
