"""Build examples/pipeline.py offline and check the pipeline definition SageMaker would receive.

These run under both SDK majors (tools/sdk_env.sh runs the sdk marker under v2).
"""

import importlib.util
import json
from pathlib import Path

import pytest
from sagemaker_fixtures import BUCKET, REGION, ROLE, aws_env, pipeline_session, s3, under_execution  # noqa: F401

from active_sampling.scripts import active_sample_selection as script

pytestmark = pytest.mark.sdk

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "pipeline.py"


@pytest.fixture(scope="module")
def example():
    spec = importlib.util.spec_from_file_location("example_pipeline", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def definition(example, s3, pipeline_session, tmp_path):
    config = example.example_config(BUCKET, ROLE, REGION, "badge", "active_learning")
    pipeline = example.build_pipeline(config, pipeline_session, str(tmp_path))
    return config, json.loads(pipeline.definition())


def steps_by_name(definition):
    """Every step by name, the steps inside a ConditionStep's branches included."""
    found = {}
    for step in definition["Steps"]:
        found[step["Name"]] = step
        if step["Type"] == "Condition":
            found.update(steps_by_name({"Steps": step["Arguments"]["IfSteps"] + step["Arguments"]["ElseSteps"]}))
    return found


def selection_output_uri(config, name, *, shards=False):
    """<pipeline_s3_loc>/active-sample-selection/<job type>/<execution id>[/shards]/<name>"""
    uri = under_execution(config.pipeline_s3_loc, "active-sample-selection", "active_learning_selection", name)
    if shards:
        uri["Std:Join"]["Values"].insert(-1, "shards")
    return uri


def property_file_of(step):
    return step["PropertyFiles"]


METADATA_PROPERTY_FILE = [{"PropertyFileName": "SelectionMetadata", "OutputName": "selection_metadata",
                           "FilePath": "selection_metadata.json"}]


def test_selection_step_definition(definition):
    config, document = definition
    steps = steps_by_name(document)
    assert [step["Name"] for step in document["Steps"]] == [
        "XGBoostModelInference", "ActiveSampleSelection-active_learning_selection", "CheckSelection"]
    assert list(steps)[-1] == "HumanLabeling"  # active learning feeds a labeling step, not PseudoLabelMerge
    selection = steps["ActiveSampleSelection-active_learning_selection"]
    arguments = selection["Arguments"]
    app = arguments["AppSpecification"]
    assert app["ImageUri"] == "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-scikit-learn:1.2-1-cpu-py3"
    assert app["ContainerEntrypoint"] == ["python3", "/opt/ml/processing/input/code/active_sample_selection.py"]
    assert app["ContainerArguments"] == ["--job_type", "active_learning_selection"]
    assert arguments["Environment"] == {
        "SELECTION_STRATEGY": "badge", "USE_CASE": "active_learning", "ID_FIELD": "id", "LABEL_FIELD": "label",
        "SCORE_FIELD_PREFIX": "prob_class_", "EMBEDDING_FIELD_PREFIX": "emb_", "RANDOM_SEED": "42",
        "CONFIDENCE_THRESHOLD": "0.9", "MAX_SAMPLES": "0", "K_PER_CLASS": "100", "UNCERTAINTY_MODE": "margin",
        "BATCH_SIZE": "64", "METRIC": "euclidean", "SELECTION_ROLE": "single", "OVERSAMPLING": "4",
        "RESOURCE_CONFIG_PATH": "/opt/ml/config/resourceconfig.json", "LABELING_FORMAT": "none",
        "STOP_AGREEMENT": "0.99", "STOP_MAX_LABELED": "0", "STOP_MAX_UNCERTAINTY": "0.0",
        "REVIEW_METHOD": "confident_learning",
        "DISAGREEMENT": "bald",
        "TARGET_PRECISION": "0.95", "PRECISION_CONFIDENCE": "0.95", "CLASS_BALANCE": "none",
    }
    assert selection["CacheConfig"] == {"Enabled": False, "ExpireAfter": "P30D"}
    assert arguments["ProcessingResources"]["ClusterConfig"]["VolumeSizeInGB"] == 30
    assert property_file_of(selection) == METADATA_PROPERTY_FILE
    assert selection["DependsOn"] == ["XGBoostModelInference"]


def test_selection_channels_and_resolved_input(definition):
    config, document = definition
    arguments = steps_by_name(document)["ActiveSampleSelection-active_learning_selection"]["Arguments"]
    inputs = {item["InputName"]: item["S3Input"] for item in arguments["ProcessingInputs"]}
    assert set(inputs) == {"evaluation_data", "code"}
    assert inputs["evaluation_data"]["LocalPath"] == script.CONTAINER_INPUT_PATHS["evaluation_data"]
    assert inputs["evaluation_data"]["S3Uri"] == {
        "Get": "Steps.XGBoostModelInference.ProcessingOutputConfig.Outputs['eval_output'].S3Output.S3Uri"}
    assert inputs["code"]["S3Uri"].startswith(f"s3://{BUCKET}/{config.pipeline_name}/code/")
    outputs = {item["OutputName"]: item["S3Output"] for item in arguments["ProcessingOutputConfig"]["Outputs"]}
    # Without a labeling_format the optional labeling_tasks output is not declared.
    written = {name: path for name, path in script.CONTAINER_OUTPUT_PATHS.items() if name != script.LABELING_CHANNEL}
    assert {name: output["LocalPath"] for name, output in outputs.items()} == written
    for name, output in outputs.items():
        assert output["S3Uri"] == selection_output_uri(config, name)


def test_downstream_step_reads_selected_samples_by_property_reference(definition):
    _, document = definition
    labeling = steps_by_name(document)["HumanLabeling"]
    (rows,) = [item for item in labeling["Arguments"]["ProcessingInputs"] if item["InputName"] == "rows_to_label"]
    assert rows["S3Input"]["S3Uri"] == {
        "Get": "Steps.ActiveSampleSelection-active_learning_selection"
               ".ProcessingOutputConfig.Outputs['selected_samples'].S3Output.S3Uri"}


def condition_reads(step_name):
    metadata = {"Get": f"Steps.{step_name}.PropertyFiles.SelectionMetadata"}
    return [
        {"Type": "GreaterThan", "LeftValue": {"Std:JsonGet": {"PropertyFile": metadata, "Path": "selected_count"}},
         "RightValue": 0},
        {"Type": "Equals", "LeftValue": {"Std:JsonGet": {"PropertyFile": metadata, "Path": "stopping.should_stop"}},
         "RightValue": False},
    ]


def test_condition_runs_labeling_only_with_rows_and_no_stop_signal(definition):
    _, document = definition
    check = steps_by_name(document)["CheckSelection"]
    assert check["Type"] == "Condition"
    assert check["Arguments"]["Conditions"] == condition_reads("ActiveSampleSelection-active_learning_selection")
    assert [step["Name"] for step in check["Arguments"]["IfSteps"]] == ["HumanLabeling"]
    assert check["Arguments"]["ElseSteps"] == []


def test_ssl_variant_feeds_the_pseudo_label_merge(example, s3, pipeline_session, tmp_path):
    config = example.example_config(BUCKET, ROLE, REGION, "confidence_threshold", "ssl")
    document = json.loads(example.build_pipeline(config, pipeline_session, str(tmp_path)).definition())
    check = steps_by_name(document)["CheckSelection"]
    assert [step["Name"] for step in check["Arguments"]["IfSteps"]] == ["PseudoLabelMerge"]
    assert check["Arguments"]["Conditions"] == condition_reads("ActiveSampleSelection-ssl_selection")


def test_previous_predictions_come_from_a_parameter_only(example, s3, pipeline_session, tmp_path):
    config = example.example_config(BUCKET, ROLE, REGION, "uncertainty", "active_learning")
    document = json.loads(example.build_pipeline(config, pipeline_session, str(tmp_path),
                                                 previous_predictions=True).definition())
    assert {"Name": "PreviousPredictions", "Type": "String"} in document["Parameters"]
    selection = steps_by_name(document)["ActiveSampleSelection-active_learning_selection"]
    inputs = {item["InputName"]: item["S3Input"] for item in selection["Arguments"]["ProcessingInputs"]}
    assert inputs["previous_predictions"]["S3Uri"] == {"Get": "Parameters.PreviousPredictions"}
    assert inputs["previous_predictions"]["LocalPath"] == "/opt/ml/processing/input/previous_predictions"
    assert inputs["evaluation_data"]["S3Uri"] == {
        "Get": "Steps.XGBoostModelInference.ProcessingOutputConfig.Outputs['eval_output'].S3Output.S3Uri"}


def test_pipeline_name_and_parameter(definition):
    config, document = definition
    assert document["Parameters"] == [
        {"Name": "UnlabeledData", "Type": "String", "DefaultValue": f"s3://{BUCKET}/unlabeled/"}]
    upstream = steps_by_name(document)["XGBoostModelInference"]["Arguments"]["ProcessingInputs"][0]
    assert upstream["S3Input"]["S3Uri"] == {"Get": "Parameters.UnlabeledData"}


def test_example_prints_the_definition_offline(example, capsys, aws_env):
    # aws_env's monkeypatch restores the credentials variables that --offline overwrites.
    assert example.main(["--offline", "--strategy", "top_k_per_class", "--use-case", "ssl"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert "ActiveSampleSelection-ssl_selection" in steps_by_name(document)


SHARD = "ActiveSampleSelection-active_learning_selection-shard"
MERGE = "ActiveSampleSelection-active_learning_selection"


@pytest.fixture
def sharded(example, s3, pipeline_session, tmp_path):
    config = example.example_config(BUCKET, ROLE, REGION, "diversity", "active_learning")
    pipeline = example.build_pipeline(config, pipeline_session, str(tmp_path), shard_count=4)
    return config, json.loads(pipeline.definition())


def test_sharded_pipeline_runs_shards_on_a_parameter_count_then_one_merge(sharded):
    config, document = sharded
    steps = steps_by_name(document)
    assert list(steps) == ["XGBoostModelInference", SHARD, MERGE, "CheckSelection", "HumanLabeling"]
    assert {"Name": "SelectionShardCount", "Type": "Integer", "DefaultValue": 4} in document["Parameters"]
    shard, merge = steps[SHARD]["Arguments"], steps[MERGE]["Arguments"]
    assert shard["ProcessingResources"]["ClusterConfig"]["InstanceCount"] == {"Get": "Parameters.SelectionShardCount"}
    assert merge["ProcessingResources"]["ClusterConfig"]["InstanceCount"] == 1
    assert (shard["Environment"]["SELECTION_ROLE"], merge["Environment"]["SELECTION_ROLE"]) == ("shard", "merge")
    assert {k: v for k, v in shard["Environment"].items() if k != "SELECTION_ROLE"} == \
        {k: v for k, v in merge["Environment"].items() if k != "SELECTION_ROLE"}


def test_sharded_pipeline_splits_the_input_and_feeds_the_merge_the_shard_output(sharded):
    config, document = sharded
    steps = steps_by_name(document)
    inputs = {item["InputName"]: item["S3Input"] for item in steps[SHARD]["Arguments"]["ProcessingInputs"]}
    assert inputs["evaluation_data"]["S3DataDistributionType"] == "ShardedByS3Key"
    assert inputs["code"]["S3DataDistributionType"] == "FullyReplicated"
    assert inputs["evaluation_data"]["S3Uri"] == {
        "Get": "Steps.XGBoostModelInference.ProcessingOutputConfig.Outputs['eval_output'].S3Output.S3Uri"}
    shard_outputs = {item["OutputName"]: item["S3Output"]["S3Uri"]
                     for item in steps[SHARD]["Arguments"]["ProcessingOutputConfig"]["Outputs"]}
    merge_outputs = {item["OutputName"]: item["S3Output"]["S3Uri"]
                     for item in steps[MERGE]["Arguments"]["ProcessingOutputConfig"]["Outputs"]}
    for name in ("selected_samples", "selection_metadata"):  # each under the execution id, never one prefix
        assert shard_outputs[name] == selection_output_uri(config, name, shards=True)
        assert merge_outputs[name] == selection_output_uri(config, name)
    assert "PropertyFiles" not in steps[SHARD]
    assert property_file_of(steps[MERGE]) == METADATA_PROPERTY_FILE
    assert steps["CheckSelection"]["Arguments"]["Conditions"] == condition_reads(MERGE)
    merge_inputs = {item["InputName"]: item["S3Input"] for item in steps[MERGE]["Arguments"]["ProcessingInputs"]}
    assert merge_inputs["evaluation_data"]["S3Uri"] == {
        "Get": f"Steps.{SHARD}.ProcessingOutputConfig.Outputs['selected_samples'].S3Output.S3Uri"}
    assert merge_inputs["evaluation_data"]["S3DataDistributionType"] == "FullyReplicated"
    assert steps[MERGE]["DependsOn"] == [SHARD]
    (review,) = [item for item in steps["HumanLabeling"]["Arguments"]["ProcessingInputs"]
                 if item["InputName"] == "rows_to_label"]
    assert review["S3Input"]["S3Uri"] == {
        "Get": f"Steps.{MERGE}.ProcessingOutputConfig.Outputs['selected_samples'].S3Output.S3Uri"}


def test_example_prints_the_sharded_definition_offline(example, capsys, aws_env):
    assert example.main(["--offline", "--shards", "3", "--strategy", "badge", "--use-case", "active_learning"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert [SHARD, MERGE] == [name for name in steps_by_name(document) if name.startswith("ActiveSample")]
