"""Step specification of ActiveSampleSelection: one prediction table in (and optionally last round's), selected
rows and metadata out."""

from ..core.spec import (
    DependencySpec,
    DependencyType,
    NodeType,
    OutputSpec,
    StepSpecification,
    processing_output_property_path,
)
from ..scripts import active_sample_selection as script
from .contract import ACTIVE_SAMPLE_SELECTION_CONTRACT

STEP_TYPE = "ActiveSampleSelection"

ACTIVE_SAMPLE_SELECTION_SPEC = StepSpecification(
    step_type=STEP_TYPE,
    node_type=NodeType.INTERNAL,
    script_contract=ACTIVE_SAMPLE_SELECTION_CONTRACT,
    dependencies={
        script.INPUT_CHANNEL: DependencySpec(
            logical_name=script.INPUT_CHANNEL,
            dependency_type=DependencyType.PROCESSING_OUTPUT,
            required=True,
            compatible_sources=[
                "XGBoostModelInference",
                "LightGBMModelInference",
                "PyTorchModelInference",
                "XGBoostModelEval",
                "LightGBMModelEval",
                "PyTorchModelEval",
                "BedrockBatchProcessing",
                "BedrockProcessing",
                "LabelRulesetExecution",
            ],
            semantic_keywords=[
                "evaluation",
                "predictions",
                "inference",
                "model_predictions",
                "inference_results",
                "eval_output",
                "prediction_data",
                "processed_data",
                "classification_output",
                "probabilities",
            ],
            data_type="S3Uri",
            description="Model predictions with per-class probability (or score) columns.",
        ),
        script.PREVIOUS_CHANNEL: DependencySpec(
            logical_name=script.PREVIOUS_CHANNEL,
            dependency_type=DependencyType.PROCESSING_OUTPUT,
            required=False,
            explicit_only=True,
            data_type="S3Uri",
            description="Optional, only from inputs=: last round's prediction table (same columns as "
                        "evaluation_data), for the stopping block's agreement. Never wired from an upstream "
                        "step of the same execution, whose predictions are this round's.",
        ),
        script.CALIBRATION_CHANNEL: DependencySpec(
            logical_name=script.CALIBRATION_CHANNEL,
            dependency_type=DependencyType.PROCESSING_OUTPUT,
            required=False,
            explicit_only=True,
            data_type="S3Uri",
            description="Optional, SSL strategies only (required by precision_target): the same model's "
                        "predictions on held-out labeled rows, with label_field filled on every row and ids "
                        "disjoint from evaluation_data. Rows the model was trained on must not be here: their "
                        "predictions are optimistic. Given explicitly (inputs=), never wired from dependencies.",
        ),
    },
    outputs={
        script.SAMPLES_CHANNEL: OutputSpec(
            logical_name=script.SAMPLES_CHANNEL,
            output_type=DependencyType.PROCESSING_OUTPUT,
            property_path=processing_output_property_path(script.SAMPLES_CHANNEL),
            data_type="S3Uri",
            aliases=[
                "active_samples",
                "high_confidence_samples",
                "pseudo_labeled_samples",
                "uncertain_samples",
                "selection_output",
                "input_path",
                "input_data",
                "processed_data",
            ],
            description="Selected rows with every input column plus selection_score, selection_rank and "
                        "data_source (and pseudo_label, confidence for ssl strategies).",
        ),
        script.METADATA_CHANNEL: OutputSpec(
            logical_name=script.METADATA_CHANNEL,
            output_type=DependencyType.PROCESSING_OUTPUT,
            property_path=processing_output_property_path(script.METADATA_CHANNEL),
            data_type="S3Uri",
            aliases=["metadata", "selection_info", "sampling_metadata"],
            description="selection_metadata.json (settings read, counts, class mix, confidence summary, the "
                        "stopping block, timestamp; the step's PropertyFile SelectionMetadata) and "
                        "selection_report.html (the same as a self-contained page with charts).",
        ),
        script.LABELING_CHANNEL: OutputSpec(
            logical_name=script.LABELING_CHANNEL,
            output_type=DependencyType.PROCESSING_OUTPUT,
            property_path=processing_output_property_path(script.LABELING_CHANNEL),
            data_type="S3Uri",
            aliases=["labeling_jobs", "annotation_tasks", "human_labeling_input", "input_manifest"],
            description="Only with labeling_format set: the selection as labeling tasks, a SageMaker Ground Truth "
                        "input manifest (ground_truth.manifest, ground_truth_label_categories.json) or Label Studio "
                        "tasks (label_studio_tasks.json, label_studio_config.xml).",
        ),
    },
)
