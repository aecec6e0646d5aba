"""Three-tier configuration shared by processing steps.

* essential user inputs: fields without a default; the user must give them;
* system fields: fields with a default that a user may override;
* derived values: read-only properties computed from the two tiers above, never stored.
"""

import re
from pathlib import Path
from typing import Any, Dict, List, Optional

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_core import InitErrorDetails, PydanticCustomError

REGION_CODES = {"NA": "us-east-1", "EU": "eu-west-1", "FE": "us-west-2"}
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_ROLE_ARN = re.compile(r"^arn:aws[a-z-]*:iam::\d{12}:role/\S+$")
_AWS_REGION = re.compile(r"^[a-z]{2}(-gov|-iso[a-z]*)?-[a-z]+-\d$")


def _pipeline_safe(text: str) -> str:
    """Letters, digits and single hyphens only, as SageMaker pipeline names require."""
    return re.sub(r"-+", "-", re.sub(r"[^A-Za-z0-9]", "-", text)).strip("-")


def _with_fix(model: type, line: Dict[str, Any]) -> InitErrorDetails:
    loc = tuple(line["loc"])
    detail: Dict[str, Any] = {"loc": loc, "input": line.get("input")}
    if line["type"] == "missing" and len(loc) == 1 and loc[0] in model.model_fields:
        description = model.model_fields[loc[0]].description or ""
        detail["type"] = PydanticCustomError(
            "missing", "Field required: pass {field}=... ({description})",
            {"field": loc[0], "description": description.rstrip(".")},
        )
    else:
        detail["type"] = line["type"]
        if "ctx" in line:
            detail["ctx"] = line["ctx"]
    return detail  # type: ignore[return-value]


class BasePipelineConfig(BaseModel):
    """Fields every step of a pipeline shares: who owns it, where it runs and where it writes."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    author: str = Field(..., min_length=1, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$",
                        description="Owner of the pipeline (letters, digits, '_', '.', '-').")
    bucket: str = Field(..., description="S3 bucket (name only, no s3://) for code and outputs.")
    role: str = Field(..., description="IAM role ARN the processing jobs run as.")
    region: str = Field(..., description="Region code NA, EU or FE, or an AWS region name such as us-east-1.")
    service_name: str = Field(..., min_length=1, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$",
                              description="Service or project the pipeline belongs to.")
    pipeline_version: str = Field(..., min_length=1, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$",
                                  description="Version label of the pipeline, e.g. v1.0.")
    project_root_folder: str = Field(..., min_length=1,
                                     description="Folder against which a relative processing_source_dir is resolved.")

    @model_validator(mode="wrap")
    @classmethod
    def _explain_missing_fields(cls, data: Any, handler: Any) -> Any:
        """Say how to fix a missing field: which value to pass and what it means."""
        try:
            return handler(data)
        except ValidationError as error:
            details = [_with_fix(cls, line) for line in error.errors()]
            raise ValidationError.from_exception_data(error.title, details) from None

    @field_validator("bucket")
    @classmethod
    def _bucket_name_only(cls, bucket: str) -> str:
        if not _BUCKET.match(bucket):
            raise ValueError(
                f"bucket '{bucket}' is not an S3 bucket name: give the name only (3-63 lowercase letters, "
                "digits, '.' or '-'), without s3:// or a key"
            )
        return bucket

    @field_validator("role")
    @classmethod
    def _role_arn(cls, role: str) -> str:
        if not _ROLE_ARN.match(role):
            raise ValueError(
                f"role '{role}' is not an IAM role ARN; expected e.g. arn:aws:iam::123456789012:role/SageMakerRole"
            )
        return role

    @field_validator("region")
    @classmethod
    def _known_region(cls, region: str) -> str:
        if region not in REGION_CODES and not _AWS_REGION.match(region):
            raise ValueError(
                f"region '{region}' is neither a region code ({', '.join(REGION_CODES)}) "
                "nor an AWS region name such as us-east-1"
            )
        return region

    @property
    def aws_region(self) -> str:
        """AWS region name: the region code translated, or the region itself."""
        return REGION_CODES.get(self.region, self.region)

    @property
    def pipeline_name(self) -> str:
        """Name of the SageMaker pipeline: service, author, region and version."""
        return _pipeline_safe(f"{self.service_name}-{self.author}-{self.region}-{self.pipeline_version}")[:256]

    @property
    def pipeline_s3_loc(self) -> str:
        """S3 prefix under which the pipeline's steps write by default."""
        return f"s3://{self.bucket}/{self.pipeline_name}"

    @classmethod
    def derived_properties(cls) -> List[str]:
        """Names of the derived (third-tier) values: the public properties of the class."""
        names = set()
        for klass in cls.__mro__:
            if klass is BaseModel:
                break
            names.update(
                name for name, value in vars(klass).items()
                if not name.startswith("_") and isinstance(value, property)
            )
        return sorted(names)

    @classmethod
    def fields_by_tier(cls) -> Dict[str, List[str]]:
        """Field and property names grouped as essential, system and derived."""
        essential = [name for name, info in cls.model_fields.items() if info.is_required()]
        system = [name for name, info in cls.model_fields.items() if not info.is_required()]
        return {"essential": essential, "system": system, "derived": cls.derived_properties()}


class ProcessingStepConfigBase(BasePipelineConfig):
    """Fields of a step that runs one script in a SageMaker processing job."""

    processing_instance_type_small: str = Field("ml.m5.2xlarge", pattern=r"^ml\.[a-z0-9]+\.[a-z0-9]+$",
                                                description="Instance type used by default.")
    processing_instance_type_large: str = Field("ml.m5.4xlarge", pattern=r"^ml\.[a-z0-9]+\.[a-z0-9]+$",
                                                description="Instance type used when use_large_processing_instance.")
    use_large_processing_instance: bool = Field(False, description="Run on the large instance type.")
    processing_instance_count: int = Field(1, ge=1, le=100, description="Number of instances.")
    processing_volume_size: int = Field(
        30, ge=1, le=16384,
        description="EBS volume per instance, in GB, billed for every hour the job runs. File-mode inputs are "
                    "copied onto it and outputs are written to it before upload, so size it as the step's input "
                    "files (every input channel, as stored in S3) plus its outputs (at most the input again) plus "
                    "a few GB of headroom; the default fits inputs up to about 12 GB. Memory, not disk, bounds "
                    "the table the job can select from: choose the instance type for that.",
    )
    processing_framework_version: str = Field("1.2-1", pattern=r"^\d+\.\d+-\d+$",
                                              description="Version of the SageMaker scikit-learn image.")
    processing_source_dir: Optional[str] = Field(None, description="Folder holding the entry point script.")
    processing_entry_point: Optional[str] = Field(None, pattern=r"^[A-Za-z0-9_.-]+\.py$",
                                                  description="Script file name inside processing_source_dir.")
    cache_expire_after: str = Field("P30D", pattern=r"^P(\d+[YMWD])*(T(\d+[HMS])+)?$",
                                    description="How long a cached step result is reused (ISO 8601 duration).")

    @property
    def effective_instance_type(self) -> str:
        """The instance type the job runs on."""
        if self.use_large_processing_instance:
            return self.processing_instance_type_large
        return self.processing_instance_type_small

    @property
    def script_path(self) -> str:
        """Local path of the entry point; a relative source dir is taken from project_root_folder."""
        if not self.processing_source_dir or not self.processing_entry_point:
            raise ValueError("set processing_source_dir and processing_entry_point to locate the script")
        source_dir = Path(self.processing_source_dir)
        if not source_dir.is_absolute():
            source_dir = Path(self.project_root_folder) / source_dir
        return str(source_dir / self.processing_entry_point)
