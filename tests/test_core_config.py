from pathlib import Path

import pytest
from pydantic import ValidationError

from active_sampling.core import ProcessingStepConfigBase
from sagemaker_fixtures import BASE_FIELDS


def config(**overrides):
    return ProcessingStepConfigBase(**{**BASE_FIELDS, **overrides})


def test_tiers_split_required_fields_defaults_and_properties():
    tiers = ProcessingStepConfigBase.fields_by_tier()
    assert tiers["essential"] == list(BASE_FIELDS)
    assert {"processing_instance_count", "processing_framework_version", "processing_entry_point"} <= set(tiers["system"])
    assert tiers["derived"] == ["aws_region", "effective_instance_type", "pipeline_name", "pipeline_s3_loc", "script_path"]


def test_system_defaults():
    made = config()
    assert made.processing_framework_version == "1.2-1"
    assert (made.processing_instance_count, made.processing_volume_size) == (1, 30)
    assert made.effective_instance_type == "ml.m5.2xlarge"


def test_derived_values_follow_the_fields():
    made = config(region="NA", pipeline_version="v1.0", use_large_processing_instance=True)
    assert made.aws_region == "us-east-1"
    assert made.pipeline_name == "recsys-tester-NA-v1-0"
    assert made.pipeline_s3_loc == "s3://test-active-sampling/recsys-tester-NA-v1-0"
    assert made.effective_instance_type == "ml.m5.4xlarge"
    made.use_large_processing_instance = False
    assert made.effective_instance_type == "ml.m5.2xlarge"


def test_aws_region_name_is_kept():
    assert config(region="eu-central-1").aws_region == "eu-central-1"


def test_relative_source_dir_is_taken_from_project_root():
    made = config(project_root_folder="/srv/project", processing_source_dir="scripts", processing_entry_point="run.py")
    assert made.script_path == str(Path("/srv/project/scripts/run.py"))
    made = config(processing_source_dir="/abs/dir", processing_entry_point="run.py")
    assert made.script_path == str(Path("/abs/dir/run.py"))


def test_script_path_without_a_script_says_what_to_set():
    with pytest.raises(ValueError, match="set processing_source_dir and processing_entry_point"):
        config().script_path


@pytest.mark.parametrize("field, value, message", [
    ("bucket", "s3://my-bucket/prefix", "bucket 's3://my-bucket/prefix' is not an S3 bucket name: give the name only"),
    ("role", "SageMakerRole", "role 'SageMakerRole' is not an IAM role ARN; expected e.g. arn:aws:iam::"),
    ("region", "Mars", "region 'Mars' is neither a region code"),
    ("processing_instance_count", 0, "greater than or equal to 1"),
])
def test_bad_values_name_the_field_and_the_fix(field, value, message):
    with pytest.raises(ValidationError) as caught:
        config(**{field: value})
    text = str(caught.value)
    assert field in text and message in text


def test_missing_essential_fields_are_all_named_with_what_to_pass():
    with pytest.raises(ValidationError) as caught:
        ProcessingStepConfigBase(author="tester")
    errors = caught.value.errors()
    assert [error["loc"][0] for error in errors] == [name for name in BASE_FIELDS if name != "author"]
    assert "Field required: pass bucket=... (S3 bucket" in str(caught.value)


def test_unknown_fields_are_rejected():
    with pytest.raises(ValidationError, match="instance_type"):
        config(instance_type="ml.m5.large")
