"""Build examples/pipeline.py offline and check the pipeline definition SageMaker would receive."""

import importlib.util
import json
from pathlib import Path

import pytest
from sagemaker_fixtures import BUCKET, REGION, ROLE, aws_env, pipeline_session, s3  # noqa: F401

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
    return {step["Name"]: step for step in definition["Steps"]}


def test_selection_step_definition(definition):
    config, document = definition
    steps = steps_by_name(document)
    assert list(steps) == ["XGBoostModelInference", "ActiveSampleSelection-active_learning_selection", "PseudoLabelMerge"]
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
        "TARGET_PRECISION": "0.95", "PRECISION_CONFIDENCE": "0.95", "CLASS_BALANCE": "none",
    }
    assert selection["CacheConfig"] == {"Enabled": True, "ExpireAfter": "P30D"}
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
        assert output["S3Uri"] == f"{config.pipeline_s3_loc}/active-sample-selection/active_learning_selection/{name}"


def test_downstream_step_reads_selected_samples_by_property_reference(definition):
    _, document = definition
    merge = steps_by_name(document)["PseudoLabelMerge"]
    (pseudo_labeled,) = [item for item in merge["Arguments"]["ProcessingInputs"] if item["InputName"] == "pseudo_labeled"]
    assert pseudo_labeled["S3Input"]["S3Uri"] == {
        "Get": "Steps.ActiveSampleSelection-active_learning_selection"
               ".ProcessingOutputConfig.Outputs['selected_samples'].S3Output.S3Uri"}


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
    assert list(steps) == ["XGBoostModelInference", SHARD, MERGE, "PseudoLabelMerge"]
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
    assert shard_outputs["selected_samples"] == (
        f"{config.pipeline_s3_loc}/active-sample-selection/active_learning_selection/shards/selected_samples")
    merge_inputs = {item["InputName"]: item["S3Input"] for item in steps[MERGE]["Arguments"]["ProcessingInputs"]}
    assert merge_inputs["evaluation_data"]["S3Uri"] == {
        "Get": f"Steps.{SHARD}.ProcessingOutputConfig.Outputs['selected_samples'].S3Output.S3Uri"}
    assert merge_inputs["evaluation_data"]["S3DataDistributionType"] == "FullyReplicated"
    assert steps[MERGE]["DependsOn"] == [SHARD]
    (review,) = [item for item in steps["PseudoLabelMerge"]["Arguments"]["ProcessingInputs"]
                 if item["InputName"] == "pseudo_labeled"]
    assert review["S3Input"]["S3Uri"] == {
        "Get": f"Steps.{MERGE}.ProcessingOutputConfig.Outputs['selected_samples'].S3Output.S3Uri"}


def test_example_prints_the_sharded_definition_offline(example, capsys, aws_env):
    assert example.main(["--offline", "--shards", "3", "--strategy", "badge", "--use-case", "active_learning"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert [SHARD, MERGE] == [name for name in steps_by_name(document) if name.startswith("ActiveSample")]
