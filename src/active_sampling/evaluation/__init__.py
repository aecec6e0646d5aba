"""Measure what each selection strategy is worth: learning curves and SSL precision on real data.

Run ``python -m active_sampling.evaluation`` (``make evaluate``) to regenerate docs/evaluation.md and
docs/figures/; see ``python -m active_sampling.evaluation --help`` for a smaller run.
"""

from active_sampling.evaluation.config import ACTIVE_LEARNING_STRATEGIES, DATASETS, MODELS, EvaluationConfig
from active_sampling.evaluation.report import write_report
from active_sampling.evaluation.runner import EvaluationResults, run_evaluation

__all__ = [
    "ACTIVE_LEARNING_STRATEGIES",
    "DATASETS",
    "MODELS",
    "EvaluationConfig",
    "EvaluationResults",
    "run_evaluation",
    "write_report",
]
