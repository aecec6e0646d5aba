"""Labels back from a labeling tool: Label Studio exports and Ground Truth output manifests to ``id,label``.

The selection step writes the tasks (``LABELING_FORMAT``); this package reads the answers back. Command line:
``python -m active_sampling.labeling {label-studio,ground-truth} EXPORT --output labels.csv``.
"""

from .readback import (
    CONFLICTING,
    MISSING,
    NOT_RETURNED,
    LabelReadError,
    LabelsReadBack,
    read_ground_truth_manifest,
    read_json_lines,
    read_label_studio_export,
    read_sent_ids,
)

__all__ = [
    "CONFLICTING",
    "MISSING",
    "NOT_RETURNED",
    "LabelReadError",
    "LabelsReadBack",
    "read_ground_truth_manifest",
    "read_json_lines",
    "read_label_studio_export",
    "read_sent_ids",
]
