"""Build one round of a SageMaker pipeline around ActiveSampleSelection and print its JSON definition.

    predictions (stand-in for XGBoostModelInference, spec output "eval_output")
        -> ActiveSampleSelection (its evaluation_data input resolved from the upstream spec)
        -> CheckSelection (ConditionStep on the step's PropertyFile SelectionMetadata: selected_count > 0
           and not stopping.should_stop)
            -> if true: HumanLabeling (active learning) or PseudoLabelMerge (ssl), stand-ins that read
               selected_samples by property; if false: nothing (the loop ends, or there is nothing to label)

Each execution is one round: every output of the selection goes under the execution id, and caching is off.
With ``--previous-predictions`` the pipeline has a parameter PreviousPredictions, the S3 URI of last round's
prediction table, passed as the selection's previous_predictions input (its agreement with this round's
predictions is the stabilizing-predictions stopping signal; docs/pipeline.md).

The stand-in steps only copy their input folders to their output folder; replace them with your own
inference and downstream steps. Run it against your account:

    python examples/pipeline.py --bucket my-bucket --role arn:aws:iam::123456789012:role/SageMakerRole

or without AWS (fake credentials, code upload to an in-memory S3 from moto):

    python examples/pipeline.py --offline --strategy hybrid --use-case active_learning

With ``--shards N`` the selection runs sharded (docs/scaling.md): a shard step on N instances (the pipeline
parameter SelectionShardCount, default N) each reading part of the predictions (ShardedByS3Key), then a
one-instance merge step that the review step reads from:

    python examples/pipeline.py --offline --shards 4 --strategy hybrid --use-case active_learning

The merge step then carries the property file, and the condition reads it there.
"""

import argparse
import os
import sys
import tempfile
from contextlib import ExitStack
from pathlib import Path
from typing import Optional, Sequence

import boto3

os.environ.setdefault("SAGEMAKER_SUPPRESS_V2_WARNING", "1")
# SageMaker SDK v3 creates a boto3 client when its workflow module is imported, so some region must be
# known before the imports below; the pipeline itself is described in --region.
if boto3.session.Session().region_name is None:
    os.environ["AWS_DEFAULT_REGION"] = "us-east-1"

from active_sampling.core import (
    DependencySpec,
    DependencyType,
    NodeType,
    OutputSpec,
    ProcessingStepConfigBase,
    ScriptContract,
    StepSpecification,
    processing_output_property_path,
)
from active_sampling.core import sdk
from active_sampling.core.builder import ProcessingStepBuilderBase
from active_sampling.steps import ActiveSampleSelectionConfig
from active_sampling.steps.builder import ActiveSampleSelectionStepBuilder

COPY_SCRIPT_NAME = "copy_channels.py"
COPY_SCRIPT = '''"""Stand-in step: copy every input channel folder into the step's output folder."""
import shutil
from pathlib import Path

output = next(path for path in Path("/opt/ml/processing/output").iterdir() if path.is_dir())
for channel in Path("/opt/ml/processing/input").iterdir():
    if channel.name != "code":
        shutil.copytree(str(channel), str(output / channel.name))
'''


def stand_in_spec(step_type: str, input_name: str, output_name: str) -> StepSpecification:
    """Specification of a one-input, one-output stand-in step that runs COPY_SCRIPT."""
    return StepSpecification(
        step_type=step_type,
        node_type=NodeType.INTERNAL,
        script_contract=ScriptContract(
            entry_point=COPY_SCRIPT_NAME,
            expected_input_paths={input_name: f"/opt/ml/processing/input/{input_name}"},
            expected_output_paths={output_name: f"/opt/ml/processing/output/{output_name}"},
            description="Stand-in: copies its input folder to its output folder.",
        ),
        dependencies={input_name: DependencySpec(
            logical_name=input_name, dependency_type=DependencyType.PROCESSING_OUTPUT, required=True)},
        outputs={output_name: OutputSpec(
            logical_name=output_name, output_type=DependencyType.PROCESSING_OUTPUT,
            property_path=processing_output_property_path(output_name))},
    )


# Like XGBoostModelInference: its predictions come out as "eval_output"; ActiveSampleSelection finds it
# because XGBoostModelInference is a compatible source and "eval_output" is one of its semantic keywords.
INFERENCE_SPEC = stand_in_spec("XGBoostModelInference", "processed_data", "eval_output")
PSEUDO_LABEL_MERGE_SPEC = stand_in_spec("PseudoLabelMerge", "pseudo_labeled", "combined_data")
LABELING_SPEC = stand_in_spec("HumanLabeling", "rows_to_label", "labeled_rows")
CONDITION_STEP_NAME = "CheckSelection"


class StandInStepBuilder(ProcessingStepBuilderBase):
    """Builds a stand-in step on the same scikit-learn image as ActiveSampleSelection."""


def example_config(bucket: str, role: str, region: str, strategy: str, use_case: str) -> ActiveSampleSelectionConfig:
    return ActiveSampleSelectionConfig(
        author="ml-engineer",
        bucket=bucket,
        role=role,
        region=region,
        service_name="recommendation",
        pipeline_version="v1.0",
        project_root_folder=".",
        selection_strategy=strategy,
        use_case=use_case,
        label_field="label",
        batch_size=64,
        processing_instance_type_small="ml.m5.xlarge",
    )


def next_step_spec(config: ActiveSampleSelectionConfig) -> StepSpecification:
    """Where the selected rows go: human labeling for active learning, the pseudo-label merge for ssl."""
    return PSEUDO_LABEL_MERGE_SPEC if config.effective_job_type == "ssl_selection" else LABELING_SPEC


def build_pipeline(config: ActiveSampleSelectionConfig, session, work_dir: str, shard_count: Optional[int] = None,
                   previous_predictions: bool = False):
    """The pipeline: predictions -> ActiveSampleSelection -> CheckSelection -> next step, described with ``session``.

    With ``shard_count``, the selection is a shard step on SelectionShardCount instances and a merge step.
    With ``previous_predictions``, the parameter PreviousPredictions (no default: give it when starting an
    execution) is the selection's previous_predictions input.
    """
    Path(work_dir, COPY_SCRIPT_NAME).write_text(COPY_SCRIPT)
    base = config.model_dump(include=set(ProcessingStepConfigBase.model_fields))
    stand_in_config = ProcessingStepConfigBase(
        **{**base, "processing_source_dir": work_dir, "processing_entry_point": COPY_SCRIPT_NAME,
           "processing_volume_size": 30}
    )
    unlabeled_data = sdk.ParameterString(name="UnlabeledData", default_value=f"s3://{config.bucket}/unlabeled/")
    parameters = [unlabeled_data]

    inference_step = StandInStepBuilder(stand_in_config, INFERENCE_SPEC, sagemaker_session=session).create_step(
        inputs={"processed_data": unlabeled_data},
    )
    selection_inputs = {}
    if previous_predictions:
        # Explicit only: wired from this execution's inference step it would be this round's predictions.
        previous = sdk.ParameterString(name="PreviousPredictions")
        parameters.append(previous)
        selection_inputs["previous_predictions"] = previous
    selection_builder = ActiveSampleSelectionStepBuilder(config, sagemaker_session=session)
    if shard_count is None:
        selection_steps = [selection_builder.create_step(inputs=selection_inputs, dependencies=[inference_step])]
    else:
        shards = sdk.ParameterInteger(name="SelectionShardCount", default_value=shard_count)
        parameters.append(shards)
        selection_steps = list(selection_builder.create_sharded_steps(shards, inputs=selection_inputs,
                                                                      dependencies=[inference_step]))
    selection_step = selection_steps[-1]  # downstream steps read the single step, or the merge
    next_spec = next_step_spec(config)
    (next_input,) = next_spec.dependencies
    next_step = StandInStepBuilder(stand_in_config, next_spec, sagemaker_session=session).create_step(
        inputs={next_input: selection_step.properties.ProcessingOutputConfig.Outputs["selected_samples"].S3Output.S3Uri},
    )
    metadata = selection_builder.property_file
    check = sdk.ConditionStep(
        name=CONDITION_STEP_NAME,
        conditions=[
            sdk.ConditionGreaterThan(left=sdk.json_get(selection_step, metadata, "selected_count"), right=0),
            sdk.ConditionEquals(left=sdk.json_get(selection_step, metadata, "stopping.should_stop"), right=False),
        ],
        if_steps=[next_step],
        else_steps=[],
    )
    return sdk.Pipeline(
        name=config.pipeline_name,
        parameters=parameters,
        steps=[inference_step, *selection_steps, check],
        sagemaker_session=session,
    )


def _offline(stack: ExitStack, bucket: str, region: str) -> None:
    """Fake credentials and an in-memory S3 (moto) that receives the code uploads."""
    from moto import mock_aws

    for name, value in (("AWS_ACCESS_KEY_ID", "testing"), ("AWS_SECRET_ACCESS_KEY", "testing"),
                        ("AWS_SESSION_TOKEN", "testing"), ("AWS_DEFAULT_REGION", region)):
        os.environ[name] = value
    stack.enter_context(mock_aws())
    s3 = boto3.client("s3", region_name=region)
    if region == "us-east-1":
        s3.create_bucket(Bucket=bucket)
    else:
        s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": region})


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description="Print the definition of an example ActiveSampleSelection pipeline.")
    parser.add_argument("--bucket", default="my-ml-bucket")
    parser.add_argument("--role", default="arn:aws:iam::123456789012:role/SageMakerRole")
    parser.add_argument("--region", default="us-east-1", help="AWS region name or code NA, EU, FE")
    parser.add_argument("--strategy", default="confidence_threshold")
    parser.add_argument("--use-case", default="ssl")
    parser.add_argument("--offline", action="store_true", help="no AWS: fake credentials and moto S3")
    parser.add_argument("--shards", type=int, default=None,
                        help="run the selection sharded: default number of shard instances")
    parser.add_argument("--previous-predictions", action="store_true",
                        help="add the pipeline parameter PreviousPredictions: last round's predictions (S3 URI)")
    parser.add_argument("--work-dir", help="folder for the stand-in steps' script (default: a temporary one); "
                        "the code's S3 key hashes its path")
    args = parser.parse_args(argv)
    config = example_config(args.bucket, args.role, args.region, args.strategy, args.use_case)
    sdk.disable_telemetry()
    with ExitStack() as stack:
        if args.offline:
            _offline(stack, config.bucket, config.aws_region)
        session = sdk.pipeline_session(config.aws_region, config.bucket)
        work_dir = args.work_dir or stack.enter_context(tempfile.TemporaryDirectory())
        pipeline = build_pipeline(config, session, work_dir, args.shards, args.previous_predictions)
        print(pipeline.definition())
    return 0


if __name__ == "__main__":
    sys.exit(main())
