"""Select rows from a model's prediction table for pseudo-labeling or for human labeling.

This is the entry script of the ActiveSampleSelection SageMaker processing step. It is uploaded to the
container on its own, so it depends only on the standard library, numpy and pandas (pyarrow for parquet),
and it must keep running on Python 3.9 with pandas 1.1.3 and numpy 1.24.1 (SageMaker sklearn 1.2-1 image).

Two use cases share one contract:

* semi-supervised learning ("ssl"): ``confidence_threshold`` and ``top_k_per_class`` pick rows whose
  prediction is confident enough to be used as a pseudo-label;
* active learning: ``uncertainty``, ``diversity`` (k-center greedy core-set, Sener & Savarese 2018) and
  ``badge`` (k-means++ seeding on gradient embeddings, Ash et al. 2020) pick rows worth a human label.

Run in the container as ``python active_sample_selection.py --job_type ssl_selection`` with the
environment variables listed in ``ENV_VARS``; locally, the three channels can be pointed at folders with
``--evaluation_data``, ``--selected_samples`` and ``--selection_metadata``. Tests call ``main``.
"""

import argparse
import datetime
import json
import logging
import math
import os
import platform
import sys
import time
import traceback
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Mapping, NamedTuple, Optional, Sequence, Tuple

import numpy as np
import pandas as pd

logger = logging.getLogger("active_sample_selection")

SSL_STRATEGIES = ("confidence_threshold", "top_k_per_class")
ACTIVE_LEARNING_STRATEGIES = ("uncertainty", "diversity", "badge")
STRATEGIES = SSL_STRATEGIES + ACTIVE_LEARNING_STRATEGIES
USE_CASES = ("ssl", "active_learning", "auto")
UNCERTAINTY_MODES = ("margin", "entropy", "least_confidence")
METRICS = ("euclidean", "cosine")
OUTPUT_FORMATS = ("csv", "tsv", "parquet")
EMBEDDING_STRATEGIES = ("diversity", "badge")

INPUT_CHANNEL = "evaluation_data"
SAMPLES_CHANNEL = "selected_samples"
METADATA_CHANNEL = "selection_metadata"
CONTAINER_INPUT_PATHS = {INPUT_CHANNEL: "/opt/ml/processing/input/evaluation_data"}
CONTAINER_OUTPUT_PATHS = {
    SAMPLES_CHANNEL: "/opt/ml/processing/output/selected_samples",
    METADATA_CHANNEL: "/opt/ml/processing/output/selection_metadata",
}
JOB_ARGUMENTS = ("job_type",)

SAMPLES_BASENAME = "selected_samples"
METADATA_FILENAME = "selection_metadata.json"
SUCCESS_MARKER = "_SUCCESS"
FAILURE_MARKER = "_FAILURE"

LLM_SCORE_COLUMNS = ("confidence_score", "prediction_score")
RULESET_SCORE_COLUMNS = ("rule_score", "label_confidence")

SELECTION_SCORE = "selection_score"
SELECTION_RANK = "selection_rank"
DATA_SOURCE = "data_source"
PSEUDO_LABEL = "pseudo_label"
CONFIDENCE = "confidence"
OUTPUT_COLUMNS = (SELECTION_SCORE, SELECTION_RANK, DATA_SOURCE, PSEUDO_LABEL, CONFIDENCE)
DATA_SOURCE_SSL = "pseudo_labeled"
DATA_SOURCE_ACTIVE_LEARNING = "active_learning"

PROBABILITY_SUM_TOLERANCE = 1e-3
MAX_SEED = 2**32 - 1


class SelectionError(ValueError):
    """An expected failure caused by the input or the configuration; reported as one line."""


class EnvVar(NamedTuple):
    """One environment variable of the script contract.

    ``default`` is the value used when the variable is missing, None or "" (all three mean unset);
    ``None`` marks a required variable and ``""`` an optional one whose unset state is meaningful.
    """

    name: str
    field: str
    kind: str  # "choice", "int", "float" or "str"
    default: Optional[str]
    description: str
    choices: Tuple[str, ...] = ()
    minimum: Optional[float] = None
    maximum: Optional[float] = None

    @property
    def required(self) -> bool:
        return self.default is None


ENV_VARS = (
    EnvVar("SELECTION_STRATEGY", "selection_strategy", "choice", None,
           "Selection strategy.", choices=STRATEGIES),
    EnvVar("USE_CASE", "use_case", "choice", "auto",
           "ssl and active_learning allow only their own strategies; auto allows all.", choices=USE_CASES),
    EnvVar("ID_FIELD", "id_field", "str", "id", "Column holding a unique id per row."),
    EnvVar("LABEL_FIELD", "label_field", "str", "",
           "Column holding known labels; rows where it is filled are never selected "
           "(and are the initial centers for diversity). Unset: no row is labeled."),
    EnvVar("SCORE_FIELD", "score_field", "str", "",
           "One score column to use (a probability of the positive class, or a logit)."),
    EnvVar("SCORE_FIELD_PREFIX", "score_field_prefix", "str", "prob_class_",
           "Prefix of the per-class score columns, used when SCORE_FIELD is unset."),
    EnvVar("EMBEDDING_FIELD_PREFIX", "embedding_field_prefix", "str", "emb_",
           "Prefix of the embedding columns used by diversity and badge."),
    EnvVar("OUTPUT_FORMAT", "output_format", "choice", "",
           "Format of selected_samples; unset: the input's format.", choices=OUTPUT_FORMATS),
    EnvVar("RANDOM_SEED", "random_seed", "int", "42",
           "Seed of badge's k-means++ sampling.", minimum=0, maximum=MAX_SEED),
    EnvVar("CONFIDENCE_THRESHOLD", "confidence_threshold", "float", "0.9",
           "confidence_threshold: minimum max-probability of a selected row.", minimum=0.5, maximum=1.0),
    EnvVar("MAX_SAMPLES", "max_samples", "int", "0",
           "confidence_threshold: keep at most this many, the most confident (0 = no limit).", minimum=0),
    EnvVar("K_PER_CLASS", "k_per_class", "int", "100",
           "top_k_per_class: rows kept per predicted class.", minimum=1),
    EnvVar("UNCERTAINTY_MODE", "uncertainty_mode", "choice", "margin",
           "uncertainty: how uncertainty is measured.", choices=UNCERTAINTY_MODES),
    EnvVar("BATCH_SIZE", "batch_size", "int", "32",
           "uncertainty, diversity, badge: number of rows to select.", minimum=1),
    EnvVar("METRIC", "metric", "choice", "euclidean",
           "diversity, badge: distance between embeddings.", choices=METRICS),
)
ENV_VARS_BY_NAME = {var.name: var for var in ENV_VARS}
