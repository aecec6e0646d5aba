"""Select rows from a model's prediction table for pseudo-labeling or for human labeling.

This is the entry script of the ActiveSampleSelection SageMaker processing step. It is uploaded to the
container on its own, so it depends only on the standard library, numpy and pandas (pyarrow for parquet;
scipy, imported only with calibration_data, for beta quantiles), and it must keep running on Python 3.9 with
pandas 1.1.3, numpy 1.24.1 and scipy 1.8.0 (SageMaker sklearn 1.2-1 image).

Two use cases share one contract:

* semi-supervised learning ("ssl"): ``confidence_threshold`` and ``top_k_per_class`` pick rows whose
  prediction is confident enough to be used as a pseudo-label, and ``precision_target`` the rows above
  per-class thresholds shown precise enough on ``calibration_data`` (held-out labeled predictions), with which
  every SSL selection also reports its estimated precision;
* active learning: ``uncertainty``, ``diversity`` (k-center greedy core-set, Sener & Savarese 2018, or the
  rows nearest k-means centroids; optionally among the most uncertain rows only, the hybrid of Zhdanov 2019)
  ``badge`` (k-means++ seeding on gradient embeddings, Ash et al. 2020) and ``committee`` (query by
  committee over several prediction sets of the same rows) pick rows worth a human label.

Run in the container as ``python active_sample_selection.py --job_type ssl_selection`` with the
environment variables listed in ``ENV_VARS``; locally, the channels can be pointed at folders with
``--evaluation_data``, ``--calibration_data``, ``--selected_samples``, ``--selection_metadata`` and
``--labeling_tasks`` (``--previous_predictions``, optional: last round's predictions, for the metadata's stopping
block). Tests call ``main``. With ``LABELING_FORMAT`` set, an active-learning selection is also written as
labeling tasks: a SageMaker Ground Truth input manifest or a Label Studio tasks file with its labeling configuration.

The file reads in the order the data flows, each section using only names of its own or earlier ones
(``tests/script/test_layers.py`` checks it): constants; the samplers and their kernels, pure functions of arrays
(with triangle-inequality pruning, the first sampler API's spellings and the calibration kernels); the two
tables, ``STRATEGY_TABLE`` and ``LABELING_FORMAT_TABLE``, which give SELECTION_STRATEGY and LABELING_FORMAT
their choices; settings (``SelectionConfig``, ``ENV_VARS``, ``parse_environment``); scores and pool; loading
(the sources); summary and stopping facts; the engine (``run_selection``); sharding; writing; ``main`` and the
command line. ``__all__`` lists the public API.
"""

import argparse
import csv
import datetime
import errno
import functools
import hashlib
import gzip
import html
import inspect
import json
import logging
import math
import numbers
import os
import platform
import re
import stat
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import (Annotated, Any, Callable, Collection, Dict, Iterable, List, Mapping, NamedTuple, Optional, Sequence,
                    Tuple, get_type_hints)
from xml.sax.saxutils import quoteattr

import numpy as np
import pandas as pd

logger = logging.getLogger("active_sample_selection")

__all__ = (
    "main", "select_samples", "load_inference_data", "extract_score_columns", "normalize_scores_to_probabilities",
    "save_selected_samples", "save_selection_metadata", "validate_strategy_for_use_case", "parse_environment",
    "SelectionConfig", "SelectionError", "ENV_VARS", "Strategy", "STRATEGY_TABLE", "STRATEGIES",
    "LABELING_FORMAT_TABLE", "make_sampler", "run_selection", "select_from_pool", "Candidates", "Selection",
    "Calibration", "Pool", "ConfidenceThresholdSampler", "TopKPerClassSampler", "PrecisionTargetSampler",
    "UncertaintySampler", "DiversitySampler", "HybridSampler", "BADGESampler", "LabelReviewSampler",
    "CommitteeSampler", "confidence_threshold_selection", "top_k_per_class_selection",
    "precision_target_thresholds", "precision_target_selection", "precision_estimate", "clopper_pearson_lower",
    "clopper_pearson_interval", "uncertainty_scores", "uncertainty_prefilter", "k_center_greedy",
    "kmeans_representatives", "gradient_embeddings", "badge_kmeanspp", "find_label_issues",
    "label_review_selection", "committee_disagreement",
)


# ---- Constants and errors -----------------------------------------------------------------------------------------

USE_CASES = ("ssl", "active_learning", "auto")
UNCERTAINTY_MODES = ("margin", "entropy", "least_confidence")
METRICS = ("euclidean", "cosine")
DIVERSITY_METHODS = ("kcenter", "kmeans")
OUTPUT_FORMATS = ("csv", "tsv", "parquet")
SELECTION_ROLES = ("single", "shard", "merge")
REVIEW_METHODS = ("confident_learning", "self_confidence")
DISAGREEMENTS = ("vote_entropy", "consensus_entropy", "bald")
CLASS_BALANCES = ("none", "align")

INPUT_CHANNEL = "evaluation_data"
SAMPLES_CHANNEL = "selected_samples"
METADATA_CHANNEL = "selection_metadata"
LABELING_CHANNEL = "labeling_tasks"  # optional: used only with a LABELING_FORMAT
PREVIOUS_CHANNEL = "previous_predictions"  # optional: last round's predictions, read for the stopping block
CALIBRATION_CHANNEL = "calibration_data"  # optional: held-out labeled predictions, for SSL precision estimates
CONTAINER_INPUT_PATHS = {channel: "/opt/ml/processing/input/" + channel
                         for channel in (INPUT_CHANNEL, PREVIOUS_CHANNEL, CALIBRATION_CHANNEL)}
# Input channels a run may go without: absent from input_paths (or, in the container, not mounted) means
# not given; a folder that is named must exist.
OPTIONAL_INPUT_CHANNELS = (PREVIOUS_CHANNEL, CALIBRATION_CHANNEL)
CONTAINER_OUTPUT_PATHS = {channel: "/opt/ml/processing/output/" + channel
                          for channel in (SAMPLES_CHANNEL, METADATA_CHANNEL, LABELING_CHANNEL)}
JOB_ARGUMENTS = ("job_type",)
RESOURCE_CONFIG_PATH = "/opt/ml/config/resourceconfig.json"

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
PREDICTED_LABEL = "predicted_label"  # active learning's model guess: an output column and a manifest attribute
PREDICTED_CONFIDENCE = "predicted_confidence"
ACTIVE_LEARNING_OUTPUT_COLUMNS = (SELECTION_SCORE, SELECTION_RANK, DATA_SOURCE, PREDICTED_LABEL, PREDICTED_CONFIDENCE)
DATA_SOURCE_SSL = "pseudo_labeled"
DATA_SOURCE_ACTIVE_LEARNING = "active_learning"
SUGGESTED_LABEL = "suggested_label"  # strategies that review labeled rows: the model's top class

PROBABILITY_SUM_TOLERANCE = 1e-3
PROBABILITY_RANGE_TOLERANCE = 1e-6  # probabilities this far outside [0, 1] are rounding noise, clipped
MIXED_SCORES_SHARE = 0.01  # logits whose rows look like probabilities this often are a mixed table: an error
MIXED_SINGLE_SCORE_SHARE = 0.1  # one score column with fewer values outside [0, 1] than this is a mixed column
_CHUNK_ROWS = 1 << 20  # rows per block where a whole-table temporary would be large
MAX_SEED = 2**32 - 1


class SelectionError(ValueError):
    """An expected failure caused by the input or the configuration; reported as one line."""


class NoDataFilesError(SelectionError, FileNotFoundError):
    """The input folder holds no data files (also a ``FileNotFoundError``, for callers that catch that)."""


def _all_finite(values: np.ndarray) -> bool:
    """Whether every entry is finite, checked in row blocks: no boolean temporary of the whole array."""
    block = max(1, _CHUNK_ROWS // 8)
    return all(np.isfinite(values[start:start + block]).all() for start in range(0, values.shape[0], block))


def _one_line(error: Any) -> str:
    return " ".join(str(error).split()) or type(error).__name__


def _preview(names: Sequence[Any], limit: int = 8) -> str:
    names = list(names)
    shown = ", ".join(str(name) for name in names[:limit])
    return shown + (" ... ({} in all)".format(len(names)) if len(names) > limit else "")


def _real(path: Path) -> str:
    return os.path.realpath(str(path))


def _json_default(value: Any) -> Any:
    if isinstance(value, (np.integer, np.ndarray)):
        return value.tolist()
    if isinstance(value, np.floating):
        return float(value)
    if isinstance(value, Path):
        return str(value)
    raise TypeError("not JSON serializable: {!r}".format(value))


def _write_atomically(path: Path, write: Callable[[Path], None]) -> None:
    # A fresh temporary name (never an existing file), renamed over a path that _prepare_outputs cleared.
    try:
        handle, temporary_name = tempfile.mkstemp(prefix="." + path.name + ".", suffix=".tmp", dir=str(path.parent))
        os.close(handle)
    except OSError as error:
        raise SelectionError("cannot write to the output folder {}: {}".format(
            path.parent, error.strerror or _one_line(error))) from None
    temporary = Path(temporary_name)
    try:
        write(temporary)
        os.replace(str(temporary), str(path))
    except OSError as error:
        raise SelectionError("cannot write {}: {}".format(path, error.strerror or _one_line(error))) from None
    finally:
        if temporary.exists():
            temporary.unlink()


def _arrow_to_pandas(table: Any) -> pd.DataFrame:
    """An Arrow table as a DataFrame without pandas metadata; integer columns with nulls stay exact (Int64)."""
    import pyarrow as pa

    nullable = {pa.int8(): pd.Int8Dtype(), pa.int16(): pd.Int16Dtype(), pa.int32(): pd.Int32Dtype(),
                pa.int64(): pd.Int64Dtype(), pa.uint8(): pd.UInt8Dtype(), pa.uint16(): pd.UInt16Dtype(),
                pa.uint32(): pd.UInt32Dtype(), pa.uint64(): pd.UInt64Dtype()}
    table = table.replace_schema_metadata(None)
    columns = {}
    for name, column in zip(table.column_names, table.columns):
        if (_is_list(column.type) and _arrow_kind(column.type.value_type) in ("integer", "float")
                and not any(chunk.values.null_count for chunk in column.chunks)):
            columns[name] = pd.Series(_list_cells(column), dtype=object)
            continue
        single = pa.table({name: column})
        with_nulls = pa.types.is_integer(column.type) and column.null_count > 0
        columns[name] = single.to_pandas(types_mapper=nullable.get if with_nulls else None)[name]
    return pd.DataFrame(columns, columns=table.column_names)


def _arrow_kind(arrow_type: Any) -> Optional[str]:
    """The kind a parquet column declares: integer, float, text, bool, another type's name, or None (null)."""
    import pyarrow as pa

    if pa.types.is_dictionary(arrow_type):
        arrow_type = arrow_type.value_type
    if pa.types.is_null(arrow_type):
        return None
    if pa.types.is_integer(arrow_type):
        return "integer"
    if pa.types.is_floating(arrow_type) or pa.types.is_decimal(arrow_type):
        return "float"
    if pa.types.is_string(arrow_type) or pa.types.is_large_string(arrow_type):
        return "text"
    if pa.types.is_boolean(arrow_type):
        return "bool"
    if _is_list(arrow_type):
        return "array"
    return str(arrow_type)


def _is_list(arrow_type: Any) -> bool:
    import pyarrow as pa

    return pa.types.is_list(arrow_type) or pa.types.is_large_list(arrow_type) or pa.types.is_fixed_size_list(
        arrow_type)


def _list_cells(column: Any) -> np.ndarray:
    """A list column of numbers as an object array of numpy arrays that view the Arrow buffers (no copy of the
    values, which a wide embedding column would double); missing lists are None."""
    import pyarrow as pa

    cells = np.empty(len(column), dtype=object)
    start = 0
    for chunk in column.chunks:
        values = chunk.values.to_numpy(zero_copy_only=False)  # the whole child array: offsets index into it
        if pa.types.is_fixed_size_list(chunk.type):
            size = chunk.type.list_size
            offsets = list(range(chunk.offset * size, (chunk.offset + len(chunk) + 1) * size, size))
        else:
            offsets = chunk.offsets.to_numpy().tolist()
        missing = chunk.is_null().to_numpy(zero_copy_only=False) if chunk.null_count else None
        for row in range(len(chunk)):
            cells[start + row] = None if missing is not None and missing[row] else values[offsets[row]:offsets[row + 1]]
        start += len(chunk)
    return cells


# ---- Samplers: pure functions of arrays, and the sampler classes around them --------------------------------------

def _is_class_number(suffix: str) -> bool:
    # str.isdigit accepts superscripts and other scripts' digits that int() rejects or reads differently.
    return suffix.isascii() and suffix.isdigit()


def _in_unit_range(values: np.ndarray) -> np.ndarray:
    return (values >= -PROBABILITY_RANGE_TOLERANCE) & (values <= 1.0 + PROBABILITY_RANGE_TOLERANCE)

_CHECK_BLOCK_BYTES = 1 << 22  # converted in blocks this size, so each block is still in cache when checked


def _as_matrix(values: Any, name: str, dtype: Any, *, copy: bool = False) -> np.ndarray:
    """``values`` as a C-contiguous 2-D array of ``dtype``, checked finite, in one pass of row blocks.

    The array itself when it already is one and ``copy`` is false; otherwise a new array, each block
    converted and then checked. No temporary the size of the whole array is made.
    """
    try:
        source = np.asarray(values)
        if source.dtype.kind in "OUS":  # objects or texts: converted whole here, once
            source = source.astype(dtype)
    except (TypeError, ValueError) as error:
        raise ValueError("{} must hold numbers: {}".format(name, _one_line(error))) from None
    if source.ndim != 2 or 0 in source.shape:
        raise ValueError("{} must be a non-empty 2-D array, got shape {}".format(name, source.shape))
    if source.dtype == dtype and source.flags.c_contiguous and not copy:
        if not _all_finite(source):
            raise ValueError("{} contains NaN or inf".format(name))
        return source
    matrix = np.empty(source.shape, dtype=dtype)
    step = max(1, _CHECK_BLOCK_BYTES // (source.shape[1] * matrix.itemsize))
    for start in range(0, source.shape[0], step):
        block = matrix[start:start + step]
        block[...] = source[start:start + step]
        if not np.isfinite(block).all():
            raise ValueError("{} contains NaN or inf".format(name))
    return matrix


def top_k_indices(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of the ``k`` highest scores, highest first, ties broken by lower index. O(n + k log k)."""
    scores = np.asarray(scores, dtype=np.float64)
    n = scores.shape[0]
    if k <= 0 or n == 0:
        return np.empty(0, dtype=np.int64)
    if k < n:
        kth = scores[np.argpartition(-scores, k - 1)[:k]].min()
        above = np.flatnonzero(scores > kth)
        ties = np.flatnonzero(scores == kth)[: k - above.size]
        chosen = np.concatenate([above, ties])
    else:
        chosen = np.arange(n)
    return chosen[np.lexsort((chosen, -scores[chosen]))].astype(np.int64)


class Selection(NamedTuple):
    """Selected row indices in rank order and the score each row was selected with."""

    indices: np.ndarray
    scores: np.ndarray
    facts: Optional[Dict[str, Any]] = None  # what the strategy reports in the metadata (label_review)
    # SSL strategies: per class, the confidence from which rows predicted as it were selected (inf: none)
    class_thresholds: Optional[np.ndarray] = None


class _Progress:
    """Logs a long loop's progress about every 10% or every 10 seconds (only the latter with ``by_time``:
    for loops such as Lloyd's iterations that usually stop long before ``total``)."""

    def __init__(self, label: str, total: int, min_total: int = 50, unit: str = "picks", by_time: bool = False):
        self.label, self.total, self.unit, self.by_time = label, total, unit, by_time
        self.enabled = total >= min_total
        self.start = self.last = time.time()
        self.next_fraction = math.inf if by_time else 0.1

    def update(self, done: int) -> None:
        if not self.enabled:
            return
        now = time.time()
        if done / self.total < self.next_fraction and now - self.last < 10.0:
            return
        self.last = now
        elapsed = now - self.start
        if self.by_time:
            logger.info("%s: %d of at most %d %s, %.1fs elapsed", self.label, done, self.total, self.unit, elapsed)
            return
        self.next_fraction = math.floor(done / self.total * 10 + 1) / 10
        remaining = elapsed / done * (self.total - done) if done else float("nan")
        logger.info("%s: %d/%d %s, %.1fs elapsed, ~%.1fs remaining", self.label, done, self.total, self.unit,
                    elapsed, remaining)


_DUPLICATE_TOLERANCE = 1e-5


class Calibration(NamedTuple):
    """The model's predictions on held-out labeled rows: what precision estimates and precision_target read."""

    probabilities: np.ndarray  # (m, n_classes) float64, columns as the candidates' probabilities
    labels: np.ndarray  # (m,) int64: the position of each row's true class among the probability columns


class Candidates(NamedTuple):
    """The arrays a sampler chooses from, one row per candidate (labeled rows are never candidates)."""

    probabilities: Optional[np.ndarray]  # (n, n_classes) float64
    embeddings: Optional[np.ndarray] = None  # (n, d) float32, for the strategies that need them
    labeled_embeddings: Optional[np.ndarray] = None  # (m, d) float32: the labeled rows, diversity's first centers
    labels: Optional[np.ndarray] = None  # (n,) int64: class positions of the given labels (label_review)
    members: Optional[np.ndarray] = None  # (n_members, n, n_classes) float64, for the strategies that read them
    calibration: Optional[Calibration] = None  # for the strategies that need calibration_data


def _row_ids(indices: Any, n_rows: int, what: str) -> Optional[np.ndarray]:
    """``indices`` as the ids of the ``n_rows`` rows passed in, one entry per row, or None (ids are positions).

    Any values are ids (global positions, row labels); a list or Series of texts keeps its very objects.
    """
    if indices is None:
        return None
    ids = np.asarray(indices)
    if ids.ndim != 1:
        raise ValueError("indices must be 1-D, one id per row of {}, got shape {}".format(what, ids.shape))
    if ids.dtype.kind in "US" and not isinstance(indices, np.ndarray):
        ids = np.empty(ids.shape[0], dtype=object)  # np.asarray would turn [7, "a"] into ["7", "a"]
        ids[:] = list(indices)
    if ids.shape[0] != n_rows:
        raise ValueError("indices has {} entries but {} has {} rows: indices carries one id per row of the array "
                         "passed in (e.g. select_batch(P[mask], ..., indices=np.flatnonzero(mask)))".format(
                             ids.shape[0], what, n_rows))
    return ids


def _positive_int(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError("{} must be an integer >= {}, got {!r}".format(name, minimum, value))
    return int(value)


def _choice(name: str, value: Any, allowed: Sequence[str]) -> str:
    if not isinstance(value, str) or value not in allowed:
        raise ValueError("{} must be one of {}, got {!r}".format(name, ", ".join(allowed), value))
    return value


def _unit_number(name: str, value: Any, strict: bool = False) -> float:
    inside = isinstance(value, numbers.Real) and (0.0 < value < 1.0 if strict else 0.0 <= value <= 1.0)
    if isinstance(value, (bool, np.bool_)) or not inside:
        raise ValueError("{} must be a number {}, got {!r}".format(
            name, "strictly between 0 and 1" if strict else "in [0, 1]", value))
    return float(value)


def _seed(name: str, value: Any) -> Optional[int]:
    return None if value is None else _positive_int(name, value, 0)


def _class_positions(labels: Any, n_rows: int, n_classes: int, name: str = "labels") -> np.ndarray:
    positions = np.asarray(labels)
    if positions.shape != (n_rows,) or (positions.size and not np.issubdtype(positions.dtype, np.integer)):
        raise ValueError("{} must be a 1-D array of {} integer class positions, got {} of shape {}".format(
            name, n_rows, positions.dtype, positions.shape))
    positions = positions.astype(np.int64)
    if positions.size and (positions.min() < 0 or positions.max() >= n_classes):
        raise ValueError("{} must be class positions in [0, {}), got values from {} to {}".format(
            name, n_classes, positions.min(), positions.max()))
    return positions


def _as_members(values: Any) -> np.ndarray:
    """``values`` as a checked (n_members, n_rows, n_classes) float64 array of probability rows, in row blocks."""
    members = np.ascontiguousarray(values, dtype=np.float64)
    if members.ndim != 3 or 0 in members.shape:
        raise ValueError("member_probabilities must be a non-empty 3-D array (members x rows x classes), got "
                         "shape {}".format(members.shape))
    if members.shape[0] < 2:
        raise ValueError("member_probabilities has 1 member: a committee needs at least 2")
    step = max(1, _CHUNK_ROWS // (8 * members.shape[0]))
    for start in range(0, members.shape[1], step):
        block = members[:, start:start + step]
        if not np.isfinite(block).all():
            raise ValueError("member_probabilities contains NaN or inf")
        if not (_in_unit_range(block).all() and (np.abs(block.sum(axis=2) - 1.0) <= PROBABILITY_SUM_TOLERANCE).all()):
            raise ValueError("member_probabilities must hold probability rows (each in [0, 1], summing to 1 within "
                             "{:g})".format(PROBABILITY_SUM_TOLERANCE))
    return members


def _checked_candidates(candidates: Candidates, names: Optional[Mapping[str, str]] = None, *,
                        copy: bool = False) -> Candidates:
    """``candidates`` with every array given checked once, in the dtype the kernels read.

    Each is 2-D (members 3-D), non-empty and finite, and all have one row count; ``names`` are the argument
    names the errors use (the field names by default). ``copy`` makes the embeddings a new array (converted
    and copied in the same pass), which the caller then owns.
    """
    name = dict(zip(Candidates._fields, Candidates._fields), **(names or {}))
    given = candidates._asdict()
    checked = {"embeddings": lambda a: _as_matrix(a, name["embeddings"], np.float32, copy=copy),
               "probabilities": lambda a: _as_matrix(a, name["probabilities"], np.float64), "members": _as_members,
               "labeled_embeddings": lambda a: _as_matrix(a, name["labeled_embeddings"], np.float32) if len(a) else None}
    given.update({field: check(given[field]) for field, check in checked.items() if given[field] is not None})
    rows = [(name[field], given[field].shape[field == "members"]) for field in ("embeddings", "probabilities", "members")
            if given[field] is not None]
    for other, count in rows[1:]:
        if count != rows[0][1]:
            raise ValueError("{} and {} have different row counts: {} and {}".format(rows[0][0], other, rows[0][1],
                                                                                   count))
    embeddings, labeled, probabilities = given["embeddings"], given["labeled_embeddings"], given["probabilities"]
    if labeled is not None and embeddings is not None and labeled.shape[1] != embeddings.shape[1]:
        raise ValueError("{} have {} columns, {} {}".format(name["labeled_embeddings"], labeled.shape[1],
                                                           name["embeddings"], embeddings.shape[1]))
    if given["labels"] is not None:
        given["labels"] = _class_positions(given["labels"], probabilities.shape[0], probabilities.shape[1])
    return Candidates(**given)


class _Sampler:
    """What the samplers share.

    ``__init__`` only stores the parameters (scikit-learn's convention, so ``get_params``, ``set_params`` and
    ``clone`` work); they are checked when the sampler is used, and a bad one is a ``ValueError``.
    ``select(candidates, batch_size)`` and ``select_batch`` are the public API: they check the parameters
    and the arrays once, never modify what they are given, and run ``_select``, which trusts both (the
    engine calls ``_select`` on a pool it has checked). ``select`` returns the picks in rank order with
    their scores; ``select_batch`` returns row positions, or with ``indices`` (one id per row passed in)
    ``indices[chosen]``.
    """

    _batched = True  # selects batch_size rows (SSL samplers select by their own rule)
    _needs: Tuple[str, ...] = ("probabilities",)  # the Candidates fields _select reads

    def get_params(self, deep: bool = True) -> Dict[str, Any]:
        """The constructor's parameters as stored (``deep`` is accepted for scikit-learn's sake)."""
        names = [name for name in inspect.signature(type(self).__init__).parameters if name != "self"]
        return {name: getattr(self, name) for name in names}

    def set_params(self, **params: Any) -> "_Sampler":
        """Store new parameter values (checked when the sampler is next used); returns the sampler."""
        known = self.get_params()
        for name, value in params.items():
            if name not in known:
                raise ValueError("{} has no parameter {!r}: expected one of {}".format(
                    type(self).__name__, name, ", ".join(known)))
            setattr(self, name, value)
        return self

    # parameter -> its rule, checked in this order: the allowed values (a tuple), the least integer (an int), or
    # check(name, value) raising ValueError
    _rules: Mapping[str, Any] = dict(random_state=_seed)

    def _check_params(self) -> None:
        """Raise ``ValueError`` naming the first invalid parameter."""
        for name, rule in self._rules.items():
            value = getattr(self, name)
            if isinstance(rule, tuple):
                _choice(name, value, rule)
            elif isinstance(rule, int):
                _positive_int(name, value, rule)
            else:
                rule(name, value)

    def _checked_batch_size(self, batch_size: Any) -> Any:
        return _positive_int("batch_size", batch_size, 1) if self._batched else batch_size

    def select(self, candidates: Candidates, batch_size: Optional[int] = None) -> Selection:
        """The picks among ``candidates`` in rank order, with their scores; the arrays are checked first."""
        self._check_params()
        missing = [field for field in self._needs if getattr(candidates, field) is None]
        if missing:
            raise ValueError("{} needs candidates.{}".format(type(self).__name__, missing[0]))
        return self._select(_checked_candidates(candidates), self._checked_batch_size(batch_size))

    def _select(self, candidates: Candidates, batch_size: Optional[int]) -> Selection:
        """The ``batch_size`` rows of highest ``_scores``, highest first (samplers that rank otherwise override it)."""
        scores = self._scores(candidates)
        chosen = top_k_indices(scores, batch_size)
        return Selection(chosen, scores[chosen])

    def _select_batch(self, candidates: Candidates, batch_size: Any, indices: Any, what: str,
                      names: Optional[Mapping[str, str]] = None, *, copy: bool = False, **options: Any) -> np.ndarray:
        """``select_batch`` after checking the parameters and ``candidates``: the picks' positions or ``indices``."""
        self._check_params()
        candidates = _checked_candidates(candidates, names, copy=copy)
        first = next(array for array in (candidates.probabilities, candidates.embeddings, candidates.members)
                     if array is not None)
        ids = _row_ids(indices, first.shape[-2], what)  # rows are the last axis but one (members: the second)
        chosen = self._select(candidates, self._checked_batch_size(batch_size), **options).indices
        return chosen if ids is None else ids[chosen]


def confidence_threshold_selection(probabilities: Any, threshold: float, max_samples: int = 0) -> Selection:
    """Rows whose top-class probability is at least ``threshold``, most confident first.

    Parameters
    ----------
    probabilities : ndarray of shape (n_rows, n_classes)
    threshold : float
    max_samples : int, default=0
        Keep at most this many, the most confident; 0 keeps every qualifying row.

    Returns
    -------
    Selection
        Row indices in rank order (ties to the lower index) and their top-class probability.
    """
    return _confidence_threshold_selection(_as_matrix(probabilities, "probabilities", np.float64),
                                           _unit_number("threshold", threshold),
                                           _positive_int("max_samples", max_samples, 0))


def _confidence_threshold_selection(probabilities: np.ndarray, threshold: float, max_samples: int) -> Selection:
    confidence = probabilities.max(axis=1)
    eligible = np.flatnonzero(confidence >= threshold)
    limit = max_samples if max_samples > 0 else eligible.size
    chosen = eligible[top_k_indices(confidence[eligible], limit)]
    return Selection(chosen, confidence[chosen])


def top_k_per_class_selection(probabilities: Any, k_per_class: int) -> Selection:
    """The ``k_per_class`` most confident rows of every predicted class, ranked together by confidence.

    Parameters
    ----------
    probabilities : ndarray of shape (n_rows, n_classes)
    k_per_class : int

    Returns
    -------
    Selection
        Row indices in rank order (ties to the lower index) and their top-class probability.
    """
    return _top_k_per_class_selection(_as_matrix(probabilities, "probabilities", np.float64),
                                      _positive_int("k_per_class", k_per_class, 1))


def _rows_by_class(labels: np.ndarray, n_classes: int) -> Tuple[np.ndarray, np.ndarray]:
    """Row positions grouped by class (increasing within a class) and each class's [start, stop) bounds."""
    order = np.argsort(labels.astype(np.int16 if n_classes < 2**15 else np.int64), kind="stable")  # int16 sorts fast
    bounds = np.concatenate([[0], np.cumsum(np.bincount(labels, minlength=n_classes))])
    return order, bounds


def _top_k_per_class_selection(probabilities: np.ndarray, k_per_class: int) -> Selection:
    confidence = probabilities.max(axis=1)
    by_class, bounds = _rows_by_class(probabilities.argmax(axis=1), probabilities.shape[1])
    chosen = np.concatenate([by_class[start:stop][top_k_indices(confidence[by_class[start:stop]], k_per_class)]
                             for start, stop in zip(bounds[:-1], bounds[1:])])  # one entry per class: never empty
    chosen = chosen[np.lexsort((chosen, -confidence[chosen]))]
    return Selection(chosen, confidence[chosen])


class ConfidenceThresholdSampler(_Sampler):
    """Rows whose top-class probability reaches ``confidence_threshold``, most confident first (SSL).

    Parameters
    ----------
    confidence_threshold : float, default=0.9
        Minimum top-class probability, in [0, 1].
    max_samples : int, default=0
        Keep at most this many, the most confident; 0 keeps every qualifying row.
    random_state : int >= 0 or None, default=42
        Unused: the selection is deterministic (ties go to the lower row). Kept so every sampler takes it.
    """

    _batched = False

    _rules = dict(confidence_threshold=_unit_number, max_samples=0, random_state=_seed)

    def __init__(self, confidence_threshold: float = 0.9, *, max_samples: int = 0, random_state: Optional[int] = 42):
        self.confidence_threshold = confidence_threshold
        self.max_samples = max_samples
        self.random_state = random_state

    def _select(self, candidates: Candidates, batch_size: Optional[int] = None) -> Selection:
        return _confidence_threshold_selection(candidates.probabilities, float(self.confidence_threshold),
                                               int(self.max_samples))

    def class_thresholds(self, candidates: Candidates, selection: Selection) -> np.ndarray:
        """CONFIDENCE_THRESHOLD for every class, or the last selected confidence when MAX_SAMPLES rows were kept."""
        threshold = self.confidence_threshold
        if self.max_samples and (candidates.probabilities.max(axis=1) >= threshold).sum() >= self.max_samples:
            threshold = float(selection.scores.min())
        return np.full(candidates.probabilities.shape[1], threshold)

    def select_batch(self, probabilities: Any, indices: Any = None) -> np.ndarray:
        """Positions (or ``indices[chosen]``) of the selected rows, most confident first."""
        return self._select_batch(Candidates(probabilities), None, indices, "probabilities")


class TopKPerClassSampler(_Sampler):
    """The ``k_per_class`` most confident rows of every predicted class, ranked by confidence (SSL).

    Parameters
    ----------
    k_per_class : int, default=100
    random_state : int >= 0 or None, default=42
        Unused: the selection is deterministic (ties go to the lower row). Kept so every sampler takes it.
    """

    _batched = False

    _rules = dict(k_per_class=1, random_state=_seed)

    def __init__(self, k_per_class: int = 100, *, random_state: Optional[int] = 42):
        self.k_per_class = k_per_class
        self.random_state = random_state

    def _select(self, candidates: Candidates, batch_size: Optional[int] = None) -> Selection:
        return _top_k_per_class_selection(candidates.probabilities, int(self.k_per_class))

    def class_thresholds(self, candidates: Candidates, selection: Selection) -> np.ndarray:
        """Each class's k-th confidence; 0 for a class with fewer than k candidates (all of them are selected)."""
        n_classes = candidates.probabilities.shape[1]
        predicted = candidates.probabilities[selection.indices].argmax(axis=1)
        thresholds = np.zeros(n_classes)
        full = np.flatnonzero(np.bincount(predicted, minlength=n_classes) >= self.k_per_class)
        for position in full:
            thresholds[position] = selection.scores[predicted == position].min()
        return thresholds

    select_batch = ConfidenceThresholdSampler.select_batch  # the same rows-by-confidence API


def uncertainty_scores(probabilities: Any, mode: str = "margin") -> np.ndarray:
    """Per-row uncertainty, higher = more uncertain, computed in chunks to bound temporaries.

    margin: 1 - (p1 - p2) with p1 >= p2 the two largest probabilities; entropy: -sum p log p (natural
    log, 0 log 0 = 0); least_confidence: 1 - p1. ``probabilities`` has shape (n_rows, n_classes).
    """
    return _uncertainty_scores(_as_matrix(probabilities, "probabilities", np.float64),
                               _choice("mode", mode, UNCERTAINTY_MODES))


def _uncertainty_scores(probabilities: np.ndarray, mode: str) -> np.ndarray:
    n = probabilities.shape[0]
    scores = np.empty(n, dtype=np.float64)
    for start in range(0, n, _CHUNK_ROWS):
        block = np.asarray(probabilities[start:start + _CHUNK_ROWS], dtype=np.float64)
        out = scores[start:start + _CHUNK_ROWS]
        if mode == "margin":
            top_two = np.partition(block, block.shape[1] - 2, axis=1)[:, -2:]
            np.subtract(1.0, top_two[:, 1] - top_two[:, 0], out=out)
        elif mode == "entropy":
            logs = np.log(np.where(block > 0.0, block, 1.0))
            logs *= block
            np.negative(logs.sum(axis=1), out=out)
        else:
            np.subtract(1.0, block.max(axis=1), out=out)
    return scores


class UncertaintySampler(_Sampler):
    """The ``batch_size`` most uncertain rows (active learning).

    Parameters
    ----------
    mode : {"margin", "entropy", "least_confidence"}, default="margin"
        How uncertainty is measured; see ``uncertainty_scores``.
    random_state : int >= 0 or None, default=42
        Unused: the selection is deterministic (ties go to the lower row). Kept so every sampler takes it.
    """

    _rules = dict(mode=UNCERTAINTY_MODES, random_state=_seed)

    def __init__(self, mode: str = "margin", *, random_state: Optional[int] = 42):
        self.mode = mode
        self.random_state = random_state

    def compute_scores(self, probabilities: Any) -> np.ndarray:
        """Uncertainty of each row, shape (n_rows,); higher is more uncertain."""
        self._check_params()
        return uncertainty_scores(probabilities, self.mode)

    def _scores(self, candidates: Candidates) -> np.ndarray:
        return _uncertainty_scores(candidates.probabilities, self.mode)

    def select_batch(self, probabilities: Any, batch_size: int, indices: Any = None) -> np.ndarray:
        """Positions (or ``indices[chosen]``) of the ``batch_size`` most uncertain rows, most uncertain first."""
        return self._select_batch(Candidates(probabilities), batch_size, indices, "probabilities")


def _normalize_rows(matrix: np.ndarray) -> np.ndarray:
    """Unit-length rows (in place); all-zero rows stay zero."""
    norms = np.sqrt(np.einsum("ij,ij->i", matrix, matrix))
    norms[norms == 0] = 1
    matrix /= norms[:, None]
    return matrix


class _NearestCenter:
    """Squared distance from every row to its nearest center so far, updated one center at a time.

    ``add(dots, center)`` takes ``dots[i] = x_i . x_center`` (overwritten as scratch) and folds
    ``|x_i|^2 - 2 x_i . x_center + |x_center|^2`` into ``self.d2``. Values within ``_DUPLICATE_TOLERANCE``
    of the two squared norms count as exact zeros, so duplicates of a center tie at 0 rather than at
    rounding noise. All buffers are allocated once.
    """

    def __init__(self, sq_norms: np.ndarray, initial: np.ndarray):
        self.sq_norms = sq_norms
        self.tolerances = sq_norms * sq_norms.dtype.type(_DUPLICATE_TOLERANCE)
        self.d2 = initial
        self._threshold = np.empty_like(sq_norms)
        self._duplicates = np.empty(sq_norms.shape, dtype=bool)
        self._margin = 32.0 * float(np.finfo(sq_norms.dtype).eps)  # 64 units of rounding
        self._tiny = 4.0 * float(np.finfo(sq_norms.dtype).smallest_subnormal)  # and 4 steps where they underflow
        self._key: Optional[np.ndarray] = None  # built by the first full-pass fold, with the arrays below
        self._highest_snap: Optional[np.ndarray] = None
        self._scratch: Optional[np.ndarray] = None
        self._norm_part: Optional[np.ndarray] = None

    def add(self, dots: np.ndarray, center: int) -> None:
        dots *= -2
        dots += self.sq_norms
        dots += self.sq_norms[center]
        np.add(self.tolerances, self.tolerances[center], out=self._threshold)
        np.less_equal(dots, self._threshold, out=self._duplicates)
        np.copyto(dots, 0, where=self._duplicates)
        np.minimum(self.d2, dots, out=self.d2)

    def fold(self, dots: np.ndarray, center: int, rows: Optional[np.ndarray] = None) -> np.ndarray:
        """``add``, element for element the same arithmetic; returns the rows (ascending) whose distance went down.

        With ``rows`` (ascending), ``dots`` holds those rows' products only. Without, ``dots`` holds every row's
        product (left as it is) and only the rows that pass one subtraction and one comparison can go down:
        ``dots - key > |c|^2 / 2 - margin``, with ``key = (|x|^2 - ceiling) / 2 - margin`` kept per row and the
        ceiling at least the row's distance and above any snap threshold it can meet. The margins, 64 units
        of rounding of the norms and ceilings, exceed every rounding of the expansion and of the test, so
        every row whose expanded value is below its ceiling passes; the snap and the minimum run on those alone.
        """
        if rows is None:
            if self._key is None:
                self._scratch = np.empty_like(self.d2)
                with np.errstate(under="ignore"):  # next above 0 is subnormal; it still compares exactly
                    self._highest_snap = np.nextafter(self.tolerances + self.tolerances.max(), np.inf)
                    self._norm_part = self.sq_norms * self.d2.dtype.type(0.5 - self._margin) - self._tiny
                self._key = self._filter_key(np.maximum(self.d2, self._highest_snap), self._norm_part)
            half = self.sq_norms.dtype.type(float(self.sq_norms[center]) * (0.5 - self._margin) - self._tiny)
            np.subtract(dots, self._key, out=self._scratch)
            rows = np.flatnonzero(np.greater(self._scratch, half, out=self._duplicates))
            dots = dots[rows]
        dots *= -2
        dots += self.sq_norms[rows]
        dots += self.sq_norms[center]
        np.copyto(dots, 0, where=dots <= self.tolerances[rows] + self.tolerances[center])
        decreased = np.flatnonzero(dots < self.d2[rows])
        down = rows[decreased]
        self.d2[down] = dots[decreased]
        if self._key is not None:  # d2 only goes down, so a stale key is merely loose
            self._key[down] = self._filter_key(np.maximum(dots[decreased], self._highest_snap[down]),
                                               self._norm_part[down])
        return down

    def _filter_key(self, ceiling: np.ndarray, norm_part: np.ndarray) -> np.ndarray:
        """``(|x|^2 - ceiling) / 2 - margin (|x|^2 + ceiling) - tiny``, ``norm_part`` being its first terms; in
        d2's dtype, whose three roundings (1.5 units of ``|x|^2 + ceiling``) the margin's 64 units cover."""
        with np.errstate(under="ignore"):  # subnormal ceilings (all-zero rows): _tiny stands in for the margin
            return norm_part - ceiling * self.d2.dtype.type(0.5 + self._margin)


_CLASS_NUMBER_TEXT = re.compile(r"[0-9]+(?:\.0*)?")  # 3, 03, 3.0: a number naming an integer class


def _class_key(value: Any, integer_classes: bool) -> Any:
    """What a label cell names: an int for integer classes (3, 3.0, "3", " 03 ", "3.0"), else the stripped text;
    None when it cannot name a class of that kind (a bool, 2.5, "3.5", "x" for integer classes)."""
    if isinstance(value, (bool, np.bool_)):
        return None
    if isinstance(value, numbers.Integral):
        return int(value) if integer_classes else str(int(value))
    if isinstance(value, numbers.Real):
        return int(value) if integer_classes and math.isfinite(value) and float(value).is_integer() else None
    if not isinstance(value, str):
        return None
    text = value.strip()
    if not integer_classes:
        return text
    return int(text.split(".")[0]) if _CLASS_NUMBER_TEXT.fullmatch(text) else None


def _named_classes(values: Iterable[Any], classes: Sequence[Any]) -> np.ndarray:
    """The position among ``classes`` of the class each of ``values`` names (``_class_key``); -1: none."""
    integer_classes = all(isinstance(label, int) for label in classes)
    lookup = {label if integer_classes else str(label): position for position, label in enumerate(classes)}
    return np.array([lookup.get(_class_key(value, integer_classes), -1) for value in values], dtype=np.int64)


def _table_row(position: int) -> str:
    return "row {} of the table".format(position + 1)


def given_class_positions(labels: pd.Series, labeled: np.ndarray, classes: Sequence[Any], label_field: str,
                          locate: Callable[[int], str] = _table_row) -> np.ndarray:
    """The class position (in score-column order) of each labeled row's label; -1 for unlabeled rows.

    Integer classes match integer-valued numbers and their text (``3``, ``3.0``, ``"03"``); text classes
    match the stripped text exactly. A label that names no class is a ``SelectionError`` naming the value
    and, through ``locate`` (row position -> text), the file and the row.
    """
    given = np.full(len(labels), -1, dtype=np.int64)
    rows = np.flatnonzero(labeled)
    if rows.size == 0:
        return given
    codes, uniques = pd.factorize(labels.iloc[rows])
    positions = np.append(_named_classes(uniques, classes), -1)  # a missing cell's code is -1: it names no class
    unknown = positions[codes] < 0
    if unknown.any():
        first = int(rows[np.flatnonzero(unknown)[0]])
        value = labels.iloc[first]
        raise SelectionError("LABEL_FIELD {!r} holds {!r} in {}, which names none of the score columns' classes "
                             "({})".format(label_field, value.item() if isinstance(value, np.generic) else value,
                                           locate(first), _preview(classes)))
    given[rows] = positions[codes]
    return given


# ---- Triangle-inequality pruning shared by k-center and BADGE -----------------------------------------------------
# A row x with nearest center a at distance d(x) cannot come closer to a new center c when
# d(a, c) >= 2 d(x) (Elkan 2003). The kernels compute distances only for the rows this cannot rule
# out, with a slack that covers float rounding and the duplicate snap, so every skipped row is one whose
# full-pass value would have left its distance unchanged: the picks are those of one full pass per pick.

_GATHER_ALIGNMENT = 64  # rows per BLAS call are padded to a multiple of this (see _RowDots)
_MAX_UNCHECKED_PICKS = 32  # after a check that did not pay, the next is 1, 2, 4, ... up to this many picks later
# Costs per row relative to one row of a full pass (one matrix-vector product over all n rows). They are fixed
# ratios, not timings, so the choice is the same on a loaded machine. A gathered row costs a random read, a copy
# and its product: 2-4x a streamed row for 16 <= D <= 128, in BADGE too (its full pass is heavier: two products,
# one float64, and their product; pruning_badge.py measures 2-3x for 5-30 % of the rows gathered).
# The check is a few passes over n numbers, worth about _CHECK_BYTES of a row in k-center and less against BADGE's
# heavier full pass; both measured on the benchmark's KEEL tables, where a k-center check with D <= 50 never pays
# for itself.
_GATHER_COST = {"k_center_greedy": 4.0, "badge_kmeanspp": 3.0}  # by kernel
_CHECK_BYTES = {"k_center_greedy": 160.0, "badge_kmeanspp": 24.0}
_PAYING_SHARE = 0.8  # gather only when predicted to cost at most this share of a full pass


def _pruning_slack(n_features: int) -> float:
    """``s`` such that rounding and the duplicate snap move a computed squared distance by < s/2 (|x|^2 + |y|^2).

    The float32 expansion ``|x|^2 - 2 x.y + |y|^2`` (and BADGE's product of a float64 and a float32 dot)
    errs by at most about ``(2 D + 8) 2^-24 (|x|^2 + |y|^2)``; values within ``_DUPLICATE_TOLERANCE`` of the
    norms are set to 0. Twice their sum leaves room for every rounding of the bound itself.
    """
    return 2.0 * ((2 * n_features + 8) * 2.0 ** -24 + _DUPLICATE_TOLERANCE * (1.0 + 1e-6))


class _TriangleBound:
    """Each row's nearest center, and which rows a new center may bring closer than that.

    A row x with nearest center a is live for a new center c unless
    ``|a - c|^2 / 4 - s (|a|^2 + |c|^2) / 2 > d2_x + s |x|^2`` (s from ``_pruning_slack``, d2_x the row's
    computed squared distance to a). That implies the computed distance from x to c, duplicate snap included,
    is above d2_x, so a full pass would leave x unchanged: by the triangle inequality d(x, c) >= d(a, c) - d(x, a)
    and ``sqrt(u) + sqrt(v) <= 2 sqrt((u + v) / 2)``. The left side is one number per center.
    """

    def __init__(self, sq_norms: np.ndarray, d2: np.ndarray, nearest: np.ndarray, centers: np.ndarray,
                 center_sq: np.ndarray, capacity: int, slack: float, gather_cost: float, check_cost: float):
        n_rows = sq_norms.shape[0]
        self.slack = slack
        self.slack_sq = (slack * sq_norms.astype(np.float64)).astype(sq_norms.dtype)  # in d2's dtype: no casts
        self.d2 = d2  # the kernel's distances, updated in place; only the moved rows' go down
        self._keys = d2 + self.slack_sq  # kept for the moved rows: a stale key is higher, so merely loose
        self.nearest = nearest.astype(np.intp)  # np.take would convert narrower indices at every check
        self.centers = np.concatenate([centers, np.empty((capacity, centers.shape[1]))])  # float64, room for more
        self.center_sq = np.concatenate([center_sq, np.empty(capacity)])
        self.n_centers = centers.shape[0]
        self._costs = {"stream": 1.0, "gather": gather_cost, "check": check_cost}
        self._limits = np.empty(n_rows, dtype=sq_norms.dtype)
        self._live = np.empty(n_rows, dtype=bool)
        self._unchecked, self._skip = 0, 0  # full passes before the next check, and the current back-off
        self.computed = 0  # row-center distances computed, for the logs and the benchmarks

    def _per_row(self, kind: str) -> float:
        """Cost of one row of ``kind`` ("stream": in a full pass, "gather": computed alone, "check": the bound)."""
        return self._costs[kind]

    @property
    def tracking(self) -> bool:
        """Whether a check can ever pay, hence whether the rows' nearest centers are worth keeping."""
        return self._per_row("check") < _PAYING_SHARE

    def live_rows(self, center: np.ndarray, center_sq: float) -> Optional[np.ndarray]:
        """Rows (ascending) the new center may come closer to; None when one full pass is the cheaper way.

        A check that did not pay for itself backs the next ones off (``_MAX_UNCHECKED_PICKS``), so on inputs where
        most rows stay live the kernel is one full pass per pick plus a check every few dozen picks; a check that
        alone costs what gathering may save never runs (``tracking``).
        """
        n_rows = self.d2.shape[0]
        if self.n_centers == 0 or self._unchecked > 0 or not self.tracking:
            self._unchecked = max(0, self._unchecked - 1)
            self.computed += n_rows
            return None
        limit = self._squared_gaps(center, center_sq)
        limit *= 0.25 * (1.0 - 1e-9)
        limit -= self.slack / 2 * (self.center_sq[:self.n_centers] + center_sq)
        # In float32 the check rounds by < 2^-23 (|x|^2 + |a|^2 + |c|^2), far inside the slack's spare half.
        np.take(limit.astype(self._limits.dtype), self.nearest, out=self._limits)
        rows = np.flatnonzero(np.less_equal(self._limits, self._keys, out=self._live))
        stream, gather, check = (self._per_row(kind) for kind in ("stream", "gather", "check"))
        if gather * rows.size + check * n_rows >= _PAYING_SHARE * stream * n_rows:  # did not pay: back off
            self._skip = min(max(1, 2 * self._skip), _MAX_UNCHECKED_PICKS)
            self._unchecked = self._skip
        else:
            self._skip = 0
        if gather * rows.size >= _PAYING_SHARE * stream * n_rows:
            self.computed += n_rows
            return None
        self.computed += rows.size
        return rows

    def _squared_gaps(self, center: np.ndarray, center_sq: float) -> np.ndarray:
        """Squared distances from the centers so far to ``center`` (float64, a lower bound up to rounding)."""
        gaps = self.centers[:self.n_centers] - center
        return np.einsum("ij,ij->i", gaps, gaps)

    def add_center(self, center: np.ndarray, center_sq: float, moved: np.ndarray) -> None:
        """Record the new center, nearest now to the ``moved`` rows (nothing to keep when no check can run)."""
        if not self.tracking:
            return
        index = self.n_centers
        self.centers[index] = center
        self.center_sq[index] = center_sq
        self.n_centers += 1
        self.nearest[moved] = index
        self._keys[moved] = self.d2[moved] + self.slack_sq[moved]


class _GradientBound(_TriangleBound):
    """``_TriangleBound`` over BADGE's gradient embeddings ``g = r (x) h`` (r: C residuals, h: D features),
    whose centers are stored as ``[r, h]`` (C + D numbers, ``n_classes`` the first C) instead of C*D.

    ``|g_a - g_c|^2 = |g_a|^2 + |g_c|^2 - 2 (r_a . r_c)(h_a . h_c)``, the norms being the kernel's squared
    norms. In float64 (h is float32, so its products are exact) the dots err by at most ``C`` and ``D``
    units of rounding of ``|r_a||r_c|`` and ``|h_a||h_c|``, the norms by ``C + D + 1``, the sum by three more:
    below ``(2 (C + D) + 10) 2^-53 (|g_a|^2 + |g_c|^2)`` in all. Subtracting ``2 (C + D + 8) 2^-52`` of
    that sum keeps every value below the exact squared gap, so the check is the base class's.
    """

    def __init__(self, n_classes: int, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.n_classes = n_classes
        self._expansion_error = 2.0 * (self.centers.shape[1] + 8) * 2.0 ** -52

    def _squared_gaps(self, center: np.ndarray, center_sq: float) -> np.ndarray:
        stored, split = self.centers[:self.n_centers], self.n_classes
        gaps = np.dot(stored[:, :split], center[:split])
        gaps *= np.dot(stored[:, split:], center[split:])
        gaps *= -2.0
        norms = self.center_sq[:self.n_centers] + center_sq
        gaps += norms
        gaps -= self._expansion_error * norms
        return gaps


class _RowDots:
    """``matrix @ vector`` (or ``vector @ matrix`` for a (features, n) matrix) at chosen rows, bit for bit.

    The BLAS matrix-vector kernels compute every output with the same operations wherever it sits, except
    the last few outputs of a call (a remainder path). Each gathered call is therefore padded to a multiple
    of ``_GATHER_ALIGNMENT`` rows, and the rows of the full matrix's own last partial block are always taken
    from a call that ends where the full pass ends. The tests check the values against one full pass.
    (A multi-threaded OpenBLAS 0.3.21 also takes the remainder path at the last rows of each thread's share,
    so there a full pass's values at those few rows depend on the thread count, and so do today's picks.)
    """

    def __init__(self, matrix: np.ndarray, rows_axis: int):
        self.matrix, self.rows_axis = matrix, rows_axis
        n_rows = matrix.shape[rows_axis]
        self.tail_start = n_rows - n_rows % _GATHER_ALIGNMENT if n_rows > _GATHER_ALIGNMENT else 0

    def _product(self, part: np.ndarray, vector: np.ndarray) -> np.ndarray:
        return np.dot(part, vector) if self.rows_axis == 0 else np.dot(vector, part)

    def __call__(self, vector: np.ndarray, rows: np.ndarray) -> np.ndarray:
        split = int(np.searchsorted(rows, self.tail_start))
        head, tail = rows[:split], rows[split:]
        out = np.empty(rows.size, dtype=np.result_type(self.matrix, vector))
        if head.size:
            padded = np.concatenate([head, np.full((-head.size) % _GATHER_ALIGNMENT, head[0], dtype=head.dtype)])
            out[:split] = self._product(np.take(self.matrix, padded, axis=self.rows_axis), vector)[:split]
        if tail.size:  # with the block before it, so the call is a matrix product like the full pass's
            first = max(0, self.tail_start - _GATHER_ALIGNMENT)
            block = self.matrix[first:] if self.rows_axis == 0 else self.matrix[:, first:]
            out[split:] = self._product(block, vector)[tail - first]
        return out


def _with_row(rows: np.ndarray, row: int) -> np.ndarray:
    """Ascending unique ``rows`` with ``row`` in its place (``np.union1d`` without the sort of every row)."""
    at = int(np.searchsorted(rows, row))
    return rows if at < rows.size and rows[at] == row else np.insert(rows, at, row)


def _nearest_of_centers(X: np.ndarray, sq_norms: np.ndarray, centers: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """Squared euclidean distance from every row of X to its nearest center (ties to the lower center) and that
    center's position, in bounded blocks; ``sq_norms`` are the rows' squared norms."""
    center_sq = np.einsum("ij,ij->i", centers, centers)
    block_rows = max(1, (1 << 24) // max(1, centers.shape[0]))
    result = np.empty(X.shape[0], dtype=X.dtype)
    nearest = np.empty(X.shape[0], dtype=np.int64)
    for start in range(0, X.shape[0], block_rows):
        block = X[start:start + block_rows]
        d2 = block @ centers.T
        d2 *= -2
        d2 += sq_norms[start:start + block_rows, None]
        d2 += center_sq[None, :]
        nearest[start:start + block_rows] = np.argmin(d2, axis=1)
        result[start:start + block_rows] = d2[np.arange(d2.shape[0]), nearest[start:start + block_rows]]
    np.maximum(result, 0, out=result)
    return result, nearest


def k_center_greedy(
    X: Any, n_select: int, *, initial_centers: Any = None, metric: str = "euclidean", copy: bool = True
) -> Tuple[np.ndarray, np.ndarray]:
    """``_k_center_greedy`` (see there) on checked arguments: X of shape (n_rows, n_features), initial_centers
    of shape (n_centers, n_features) or None; a bad one is a ``ValueError`` naming it."""
    _choice("metric", metric, METRICS)
    checked = _checked_candidates(Candidates(None, X, initial_centers), {"embeddings": "X",
                                  "labeled_embeddings": "initial_centers"}, copy=copy)
    return _k_center_greedy(checked.embeddings, _positive_int("n_select", n_select, 0),
                            initial_centers=checked.labeled_embeddings, metric=metric, copy=False)


def _k_center_greedy(
    X: Any, n_select: int, *, initial_centers: Any = None, metric: str = "euclidean", copy: bool = True
) -> Tuple[np.ndarray, np.ndarray]:
    """Greedy k-center (farthest-first traversal), the core-set selection of Sener & Savarese (2018).

    Each pick is the row farthest from its nearest center; the pick then becomes a center. The
    centers start as ``initial_centers`` (the already-labeled rows) or, when there are none, as the
    column mean of X, so the selection is deterministic and every pick has a real distance.

    Works in float32 with precomputed squared norms: one matrix-vector product per pick updates the
    running minimum distance in place, so memory is one centered copy of X plus a few length-n
    vectors (``copy=False`` centers a float32 C-contiguous X in place instead, like scikit-learn's
    ``copy_x``). Rows are centered first (distances do not change) so that ``|x|^2 - 2 x.c + |c|^2`` does
    not lose the distance's digits to a large common offset; squared distances within
    ``_DUPLICATE_TOLERANCE`` of the norms count as exact zeros, so duplicates tie and ties go to the
    lowest index. Cosine distance normalizes the rows once; ``1 - cos = |u - v|^2 / 2`` on unit
    vectors, so the same loop applies. The pruning (``_TriangleBound``, ``_RowDots``) leaves the picks
    those of one full pass per pick.

    Returns the picked row indices in order and each one's distance to its nearest center (euclidean,
    or 1 - cosine similarity) at the moment it was picked.
    """
    X = np.ascontiguousarray(X, dtype=np.float32)
    n_rows = X.shape[0]
    n_select = min(int(n_select), n_rows)
    if initial_centers is None or len(initial_centers) == 0:
        centers = X.mean(axis=0, dtype=np.float64).astype(np.float32)[None, :]
    else:
        centers = np.ascontiguousarray(initial_centers, dtype=np.float32)
    if copy or not X.flags.writeable:
        X = X.copy()
    if metric == "cosine":
        X = _normalize_rows(X)
        centers = _normalize_rows(centers.copy())
    offset = X.mean(axis=0, dtype=np.float64).astype(np.float32)
    X -= offset
    centers = centers - offset
    sq_norms = np.einsum("ij,ij->i", X, X)
    d2, nearest_center = _nearest_of_centers(X, sq_norms, centers)
    nearest = _NearestCenter(sq_norms, d2)
    bound = _TriangleBound(sq_norms, nearest.d2, nearest_center, centers, np.einsum("ij,ij->i", centers, centers,
                           dtype=np.float64), n_select, _pruning_slack(X.shape[1]),
                           gather_cost=_GATHER_COST["k_center_greedy"],
                           check_cost=_CHECK_BYTES["k_center_greedy"] / (4 * X.shape[1]))
    row_dots = _RowDots(X, rows_axis=0)
    indices = np.empty(n_select, dtype=np.int64)
    distances = np.empty(n_select, dtype=np.float64)
    dots = np.empty(n_rows, dtype=np.float32)
    progress = _Progress("k-center greedy", n_select)
    for pick in range(n_select):
        chosen = int(np.argmax(nearest.d2))
        indices[pick] = chosen
        distances[pick] = max(float(nearest.d2[chosen]), 0.0)
        center = X[chosen]
        rows = bound.live_rows(center, float(sq_norms[chosen]))
        if rows is None:
            np.dot(X, center, out=dots)
            moved = nearest.fold(dots, chosen) if bound.tracking else nearest.add(dots, chosen)  # add: no rows
        else:
            moved = nearest.fold(row_dots(center, rows), chosen, rows)
        bound.add_center(center, float(sq_norms[chosen]), moved)
        nearest.d2[chosen] = -np.inf
        progress.update(pick + 1)
    logger.debug("k-center greedy: %.1f%% of the %d x %d row-center distances computed", 100.0 * bound.computed
                 / max(1, n_rows * n_select), n_rows, n_select)
    return indices, _distance_from_squared(distances, metric)


def _distance_from_squared(d2: np.ndarray, metric: str) -> np.ndarray:
    return d2 / 2.0 if metric == "cosine" else np.sqrt(d2)


class DiversitySampler(_Sampler):
    """Diverse rows by embedding (active learning): k-center greedy (``k_center_greedy``) or the row nearest
    each k-means centroid (``kmeans_representatives``).

    With ``uncertainty_prefilter`` = beta > 0 it is the uncertain-and-diverse hybrid (Zhdanov 2019):
    only the beta x batch_size most uncertain candidates by ``uncertainty_mode`` are considered
    (``uncertainty_prefilter``); k-center still starts from the labeled rows.

    Parameters
    ----------
    metric : {"euclidean", "cosine"}, default="euclidean"
    method : {"kcenter", "kmeans"}, default="kcenter"
    uncertainty_prefilter : int, default=0
        beta; 0 considers every candidate.
    uncertainty_mode : {"margin", "entropy", "least_confidence"}, default="margin"
        The pre-filter's uncertainty measure; see ``uncertainty_scores``.
    random_state : int or None, default=42
        Seed of the k-means++ start of ``method="kmeans"``; k-center is deterministic (it starts from the
        labeled rows or the candidates' mean).
    """

    _needs = ("embeddings",)

    _rules = dict(metric=METRICS, random_state=_seed, method=DIVERSITY_METHODS, uncertainty_prefilter=0,
              uncertainty_mode=UNCERTAINTY_MODES)

    def __init__(self, metric: str = "euclidean", *, method: str = "kcenter", uncertainty_prefilter: int = 0,
                 uncertainty_mode: str = "margin", random_state: Optional[int] = 42):
        self.metric = metric
        self.method = method
        self.uncertainty_prefilter = uncertainty_prefilter
        self.uncertainty_mode = uncertainty_mode
        self.random_state = random_state

    def _select(self, candidates: Candidates, batch_size: int, *, overwrite: bool = False) -> Selection:
        """``overwrite``: the embeddings are the caller's own working copy, which the kernel may center in place."""
        kept = self._prefilter(candidates.probabilities, batch_size, candidates.embeddings.shape[0])
        embeddings = candidates.embeddings if kept is None else candidates.embeddings[kept]
        copy = not overwrite and kept is None
        if self.method == "kmeans":
            indices, scores = _kmeans_representatives(embeddings, batch_size, metric=self.metric,
                                                      random_state=self.random_state, copy=copy)
        else:
            indices, scores = _k_center_greedy(embeddings, batch_size, initial_centers=candidates.labeled_embeddings,
                                               metric=self.metric, copy=copy)
        return Selection(indices if kept is None else kept[indices], scores)

    def _prefilter(self, probabilities: Optional[np.ndarray], batch_size: int, n_rows: int) -> Optional[np.ndarray]:
        """The kept candidates' positions, or None when every candidate stays."""
        if self.uncertainty_prefilter == 0:
            return None
        if probabilities is None:
            raise ValueError("uncertainty_prefilter needs the candidates' probabilities")
        n_keep = int(self.uncertainty_prefilter) * batch_size
        if n_keep >= n_rows:
            logger.info("Uncertainty pre-filter keeps all %d candidates (%d x BATCH_SIZE=%d)", n_rows,
                        self.uncertainty_prefilter, batch_size)
            return None
        logger.info("Uncertainty pre-filter: the %d most uncertain of %d candidates by %s (%d x BATCH_SIZE=%d)",
                    n_keep, n_rows, self.uncertainty_mode, self.uncertainty_prefilter, batch_size)
        return _uncertainty_prefilter(probabilities, n_keep, self.uncertainty_mode)

    def select_batch(self, embeddings: Any, batch_size: int, indices: Any = None, *,
                     labeled_embeddings: Any = None, probabilities: Any = None) -> np.ndarray:
        """Positions (or ``indices[chosen]``) of the picks in order.

        ``indices`` has one id per row of ``embeddings``. ``labeled_embeddings`` (shape (m, d)), the
        already-labeled rows, are k-center's initial centers (never picked, and not counted by ``indices``);
        ``probabilities`` (shape (n, n_classes)) are needed when ``uncertainty_prefilter`` > 0.
        """
        return self._select_batch(Candidates(probabilities, embeddings, labeled_embeddings), batch_size, indices,
                                  "embeddings", copy=True, overwrite=True)


class HybridSampler(DiversitySampler):
    """The uncertain-and-diverse hybrid: ``DiversitySampler`` with k-means behind a beta = 3 pre-filter.

    The row nearest each of ``batch_size`` k-means centroids among the 3 x batch_size most uncertain
    candidates (Zhdanov 2019); every parameter as in ``DiversitySampler``, only the defaults differ.
    """

    def __init__(self, metric: str = "euclidean", *, method: str = "kmeans", uncertainty_prefilter: int = 3,
                 uncertainty_mode: str = "margin", random_state: Optional[int] = 42):
        super().__init__(metric, method=method, uncertainty_prefilter=uncertainty_prefilter,
                         uncertainty_mode=uncertainty_mode, random_state=random_state)


def uncertainty_prefilter(probabilities: Any, n_keep: int, *, mode: str = "margin") -> np.ndarray:
    """Positions of the ``n_keep`` most uncertain rows, in ascending order (the hybrid's pre-filter).

    The rows are those ``top_k_indices(uncertainty_scores(probabilities, mode), n_keep)`` ranks first, so
    ties at the cut go to the earlier row as everywhere else; they are returned sorted so that a
    selection run on the kept rows breaks its own ties in input order too. ``n_keep`` at least the row
    count keeps every row. A top-k, so it shards exactly: the top ``n_keep`` of the union of shards is the
    top ``n_keep`` of the shards' own top ``n_keep``.

    Parameters
    ----------
    probabilities : array-like of shape (n_rows, n_classes)
        Class probabilities of the candidates.
    n_keep : int
        Rows to keep, ``UNCERTAINTY_PREFILTER * BATCH_SIZE``; at least 1.
    mode : {"margin", "entropy", "least_confidence"}, default="margin"
        The uncertainty measure of ``uncertainty_scores``.

    Returns
    -------
    kept : ndarray of shape (min(n_keep, n_rows),), dtype int64
    """
    return _uncertainty_prefilter(_as_matrix(probabilities, "probabilities", np.float64),
                                  _positive_int("n_keep", n_keep, 1), _choice("mode", mode, UNCERTAINTY_MODES))


def _uncertainty_prefilter(probabilities: np.ndarray, n_keep: int, mode: str) -> np.ndarray:
    return np.sort(top_k_indices(_uncertainty_scores(probabilities, mode), n_keep))


def kmeans_representatives(
    X: Any, n_select: int, *, metric: str = "euclidean", random_state: Any = None, max_iter: int = 100,
    tol: float = 1e-4, copy: bool = True, sample_weight: Any = None
) -> Tuple[np.ndarray, np.ndarray]:
    """k-means with ``n_select`` clusters; the row nearest each centroid (Zhdanov 2019).

    Lloyd's algorithm from a k-means++ start (the first center drawn uniformly, each next one with
    probability proportional to its squared distance to the nearest center so far), one initialization.
    It stops when no row changes cluster, when the centers move less than ``tol`` times the mean
    per-feature variance of X (scikit-learn's rule), or after ``max_iter`` iterations. A cluster that
    empties is moved to the row farthest from its center. Each cluster then contributes its member
    nearest its centroid (ties to the lower index), so the picks are distinct rows. Only when X has
    fewer distinct rows than ``n_select`` do clusters stay empty; the missing picks are then the
    unpicked rows farthest from their centroid (logged), which duplicate earlier picks.

    Works in float32 on a centered copy of X (``copy=False`` centers a float32 C-contiguous X in place,
    as in ``k_center_greedy``); distances to the k centers are computed in blocks of at
    most 2**24 entries, so the extra memory beyond that copy is O(n + k * n_features). Each iteration
    costs O(n * k * n_features): meant for the pre-filtered candidates of the hybrid (a few times the
    batch size), not for a whole pool of millions of rows. ``metric="cosine"`` clusters the unit-length
    rows (spherical k-means with euclidean centroids).

    Parameters
    ----------
    X : array-like of shape (n_rows, n_features)
        Embeddings of the rows to choose from.
    n_select : int
        Clusters, hence picks; more than n_rows selects every row.
    metric : {"euclidean", "cosine"}, default="euclidean"
    random_state : int, numpy Generator or None, default=None
        Seed of the k-means++ draws; the same seed gives the same picks.
    max_iter : int, default=100
        Lloyd iterations at most; at least 1.
    tol : float, default=1e-4
        Relative tolerance on the squared center shift; at least 0.
    copy : bool, default=True
        Work on a copy of X rather than overwrite it.
    sample_weight : array-like of shape (n_rows,) or None, default=None
        Non-negative weight of each row (a sharded merge passes how many rows each shard's pick stands
        for): k-means++ draws by weight x D^2, centroids are weighted means, the tolerance uses the weighted
        variance, and cluster sizes are weight sums. None weighs every row 1 (the unweighted algorithm).

    Returns
    -------
    indices : ndarray of shape (min(n_select, n_rows),), dtype int64
        Picked rows, the one standing for the largest cluster first (ties to the lower row index).
    cluster_sizes : ndarray of shape (min(n_select, n_rows),), dtype float64
        Rows (weights) in each pick's cluster (0 for a fill-in pick).
    """
    _choice("metric", metric, METRICS)
    if isinstance(tol, (bool, np.bool_)) or not isinstance(tol, numbers.Real) or not tol >= 0.0:
        raise ValueError("tol must be a number >= 0, got {!r}".format(tol))
    X = _as_matrix(X, "X", np.float32, copy=copy)
    weights = None if sample_weight is None else _sample_weights(sample_weight, X.shape[0])
    return _kmeans_representatives(X, _positive_int("n_select", n_select, 0), metric=metric,
                                   random_state=random_state, max_iter=_positive_int("max_iter", max_iter, 1),
                                   tol=float(tol), copy=False, sample_weight=weights)


def _kmeans_representatives(X: np.ndarray, n_select: int, *, metric: str, random_state: Any, max_iter: int = 100,
                            tol: float = 1e-4, copy: bool = True, sample_weight: Optional[np.ndarray] = None
                            ) -> Tuple[np.ndarray, np.ndarray]:
    weights = sample_weight
    X = np.ascontiguousarray(X, dtype=np.float32)
    if copy or not X.flags.writeable:
        X = X.copy()
    n_rows = X.shape[0]
    n_select = max(0, min(int(n_select), n_rows))
    if n_select >= n_rows:
        return np.arange(n_rows, dtype=np.int64), np.ones(n_rows) if weights is None else weights.copy()
    if metric == "cosine":
        X = _normalize_rows(X)
    X -= X.mean(axis=0, dtype=np.float64).astype(np.float32)
    sq_norms = np.einsum("ij,ij->i", X, X)
    centers = X[_kmeans_plusplus(X, sq_norms, n_select, np.random.default_rng(random_state), weights)]
    if weights is None:
        variance = np.var(X, axis=0, dtype=np.float64)
    else:
        weighted_mean = np.average(X, axis=0, weights=weights)
        variance = np.average((X - weighted_mean) ** 2, axis=0, weights=weights)
    shift_tolerance = float(tol) * float(np.mean(variance))
    labels = None
    progress = _Progress("k-means ({} rows, {} clusters)".format(n_rows, n_select), int(max_iter), min_total=1,
                         unit="iterations", by_time=True)
    for iteration in range(int(max_iter)):
        if iteration:
            progress.update(iteration)
        d2, new_labels = _nearest_of_centers(X, sq_norms, centers)
        if labels is not None and np.array_equal(new_labels, labels):
            break
        labels = new_labels
        new_centers = _cluster_means(X, labels, centers, d2, weights)
        shift = float(np.sum((new_centers.astype(np.float64) - centers) ** 2))
        centers = new_centers
        if shift <= shift_tolerance:
            break
    d2, labels = _nearest_of_centers(X, sq_norms, centers)
    return _nearest_to_each_centroid(labels, d2, n_select, weights)


def _kmeans_plusplus(X: np.ndarray, sq_norms: np.ndarray, n_clusters: int, rng: np.random.Generator,
                     weights: Optional[np.ndarray] = None) -> np.ndarray:
    """k-means++ seeding: row positions of the initial centers (distinct while rows are distinct).

    With ``weights`` each draw is proportional to weight x D^2 (the first to the weight alone).
    """
    n_rows = X.shape[0]
    nearest = _NearestCenter(sq_norms, np.full(n_rows, np.inf, dtype=np.float32))
    chosen = np.empty(n_clusters, dtype=np.int64)
    dots = np.empty(n_rows, dtype=np.float32)
    pick = _draw_proportional(np.ones(n_rows) if weights is None else weights, rng)
    progress = _Progress("k-means++ start", n_clusters)
    for position in range(n_clusters):
        progress.update(position)
        chosen[position] = pick
        np.dot(X, X[pick], out=dots)
        nearest.add(dots, pick)
        nearest.d2[pick] = 0.0
        pick = _draw_proportional(nearest.d2 if weights is None else nearest.d2 * weights, rng)
        if pick < 0:  # every (weighted) row duplicates a center: the rest start on unused rows, in order
            rest = np.setdiff1d(np.arange(n_rows), chosen[:position + 1], assume_unique=True)
            chosen[position + 1:] = rest[:n_clusters - position - 1]
            break
    return chosen


def _cluster_means(X: np.ndarray, labels: np.ndarray, centers: np.ndarray, d2: np.ndarray,
                   weights: Optional[np.ndarray] = None) -> np.ndarray:
    """(Weighted) mean of each cluster's rows; an empty cluster (no weight) moves to the farthest row from its
    center not yet used."""
    n_clusters = centers.shape[0]
    counts = np.bincount(labels, weights=weights, minlength=n_clusters)
    sums = np.zeros(centers.shape, dtype=np.float64)
    block_rows = max(1, (1 << 24) // n_clusters)
    for start in range(0, X.shape[0], block_rows):
        block_labels = labels[start:start + block_rows]
        one_hot = (block_labels[:, None] == np.arange(n_clusters)[None, :]).astype(np.float32)
        if weights is not None:
            one_hot *= weights[start:start + block_rows, None].astype(np.float32)
        sums += one_hot.T @ X[start:start + block_rows]
    means = np.array(centers, dtype=np.float32, copy=True)
    filled = counts > 0
    means[filled] = (sums[filled] / counts[filled, None]).astype(np.float32)
    empty = np.flatnonzero(~filled)
    if empty.size:
        farthest = top_k_indices(d2, empty.size)
        movable = farthest[d2[farthest] > 0.0]
        means[empty[:movable.size]] = X[movable]
    return means


def _nearest_to_each_centroid(labels: np.ndarray, d2: np.ndarray, n_select: int,
                              weights: Optional[np.ndarray] = None) -> Tuple[np.ndarray, np.ndarray]:
    """One row per non-empty cluster (its member nearest the centroid), largest cluster (by weight) first;
    fill-ins after."""
    order = np.lexsort((np.arange(labels.shape[0]), d2, labels))  # by cluster, then distance, then row
    first_of_cluster = np.ones(order.shape[0], dtype=bool)
    first_of_cluster[1:] = labels[order[1:]] != labels[order[:-1]]
    picks = order[first_of_cluster]
    sizes = np.bincount(labels, weights=weights)[labels[picks]].astype(np.float64)
    ranked = np.lexsort((picks, -sizes))
    picks, sizes = picks[ranked], sizes[ranked]
    missing = n_select - picks.size
    if missing > 0:
        unpicked = np.setdiff1d(np.arange(labels.shape[0]), picks, assume_unique=True)
        fill = unpicked[top_k_indices(d2[unpicked], missing)]
        logger.warning("k-means: only %d distinct clusters among %d rows; the remaining %d picks are the rows "
                       "farthest from their centroid", picks.size, labels.shape[0], missing)
        picks = np.concatenate([picks, fill])
        sizes = np.concatenate([sizes, np.zeros(missing)])
    return picks.astype(np.int64), sizes


def _prediction_residuals(probabilities: np.ndarray) -> np.ndarray:
    """p - onehot(argmax p): the last-layer cross-entropy gradient factor for the predicted label."""
    residual = np.array(probabilities, dtype=np.float64, copy=True)
    residual[np.arange(residual.shape[0]), residual.argmax(axis=1)] -= 1.0
    return residual


def _gradient_factors(embeddings: Any, probabilities: Any, metric: str
                      ) -> Tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The factors of BADGE's gradients ``g_i = d_i (x) h_i``: h as float32, d = ``_prediction_residuals``,
    both unit-length rows for cosine; and |g_i|^2 = |d_i|^2 |h_i|^2 before and after that normalization."""
    X = np.ascontiguousarray(embeddings, dtype=np.float32)
    residual = _prediction_residuals(np.ascontiguousarray(probabilities, dtype=np.float64))
    raw_sq_norms = np.einsum("ij,ij->i", residual, residual) * np.einsum("ij,ij->i", X, X, dtype=np.float64)
    if metric != "cosine":
        return X, residual, raw_sq_norms, raw_sq_norms
    X, residual = _normalize_rows(X.copy()), _normalize_rows(residual)
    sq_norms = np.einsum("ij,ij->i", residual, residual) * np.einsum("ij,ij->i", X, X, dtype=np.float64)
    return X, residual, raw_sq_norms, sq_norms


def gradient_embeddings(embeddings: Any, probabilities: Any) -> np.ndarray:
    """BADGE's gradient embeddings ``(p - onehot(argmax p)) (x) h`` as an (n, C*D) float64 matrix.

    Materialized, so only for small inputs and for checking; ``badge_kmeanspp`` never builds it.
    """
    X = _as_matrix(embeddings, "embeddings", np.float64)
    residual = _prediction_residuals(_as_matrix(probabilities, "probabilities", np.float64))
    if residual.shape[0] != X.shape[0]:
        raise ValueError("embeddings and probabilities have different row counts: {} and {}".format(
            X.shape[0], residual.shape[0]))
    return (residual[:, :, None] * X[:, None, :]).reshape(X.shape[0], -1)


def badge_kmeanspp(
    embeddings: Any, probabilities: Any, n_select: int, *, metric: str = "euclidean", random_state: Any = None,
    sample_weight: Any = None,
) -> Tuple[np.ndarray, np.ndarray]:
    """``_badge_kmeanspp`` (see there) on checked arguments: embeddings of shape (n_rows, n_features),
    probabilities of shape (n_rows, n_classes), sample_weight of shape (n_rows,) or None; a bad one is a
    ``ValueError`` naming it."""
    _choice("metric", metric, METRICS)
    checked = _checked_candidates(Candidates(probabilities, embeddings))
    weights = None if sample_weight is None else _sample_weights(sample_weight, checked.embeddings.shape[0])
    return _badge_kmeanspp(checked.embeddings, checked.probabilities, _positive_int("n_select", n_select, 0),
                           metric=metric, random_state=random_state, sample_weight=weights)


def _badge_kmeanspp(
    embeddings: Any, probabilities: Any, n_select: int, *, metric: str = "euclidean", random_state: Any = None,
    sample_weight: Any = None,
) -> Tuple[np.ndarray, np.ndarray]:
    """BADGE (Ash et al. 2020): k-means++ seeding over gradient embeddings ``g_i = (p_i - e_yhat_i) (x) h_i``.

    The first pick is the row with the largest gradient norm; every next pick is drawn with probability
    proportional to its squared distance to the nearest pick so far (D^2 sampling), which trades off
    uncertainty (gradient magnitude) and diversity. The n x C*D gradient matrix is never built:
    ``g_i . g_j = (d_i . d_j)(h_i . h_j)``, so each pick costs one n x D (float32) and one n x C
    matrix-vector product. A draw is ``u = rng.random() * sum(D2)`` located in ``cumsum(D2)`` by binary
    search (``_BlockedDraw``: the same row, from per-block sums); picked rows and exact duplicates of picks
    have D2 = 0 and are never drawn. The pruning (``_GradientBound``, in gradient space through the same
    factorization) leaves the draws those of one full pass per pick. When every remaining row duplicates a
    pick (sum(D2) = 0), the rest are taken by decreasing gradient norm.

    ``metric="cosine"`` normalizes d and h (hence g) first; the first pick still maximizes the raw norm.
    ``sample_weight`` (n,) non-negative, as in k-means|| (Bahmani et al. 2012): draws are proportional to
    weight x D^2 (the merge of a sharded run weighs each shard's pick by the rows it stands for).
    Returns the picked row indices in order and each one's distance to its nearest earlier pick at the
    moment it was picked (the first pick reports its gradient norm, or 1.0 for cosine).
    """
    X, residual, raw_sq_norms, sq_norms = _gradient_factors(embeddings, probabilities, metric)
    rng = np.random.default_rng(random_state)
    n_rows = X.shape[0]
    n_select = min(int(n_select), n_rows)
    indices = np.empty(n_select, dtype=np.int64)
    distances = np.empty(n_select, dtype=np.float64)
    if n_select == 0:
        return indices, distances
    residual_by_class = np.ascontiguousarray(residual.T)  # (C, n): a faster product than (n, C) by a vector
    del residual
    nearest = _NearestCenter(sq_norms, np.full(n_rows, np.inf))
    min_d2 = nearest.d2
    n_classes = residual_by_class.shape[0]
    bound = _GradientBound(n_classes, sq_norms, min_d2, np.zeros(n_rows, dtype=np.intp),
                           np.empty((0, n_classes + X.shape[1])), np.empty(0), n_select, _pruning_slack(X.shape[1]),
                           gather_cost=_GATHER_COST["badge_kmeanspp"],
                           check_cost=_CHECK_BYTES["badge_kmeanspp"] / (4 * X.shape[1] + 8 * n_classes))
    h_row_dots, residual_row_dots = _RowDots(X, rows_axis=0), _RowDots(residual_by_class, rows_axis=1)
    h_dot = np.empty(n_rows, dtype=np.float32)
    dots = np.empty(n_rows, dtype=np.float64)
    draw = _BlockedDraw(n_rows)
    weighted = None if sample_weight is None else np.empty(n_rows)  # min_d2 * sample_weight, kept at the moved rows
    chosen = int(np.argmax(raw_sq_norms))
    indices[0] = chosen
    distances[0] = 1.0 if metric == "cosine" else math.sqrt(raw_sq_norms[chosen])
    progress = _Progress("BADGE k-means++", n_select)
    for pick in range(1, n_select + 1):
        gradient = np.concatenate([residual_by_class[:, chosen], X[chosen].astype(np.float64)])  # factors of g
        rows = bound.live_rows(gradient, float(sq_norms[chosen]))
        if rows is None:
            products = np.dot(residual_by_class[:, chosen], residual_by_class, out=dots)
            products *= np.dot(X, X[chosen], out=h_dot)
        else:
            products = residual_row_dots(residual_by_class[:, chosen], rows)
            products *= h_row_dots(X[chosen], rows)
        moved = _with_row(nearest.fold(products, chosen, rows), chosen)
        min_d2[chosen] = 0.0
        bound.add_center(gradient, float(sq_norms[chosen]), moved)
        progress.update(pick)
        if pick == n_select:
            break
        if weighted is not None:
            if pick == 1:
                np.multiply(min_d2, sample_weight, out=weighted)
            else:
                weighted[moved] = min_d2[moved] * sample_weight[moved]
        chosen = draw(min_d2 if weighted is None else weighted, rng)
        if chosen < 0:
            rest = np.setdiff1d(np.arange(n_rows), indices[:pick], assume_unique=True)
            fill = rest[top_k_indices(raw_sq_norms[rest], n_select - pick)]
            logger.warning("BADGE: only %d distinct gradient embeddings among %d rows; the remaining %d picks "
                           "duplicate earlier ones and are taken by gradient norm", pick, n_rows, fill.size)
            indices[pick:] = fill
            distances[pick:] = 0.0
            break
        indices[pick] = chosen
        distances[pick] = min_d2[chosen] / 2.0 if metric == "cosine" else math.sqrt(min_d2[chosen])
    logger.debug("BADGE: %.1f%% of the %d x %d row-pick distances computed", 100.0 * bound.computed
                 / max(1, n_rows * n_select), n_rows, n_select)
    logger.debug("BADGE: %d of %d draws summed every row", draw.fallbacks, draw.draws)
    return indices, distances


def _sample_weights(sample_weight: Any, n_rows: int) -> np.ndarray:
    weights = np.asarray(sample_weight, dtype=np.float64)
    if weights.shape != (n_rows,) or not np.isfinite(weights).all() or (weights < 0).any():
        raise ValueError("sample_weight must be {} finite non-negative numbers, got shape {}".format(
            n_rows, weights.shape))
    return weights


def _draw_proportional(weights: np.ndarray, rng: np.random.Generator) -> int:
    """Index drawn with probability weights[i] / sum(weights), or -1 when all weights are zero."""
    cumulative = np.cumsum(weights)
    if not cumulative[-1] > 0.0:
        return -1
    return _position_drawn(cumulative, weights, rng.random())


def _position_drawn(cumulative: np.ndarray, weights: np.ndarray, uniform: float) -> int:
    """The row of ``uniform * total`` in ``cumulative = np.cumsum(weights)`` (whose total is positive)."""
    position = int(np.searchsorted(cumulative, uniform * cumulative[-1], side="right"))
    if position >= weights.shape[0]:  # rounding put the draw at the very end
        position = int(np.flatnonzero(weights > 0)[-1])
    return position


_DRAW_BLOCK = 1024  # rows per partial sum of _BlockedDraw
_DRAW_RANGE = (2.0 ** -900, 2.0 ** 900)  # totals (and draws) where no product of the check under- or overflows


class _BlockedDraw:
    """``_draw_proportional`` on non-negative float64 weights, the same index from the same generator state,
    without a cumulative sum over every row.

    ``_draw_proportional`` returns the first row whose running sum ``S_i`` (``np.cumsum``) exceeds
    ``u = fl(r S_last)``, ``r = rng.random()``. Here the weights are summed per block of ``_DRAW_BLOCK`` rows,
    the blocks' running sums locate the block, and a running sum inside that block alone the row ``i``.
    Every such value, and every ``S_i``, is a float sum of the same exact prefix of non-negative numbers in
    at most ``n + 2 _DRAW_BLOCK + 8`` additions per term, so it lies within the relative error
    ``g = m 2^-53 / (1 - m 2^-53)`` of the exact prefix, in any order of summation; two of them lie
    within ``2.01 g`` of each other. Row ``i`` is returned only when its prefix is above the located draw and
    the prefix before it below, both by ``tolerance = 4 g + 8 2^-53`` (which also covers the roundings of
    the draw and of the check), which implies ``S_(i-1) <= u < S_i``. Otherwise (a draw within that
    distance of a boundary, a total out of ``_DRAW_RANGE``, not finite or NaN) the draw is
    ``_draw_proportional``'s with the same ``r``. A zero total is exact in any order, so -1 without a draw.
    """

    def __init__(self, n_rows: int):
        self.starts = np.arange(0, n_rows, _DRAW_BLOCK)
        unit, terms = 2.0 ** -53, n_rows + 2 * _DRAW_BLOCK + 8
        error = terms * unit / (1.0 - terms * unit)
        self.tolerance = 4.0 * error + 8.0 * unit
        self.draws, self.fallbacks = 0, 0  # for the logs and the tests

    def __call__(self, weights: np.ndarray, rng: np.random.Generator) -> int:
        self.draws += 1
        with np.errstate(over="ignore"):  # an infinite total is today's draw, which warns as today
            ends = np.cumsum(np.add.reduceat(weights, self.starts))
        total = float(ends[-1])
        if total == 0.0:
            return -1
        if not _DRAW_RANGE[0] <= total <= _DRAW_RANGE[1]:  # NaN too
            self.fallbacks += 1
            return _draw_proportional(weights, rng)
        uniform = rng.random()
        position = self._located(weights, ends, uniform * total)
        if position < 0:
            self.fallbacks += 1
            return _position_drawn(np.cumsum(weights), weights, uniform)
        return position

    def _located(self, weights: np.ndarray, ends: np.ndarray, target: float) -> int:
        """The row whose prefix provably holds ``target``, or -1 when it is too close to a boundary to tell."""
        if target < _DRAW_RANGE[0] and target != 0.0:
            return -1
        block = int(np.searchsorted(ends, target, side="right"))
        if block >= ends.size:
            return -1
        before = float(ends[block - 1]) if block else 0.0
        start = block * _DRAW_BLOCK
        prefix = np.cumsum(weights[start:start + _DRAW_BLOCK])
        prefix += before
        at = int(np.searchsorted(prefix, target, side="right"))
        if at >= prefix.size:
            return -1
        previous = float(prefix[at - 1]) if at else before
        if float(prefix[at]) * (1.0 - self.tolerance) > target * (1.0 + self.tolerance) \
                and previous * (1.0 + self.tolerance) <= target * (1.0 - self.tolerance):
            return start + at
        return -1


class BADGESampler(_Sampler):
    """BADGE: k-means++ seeding on gradient embeddings (active learning); see ``badge_kmeanspp``.

    Parameters
    ----------
    metric : {"euclidean", "cosine"}, default="euclidean"
    random_state : int or None, default=42
        Seed of the D^2 sampling; the same seed gives the same picks. None draws a fresh seed.
    """

    _needs = ("probabilities", "embeddings")

    _rules = dict(metric=METRICS, random_state=_seed)

    def __init__(self, metric: str = "euclidean", *, random_state: Optional[int] = 42):
        self.metric = metric
        self.random_state = random_state

    def _select(self, candidates: Candidates, batch_size: int) -> Selection:
        return Selection(*_badge_kmeanspp(candidates.embeddings, candidates.probabilities, batch_size,
                                          metric=self.metric, random_state=self.random_state))

    def select_batch(self, features: Any, probabilities: Any, batch_size: int, indices: Any = None) -> np.ndarray:
        """Positions (or ``indices[chosen]``, one id per row of ``features``) of the picks in order."""
        return self._select_batch(Candidates(probabilities, features), batch_size, indices, "features",
                                  {"embeddings": "features"})


# Label review: the labeled rows whose given label the model doubts, flagged step for step as cleanlab's
# find_label_issues computes them with its defaults (frac_noise=1, min_examples_per_class=1, single-label).
_CL_TOLERANCE = 1e-6  # a probability this far below a class's threshold still counts as confident in it
_CL_MIN_THRESHOLD = 2e-6
_CL_ABSENT_THRESHOLD = 2.0  # the threshold of a class no row is labeled with: no probability reaches it
_CL_MIN_EXAMPLES_PER_CLASS = 1  # a given class with this many rows or fewer is never pruned


class LabelIssues(NamedTuple):
    """What confident learning found among the labeled rows."""

    flagged: np.ndarray  # (n,) bool: the rows whose given label is a likely issue
    thresholds: np.ndarray  # (n_classes,) t_j: mean probability of class j over the rows labeled j
    joint: np.ndarray  # (n_classes, n_classes) int64: the calibrated confident joint, [given, true]

    @property
    def estimated_issue_share(self) -> float:
        """The off-diagonal share of the calibrated confident joint: the estimated share of wrong labels."""
        total = int(self.joint.sum())
        return float(total - int(np.trace(self.joint))) / total if total else 0.0


def self_confidence(probabilities: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """p[given label] of every row, shape (n_rows,)."""
    return probabilities[np.arange(labels.shape[0]), labels]


def confident_thresholds(probabilities: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Per-class thresholds t_j = mean p_j over the rows labeled j, at least 2e-6; 2.0 for a class no row has.

    Parameters
    ----------
    probabilities : ndarray of shape (n_rows, n_classes)
    labels : ndarray of shape (n_rows,)
        Class positions of the given labels, in [0, n_classes).

    Returns
    -------
    ndarray of shape (n_classes,)
    """
    n_classes = probabilities.shape[1]
    thresholds = np.full(n_classes, _CL_ABSENT_THRESHOLD)
    order, bounds = _rows_by_class(labels, n_classes)
    for k in np.flatnonzero(np.diff(bounds)):
        thresholds[k] = probabilities[order[bounds[k]:bounds[k + 1]], k].mean()
    return np.maximum(thresholds, _CL_MIN_THRESHOLD)


def confident_counts(probabilities: np.ndarray, labels: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """The confident joint before calibration: counts[i, j] of rows labeled i whose true class is guessed j.

    A row's guess is the one class whose probability reaches its threshold (within 1e-6), or its top class
    when several do; a row that reaches none is not counted. Counts of disjoint row sets add up.
    """
    n_classes = probabilities.shape[1]
    counts = np.zeros(n_classes * n_classes, dtype=np.int64)
    cutoffs = thresholds - _CL_TOLERANCE
    for start in range(0, probabilities.shape[0], _CHUNK_ROWS):
        block = probabilities[start:start + _CHUNK_ROWS]
        confident = block >= cutoffs
        n_confident = confident.sum(axis=1)
        guess = np.where(n_confident > 1, block.argmax(axis=1), confident.argmax(axis=1))
        counted = n_confident > 0
        pairs = labels[start:start + _CHUNK_ROWS][counted] * n_classes + guess[counted]
        counts += np.bincount(pairs, minlength=n_classes * n_classes)
    return counts.reshape(n_classes, n_classes)


def _round_preserving_sum(values: np.ndarray) -> np.ndarray:
    """``values`` rounded to integers whose sum is the rounded sum of ``values``: the largest rounding errors
    are moved by one (ties to the later entry when rounding up, the earlier when rounding down)."""
    floats = np.asarray(values, dtype=np.float64)
    ints = floats.round()
    target = np.sum(floats).round()
    total = np.sum(ints).round()
    while abs(total - target) > _CL_TOLERANCE:
        step = -1 if target - total < 0 else 1
        changes = min(int(abs(np.round(target - total))), floats.size)
        ints[np.argsort(floats - ints, kind="stable")[::-step][:changes]] += step
        total = np.sum(ints).round()
    return ints.astype(np.int64)


def calibrate_confident_joint(counts: np.ndarray, label_counts: np.ndarray) -> np.ndarray:
    """The confident joint calibrated so that row i sums to the rows labeled i and the whole to their number.

    The diagonal is raised to at least 1 first; each row is rounded to integers preserving its total.
    """
    # Column-major, as cleanlab builds it: the layout fixes the order of np.sum's additions, and so the last
    # bit of the calibrated counts that the rounding sees.
    joint = np.array(counts, dtype=np.int64, order="F")
    np.fill_diagonal(joint, np.maximum(joint.diagonal(), 1))
    calibrated = (joint.T / np.clip(joint.sum(axis=1), 1e-100, None) * label_counts).T
    calibrated = calibrated / np.clip(np.sum(calibrated), 1e-100, None) * label_counts.sum()
    return np.array([_round_preserving_sum(row) for row in calibrated], dtype=np.int64)


def prune_counts(joint: np.ndarray) -> np.ndarray:
    """How many rows to prune: prune[j, k] rows labeled k whose true class is j (the joint transposed).

    Each given class keeps at least one row: a zero diagonal entry becomes 1, taken evenly from the class's
    non-zero off-diagonal counts, which are then truncated to integers.
    """
    matrix = joint.T
    diagonal = matrix.diagonal()
    kept = np.maximum(diagonal, _CL_MIN_EXAMPLES_PER_CLASS)
    per_column = np.maximum(np.count_nonzero(matrix, axis=0) - 1.0, 1.0)
    pruned = matrix - (kept - diagonal) / per_column
    pruned[pruned < 0] = 0
    np.fill_diagonal(pruned, kept)
    return pruned.astype(np.int64)


def prune_by_noise_rate(probabilities: np.ndarray, labels: np.ndarray, prune: np.ndarray) -> np.ndarray:
    """For every given class k and other class j, flag the prune[j, k] rows labeled k with the largest margin
    p_j - p_k (ties to the earlier row); classes with at most one row are left alone.

    Returns
    -------
    ndarray of shape (n_rows,), bool
    """
    n_classes = probabilities.shape[1]
    flagged = np.zeros(labels.shape[0], dtype=bool)
    order, bounds = _rows_by_class(labels, n_classes)
    for k in range(n_classes):
        rows = order[bounds[k]:bounds[k + 1]]
        if rows.size <= _CL_MIN_EXAMPLES_PER_CLASS:
            continue
        block = probabilities[rows]
        for j in np.flatnonzero(prune[:, k]):
            if j != k:
                flagged[rows[top_k_indices(block[:, j] - block[:, k], int(prune[j, k]))]] = True
    return flagged


def _predicts_given(probabilities: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Rows whose given label is the top class once it gets 1e-6 extra (earlier classes win exact ties)."""
    nudged = probabilities.copy()
    nudged[np.arange(labels.shape[0]), labels] += _CL_TOLERANCE
    return nudged.argmax(axis=1) == labels


def find_label_issues(probabilities: np.ndarray, labels: np.ndarray) -> LabelIssues:
    """Confident learning with pruning by noise rate (Northcutt, Jiang & Chuang, JAIR 2021).

    Equal to ``cleanlab.filter.find_label_issues(labels, probabilities, filter_by="prune_by_noise_rate")``:
    per-class thresholds, the confident joint, calibrated, pruning counts that keep a row per class, the
    prune_by_noise_rate rule, then the rows the model predicts as given (within 1e-6) are unflagged.

    Parameters
    ----------
    probabilities : ndarray of shape (n_rows, n_classes)
        Out-of-sample predicted probabilities of the labeled rows.
    labels : ndarray of shape (n_rows,)
        Class positions of the given labels, in [0, n_classes).

    Returns
    -------
    LabelIssues
    """
    thresholds = confident_thresholds(probabilities, labels)
    label_counts = np.bincount(labels, minlength=probabilities.shape[1])
    joint = calibrate_confident_joint(confident_counts(probabilities, labels, thresholds), label_counts)
    flagged = prune_by_noise_rate(probabilities, labels, prune_counts(joint))
    rows = np.flatnonzero(flagged)
    flagged[rows[_predicts_given(probabilities[rows], labels[rows])]] = False
    return LabelIssues(flagged, thresholds, joint)


def label_review_selection(probabilities: Any, labels: Any, batch_size: int,
                           method: str = "confident_learning") -> Selection:
    """The first ``batch_size`` labeled rows to review, lowest probability of the given label first.

    ``confident_learning`` ranks only the rows ``find_label_issues`` flags (fewer than ``batch_size`` when
    fewer are flagged); ``self_confidence`` ranks every row. Ties go to the earlier row.

    ``probabilities`` has shape (n_rows, n_classes); ``labels`` (n_rows,) are the given labels' class positions.

    Returns
    -------
    Selection
        Row indices in rank order, their score 1 - p[given label], and ``facts`` for the metadata.
    """
    checked = _checked_candidates(Candidates(probabilities, labels=labels))
    return _label_review_selection(checked.probabilities, checked.labels, _positive_int("batch_size", batch_size, 1),
                                   _choice("method", method, REVIEW_METHODS))


def _label_review_selection(probabilities: np.ndarray, labels: np.ndarray, batch_size: int,
                            method: str) -> Selection:
    confidence = self_confidence(probabilities, labels)
    facts: Dict[str, Any] = {"method": method, "labeled_rows": int(labels.shape[0])}
    if method == "self_confidence":
        chosen = top_k_indices(-confidence, batch_size)
    else:
        issues = find_label_issues(probabilities, labels)
        rows = np.flatnonzero(issues.flagged)
        chosen = rows[np.lexsort((rows, confidence[rows]))][:batch_size]
        facts.update(flagged_count=int(rows.size), estimated_issue_share=issues.estimated_issue_share,
                     thresholds=[float(t) for t in issues.thresholds])
        if np.unique(labels).size < 2:
            logger.warning("Every labeled row has the same given label: confident learning needs two classes "
                           "among the labels to flag any; none flagged")
        logger.info("Confident learning flagged %d of %d labeled rows (estimated share of label issues %.3f)",
                    rows.size, labels.shape[0], issues.estimated_issue_share)
    return Selection(chosen, 1.0 - confidence[chosen], facts)


class LabelReviewSampler(_Sampler):
    """The labeled rows whose given label the model doubts most, for humans to check again (active learning).

    Parameters
    ----------
    method : {"confident_learning", "self_confidence"}, default="confident_learning"
        ``confident_learning``: only the rows confident learning flags (``find_label_issues``);
        ``self_confidence``: every labeled row. Both rank by p[given label], lowest first.
    random_state : int, default=42
        Unused: the selection is deterministic (ties go to the lower row). Kept for the samplers' signature.
    """

    _needs = ("probabilities", "labels")

    _rules = dict(method=REVIEW_METHODS, random_state=_seed)

    def __init__(self, method: str = "confident_learning", *, random_state: Optional[int] = 42):
        self.method = method
        self.random_state = random_state

    def _checked(self, probabilities: Any, labels: Any) -> Tuple[np.ndarray, np.ndarray]:
        self._check_params()
        checked = _checked_candidates(Candidates(probabilities, labels=labels))
        return checked.probabilities, checked.labels

    def compute_scores(self, probabilities: Any, labels: Any) -> np.ndarray:
        """1 - p[given label] of each row, shape (n_rows,); higher is more doubtful."""
        return 1.0 - self_confidence(*self._checked(probabilities, labels))

    def find_label_issues(self, probabilities: Any, labels: Any) -> np.ndarray:
        """Confident learning's flags, shape (n_rows,) bool (see ``find_label_issues``)."""
        return find_label_issues(*self._checked(probabilities, labels)).flagged

    def _select(self, candidates: Candidates, batch_size: int) -> Selection:
        return _label_review_selection(candidates.probabilities, candidates.labels, batch_size, self.method)

    def select_batch(self, probabilities: Any, labels: Any, batch_size: int, indices: Any = None) -> np.ndarray:
        """Positions of the rows to review in rank order, or ``indices[chosen]`` when ``indices`` (one id per
        row) is given. ``labels`` are the given labels' class positions, one per row."""
        return self._select_batch(Candidates(probabilities, labels=labels), batch_size, indices, "probabilities")


_AGREEMENT_NOISE = 1e-12  # bald below this is rounding noise of members that agree: 0, so such rows tie


def _entropy(probabilities: np.ndarray) -> np.ndarray:
    """Entropy (natural log, 0 log 0 = 0) over the last axis, summed in sorted order so that rows holding
    the same values in another class order get exactly the same entropy (and tie)."""
    ordered = np.sort(probabilities, axis=-1)
    logs = np.log(np.where(ordered > 0.0, ordered, 1.0))
    logs *= ordered
    return -logs.sum(axis=-1)


def _committee_disagreement(members: np.ndarray, disagreement: str) -> np.ndarray:
    """``committee_disagreement`` on trusted input, in row blocks to bound the temporaries."""
    n_members, n_rows, n_classes = members.shape
    scores = np.empty(n_rows, dtype=np.float64)
    step = max(1, _CHUNK_ROWS // n_members)
    for start in range(0, n_rows, step):
        block = members[:, start:start + step]
        out = scores[start:start + step]
        if disagreement == "vote_entropy":
            votes = block.argmax(axis=2)  # the first of tied classes, in class order
            shares = np.zeros((block.shape[1], n_classes), dtype=np.float64)
            rows = np.arange(block.shape[1])
            for member_votes in votes:
                shares[rows, member_votes] += 1.0
            shares /= n_members
            out[:] = _entropy(shares)
        elif disagreement == "consensus_entropy":
            out[:] = _entropy(block.mean(axis=0))
        else:
            mutual_information = _entropy(block.mean(axis=0)) - _entropy(block).mean(axis=0)
            out[:] = np.where(mutual_information > _AGREEMENT_NOISE, mutual_information, 0.0)
    return scores


def committee_disagreement(member_probabilities: Any, disagreement: str = "bald") -> np.ndarray:
    """How much a committee's members disagree on each row, higher = more disagreement.

    Parameters
    ----------
    member_probabilities : array-like of shape (n_members, n_rows, n_classes)
        Each member's probability rows; at least 2 members.
    disagreement : {"vote_entropy", "consensus_entropy", "bald"}, default="bald"
        vote_entropy: entropy of the share of members voting for each class, a member voting for its
        largest probability (the first class of a tie), Dagan & Engelson 1995. consensus_entropy: entropy
        of the consensus, the members' mean probability row. bald: the mutual information
        H(consensus) - mean_j H(p_j) (Houlsby et al. 2011), which equals the members' mean KL divergence
        from the consensus; values below 1e-12 (rounding noise where the members agree) are 0. Natural
        logs, 0 log 0 = 0; rows holding the same values in another class order score exactly alike.

    Returns
    -------
    ndarray of shape (n_rows,)
    """
    members = _as_members(member_probabilities)
    return _committee_disagreement(members, _choice("disagreement", disagreement, DISAGREEMENTS))


class CommitteeSampler(_Sampler):
    """Query by committee: the ``batch_size`` rows its members disagree on most (active learning).

    The members are any set of prediction sets for the same rows: k-fold or bagged models, or stochastic
    passes (MC dropout) of one model. See ``committee_disagreement``.

    Parameters
    ----------
    disagreement : {"vote_entropy", "consensus_entropy", "bald"}, default="bald"
    random_state : int, default=42
        Unused: the selection is deterministic (ties go to the lower row). Kept so every sampler takes it.
    """

    _needs = ("members",)

    _rules = dict(disagreement=DISAGREEMENTS, random_state=_seed)

    def __init__(self, disagreement: str = "bald", *, random_state: Optional[int] = 42):
        self.disagreement = disagreement
        self.random_state = random_state

    def compute_scores(self, member_probabilities: Any) -> np.ndarray:
        """Disagreement of each row, shape (n_rows,); higher is more disagreement."""
        return committee_disagreement(member_probabilities, self.disagreement)

    def _scores(self, candidates: Candidates) -> np.ndarray:
        return _committee_disagreement(candidates.members, self.disagreement)

    def select_batch(self, member_probabilities: Any, batch_size: int, indices: Any = None) -> np.ndarray:
        """The ``batch_size`` rows of most disagreement, most first: positions, or their entries of ``indices``
        (one id per row)."""
        return self._select_batch(Candidates(None, members=member_probabilities), batch_size, indices,
                                  "member_probabilities")


# ---- Compatibility: the first sampler API's spellings -------------------------------------------------------------
# Code written against the first sampler API calls the samplers with random_seed= (UncertaintySampler with
# strategy=), reads them back as attributes and calls two helpers of its classes. The samplers use one name for
# one idea (random_state, mode); this section maps the old spellings onto them, and nothing else knows of them.

_OLD_NAMES = {"random_seed": "random_state", "strategy": "mode"}  # the old name: the current one


def _in_current_names(cls: type, params: Dict[str, Any]) -> Dict[str, Any]:
    renamed = {_OLD_NAMES.get(name, name): value for name, value in params.items()}
    if len(renamed) < len(params):
        raise TypeError("{} got a parameter under both of its names: {}".format(cls.__name__, ", ".join(
            "{} and {}".format(old, new) for old, new in _OLD_NAMES.items() if old in params and new in params)))
    return renamed


def _accept_old_names(cls: type) -> None:
    current_init = cls.__init__

    def __init__(self: Any, *args: Any, **params: Any) -> None:
        current_init(self, *args, **_in_current_names(cls, params))

    __init__.__wrapped__ = current_init  # type: ignore[attr-defined]  # get_params reads the real signature
    cls.__init__ = __init__


def _compute_distances(self: DiversitySampler, X: Any, Y: Any) -> np.ndarray:
    """Distances between the rows of X (n, d) and Y (m, d) as an (n, m) array: euclidean or 1 - cosine."""
    self._check_params()
    X, Y = _as_matrix(X, "X", np.float64, copy=True), _as_matrix(Y, "Y", np.float64, copy=True)
    if self.metric == "cosine":
        return 1.0 - _normalize_rows(X) @ _normalize_rows(Y).T
    d2 = np.einsum("ij,ij->i", X, X)[:, None] - 2.0 * (X @ Y.T) + np.einsum("ij,ij->i", Y, Y)[None, :]
    return np.sqrt(np.maximum(d2, 0.0))


def _compute_gradient_embeddings(self: BADGESampler, features: Any, probabilities: Any) -> np.ndarray:
    """The (n_rows, n_classes * n_features) gradient embeddings; for small inputs (selection never builds it)."""
    self._check_params()
    return gradient_embeddings(features, probabilities)


def _alias(name: str) -> property:
    return property(lambda self: getattr(self, name), lambda self, value: setattr(self, name, value),
                    doc="The old name of ``{}``.".format(name))


_current_set_params = _Sampler.set_params
_Sampler.set_params = lambda self, **params: _current_set_params(  # type: ignore[method-assign]
    self, **_in_current_names(type(self), params))
_Sampler.random_seed = _alias("random_state")  # type: ignore[attr-defined]
UncertaintySampler.strategy = _alias("mode")  # type: ignore[attr-defined]
DiversitySampler._compute_distances = _compute_distances  # type: ignore[attr-defined]
BADGESampler.compute_gradient_embeddings = _compute_gradient_embeddings  # type: ignore[attr-defined]
for _cls in (ConfidenceThresholdSampler, TopKPerClassSampler, UncertaintySampler, DiversitySampler, HybridSampler,
             BADGESampler, LabelReviewSampler, CommitteeSampler):
    _accept_old_names(_cls)


# ---- Calibration: held-out labeled predictions, Clopper-Pearson bounds and the precision target -------------------
# Pseudo-label precision is measured on calibration_data: the same model's predictions on labeled rows it was
# not trained on. The interval needs beta quantiles; scipy ships with the SageMaker scikit-learn image (as a
# dependency of scikit-learn) and is imported only when calibration_data is given.

ESTIMATE_CONFIDENCE = 0.95  # two-sided level of the reported Clopper-Pearson intervals


def _beta_quantile(q: Any, a: Any, b: Any) -> np.ndarray:
    try:
        from scipy.stats import beta
    except ImportError:
        raise SelectionError("precision estimates from calibration_data need scipy (scipy.stats.beta), which the "
                             "SageMaker scikit-learn image ships; install scipy") from None
    return np.asarray(beta.ppf(q, a, b), dtype=np.float64)


def _as_counts(successes: Any, trials: Any) -> Tuple[np.ndarray, np.ndarray]:
    k = np.asarray(successes, dtype=np.float64)
    n = np.asarray(trials, dtype=np.float64)
    if np.any(n < 0) or np.any(k < 0) or np.any(k > n):
        raise ValueError("need 0 <= successes <= trials, got {} of {}".format(successes, trials))
    return k, n


def clopper_pearson_lower(successes: Any, trials: Any, confidence: float) -> np.ndarray:
    """One-sided Clopper-Pearson lower bound of a binomial proportion at ``confidence``.

    The ``1 - confidence`` quantile of Beta(k, n - k + 1); 0 where k = 0 and NaN where n = 0. With no
    error (k = n) it is ``(1 - confidence) ** (1 / n)``.
    """
    k, n = _as_counts(successes, trials)
    with np.errstate(invalid="ignore", divide="ignore"):
        lower = _beta_quantile(1.0 - confidence, np.maximum(k, 1.0), n - k + 1.0)
    return np.where(n == 0, np.nan, np.where(k == 0, 0.0, lower))


def clopper_pearson_interval(successes: Any, trials: Any,
                             confidence: float = ESTIMATE_CONFIDENCE) -> Tuple[np.ndarray, np.ndarray]:
    """Two-sided Clopper-Pearson interval of a binomial proportion: each tail holds ``(1 - confidence) / 2``.

    Lower 0 where k = 0, upper 1 where k = n, both NaN where n = 0.
    """
    k, n = _as_counts(successes, trials)
    tail = (1.0 - confidence) / 2.0
    with np.errstate(invalid="ignore", divide="ignore"):
        lower = _beta_quantile(tail, np.maximum(k, 1.0), n - k + 1.0)
        upper = _beta_quantile(1.0 - tail, k + 1.0, np.maximum(n - k, 1.0))
    lower = np.where(k == 0, 0.0, lower)
    upper = np.where(k == n, 1.0, upper)
    return np.where(n == 0, np.nan, lower), np.where(n == 0, np.nan, upper)


def minimum_calibration_rows(target_precision: float, confidence: float) -> int:
    """The fewest rows whose one-sided lower bound can reach ``target_precision``: all of them correct.

    The smallest n with ``(1 - confidence) ** (1 / n) >= target_precision``; 59 for 0.95 and 0.95.
    """
    n = max(1, math.ceil(math.log(1.0 - confidence) / math.log(target_precision)))
    while (1.0 - confidence) ** (1.0 / n) < target_precision:
        n += 1
    while n > 1 and (1.0 - confidence) ** (1.0 / (n - 1)) >= target_precision:
        n -= 1
    return n


def rows_needed(precision: float, target_precision: float, confidence: float, limit: int = 10**7) -> Optional[int]:
    """About how many rows of true ``precision`` a lower bound needs to reach ``target_precision`` (None: never)."""
    if precision <= target_precision:
        return None
    low = minimum_calibration_rows(target_precision, confidence)
    if precision >= 1.0:
        return low
    high = low
    while clopper_pearson_lower(math.floor(precision * high), high, confidence) < target_precision:
        if high >= limit:
            return None
        low, high = high, min(limit, high * 2)
    while high - low > max(1, low // 100):
        middle = (low + high) // 2
        if clopper_pearson_lower(math.floor(precision * middle), middle, confidence) >= target_precision:
            high = middle
        else:
            low = middle
    return int(high)


class ClassThreshold(NamedTuple):
    """The result of one class's fixed-sequence scan."""

    threshold: float  # inf: no threshold passed
    rows: int  # calibration rows at or above it
    correct: int  # of which the label is the predicted class


def fixed_sequence_threshold(confidence: np.ndarray, correct: np.ndarray, target_precision: float,
                             level: float) -> ClassThreshold:
    """The lowest confidence threshold a fixed-sequence scan accepts on one class's calibration rows.

    The candidate thresholds are the rows' distinct confidences, tested from the highest down; a threshold
    passes when the one-sided Clopper-Pearson lower bound (at ``level``) of the precision of the rows at or
    above it reaches ``target_precision``, and the scan stops at the first that fails. Thresholds above
    fewer rows than ``minimum_calibration_rows`` cannot pass whatever the labels say: they are skipped, not
    failed. Stopping at the first failure (rather than taking the lowest threshold that passes anywhere)
    keeps the chance of accepting a threshold whose precision is below the target near ``1 - level``.

    Parameters
    ----------
    confidence : ndarray of shape (m,)
        Top-class probability of each calibration row predicted as the class.
    correct : ndarray of shape (m,), bool
        Whether its label is that class.
    """
    order = np.argsort(-confidence, kind="stable")
    ordered = confidence[order]
    ends = np.flatnonzero(np.r_[ordered[1:] != ordered[:-1], True]) if ordered.size else np.empty(0, np.int64)
    rows = ends + 1
    hits = np.cumsum(correct[order])[ends] if ordered.size else np.empty(0, np.int64)
    testable = rows >= minimum_calibration_rows(target_precision, level)
    rows, hits, thresholds = rows[testable], hits[testable], ordered[ends][testable]
    if rows.size == 0:
        return ClassThreshold(math.inf, 0, 0)
    failed = np.flatnonzero(clopper_pearson_lower(hits, rows, level) < target_precision)
    accepted = int(failed[0]) if failed.size else rows.size
    if accepted == 0:
        return ClassThreshold(math.inf, 0, 0)
    return ClassThreshold(float(thresholds[accepted - 1]), int(rows[accepted - 1]), int(hits[accepted - 1]))


def precision_target_thresholds(calibration: Calibration, target_precision: float,
                                level: float) -> List[ClassThreshold]:
    """Each class's fixed-sequence threshold, on the calibration rows predicted as that class."""
    predicted = calibration.probabilities.argmax(axis=1)
    confidence = calibration.probabilities.max(axis=1)
    correct = predicted == calibration.labels
    return [fixed_sequence_threshold(confidence[predicted == position], correct[predicted == position],
                                     target_precision, level)
            for position in range(calibration.probabilities.shape[1])]


def class_balance_caps(available: np.ndarray, shares: np.ndarray) -> np.ndarray:
    """Rows kept per class under CLASS_BALANCE=align: at most ``floor(share * total available)``."""
    return np.minimum(available, np.floor(shares * available.sum() + 1e-9).astype(np.int64))


def precision_target_selection(probabilities: np.ndarray, thresholds: np.ndarray,
                               caps: Optional[np.ndarray] = None) -> Selection:
    """Rows whose top-class probability reaches their predicted class's threshold, most confident first.

    Parameters
    ----------
    probabilities : ndarray of shape (n_rows, n_classes)
    thresholds : ndarray of shape (n_classes,)
        inf for a class that gets no pseudo-labels.
    caps : ndarray of shape (n_classes,), optional
        At most this many rows per class, the most confident.

    Returns
    -------
    Selection
        Row indices in rank order (ties to the lower index), their top-class probability, and the
        thresholds actually applied (a capped class's last selected confidence).
    """
    predicted = probabilities.argmax(axis=1)
    confidence = probabilities.max(axis=1)
    eligible = np.flatnonzero(confidence >= thresholds[predicted])
    applied = np.asarray(thresholds, dtype=np.float64).copy()
    if caps is not None:
        kept = []
        for position in range(probabilities.shape[1]):
            rows = eligible[predicted[eligible] == position]
            if rows.size > caps[position]:
                rows = rows[top_k_indices(confidence[rows], int(caps[position]))]
                applied[position] = confidence[rows].min() if rows.size else math.inf
            kept.append(rows)
        eligible = np.sort(np.concatenate(kept))  # one entry per class: never empty
    chosen = eligible[np.lexsort((eligible, -confidence[eligible]))]
    return Selection(chosen, confidence[chosen], class_thresholds=applied)


def _check_calibration(calibration: Any, n_classes: int) -> Calibration:
    if calibration is None:
        raise ValueError("precision_target needs calibration: the model's probabilities on held-out labeled rows "
                         "and their true classes")
    probabilities = _as_matrix(calibration.probabilities, "calibration probabilities", np.float64)
    if probabilities.shape[1] != n_classes:
        raise ValueError("calibration probabilities have {} columns but the candidates have {}".format(
            probabilities.shape[1], n_classes))
    return Calibration(probabilities, _class_positions(calibration.labels, probabilities.shape[0], n_classes,
                                                       "calibration labels"))


_unit_interval = functools.partial(_unit_number, strict=True)  # a number strictly between 0 and 1


class PrecisionTargetSampler(_Sampler):
    """Per class, the rows above the lowest threshold shown precise enough on calibration data (SSL).

    Each class's threshold comes from ``fixed_sequence_threshold`` on the calibration rows predicted as that
    class; a class whose scan accepts no threshold gets no pseudo-labels.

    Parameters
    ----------
    target_precision : float, default=0.95
    precision_confidence : float, default=0.95
        Confidence of the one-sided lower bound that must reach ``target_precision``.
    class_balance : {"none", "align"}, default="none"
        align keeps at most ``floor(share * total)`` rows of each class, the most confident, where share is
        the class's share of the calibration labels and total the rows above their thresholds.
    """

    _batched = False
    _rules = dict(target_precision=_unit_interval, precision_confidence=_unit_interval, class_balance=CLASS_BALANCES)

    def __init__(self, target_precision: float = 0.95, precision_confidence: float = 0.95,
                 class_balance: str = "none"):
        self.target_precision = target_precision
        self.precision_confidence = precision_confidence
        self.class_balance = class_balance

    def _rule(self, candidates: Candidates) -> Tuple[Calibration, List[ClassThreshold]]:
        self._check_params()
        calibration = _check_calibration(candidates.calibration, candidates.probabilities.shape[1])
        return calibration, precision_target_thresholds(calibration, float(self.target_precision),
                                                        float(self.precision_confidence))

    def _select(self, candidates: Candidates, batch_size: Optional[int] = None) -> Selection:
        calibration, scan = self._rule(candidates)
        thresholds = np.array([found.threshold for found in scan])
        caps = None
        if self.class_balance == "align":
            probabilities = candidates.probabilities
            predicted = probabilities.argmax(axis=1)
            above = probabilities.max(axis=1) >= thresholds[predicted]
            n_classes = probabilities.shape[1]
            available = np.bincount(predicted[above], minlength=n_classes)
            shares = np.bincount(calibration.labels, minlength=n_classes) / max(1, calibration.labels.size)
            caps = class_balance_caps(available, shares)
        return precision_target_selection(candidates.probabilities, thresholds, caps)

    def class_thresholds(self, candidates: Candidates, selection: Selection) -> np.ndarray:
        """The thresholds ``select`` applied (it returns them with the selection)."""
        if selection.class_thresholds is not None:
            return selection.class_thresholds
        return self._select(candidates).class_thresholds

    def rule_details(self, candidates: Candidates) -> Dict[str, Any]:
        """What the scan found per class, and how many calibration rows a class needs at least."""
        calibration, scan = self._rule(candidates)
        predicted = calibration.probabilities.argmax(axis=1)
        rows = np.bincount(predicted, minlength=len(scan)).tolist()
        hits = np.bincount(predicted[predicted == calibration.labels], minlength=len(scan)).tolist()
        classes = [{"threshold": None if math.isinf(found.threshold) else found.threshold,
                    "qualified": not math.isinf(found.threshold), "calibration_rows": n, "calibration_correct": k,
                    "rows_needed": rows_needed(k / n, self.target_precision, self.precision_confidence) if n else None}
                   for found, n, k in zip(scan, rows, hits)]
        return {"target_precision": self.target_precision, "precision_confidence": self.precision_confidence,
                "class_balance": self.class_balance, "scan": "fixed sequence, highest threshold first",
                "minimum_rows": minimum_calibration_rows(self.target_precision, self.precision_confidence),
                "classes": classes}

    def select_batch(self, probabilities: Any, calibration_probabilities: Any, calibration_labels: Any,
                     indices: Any = None) -> np.ndarray:
        """Entries of ``indices`` (one per row of ``probabilities``; default their positions) of the selected
        rows, most confident first. ``calibration_labels`` are class positions (columns of the probabilities)."""
        calibration = Calibration(np.asarray(calibration_probabilities), np.asarray(calibration_labels))
        return self._select_batch(Candidates(probabilities, calibration=calibration), None, indices, "probabilities")


def precision_estimate(calibration: Calibration, thresholds: np.ndarray, pseudo_labels: np.ndarray,
                       classes: Sequence[Any], confidence: float = ESTIMATE_CONFIDENCE) -> Dict[str, Any]:
    """How precise the pseudo-labels of a rule are, measured on the calibration rows the rule would select.

    A calibration row is selected when its top-class probability reaches ``thresholds`` of its predicted
    class; it is correct when its label is that class. Overall and per predicted class: the counts, the
    point estimate and a two-sided ``confidence`` Clopper-Pearson interval (None without rows). Also the
    total-variation distance between the class mix of ``pseudo_labels`` (class positions of the selected
    rows) and that of the calibration labels (None without pseudo-labels).
    """
    n_classes = len(classes)
    predicted = calibration.probabilities.argmax(axis=1)
    chosen = calibration.probabilities.max(axis=1) >= thresholds[predicted]
    correct = chosen & (predicted == calibration.labels)
    rows = np.bincount(predicted[chosen], minlength=n_classes)
    hits = np.bincount(predicted[correct], minlength=n_classes)
    all_rows = np.bincount(predicted, minlength=n_classes)

    def summary(k: int, n: int) -> Dict[str, Any]:
        low, high = clopper_pearson_interval(k, n, confidence)
        return {"selected_calibration_rows": int(n), "correct": int(k),
                "precision": float(k / n) if n else None,
                "interval": [float(low), float(high)] if n else None}

    per_class = {}
    for position, label in enumerate(classes):
        threshold = float(thresholds[position])
        per_class[str(label)] = dict(threshold=None if math.isinf(threshold) else threshold,
                                     calibration_rows=int(all_rows[position]),
                                     **summary(int(hits[position]), int(rows[position])))
    calibration_mix = np.bincount(calibration.labels, minlength=n_classes) / max(1, calibration.labels.size)
    pseudo_counts = np.bincount(np.asarray(pseudo_labels, dtype=np.int64), minlength=n_classes)
    pseudo_mix = pseudo_counts / pseudo_counts.sum() if pseudo_counts.sum() else None
    return {
        "available": True,
        "interval_method": "Clopper-Pearson, two-sided",
        "confidence_level": confidence,
        "calibration_rows": int(calibration.labels.size),
        "overall": summary(int(hits.sum()), int(rows.sum())),
        "per_class": per_class,
        "class_mix_total_variation": None if pseudo_mix is None else float(0.5 * np.abs(pseudo_mix
                                                                                        - calibration_mix).sum()),
        "pseudo_label_mix": None if pseudo_mix is None else {str(c): float(v) for c, v in zip(classes, pseudo_mix)},
        "calibration_label_mix": {str(c): float(v) for c, v in zip(classes, calibration_mix)},
    }


class CalibrationTable(NamedTuple):
    """calibration_data as read: the arrays, and what is checked against the evaluation data."""

    calibration: Calibration
    ids: pd.Series
    score_columns: List[str]
    score_interpretation: str
    root: Path


def calibration_label_positions(labels: pd.Series, classes: Sequence[Any], where: Any) -> np.ndarray:
    """The position among ``classes`` of each label, read by the rule of LABEL_FIELD (``_class_key``); a label
    that names no class is an error."""
    found = _named_classes(labels.tolist(), classes)
    unknown = np.flatnonzero(found < 0)
    if unknown.size:
        row = int(unknown[0])
        raise SelectionError("{}: label {!r} in row {} is not one of the classes of the score columns ({}); "
                             "{} row(s) have such labels".format(where, labels.iloc[row], row + 1,
                                                                 _preview(classes), unknown.size))
    return found


def check_calibration_apart(evaluation_ids: pd.Series, calibration: CalibrationTable, id_field: str) -> None:
    """The calibration ids must not occur in the evaluation data (compared as text)."""
    calibration_ids = set(calibration.ids.astype(str))
    shared = evaluation_ids.astype(str).isin(calibration_ids).to_numpy()
    if shared.any():
        raise SelectionError("ID_FIELD {!r} value {!r} is in both evaluation_data and calibration_data ({} shared "
                             "id(s)): calibration rows must be held-out labeled rows, disjoint from the rows to "
                             "select".format(id_field, evaluation_ids[shared].iloc[0], int(shared.sum())))


def check_calibration_fits(calibration: CalibrationTable, score_columns: Sequence[str],
                           score_interpretation: str) -> None:
    """calibration_data must have the evaluation data's score columns, read the same way."""
    if list(calibration.score_columns) != list(score_columns):
        raise SelectionError("calibration_data has score columns {} but evaluation_data has {}: both must be the "
                             "same model's scores".format(_preview(calibration.score_columns),
                                                          _preview(score_columns)))
    if calibration.score_interpretation != score_interpretation:
        raise SelectionError("calibration_data's scores read as {} but evaluation_data's as {}: both must be the "
                             "same model's scores in the same form".format(calibration.score_interpretation,
                                                                          score_interpretation))


# ---- Strategies: the table of strategy rows, and how each row shards and merges -----------------------------------

def _distance_to_nearest(point: np.ndarray, rows: np.ndarray, metric: str) -> float:
    """Chord distance from ``point`` to the nearest of ``rows`` (float64)."""
    point, rows = np.asarray(point, dtype=np.float64)[None, :], np.asarray(rows, dtype=np.float64)
    if metric == "cosine":
        point, rows = _normalize_rows(point.copy()), _normalize_rows(rows.copy())
    return float(np.sqrt(((rows - point) ** 2).sum(axis=1).min()))


def _chord(distance: float, metric: str) -> float:
    """A distance that obeys the triangle inequality: euclidean as is, ``1 - cos`` as ``|u - v|`` of unit vectors."""
    return math.sqrt(2.0 * max(distance, 0.0)) if metric == "cosine" else float(distance)


_RADIUS_SLACK = 1e-4  # relative: float32 distances may round a radius down by this much
_MergeResult = Tuple[Selection, Dict[str, Any]]  # ShardRule.merge: the selection, and its guarantee's facts


class ShardPicks(NamedTuple):
    """A shard's candidates: positions among its candidate rows, scores, weights, covering radius."""

    indices: np.ndarray
    scores: np.ndarray
    weights: np.ndarray
    radius: Optional[float]  # diversity: chord units


def merge_ranked(scores: np.ndarray, keys: Sequence[np.ndarray], limit: int,
                 groups: Optional[np.ndarray] = None) -> np.ndarray:
    """Positions of the best ``limit`` rows (per group when ``groups`` is given), best first.

    Highest score first; ties go to the row first in ``keys`` (most significant first), which for a
    merge are the input file's rank and the row in it: a single run's order. ``limit`` 0 keeps all.
    """
    order = np.lexsort(tuple(reversed(list(keys))) + (-np.asarray(scores, dtype=np.float64),))
    if limit <= 0:
        return order.astype(np.int64)
    if groups is None:
        return order[:limit].astype(np.int64)
    ranked_groups = np.asarray(groups)[order]
    rank_in_group = np.empty(order.size, dtype=np.int64)
    for group in np.unique(ranked_groups):
        members = np.flatnonzero(ranked_groups == group)
        rank_in_group[members] = np.arange(members.size)
    return order[rank_in_group < limit].astype(np.int64)


def shard_pick_count(config: "SelectionConfig") -> int:
    """Candidates a diversity or badge shard sends: OVERSAMPLING x BATCH_SIZE."""
    return config.oversampling * config.batch_size


def _prefilter_size(config: "SelectionConfig") -> int:
    """Candidates the hybrid's uncertainty pre-filter keeps: UNCERTAINTY_PREFILTER x BATCH_SIZE."""
    return config.uncertainty_prefilter * config.batch_size


def _from_chord(chord: float, metric: str) -> float:
    return chord * chord / 2.0 if metric == "cosine" else chord


def covering_radius_bound(shard_radii: Sequence[float], merge_radius: float, metric: str) -> float:
    """Upper bound on the covering radius of the whole pool by the merged selection and the labeled rows.

    The radii are in chord units (``k_center_with_radius``); the bound comes back in METRIC's. A row of
    shard i lies within ``r_i`` of a labeled row or of a pick that shard sent, and every sent pick within
    ``r_merge`` of a final center, so by the triangle inequality the row lies within ``max_i r_i + r_merge``;
    the two-round greedy is a 4-approximation (Malkomes et al., NIPS 2015).
    """
    chord = (max(shard_radii, default=0.0) + merge_radius) * (1.0 + _RADIUS_SLACK)
    return _from_chord(chord, metric)


def k_center_with_radius(
    X: Any, n_select: int, *, initial_centers: Any = None, mean: Any = None, metric: str = "euclidean"
) -> Tuple[np.ndarray, np.ndarray, float]:
    """``k_center_greedy``, plus an upper bound on the covering radius of X by its real centers.

    The real centers are the picks and ``initial_centers``. Without initial centers the greedy starts from
    ``mean`` (the column mean of X unless given; a merge passes the mean of every shard's candidates),
    which is no row: a row nearest to it is within ``r + d(mean, picks)`` of a pick. One pick more than
    asked gives ``r``, the farthest row's distance after ``n_select`` picks. Returns the picks, their
    distances and the bound in chord units (euclidean distance; for cosine, of the unit vectors).
    """
    X = np.ascontiguousarray(X, dtype=np.float32)
    has_initial = initial_centers is not None and len(initial_centers) > 0
    if not has_initial and mean is None:
        mean = X.mean(axis=0, dtype=np.float64)
    centers = initial_centers if has_initial else np.asarray(mean, dtype=np.float32)[None, :]
    indices, distances = _k_center_greedy(X, n_select + 1, initial_centers=centers, metric=metric)
    if n_select >= X.shape[0]:  # every row picked, the same picks as for n_select: nothing left to cover
        return indices, distances, 0.0
    radius = _chord(distances[-1], metric)
    if not has_initial:
        radius += _distance_to_nearest(centers[0], X[indices[:-1]], metric)
    return indices[:-1], distances[:-1], radius


def _merge_centers(outputs: "Sequence[ShardOutput]", n_columns: int) -> Tuple[Optional[np.ndarray], np.ndarray]:
    """diversity: every shard's labeled vectors (or None) and the mean of all candidates."""
    labeled = []
    total, count = np.zeros(n_columns, dtype=np.float64), 0
    for output in outputs:
        manifest = output.manifest
        if manifest["labeled_file"]:
            vectors = np.load(str(output.folder / manifest["labeled_file"]), allow_pickle=False)
            if vectors.shape != (manifest["labeled_vectors"], n_columns):
                raise SelectionError("host {}: labeled vectors of shape {}, expected ({}, {})".format(
                    manifest["host"], vectors.shape, manifest["labeled_vectors"], n_columns))
            labeled.append(vectors)
        if manifest["candidate_vector_sum"] is not None:
            total += np.asarray(manifest["candidate_vector_sum"], dtype=np.float64)
            count += manifest["candidate_count"]
    return (np.concatenate(labeled) if labeled else None), total / max(count, 1)


def nearest_pick_counts(embeddings: Any, probabilities: Any, picks: np.ndarray, *, metric: str = "euclidean"
                        ) -> np.ndarray:
    """How many rows have each pick as their nearest pick in BADGE's gradient space (ties: the earlier pick).

    Uses ``g_i . g_p = (d_i . d_p)(h_i . h_p)`` in blocks, never the n x C*D gradients.
    """
    X, residual, _, sq_norms = _gradient_factors(embeddings, probabilities, metric)
    picks = np.asarray(picks, dtype=np.int64)
    X_picks, residual_picks, picks_sq_norms = X[picks], residual[picks], sq_norms[picks]
    nearest = np.empty(X.shape[0], dtype=np.int64)
    block = max(1, (1 << 22) // max(1, picks.size))
    for start in range(0, X.shape[0], block):
        rows = slice(start, start + block)
        d2 = (residual[rows] @ residual_picks.T) * (X[rows] @ X_picks.T)
        d2 *= -2.0
        d2 += sq_norms[rows, None]
        d2 += picks_sq_norms[None, :]
        nearest[rows] = np.argmin(d2, axis=1)
    return np.bincount(nearest, minlength=picks.size).astype(np.int64)

class ShardRule:
    """How a strategy runs sharded: what each shard sends, and how the merge selects from what all sent.

    A strategy row names its rule; the sharding section calls the rule and nothing else, so a row
    without one (None) is refused when SELECTION_ROLE is shard or merge.
    """

    sends_labeled_vectors = False  # shards forward their labeled rows' vectors to the merge

    def shard_facts(self, candidates: Candidates) -> Dict[str, Any]:
        """Manifest entries the merge needs besides the forwarded rows."""
        return {}

    def send(self, config: "SelectionConfig", candidates: Candidates, seed: Any) -> "ShardPicks":
        """The shard's picks among its own candidates."""
        raise NotImplementedError

    def merge(self, config: "SelectionConfig", pool: "MergedPool", outputs: Sequence["ShardOutput"]) -> _MergeResult:
        """The selection among every shard's picks, and what the metadata says about its guarantee."""
        raise NotImplementedError


class ExactTopK(ShardRule):
    """A shard sends what a single run would select from its rows alone; the merge re-ranks the union.

    Exact for strategies that rank rows by a per-row score and keep the first ``limit_field`` (per
    predicted class with ``per_class``; 0 = all): the global selection is a subset of the union.
    """

    def __init__(self, limit_field: str, *, per_class: bool = False):
        self.limit_field = limit_field
        self.per_class = per_class

    def send(self, config: "SelectionConfig", candidates: Candidates, seed: Any) -> "ShardPicks":
        selection = make_sampler(config)._select(candidates, config.batch_size)
        return ShardPicks(selection.indices, selection.scores, np.ones(selection.indices.size, np.int64), None)

    def merge(self, config: "SelectionConfig", pool: "MergedPool", outputs: Sequence["ShardOutput"]) -> _MergeResult:
        groups = pool.probabilities.argmax(axis=1) if self.per_class else None
        indices = merge_ranked(pool.scores, (pool.file_rank, pool.row), getattr(config, self.limit_field), groups)
        return Selection(indices, pool.scores[indices]), {"guarantee": "exact"}


class DiversitySharding(ShardRule):
    """diversity sharded, by its settings.

    With UNCERTAINTY_PREFILTER = beta > 0 (the hybrid) the sampler chooses among the beta x BATCH_SIZE most
    uncertain candidates: a top-k, so each shard sends its own top beta x BATCH_SIZE, the merge keeps the top
    beta x BATCH_SIZE of their union in input order and runs the sampler on exactly the rows a single run
    would (exact, for kcenter and kmeans). Without it, kcenter runs in two rounds: shards send
    OVERSAMPLING x BATCH_SIZE k-center picks and the covering radius they leave, the merge runs k-center over
    them from every shard's labeled rows (or the mean of all candidates). kmeans without it shards by weighted
    representatives: each shard sends the rows nearest its OVERSAMPLING x BATCH_SIZE k-means centroids, each
    weighted by its cluster's size, and the merge runs weighted k-means over them.
    """

    sends_labeled_vectors = True

    def shard_facts(self, candidates: Candidates) -> Dict[str, Any]:
        return {"candidate_vector_sum": candidates.embeddings.sum(axis=0, dtype=np.float64)}

    def send(self, config: "SelectionConfig", candidates: Candidates, seed: Any) -> "ShardPicks":
        if config.uncertainty_prefilter:
            scores = _uncertainty_scores(candidates.probabilities, config.uncertainty_mode)
            indices = top_k_indices(scores, _prefilter_size(config))
            return ShardPicks(indices, scores[indices], np.ones(indices.size, np.int64), None)
        if config.diversity_method == "kmeans":
            indices, sizes = _kmeans_representatives(candidates.embeddings, shard_pick_count(config),
                                                     metric=config.metric, random_state=seed)
            return ShardPicks(indices, sizes, sizes.astype(np.int64), None)
        indices, distances, radius = k_center_with_radius(
            candidates.embeddings, shard_pick_count(config), initial_centers=candidates.labeled_embeddings,
            metric=config.metric)
        return ShardPicks(indices, distances, np.ones(indices.size, np.int64), radius)

    def merge(self, config: "SelectionConfig", pool: "MergedPool", outputs: Sequence["ShardOutput"]) -> _MergeResult:
        labeled, mean = _merge_centers(outputs, pool.vectors.shape[1])
        if config.uncertainty_prefilter:
            return self._merge_prefiltered(config, pool, labeled), {"guarantee": "exact"}
        if config.diversity_method == "kmeans":
            indices, sizes = _kmeans_representatives(pool.vectors, config.batch_size, metric=config.metric,
                                                     random_state=config.random_seed, sample_weight=pool.weights)
            return Selection(indices, sizes), {
                "guarantee": "weighted k-means over the shards' k-means representatives, each weighted by the "
                             "rows of its cluster (one-pass merge of Guha et al., Clustering Data Streams, 2003); "
                             "scores are the rows each pick stands for",
                "oversampling": config.oversampling,
                "represented_rows": int(pool.weights.sum()),
            }
        indices, distances, radius = k_center_with_radius(pool.vectors, config.batch_size, initial_centers=labeled,
                                                          mean=mean, metric=config.metric)
        shard_radii = [output.manifest["covering_radius_chord"] for output in outputs
                       if output.manifest["covering_radius_chord"] is not None]
        return Selection(indices, distances), {
            "guarantee": "two-round k-center greedy, a 4-approximation of the optimal covering radius "
                         "(Malkomes et al., NIPS 2015)",
            "oversampling": config.oversampling,
            "shard_radius_max": _from_chord(max(shard_radii, default=0.0), config.metric),
            "merge_radius": _from_chord(radius, config.metric),
            "covering_radius_bound": covering_radius_bound(shard_radii, radius, config.metric),
        }

    @staticmethod
    def _merge_prefiltered(config: "SelectionConfig", pool: "MergedPool", labeled: Optional[np.ndarray]) -> Selection:
        """The sampler on the pool's top beta x BATCH_SIZE (by the shards' uncertainty scores), in input order.

        A shard with fewer candidates than that sent them all, so when the union is no larger, it is every
        candidate and the sampler's own pre-filter would keep all of them too.
        """
        n_keep = _prefilter_size(config)
        kept = np.sort(merge_ranked(pool.scores, (pool.file_rank, pool.row), n_keep))
        logger.info("Uncertainty pre-filter: the %d most uncertain of the %d rows the shards sent, by %s "
                    "(%d x BATCH_SIZE=%d)", kept.size, pool.scores.size, config.uncertainty_mode,
                    config.uncertainty_prefilter, config.batch_size)
        candidates = Candidates(pool.probabilities[kept], pool.vectors[kept], labeled)
        selection = make_sampler(config._replace(uncertainty_prefilter=0))._select(candidates, config.batch_size)
        return Selection(kept[selection.indices], selection.scores)


class WeightedD2(ShardRule):
    """Shards send OVERSAMPLING x BATCH_SIZE D^2 draws, each weighted by the shard's rows nearest to it; the
    merge runs weighted D^2 sampling over them."""

    def send(self, config: "SelectionConfig", candidates: Candidates, seed: Any) -> "ShardPicks":
        indices, distances = _badge_kmeanspp(candidates.embeddings, candidates.probabilities, shard_pick_count(config),
                                             metric=config.metric, random_state=seed)
        weights = nearest_pick_counts(candidates.embeddings, candidates.probabilities, indices, metric=config.metric)
        return ShardPicks(indices, distances, weights, None)

    def merge(self, config: "SelectionConfig", pool: "MergedPool", outputs: Sequence["ShardOutput"]) -> _MergeResult:
        indices, distances = _badge_kmeanspp(pool.vectors, pool.probabilities, config.batch_size,
                                             metric=config.metric, random_state=config.random_seed,
                                             sample_weight=pool.weights)
        return Selection(indices, distances), {
            "guarantee": "weighted D^2 sampling over the shards' D^2 picks, as in k-means|| (Bahmani et al. 2012); "
                         "first pick exact (largest gradient norm)",
            "oversampling": config.oversampling,
            "represented_rows": int(pool.weights.sum()),
        }


class LabeledRowsReview(ShardRule):
    """label_review, exactly: its thresholds and confident joint need every labeled row of the pool, so with
    confident_learning each shard sends all its labeled rows and the merge runs it over all of them (the same
    rows in the same order as a single run: the same flags, bit for bit). With self_confidence, a per-row
    score, each shard sends its own first BATCH_SIZE; the global first BATCH_SIZE are among them."""

    def send(self, config: "SelectionConfig", candidates: Candidates, seed: Any) -> "ShardPicks":
        confidence = self_confidence(candidates.probabilities, candidates.labels)
        if config.review_method == "self_confidence":
            indices = top_k_indices(-confidence, config.batch_size)
        else:
            indices = np.arange(confidence.size)
        return ShardPicks(indices, 1.0 - confidence[indices], np.ones(indices.size, np.int64), None)

    def merge(self, config: "SelectionConfig", pool: "MergedPool", outputs: Sequence["ShardOutput"]) -> _MergeResult:
        stored = [_arrow_to_pandas(piece.select([config.label_field]))[config.label_field] for piece in pool.pieces]
        offsets = np.concatenate([[0], np.cumsum([len(labels) for labels in stored])])[:-1]
        labels = pd.concat(stored, ignore_index=True).iloc[offsets[pool.piece] + pool.piece_row]
        given = given_class_positions(labels.reset_index(drop=True), np.ones(len(labels), dtype=bool), pool.classes,
                                      config.label_field)
        selection = _label_review_selection(pool.probabilities, given, config.batch_size, config.review_method)
        facts = dict(selection.facts, labeled_rows=sum(int(output.manifest["labeled_count"]) for output in outputs))
        sent = "every labeled row" if config.review_method == "confident_learning" else "its first BATCH_SIZE"
        return selection._replace(facts=facts), {"guarantee": "exact: each shard sends {}".format(sent)}


class CalibratedThresholds(ShardRule):
    """Every shard reads calibration_data and sends its rows above their class's threshold; the merge reads it
    too, finds the same thresholds and runs the sampler on the union (CLASS_BALANCE caps counted over every
    shard's rows): the selection of a single run."""

    def send(self, config: "SelectionConfig", candidates: Candidates, seed: Any) -> "ShardPicks":
        selection = make_sampler(config._replace(class_balance="none"))._select(candidates)
        return ShardPicks(selection.indices, selection.scores, np.ones(selection.indices.size, np.int64), None)

    def merge(self, config: "SelectionConfig", pool: "MergedPool", outputs: Sequence["ShardOutput"]) -> _MergeResult:
        selection = make_sampler(config)._select(Candidates(pool.probabilities, calibration=pool.calibration))
        return selection, {"guarantee": "exact: every shard sent its rows above the thresholds that the merge "
                                        "finds on the same calibration_data"}


class Strategy(NamedTuple):
    """One row of ``STRATEGY_TABLE``: how a SELECTION_STRATEGY value is run."""

    name: str
    sampler: type  # the sampler class that runs it
    use_case: str  # "ssl" or "active_learning"
    needs_embeddings: bool  # reads the EMBEDDING_FIELD_PREFIX (or feature) columns
    batched: bool  # selects BATCH_SIZE rows
    settings: Mapping[str, str]  # SelectionConfig field -> keyword of the sampler's constructor
    sharding: Optional[ShardRule]  # how it runs with SELECTION_ROLE=shard and merge; None: refused
    candidates: str = "unlabeled"  # the rows it selects among: "unlabeled", or "labeled" (it reviews labels)
    needs_members: bool = False  # reads the COMMITTEE_PREFIXES members; its probabilities are their mean
    needs_calibration: bool = False  # reads calibration_data (held-out labeled predictions)

    @property
    def reads(self) -> Tuple[str, ...]:
        """Every SelectionConfig field that changes what this strategy selects."""
        members = ("committee_prefixes",) if self.needs_members else ()
        return tuple(self.settings) + (("batch_size",) if self.batched else ()) + members


_DIVERSITY_SETTINGS = {"metric": "metric", "random_seed": "random_state", "diversity_method": "method",
                       "uncertainty_prefilter": "uncertainty_prefilter", "uncertainty_mode": "uncertainty_mode"}


# The strategies. Everything else (the SELECTION_STRATEGY choices, use-case rules, the step's config,
# contract and docs) is derived from this table: a new strategy is one sampler class and one row here.
STRATEGY_TABLE = (
    Strategy("confidence_threshold", ConfidenceThresholdSampler, "ssl", needs_embeddings=False, batched=False,
             settings={"confidence_threshold": "confidence_threshold", "max_samples": "max_samples"},
             sharding=ExactTopK("max_samples")),
    Strategy("top_k_per_class", TopKPerClassSampler, "ssl", needs_embeddings=False, batched=False,
             settings={"k_per_class": "k_per_class"}, sharding=ExactTopK("k_per_class", per_class=True)),
    Strategy("precision_target", PrecisionTargetSampler, "ssl", needs_embeddings=False, batched=False,
             settings={"target_precision": "target_precision", "precision_confidence": "precision_confidence",
                       "class_balance": "class_balance"}, sharding=CalibratedThresholds(), needs_calibration=True),
    Strategy("uncertainty", UncertaintySampler, "active_learning", needs_embeddings=False, batched=True,
             settings={"uncertainty_mode": "mode"}, sharding=ExactTopK("batch_size")),
    Strategy("diversity", DiversitySampler, "active_learning", needs_embeddings=True, batched=True,
             settings=_DIVERSITY_SETTINGS, sharding=DiversitySharding()),
    Strategy("badge", BADGESampler, "active_learning", needs_embeddings=True, batched=True,
             settings={"metric": "metric", "random_seed": "random_state"}, sharding=WeightedD2()),
    Strategy("hybrid", HybridSampler, "active_learning", needs_embeddings=True, batched=True,
             settings=_DIVERSITY_SETTINGS, sharding=DiversitySharding()),
    Strategy("label_review", LabelReviewSampler, "active_learning", needs_embeddings=False, batched=True,
             settings={"review_method": "method"}, sharding=LabeledRowsReview(), candidates="labeled"),
    Strategy("committee", CommitteeSampler, "active_learning", needs_embeddings=False, batched=True,
             settings={"disagreement": "disagreement"}, sharding=ExactTopK("batch_size"), needs_members=True),
)


STRATEGIES_BY_NAME = {strategy.name: strategy for strategy in STRATEGY_TABLE}


STRATEGIES = tuple(STRATEGIES_BY_NAME)


SSL_STRATEGIES = tuple(strategy.name for strategy in STRATEGY_TABLE if strategy.use_case == "ssl")


ACTIVE_LEARNING_STRATEGIES = tuple(strategy.name for strategy in STRATEGY_TABLE
                                   if strategy.use_case == "active_learning")


def strategy_for(name: str) -> Strategy:
    """The ``STRATEGY_TABLE`` row of ``name``; an unknown name is a ``SelectionError`` (a ``ValueError``)."""
    try:
        return STRATEGIES_BY_NAME[name]
    except (KeyError, TypeError):
        raise SelectionError("unknown strategy {!r}: expected one of {}".format(name, ", ".join(STRATEGIES))) from None


def make_sampler(config: "SelectionConfig") -> _Sampler:
    """The configured strategy's sampler, built from the settings its table row names."""
    strategy = strategy_for(config.selection_strategy)
    return strategy.sampler(**{keyword: getattr(config, field) for field, keyword in strategy.settings.items()})


def _reviews_labels(config: "SelectionConfig") -> bool:
    return strategy_for(config.selection_strategy).candidates == "labeled"


# ---- Labeling tasks: the selection as a Ground Truth manifest or Label Studio tasks -------------------------------
# Pure functions: they take the annotated rows, the model's predictions and the settings, and return the
# files' text; main writes them into the labeling_tasks channel.

GROUND_TRUTH_MANIFEST = "ground_truth.manifest"
GROUND_TRUTH_CATEGORIES = "ground_truth_label_categories.json"
LABEL_STUDIO_TASKS = "label_studio_tasks.json"
LABEL_STUDIO_CONFIG = "label_studio_config.xml"
GIVEN_LABEL = "given_label"  # strategies that review labeled rows: the label under review, as the input holds it
LABEL_STUDIO_CHOICES = "label"  # name of the <Choices> control: from_name of predictions and answers
LABEL_STUDIO_OBJECTS = {"text": ("Text", "text"), "uri": ("Image", "image")}  # data kind -> (tag, name)
MODEL_VERSION_PREFIX = "active_sampling/"
# Ground Truth's input manifest rules: one JSON object per line of at
# most 100,000 characters, no attribute over 20,000, no attribute name starting with $, exactly one of
# source (the text itself) and source-ref (an S3 object).
GROUND_TRUTH_SOURCE_KEYS = ("source", "source-ref")
GROUND_TRUTH_MAX_LINE_CHARS = 100000
GROUND_TRUTH_MAX_ATTRIBUTE_CHARS = 20000
GROUND_TRUTH_CATEGORIES_VERSION = "2018-11-28"
S3_URI = re.compile(r"s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]/\S.*")  # bucket naming rules, then a key
_URI_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://")
_URI_SCHEMES = ("s3://", "https://")
_LABEL_STUDIO_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_KIND_NAMES = {"text": "a text", "uri": "a URI"}


class LabelingTask(NamedTuple):
    """One selected row as a task, with JSON-ready values."""

    row_id: Any
    shown: str  # LABELING_DATA_FIELD: the text, or the URI of the object
    rank: int
    score: float
    predicted: str
    confidence: float
    given: Any = None  # the label under review (strategies that review labeled rows), else None


def _json_scalar(value: Any) -> Any:
    value = value.item() if isinstance(value, np.generic) else value
    return value if isinstance(value, (str, int, float)) else str(value)


def _row_name(task: LabelingTask, id_field: str) -> str:
    return "selected row {} ({}={!r})".format(task.rank, id_field, task.row_id)


def labeling_tasks(rows: pd.DataFrame, predictions: "Predictions", config: "SelectionConfig") -> List[LabelingTask]:
    """One task per selected row, in rank order; each shown value must be a non-blank text.

    ``rows`` are the annotated selected rows (``annotate``), ``predictions`` the model's guess for them.
    """
    field = config.labeling_data_field
    given = rows[config.label_field].map(_json_scalar) if _reviews_labels(config) else [None] * len(rows)
    tasks = [LabelingTask(_json_scalar(row_id), shown, int(rank), float(score), str(predicted), float(confidence),
                          label)
             for row_id, shown, rank, score, predicted, confidence, label in zip(
                 rows[config.id_field], rows[field], rows[SELECTION_RANK], rows[SELECTION_SCORE],
                 predictions.labels, predictions.confidence, given)]
    for task in tasks:
        if isinstance(task.shown, str) and task.shown.strip():
            continue
        if isinstance(task.shown, str) or (pd.api.types.is_scalar(task.shown) and pd.isna(task.shown)):
            what = "is empty"
        else:
            what = "holds {} {}".format("the number" if isinstance(task.shown, numbers.Number) else "the value",
                                        task.shown)
        raise SelectionError("LABELING_DATA_FIELD column {!r} {} in the {}: expected a text or an s3:// or "
                             "https:// URI".format(field, what, _row_name(task, config.id_field)))
    return tasks


def labeling_data_kind(tasks: Sequence[LabelingTask], config: "SelectionConfig") -> str:
    """``"uri"`` when every shown value is an s3:// or https:// URI, ``"text"`` when none looks like a URI."""
    kinds = ["uri" if _URI_SCHEME.match(task.shown) else "text" for task in tasks]
    for task, kind in zip(tasks, kinds):
        if kind != kinds[0]:
            raise SelectionError("LABELING_DATA_FIELD column {!r} mixes texts and URIs: the {} is {}, the {} {}"
                                 .format(config.labeling_data_field, _row_name(tasks[0], config.id_field),
                                         _KIND_NAMES[kinds[0]], _row_name(task, config.id_field), _KIND_NAMES[kind]))
        if kind == "uri" and not task.shown.lower().startswith(_URI_SCHEMES):
            raise SelectionError("LABELING_DATA_FIELD value {!r} of the {} is a URI that labeling tools cannot "
                                 "fetch: expected s3:// or https://".format(task.shown, _row_name(task, config.id_field)))
    return kinds[0] if kinds else "text"


def ground_truth_files(tasks: Sequence[LabelingTask], kind: str, predictions: "Predictions",
                       config: "SelectionConfig") -> Tuple[str, str]:
    """Ground Truth's input manifest and label category configuration (``LabelCategoryConfigS3Uri``). A manifest
    line holds ``source`` (a text) or ``source-ref`` (an S3 URI), then the id, rank, score and the model's
    prediction as extra attributes; every line is checked against Ground Truth's limits."""
    key = "source-ref" if kind == "uri" else "source"
    lines = []
    for task in tasks:
        where = _row_name(task, config.id_field)
        if kind == "uri" and not S3_URI.fullmatch(task.shown):
            raise SelectionError("Ground Truth reads objects from S3 only: LABELING_DATA_FIELD value {!r} of the {} "
                                 "is not an s3://bucket/key URI".format(task.shown, where))
        if len(task.shown) > GROUND_TRUTH_MAX_ATTRIBUTE_CHARS:
            raise SelectionError("LABELING_DATA_FIELD value of the {} has {} characters; Ground Truth accepts at "
                                 "most {} in one attribute".format(where, len(task.shown),
                                                                  GROUND_TRUTH_MAX_ATTRIBUTE_CHARS))
        entry = {key: task.shown, config.id_field: task.row_id, SELECTION_RANK: task.rank,
                 SELECTION_SCORE: task.score, PREDICTED_LABEL: task.predicted, PREDICTED_CONFIDENCE: task.confidence}
        if task.given is not None:
            entry[GIVEN_LABEL] = task.given
        line = json.dumps(entry, ensure_ascii=False, allow_nan=False)
        if len(line) > GROUND_TRUTH_MAX_LINE_CHARS:
            raise SelectionError("the Ground Truth manifest line of the {} has {} characters; Ground Truth accepts "
                                 "at most {}".format(where, len(line), GROUND_TRUTH_MAX_LINE_CHARS))
        lines.append(line + "\n")
    categories = {"document-version": GROUND_TRUTH_CATEGORIES_VERSION,
                  "labels": [{"label": str(c)} for c in predictions.classes]}
    return "".join(lines), json.dumps(categories, indent=2, ensure_ascii=False) + "\n"


def label_studio_files(tasks: Sequence[LabelingTask], kind: str, predictions: "Predictions",
                       config: "SelectionConfig") -> Tuple[str, str]:
    """Label Studio tasks, one per line of a JSON list (it imports as it is, reads and diffs well), and their
    labeling configuration. ``data`` holds the shown field, the id, rank and score; the model's top class and
    its probability are a prediction, so annotators start from the model's guess."""
    object_name = LABEL_STUDIO_OBJECTS[kind][1]
    model_version = MODEL_VERSION_PREFIX + config.selection_strategy
    lines = [json.dumps({
        "data": {config.labeling_data_field: task.shown, config.id_field: task.row_id, SELECTION_RANK: task.rank,
                 SELECTION_SCORE: task.score, **({} if task.given is None else {GIVEN_LABEL: task.given})},
        "predictions": [{
            "model_version": model_version,
            "score": task.confidence,
            "result": [{"from_name": LABEL_STUDIO_CHOICES, "to_name": object_name, "type": "choices",
                        "value": {"choices": [task.predicted]}}],
        }],
    }, ensure_ascii=False, allow_nan=False) for task in tasks]
    return ("[\n" + ",\n".join(lines) + "\n]\n",
            label_studio_config(predictions.classes, kind, config.labeling_data_field,
                                shows_given=_reviews_labels(config)))


def label_studio_config(classes: Sequence[Any], kind: str, data_field: str, *, shows_given: bool = False) -> str:
    """The labeling configuration matching ``label_studio_files``' tasks: the shown field (a Text, or an Image for
    URIs) and one single-choice control with the classes of the score columns; with ``shows_given``, a header
    above them with the label under review (the model's suggestion is the preselected choice)."""
    tag, name = LABEL_STUDIO_OBJECTS[kind]
    choices = "".join("    <Choice value={}/>\n".format(quoteattr(str(label))) for label in classes)
    header = '  <Header value="Given label: ${}"/>\n'.format(GIVEN_LABEL) if shows_given else ""
    return ('<View>\n{header}  <{tag} name="{name}" value="${field}"/>\n'
            '  <Choices name="{control}" toName="{name}" choice="single" showInline="true">\n{choices}'
            '  </Choices>\n</View>\n').format(header=header, tag=tag, name=name, field=data_field,
                                             control=LABEL_STUDIO_CHOICES, choices=choices)


def check_ground_truth_settings(config: "SelectionConfig") -> None:
    if config.id_field in GROUND_TRUTH_SOURCE_KEYS or config.id_field.startswith("$"):
        raise SelectionError("ID_FIELD={!r} cannot be a Ground Truth manifest attribute: it is reserved for the "
                             "object (source, source-ref) or starts with $".format(config.id_field))


def check_label_studio_settings(config: "SelectionConfig") -> None:
    if not _LABEL_STUDIO_NAME.fullmatch(config.labeling_data_field):
        raise SelectionError("LABELING_DATA_FIELD={!r} cannot be a Label Studio variable ($name): with LABELING_FORMAT="
                             "label_studio it must be letters, digits and _".format(config.labeling_data_field))


class LabelingFormat(NamedTuple):
    """A row of ``LABELING_FORMAT_TABLE``: the ``files`` LABELING_FORMAT=<name> writes into labeling_tasks (none:
    no tasks); ``check_settings(config)`` raises ``SelectionError`` for settings its tool cannot take, and
    ``render(tasks, kind, predictions, config)`` returns the text of each file, in the order of ``files``."""

    name: str
    files: Tuple[str, ...] = ()
    check_settings: "Optional[Callable[[SelectionConfig], None]]" = None
    render: Optional[Callable[..., Sequence[str]]] = None


LABELING_FORMAT_TABLE = (
    LabelingFormat("none"),
    LabelingFormat("ground_truth", (GROUND_TRUTH_MANIFEST, GROUND_TRUTH_CATEGORIES), check_ground_truth_settings,
                   ground_truth_files),
    LabelingFormat("label_studio", (LABEL_STUDIO_TASKS, LABEL_STUDIO_CONFIG), check_label_studio_settings,
                   label_studio_files),
)
LABELING_FORMATS_BY_NAME = {row.name: row for row in LABELING_FORMAT_TABLE}
LABELING_FORMATS = tuple(LABELING_FORMATS_BY_NAME)


def labeling_files(rows: pd.DataFrame, predictions: "Predictions", config: "SelectionConfig") -> Dict[str, str]:
    """The labeling_tasks files (file name -> text), as the row of ``config.labeling_format`` names and renders them."""
    labeling = LABELING_FORMATS_BY_NAME[config.labeling_format]
    tasks = labeling_tasks(rows, predictions, config)
    return dict(zip(labeling.files, labeling.render(tasks, labeling_data_kind(tasks, config), predictions, config)))


def save_labeling_files(files: Mapping[str, str], labeling_dir: Path) -> List[Path]:
    """Write each file atomically into ``labeling_dir``; return their paths."""
    labeling_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, text in files.items():
        path = labeling_dir / name
        _write_atomically(path, lambda target, text=text: target.write_text(text, encoding="utf-8"))
        paths.append(path)
    logger.info("Wrote labeling tasks to %s: %s", labeling_dir, ", ".join(files))
    return paths


# ---- Settings: the environment variables, parsed and checked before any data is read ------------------------------
# Each setting is declared once, as a SelectionConfig field; ENV_VARS, the step's pydantic config, its contract
# and docs/config.md are derived from these declarations.

class EnvVar(NamedTuple):
    """One environment variable of the script contract, declared in the annotation of its ``SelectionConfig`` field.

    ``default`` is the text used when the variable is missing, None or "" (all three mean unset): ``None`` marks a
    required variable, ``""`` an optional one. ``choices`` may be a function returning them, for a table further
    down the file. ``field`` and ``kind`` ("choice", "int", "float" or "str") follow from the annotated field.
    """

    name: str
    default: Optional[str]
    description: str
    choices: Tuple[str, ...] = ()
    minimum: Optional[float] = None
    maximum: Optional[float] = None
    field: str = ""
    kind: str = ""

    @property
    def required(self) -> bool:
        return self.default is None


class SelectionConfig(NamedTuple):
    """Typed value of every setting, each declared by its annotation; optional ones are None when unset."""

    selection_strategy: Annotated[str, EnvVar("SELECTION_STRATEGY", None, "Selection strategy.",
        choices=lambda: STRATEGIES)]
    use_case: Annotated[str, EnvVar("USE_CASE", "auto", "ssl and active_learning allow only their own strategies; auto "
        "allows all.", choices=USE_CASES)]
    id_field: Annotated[str, EnvVar("ID_FIELD", "id", "Column holding a unique id per row.")]
    label_field: Annotated[Optional[str], EnvVar("LABEL_FIELD", "", "Column holding known labels; rows where it is "
        "filled are never selected (and are the initial centers for diversity), except by label_review, which selects "
        "among them only. Unset: no row is labeled, with a warning when a column looks like labels (label, labels, y, "
        "target); none: no row is labeled, silently.")]
    score_field: Annotated[Optional[str], EnvVar("SCORE_FIELD", "", "One score column to use (a probability of the "
        "positive class, or a logit), or an array column holding one score per class (a JSON Lines \"probabilities\": "
        "[..] field, a parquet list).")]
    score_field_prefix: Annotated[str, EnvVar("SCORE_FIELD_PREFIX", "prob_class_", "Prefix of the per-class score "
        "columns, used when SCORE_FIELD is unset.")]
    embedding_field_prefix: Annotated[str, EnvVar("EMBEDDING_FIELD_PREFIX", "emb_", "Prefix of the embedding columns "
        "used by diversity and badge.")]
    embedding_field: Annotated[Optional[str], EnvVar("EMBEDDING_FIELD", "", "diversity, badge: one array column "
        "holding each row's embedding (a parquet list, a JSON Lines array, a CSV cell holding a JSON array); used "
        "instead of the EMBEDDING_FIELD_PREFIX columns.")]
    feature_columns: Annotated[Optional[str], EnvVar("FEATURE_COLUMNS", "", "diversity, badge: the columns to use as "
        "embeddings, comma-separated; used instead of the EMBEDDING_FIELD_PREFIX columns. Unset and no such columns: "
        "every numeric column, with a warning.")]
    csv_columns: Annotated[Optional[str], EnvVar("CSV_COLUMNS", "", "Column names of CSV/TSV files without a header "
        "(Batch Transform output; with join_source=Input the input's columns, then the model's), comma-separated. A "
        "file whose first line is exactly these names has it as its header.")]
    output_format: Annotated[Optional[str], EnvVar("OUTPUT_FORMAT", "", "Format of selected_samples; unset: the "
        "input's format.", choices=OUTPUT_FORMATS)]
    random_seed: Annotated[int, EnvVar("RANDOM_SEED", "42", "Seed of badge's k-means++ sampling and of diversity's "
        "k-means.", minimum=0, maximum=MAX_SEED)]
    confidence_threshold: Annotated[float, EnvVar("CONFIDENCE_THRESHOLD", "0.9", "confidence_threshold: minimum "
        "max-probability of a selected row.", minimum=0.5, maximum=1.0)]
    max_samples: Annotated[int, EnvVar("MAX_SAMPLES", "0", "confidence_threshold: keep at most this many, the most "
        "confident (0 = no limit).", minimum=0)]
    k_per_class: Annotated[int, EnvVar("K_PER_CLASS", "100", "top_k_per_class: rows kept per predicted class.",
        minimum=1)]
    uncertainty_mode: Annotated[str, EnvVar("UNCERTAINTY_MODE", "margin", "uncertainty, and diversity's pre-filter: "
        "how uncertainty is measured.", choices=UNCERTAINTY_MODES)]
    batch_size: Annotated[int, EnvVar("BATCH_SIZE", "32", "uncertainty, diversity, badge, label_review: number of rows "
        "to select.", minimum=1)]
    metric: Annotated[str, EnvVar("METRIC", "euclidean", "diversity, badge: distance between embeddings.",
        choices=METRICS)]
    selection_role: Annotated[str, EnvVar("SELECTION_ROLE", "single", "single: select from the whole input; shard: one "
        "instance of a multi-instance job picks its own candidates; merge: selects from every shard's candidates.",
        choices=SELECTION_ROLES)]
    oversampling: Annotated[int, EnvVar("OVERSAMPLING", "4", "diversity, badge with SELECTION_ROLE=shard: each shard "
        "picks OVERSAMPLING x BATCH_SIZE candidates.", minimum=1, maximum=1000)]
    resource_config_path: Annotated[str, EnvVar(
        "RESOURCE_CONFIG_PATH", RESOURCE_CONFIG_PATH, "SageMaker's resource config (current_host, hosts), read by "
        "shard and merge; local runs point it at their own file.")]
    diversity_method: Annotated[Optional[str], EnvVar("DIVERSITY_METHOD", "", "diversity, hybrid: kcenter (greedy "
        "farthest-first from the labeled rows) or kmeans (k-means with BATCH_SIZE clusters, the row nearest each "
        "centroid). Unset: the strategy's own, kcenter for diversity and kmeans for hybrid.",
        choices=DIVERSITY_METHODS)]
    uncertainty_prefilter: Annotated[Optional[int], EnvVar("UNCERTAINTY_PREFILTER", "", "diversity, hybrid: choose "
        "among the UNCERTAINTY_PREFILTER x BATCH_SIZE most uncertain candidates by UNCERTAINTY_MODE only (0 = all "
        "candidates). Unset: the strategy's own, 0 for diversity and 3 for hybrid.", minimum=0)]
    labeling_format: Annotated[str, EnvVar("LABELING_FORMAT", "none", "Also write the active-learning selection as "
        "labeling tasks into labeling_tasks: a SageMaker Ground Truth input manifest, or Label Studio tasks with their "
        "labeling configuration.", choices=lambda: LABELING_FORMATS)]
    labeling_data_field: Annotated[Optional[str], EnvVar("LABELING_DATA_FIELD", "", "Column annotators see: a text, or "
        "an s3:// or https:// URI of the object to label. Required with a LABELING_FORMAT.")]
    stop_agreement: Annotated[float, EnvVar("STOP_AGREEMENT", "0.99", "Stopping signal: should_stop once Cohen's kappa "
        "between previous_predictions and this round's predicted classes (unlabeled rows in both) reaches it (0 = "
        "off). Never changes the selection.", minimum=0.0, maximum=1.0)]
    stop_max_labeled: Annotated[int, EnvVar("STOP_MAX_LABELED", "0", "Stopping signal: should_stop once the labeled "
        "rows (LABEL_FIELD filled) reach it (0 = off).", minimum=0)]
    stop_max_uncertainty: Annotated[float, EnvVar("STOP_MAX_UNCERTAINTY", "0", "Stopping signal: should_stop once "
        "every candidate's margin uncertainty 1 - (p1 - p2) is below it (0 = off).", minimum=0.0, maximum=1.0)]
    review_method: Annotated[str, EnvVar("REVIEW_METHOD", "confident_learning", "label_review: confident_learning (the "
        "labeled rows confident learning flags, prune by noise rate, lowest probability of the given label first) or "
        "self_confidence (every labeled row, lowest probability of the given label first).", choices=REVIEW_METHODS)]
    committee_prefixes: Annotated[Optional[str], EnvVar("COMMITTEE_PREFIXES", "", "committee: comma-separated column "
        "prefixes, one per member (at least 2), e.g. m0_prob_class_,m1_prob_class_; member j's columns are "
        "<prefix_j><class>, read like the score columns. Required by committee.")]
    disagreement: Annotated[str, EnvVar("DISAGREEMENT", "bald", "committee: vote_entropy (entropy of the members' "
        "votes), consensus_entropy (entropy of the mean of their probabilities) or bald (mutual information: that "
        "entropy minus the members' mean entropy).", choices=DISAGREEMENTS)]
    target_precision: Annotated[float, EnvVar("TARGET_PRECISION", "0.95", "precision_target: the pseudo-label "
        "precision each class's threshold must be shown to reach on calibration_data.", minimum=0.5, maximum=0.999)]
    precision_confidence: Annotated[float, EnvVar("PRECISION_CONFIDENCE", "0.95", "precision_target: confidence of the "
        "one-sided Clopper-Pearson lower bound that must reach TARGET_PRECISION.", minimum=0.5, maximum=0.999)]
    class_balance: Annotated[str, EnvVar("CLASS_BALANCE", "none", "precision_target: none keeps every row above its "
        "class's threshold; align caps each class's pseudo-labels at its share of the calibration labels times the "
        "total.", choices=CLASS_BALANCES)]

    @property
    def feature_column_names(self) -> List[str]:
        return _name_list(self.feature_columns)

    @property
    def csv_column_names(self) -> List[str]:
        return _name_list(self.csv_columns)


def declared_env_vars(config_class: type = SelectionConfig) -> Tuple[EnvVar, ...]:
    """The ``EnvVar`` of every field of ``config_class``, from its annotation, in declaration order."""
    env_vars = []
    for field, hint in get_type_hints(config_class, include_extras=True).items():
        value_type, var = hint.__origin__, hint.__metadata__[0]
        choices = tuple(var.choices() if callable(var.choices) else var.choices)
        value_type = next(arg for arg in getattr(value_type, "__args__", (value_type,)) if arg is not type(None))
        env_vars.append(var._replace(field=field, kind="choice" if choices else value_type.__name__, choices=choices))
    return tuple(env_vars)


NO_LABELS = "none"  # LABEL_FIELD=none: the table has no labels (parsed to "", which no column can be named)


def _name_list(text: Optional[str]) -> List[str]:
    """Comma-separated column names, spaces around each removed."""
    return [name.strip() for name in text.split(",")] if text else []


def _allowed_text(var: EnvVar) -> str:
    if var.choices:
        return "one of " + ", ".join(var.choices)
    noun = {"int": "an integer", "float": "a number", "str": "a non-empty string"}[var.kind]
    if var.minimum is not None and var.maximum is not None:
        return "{} from {} to {}".format(noun, _plain(var.minimum), _plain(var.maximum))
    if var.minimum is not None:
        return "{} >= {}".format(noun, _plain(var.minimum))
    return noun


def _plain(number: float) -> str:
    return str(int(number)) if float(number).is_integer() else str(number)


def _parse_env_value(var: EnvVar, raw: str) -> Any:
    text = raw.strip()
    if var.kind == "str":
        return raw
    if var.kind == "choice":
        value = text.lower()
        if value not in var.choices:
            raise SelectionError("{}={!r} is not allowed: expected {}".format(var.name, raw, _allowed_text(var)))
        return value
    try:
        number = int(text) if var.kind == "int" else float(text)
    except ValueError:
        raise SelectionError("{}={!r} is not valid: expected {}".format(var.name, raw, _allowed_text(var))) from None
    return _in_range(var, number, raw)


def _in_range(var: EnvVar, number: Any, given: Any) -> Any:
    if (not math.isfinite(number) or (var.minimum is not None and number < var.minimum)
            or (var.maximum is not None and number > var.maximum)):
        raise SelectionError("{}={!r} is out of range: expected {}".format(var.name, given, _allowed_text(var)))
    return number


def default_value(var: EnvVar) -> Any:
    """The value of ``var`` when it is unset: its default parsed, None for an optional one; required: an error."""
    if var.required:
        raise SelectionError("{} is required: expected {}".format(var.name, _allowed_text(var)))
    return None if var.default == "" else _parse_env_value(var, var.default)


def _typed_value(var: EnvVar, value: Any) -> Any:
    """The value of ``var`` given ``value``, checked as in the environment: text is parsed, numbers are taken as
    they are; None and blank text mean unset."""
    if value is None or (isinstance(value, str) and value.strip() == ""):
        return default_value(var)
    if isinstance(value, str) or var.kind in ("str", "choice"):
        return _parse_env_value(var, _env_text(var.name, value))
    number_type = numbers.Integral if var.kind == "int" else numbers.Real
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, number_type):
        raise SelectionError("{}={!r} is not valid: expected {}".format(var.name, value, _allowed_text(var)))
    too_large = var.kind == "float" and isinstance(value, int) and abs(value) > sys.float_info.max  # no float holds it
    return _in_range(var, math.inf if too_large else int(value) if var.kind == "int" else float(value), value)


def validate_strategy_for_use_case(strategy: str, use_case: str) -> None:
    """Refuse strategies that work against the use case; ``auto`` allows every strategy.

    Raises ``SelectionError`` (a ``ValueError``) for a mismatch and for an unknown strategy or use case.
    """
    if use_case not in USE_CASES:
        raise SelectionError("unknown use case {!r}: expected one of {}".format(use_case, ", ".join(USE_CASES)))
    own = strategy_for(strategy).use_case
    if use_case == "auto" or use_case == own:
        return
    why, fitting = {
        "ssl": ("it selects uncertain or merely diverse rows, whose predictions would become noisy pseudo-labels",
                SSL_STRATEGIES),
        "active_learning": ("it selects rows the model is already confident about, which wastes human labeling "
                            "effort", ACTIVE_LEARNING_STRATEGIES)}[use_case]
    raise SelectionError("SELECTION_STRATEGY={} is not allowed with USE_CASE={}: {}; use one of {} (or USE_CASE=auto)"
                         .format(strategy, use_case, why, ", ".join(fitting)))


def _env_text(name: str, raw: Any) -> Optional[str]:
    """An environment value as text: str and None as they are, int and float through ``str``."""
    if raw is None or isinstance(raw, str):
        return raw
    if isinstance(raw, (int, float, np.integer, np.floating)) and not isinstance(raw, (bool, np.bool_)):
        return str(raw)
    raise SelectionError("{}={!r} is a {}: environment values must be strings (or numbers)".format(
        name, raw, type(raw).__name__))


def parse_environment(environ_vars: Mapping[str, Any]) -> SelectionConfig:
    """Parse and range-check every variable of ``ENV_VARS``; missing, None and "" all mean unset. Values are
    strings as in a real environment; ints and floats are accepted and read through ``str``."""
    if environ_vars is None:
        environ_vars = {}
    if not isinstance(environ_vars, Mapping):
        raise SelectionError("environ_vars must be a mapping of variable names to strings, not {}".format(
            type(environ_vars).__name__))
    return config_from_values({var.field: _env_text(var.name, environ_vars.get(var.name)) for var in ENV_VARS})


def config_from_values(values: Mapping[str, Any], rules: Optional[Sequence[Callable[..., None]]] = None
                       ) -> SelectionConfig:
    """``parse_environment`` for values by field name: text is parsed, numbers are taken as they are; missing,
    None and blank mean unset. LABEL_FIELD=none reads as no labels, each unset setting its strategy reads takes the
    strategy's default, and every rule of ``SETTING_RULES`` (or of ``rules``) is checked."""
    typed = {var.field: _typed_value(var, values.get(var.field)) for var in ENV_VARS}
    if typed["label_field"] is not None and typed["label_field"].strip().lower() == NO_LABELS:
        typed["label_field"] = ""
    config = with_strategy_defaults(SelectionConfig(**typed))
    for rule in SETTING_RULES if rules is None else rules:
        rule(config)
    return config


def with_strategy_defaults(config: SelectionConfig) -> SelectionConfig:
    """``config`` with each unset setting its strategy reads filled in with its sampler's constructor default:
    ``hybrid`` and ``diversity`` share DIVERSITY_METHOD and UNCERTAINTY_PREFILTER but default to kmeans behind
    beta = 3 and to plain kcenter."""
    strategy = strategy_for(config.selection_strategy)
    defaults = inspect.signature(strategy.sampler).parameters
    unset = {field: defaults[keyword].default for field, keyword in strategy.settings.items()
             if getattr(config, field) is None}
    return config._replace(**unset) if unset else config


# The cross-field rules (SETTING_RULES): each raises SelectionError naming the variables and the fix.
def validate_column_settings(config: SelectionConfig) -> None:
    """EMBEDDING_FIELD and FEATURE_COLUMNS each choose the embeddings: one of them at most; lists of names
    without blanks or repeats."""
    if config.embedding_field and config.feature_columns:
        raise SelectionError("EMBEDDING_FIELD={!r} and FEATURE_COLUMNS={!r} both choose the embeddings: set one of "
                             "them".format(config.embedding_field, config.feature_columns))
    for var_name, names in (("FEATURE_COLUMNS", config.feature_column_names),
                            ("CSV_COLUMNS", config.csv_column_names)):
        if any(not name for name in names):
            raise SelectionError("{} has an empty name: expected column names separated by commas".format(var_name))
        repeated = sorted({name for name in names if names.count(name) > 1})
        if repeated:
            raise SelectionError("{} names {} more than once".format(var_name, _preview(repeated)))


def validate_use_case_settings(config: SelectionConfig) -> None:
    """SELECTION_STRATEGY fits USE_CASE (``validate_strategy_for_use_case``)."""
    validate_strategy_for_use_case(config.selection_strategy, config.use_case)


def validate_labeling_settings(config: SelectionConfig) -> None:
    """LABELING_DATA_FIELD goes with a LABELING_FORMAT that writes tasks, only active-learning selections become tasks,
    and the format's own rule (``LabelingFormat.check_settings``) holds."""
    labeling, field = LABELING_FORMATS_BY_NAME[config.labeling_format], config.labeling_data_field
    if not labeling.files:
        if field:
            raise SelectionError("LABELING_DATA_FIELD={!r} is set but LABELING_FORMAT={}: set {}, or unset it".format(
                field, labeling.name, " or ".join("LABELING_FORMAT=" + row.name for row in LABELING_FORMAT_TABLE
                                                  if row.files)))
        return
    if not field:
        raise SelectionError("LABELING_FORMAT={} needs LABELING_DATA_FIELD=<column>: the column annotators see "
                             "(a text, or an s3:// or https:// URI of the object to label)".format(labeling.name))
    if strategy_for(config.selection_strategy).use_case != "active_learning":
        raise SelectionError(
            "LABELING_FORMAT={} is not allowed with SELECTION_STRATEGY={}: it picks rows whose predictions become "
            "pseudo-labels, not rows for humans to label; use one of {} or LABELING_FORMAT=none".format(
                labeling.name, config.selection_strategy, ", ".join(ACTIVE_LEARNING_STRATEGIES)))
    labeling.check_settings(config)


def validate_label_settings(config: SelectionConfig) -> None:
    """A strategy that selects among the labeled rows needs LABEL_FIELD."""
    if _reviews_labels(config) and not config.label_field:
        raise SelectionError("SELECTION_STRATEGY={} reviews labeled rows and needs LABEL_FIELD=<column>: the column "
                             "holding the given labels".format(config.selection_strategy))


def committee_prefixes(text: Optional[str]) -> Tuple[str, ...]:
    """COMMITTEE_PREFIXES as its prefixes, in order: comma-separated, spaces around each one removed."""
    return tuple(_name_list(text))


def validate_committee_settings(config: SelectionConfig) -> None:
    """A strategy that reads committee members needs COMMITTEE_PREFIXES: two or more distinct prefixes."""
    strategy, prefixes_text = config.selection_strategy, config.committee_prefixes
    if not strategy_for(strategy).needs_members:
        return
    if not prefixes_text:
        raise SelectionError("SELECTION_STRATEGY={} needs COMMITTEE_PREFIXES=<prefix>,<prefix>[,...]: the column "
                             "prefix of each committee member, e.g. m0_prob_class_,m1_prob_class_".format(strategy))
    prefixes = committee_prefixes(prefixes_text)
    if not all(prefixes):
        raise SelectionError("COMMITTEE_PREFIXES={!r} has an empty entry: give one column prefix per member, "
                             "separated by commas".format(prefixes_text))
    if len(prefixes) < 2:
        raise SelectionError("COMMITTEE_PREFIXES={!r} names one member: a committee needs at least 2, since its "
                             "score is their disagreement".format(prefixes_text))
    repeated = sorted({prefix for prefix in prefixes if prefixes.count(prefix) > 1})
    if repeated:
        raise SelectionError("COMMITTEE_PREFIXES={!r} names {!r} more than once: each member needs its own "
                             "prefix".format(prefixes_text, repeated[0]))


SETTING_RULES = (validate_column_settings, validate_use_case_settings, validate_labeling_settings,
                 validate_label_settings, validate_committee_settings)


ENV_VARS = declared_env_vars()  # here, once the choices of SELECTION_STRATEGY and LABELING_FORMAT exist


ENV_VARS_BY_NAME = {var.name: var for var in ENV_VARS}


# ---- Scores and pool: probabilities, embeddings and labeled rows as arrays ----------------------------------------

def label_texts(labels: pd.Series) -> np.ndarray:
    """Labels (or class names) as text that compares equal when the values do: stripped, and a whole number in
    any spelling ("3.0" of a csv column with gaps, 3.0, " 3") as its integer digits. Used only to compare."""
    text = labels.astype(str).str.strip()
    values = pd.to_numeric(text, errors="coerce").to_numpy(dtype=np.float64)
    whole = np.isfinite(values) & (np.abs(values) < 2.0 ** 53) & (values == np.floor(values))
    canonical = text.to_numpy(dtype=object)
    canonical[whole] = values[whole].astype(np.int64).astype(str).astype(object)
    return canonical

def extract_score_columns(
    columns: Any, score_field: Optional[str] = None, score_prefix: str = "prob_class_"
) -> List[str]:
    """Pick the score columns: SCORE_FIELD, then the prefix columns, then LLM names, then ruleset names.

    ``columns`` is a DataFrame or a sequence of column names. Prefix columns are ordered by their
    class suffix (numerically when the suffixes are integers), so prob_class_10 follows prob_class_9.
    """
    names = list(getattr(columns, "columns", columns))
    if score_field:
        if score_field not in names:
            raise SelectionError("SCORE_FIELD column {!r} not found; columns are: {}".format(
                score_field, _preview(names)))
        return [score_field]
    prefixed = _prefixed_columns(names, score_prefix)
    if len(prefixed) == 1:
        raise SelectionError(
            "{!r} is the only column starting with SCORE_FIELD_PREFIX={!r}: one per-class column cannot say what "
            "the other classes score; give a column per class (e.g. {}0 and {}1), or set SCORE_FIELD={} to read it "
            "as the probability of class 1 (classes 0 and 1)".format(
                prefixed[0], score_prefix, score_prefix, score_prefix, prefixed[0]))
    if prefixed:
        return prefixed
    for family in (LLM_SCORE_COLUMNS, RULESET_SCORE_COLUMNS):
        present = [name for name in family if name in names]
        if present:
            return present[:1]
    raise SelectionError(
        "no score columns found: looked for SCORE_FIELD (unset), columns starting with SCORE_FIELD_PREFIX={!r}, "
        "then {}; columns are: {}".format(score_prefix, ", ".join(LLM_SCORE_COLUMNS + RULESET_SCORE_COLUMNS),
                                          _preview(names)))


def _prefixed_columns(names: Sequence[str], prefix: str) -> List[str]:
    """The columns named ``<prefix><class>``, ordered by class (numerically when the classes are integers)."""
    own = [name for name in names if name.startswith(prefix) and len(name) > len(prefix)]
    return sorted(own, key=lambda name: _class_sort_key(name[len(prefix):]))


def _class_sort_key(suffix: str) -> Tuple[int, Any]:
    return (0, int(suffix)) if _is_class_number(suffix) else (1, suffix)


def class_labels(score_cols: Sequence[str], score_prefix: str) -> List[Any]:
    """Class of each probability column: the prefix columns' suffixes, or 0/1 for a single score column.

    The classes are integers when every suffix is ASCII digits (``prob_class_01`` is class 1), otherwise
    the suffixes as text; two columns of one class are an error.
    """
    if len(score_cols) == 1:
        return [0, 1]
    suffixes = [name[len(score_prefix):] if name.startswith(score_prefix) else name for name in score_cols]
    if not all(_is_class_number(s) for s in suffixes):
        return suffixes
    classes = [int(s) for s in suffixes]
    for position, label in enumerate(classes):
        if classes.index(label) != position:
            raise SelectionError("score columns {!r} and {!r} both name class {}: rename one of them".format(
                score_cols[classes.index(label)], score_cols[position], label))
    return classes


def _as_numbers(column: pd.Series) -> Tuple[np.ndarray, np.ndarray]:
    """A column's cells as float64 (blank cells NaN), and where a filled cell is not a number."""
    values = column.astype(object)
    blank = _missing(values)
    numbers = pd.to_numeric(values.where(~blank, np.nan), errors="coerce").to_numpy(dtype=np.float64)
    return numbers, np.isnan(numbers) & ~blank


def _check_numeric(df: pd.DataFrame, columns: Sequence[str], what: str, where: Any = None) -> None:
    for name in columns:
        column = df[name]
        if pd.api.types.is_numeric_dtype(column) and not pd.api.types.is_bool_dtype(column):
            continue
        flagged = np.flatnonzero(_as_numbers(column)[1])
        label = "{}column {!r}".format(what + " " if what else "", name)
        within = " of {}".format(where) if where else ""
        if not flagged.size:
            raise SelectionError("{} must hold numbers, but holds them as text (dtype {}){}: convert it to a number "
                                 "type".format(label, column.dtype, within))
        raise SelectionError("{} must hold numbers, but row {}{} holds {!r}".format(
            label, int(flagged[0]) + 1, within, column.astype(object).iloc[int(flagged[0])]))


def _check_finite(values: np.ndarray, names: Sequence[str], what: str) -> None:
    if _all_finite(values):
        return
    bad = ~np.isfinite(values)
    per_column = bad.sum(axis=0)
    worst = [(names[j], int(per_column[j])) for j in np.flatnonzero(per_column)[:3]]
    raise SelectionError("{} contain NaN or inf in {} row(s): {}".format(
        what, int(bad.any(axis=1).sum()),
        ", ".join("column {!r} ({} rows)".format(name, count) for name, count in worst)))


def probabilities_from_frame(df: pd.DataFrame, score_cols: Sequence[str]) -> Tuple[np.ndarray, str]:
    """The score columns of ``df`` as an (n, n_classes) float64 probability matrix, and how they were read.

    One column within [0, 1] (up to PROBABILITY_RANGE_TOLERANCE) is the positive-class probability p and
    becomes [1 - p, p]; one with at least MIXED_SINGLE_SCORE_SHARE of its values outside [0, 1] is a logit
    (sigmoid), and one in between is an error. Several columns are probabilities when every row is a
    probability row (each value within [0, 1] up to PROBABILITY_RANGE_TOLERANCE, the row summing to 1 within
    PROBABILITY_SUM_TOLERANCE), logits (softmax, with a warning) when fewer than MIXED_SCORES_SHARE of the
    rows are, and an error in between; percentages are an error too. Values within the tolerance outside
    [0, 1] are clipped (logged). Returns the matrix and a short description of how the scores were read.
    """
    _check_numeric(df, score_cols, "score")
    return scores_to_probabilities(df[list(score_cols)].to_numpy(dtype=np.float64, copy=True), score_cols)


def _probability_rows(values: np.ndarray, scale: float = 1.0) -> Tuple[int, int]:
    """How many rows are probability rows (times ``scale``), and the position of the first row that is not
    (-1: none)."""
    count, first_other = 0, -1
    for start in range(0, values.shape[0], _CHUNK_ROWS):
        block = values[start:start + _CHUNK_ROWS]
        is_probability = _in_unit_range(block / scale).all(axis=1)
        is_probability &= np.abs(block.sum(axis=1) / scale - 1.0) <= PROBABILITY_SUM_TOLERANCE
        count += int(is_probability.sum())
        if first_other < 0 and not is_probability.all():
            first_other = start + int(np.flatnonzero(~is_probability)[0])
    return count, first_other


def _clip_to_unit_range(values: np.ndarray, score_cols: Sequence[str]) -> np.ndarray:
    clipped = 0
    for start in range(0, values.shape[0], _CHUNK_ROWS):
        block = values[start:start + _CHUNK_ROWS]
        outside = (block < 0.0) | (block > 1.0)
        clipped += int(outside.sum())
        np.clip(block, 0.0, 1.0, out=block)
    if clipped:
        logger.info("Clipped %d score value(s) in %s that lay within %g outside [0, 1] (rounding noise)", clipped,
                    _preview(score_cols), PROBABILITY_RANGE_TOLERANCE)
    return values


def normalize_scores_to_probabilities(df: pd.DataFrame, score_cols: Sequence[str]) -> pd.DataFrame:
    """A copy of ``df`` with probability columns ``prob_class_0``, ``prob_class_1``, ... by position.

    The scores are read as in ``probabilities_from_frame``; ``prob_class_<i>`` holds the probability of
    ``score_cols[i]`` (a single score column p becomes ``prob_class_0`` = 1 - p and ``prob_class_1`` = p).
    Existing columns of those names are replaced where they stand; every other column is kept as it is.
    Of several score columns, one named ``prob_class_<x>`` must be the x-th (``prob_class_1`` second):
    anything else (out of order, a gap, a class name) is a ``ValueError``, since its probability would land in
    another class's column. ``attrs["score_interpretation"]`` says how the scores were read.
    """
    score_cols = list(score_cols)
    for position, name in enumerate(score_cols if len(score_cols) > 1 else []):
        if str(name).startswith("prob_class_") and name != "prob_class_{}".format(position):
            raise ValueError("score_cols lists {!r} at position {}: the outputs are named by position "
                             "(prob_class_<i> holds score_cols[i]), so it would become prob_class_{}; list "
                             "prob_class_0, prob_class_1, ... in that order or rename the columns".format(
                                 name, position, position))
    probabilities, interpretation = probabilities_from_frame(df, score_cols)
    result = df.copy()
    for position in range(probabilities.shape[1]):
        result["prob_class_{}".format(position)] = probabilities[:, position]
    result.attrs["score_interpretation"] = interpretation
    return result


def scores_to_probabilities(values: np.ndarray, score_cols: Sequence[str]) -> Tuple[np.ndarray, str]:
    """``normalize_scores_to_probabilities`` on an (n, n_columns) float64 array that it may overwrite."""
    _check_finite(values, score_cols, "score columns")
    if values.shape[1] == 1:
        score = values[:, 0]
        outside = ~_in_unit_range(score)
        n_outside = int(outside.sum())
        if n_outside == 0:
            score = _clip_to_unit_range(values, score_cols)[:, 0]
            return np.column_stack([1.0 - score, score]), "binary probability"
        if n_outside < MIXED_SINGLE_SCORE_SHARE * score.size:
            first = int(np.flatnonzero(outside)[0])
            raise SelectionError(
                "score column {!r} mixes probabilities and other scores: {} of {} values lie in [0, 1] but {} do not, "
                "e.g. row {}: {:.6g}; fix those values, or give logits in every row".format(
                    score_cols[0], score.size - n_outside, score.size, n_outside, first + 1, score[first]))
        positive = 1.0 / (1.0 + np.exp(-score))
        return np.column_stack([1.0 - positive, positive]), "binary logit (sigmoid)"
    n_probability, first_other = _probability_rows(values)
    n_rows = values.shape[0]
    if n_probability == n_rows:
        return _clip_to_unit_range(values, score_cols), "probabilities"
    if n_probability >= MIXED_SCORES_SHARE * n_rows:
        raise SelectionError(
            "score columns {} mix probabilities and other scores: {} of {} rows are probabilities (in [0, 1], "
            "summing to 1 within {:g}) but {} are not, e.g. row {}: {}; fix those rows, or give logits in every "
            "row".format(
                _preview(score_cols), n_probability, n_rows, PROBABILITY_SUM_TOLERANCE, n_rows - n_probability,
                first_other + 1,
                _preview(["{:.6g}".format(value) for value in values[first_other]])))
    if n_probability == 0 and _probability_rows(values, scale=100.0)[0] == n_rows:
        raise SelectionError("score columns {} look like percentages (every row lies in [0, 100] and sums to 100): "
                             "divide them by 100, or give logits".format(_preview(score_cols)))
    logger.warning("Score columns %s are not probabilities (values outside [0, 1] or rows not summing to 1): "
                   "treating them as logits and applying softmax", _preview(score_cols))
    values -= values.max(axis=1, keepdims=True)
    np.exp(values, out=values)
    values /= values.sum(axis=1, keepdims=True)
    return values, "logits (softmax)"


class Committee(NamedTuple):
    """The committee members' score columns, as COMMITTEE_PREFIXES names them."""

    prefixes: Tuple[str, ...]
    columns: List[List[str]]  # per member, in class order
    classes: List[Any]  # every member's classes, in that order


def committee_columns(columns: Sequence[str], prefixes: Sequence[str]) -> Committee:
    """Each member's score columns: those starting with its prefix, ordered by class as the score columns are.

    Every member must have columns, no column may belong to two members, and every member must have the
    same classes (its column suffixes; 0 and 1 for a single column). Raises ``SelectionError`` naming the
    member.
    """
    names = list(columns)
    members = []
    for prefix in prefixes:
        own = _prefixed_columns(names, prefix)
        if not own:
            raise SelectionError("COMMITTEE_PREFIXES member {!r} has no columns: none start with it; columns are: "
                                 "{}".format(prefix, _preview(names)))
        members.append(own)
    owner: Dict[str, str] = {}
    for prefix, own in zip(prefixes, members):
        for name in own:
            if name in owner:
                raise SelectionError("column {!r} starts with two COMMITTEE_PREFIXES, {!r} and {!r}: make the "
                                     "prefixes distinct".format(name, owner[name], prefix))
            owner[name] = prefix
    classes = [class_labels(own, prefix) for prefix, own in zip(prefixes, members)]
    for prefix, own in zip(prefixes[1:], classes[1:]):
        if own != classes[0]:
            raise SelectionError("committee member {!r} has classes {} but member {!r} has {}: every member needs "
                                 "the same classes".format(prefix, _preview(own), prefixes[0], _preview(classes[0])))
    return Committee(tuple(prefixes), members, classes[0])


def planned_score_columns(columns: Sequence[str], config: SelectionConfig) -> List[str]:
    """The score columns the configured strategy reads: every committee member's, member after member, for a
    strategy that reads members; otherwise the score columns of ``extract_score_columns``."""
    if strategy_for(config.selection_strategy).needs_members:
        committee = committee_columns(columns, committee_prefixes(config.committee_prefixes))
        return [name for own in committee.columns for name in own]
    return extract_score_columns(columns, config.score_field, config.score_field_prefix)


class Scores(NamedTuple):
    """The score columns read as probabilities."""

    probabilities: np.ndarray  # (n, n_classes): the model's, or the committee members' mean (the consensus)
    interpretation: str
    classes: List[Any]
    members: Optional[np.ndarray] = None  # (n_members, n, n_classes) for the strategies that read members


def read_scores(values: np.ndarray, score_cols: Sequence[str], config: SelectionConfig) -> Scores:
    """``values`` (n, len(score_cols)) float64, which may be overwritten, as the configured strategy reads them.

    A strategy that reads committee members gets each member's block read by the rules of
    ``scores_to_probabilities`` on its own, and their mean as its probabilities.
    """
    if not strategy_for(config.selection_strategy).needs_members:
        probabilities, interpretation = scores_to_probabilities(values, score_cols)
        return Scores(probabilities, interpretation, class_labels(score_cols, config.score_field_prefix))
    committee = committee_columns(score_cols, committee_prefixes(config.committee_prefixes))
    members = np.empty((len(committee.columns), values.shape[0], len(committee.classes)), dtype=np.float64)
    kinds, start = [], 0
    for j, own in enumerate(committee.columns):
        block = np.array(values[:, start:start + len(own)], dtype=np.float64)
        members[j], kind = scores_to_probabilities(block, own)
        kinds.append(kind)
        start += len(own)
    if len(set(kinds)) == 1:
        interpretation = "{} ({} committee members)".format(kinds[0], len(kinds))
    else:
        interpretation = "; ".join("{}: {}".format(prefix, kind) for prefix, kind in zip(committee.prefixes, kinds))
    return Scores(members.mean(axis=0), interpretation, committee.classes, members)


def embedding_columns(
    columns: Sequence[str], prefix: str, excluded: Iterable[str], is_number: Callable[[str], bool],
    feature_columns: Optional[Sequence[str]] = None, is_array: Callable[[str], bool] = lambda name: False,
) -> Tuple[List[str], str]:
    """Columns that describe each row for distance computations, and where they came from.

    The ``prefix`` columns when there are any; otherwise ``feature_columns`` when given (they must
    exist); otherwise every column that ``is_number`` accepts (numeric, not boolean) and that is not
    excluded (the id, label, score and output columns), with a warning naming them. A column that
    ``is_array`` accepts (arrays in its cells) is never passed over for those: it is an error naming it
    and EMBEDDING_FIELD.
    """
    embedded = [name for name in columns if name.startswith(prefix)]
    if embedded:
        return embedded, "embedding columns"
    if feature_columns:
        _require_columns(columns, [("feature_columns", name) for name in feature_columns])
        return list(feature_columns), "feature columns"
    skip = set(excluded)
    arrays = [name for name in columns if name not in skip and is_array(name)]
    if arrays:
        raise SelectionError("column {!r} holds arrays and no column starts with EMBEDDING_FIELD_PREFIX={!r}: set "
                             "EMBEDDING_FIELD={} to use it as the embeddings (or FEATURE_COLUMNS to name other "
                             "columns); numeric columns are never used in its place".format(arrays[0], prefix,
                                                                                            arrays[0]))
    features = [name for name in columns if name not in skip and is_number(name)]
    if not features:
        raise SelectionError("diversity and badge need embeddings: no columns start with EMBEDDING_FIELD_PREFIX={!r} "
                             "and no numeric feature columns were found".format(prefix))
    logger.warning("No %s* columns: using the %d numeric column(s) %s as embeddings; set EMBEDDING_FIELD, "
                   "FEATURE_COLUMNS or EMBEDDING_FIELD_PREFIX to choose them", prefix, len(features),
                   ", ".join(features))
    return features, "numeric feature columns"


LIKELY_LABEL_COLUMNS = ("label", "labels", "y", "target")


def _warn_of_unnamed_labels(columns: Sequence[str], config: SelectionConfig) -> None:
    """A column named like labels while LABEL_FIELD is unset: every row is a candidate, perhaps wrongly."""
    if config.label_field is not None:
        return
    likely = [name for name in columns if name.strip().lower() in LIKELY_LABEL_COLUMNS]
    if likely:
        logger.warning("Column %r looks like labels but LABEL_FIELD is unset, so no row counts as labeled and "
                       "every row may be selected; set LABEL_FIELD=%s, or LABEL_FIELD=%s to say there are no "
                       "labels", likely[0], likely[0], NO_LABELS)


def _is_array_cell(value: Any) -> bool:
    return isinstance(value, (list, tuple, np.ndarray))


def _holds_arrays(column: pd.Series) -> bool:
    """True when the first filled cell is an array, or text that is a JSON array (a CSV cell)."""
    if pd.api.types.is_numeric_dtype(column):  # boolean columns included
        return False
    for value in column:
        if _is_array_cell(value):
            return True
        if isinstance(value, str) and value.strip():
            text = value.strip()
            return text.startswith("[") and text.endswith("]")
    return False


def _cell_values(value: Any, name: str, row: int) -> Any:
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            raise SelectionError("array column {!r} holds {!r} in row {}: not a JSON array".format(
                name, value[:40], row + 1)) from None
    if not _is_array_cell(value):
        raise SelectionError("array column {!r} is empty or not an array in row {} ({!r})".format(name, row + 1,
                                                                                                  value))
    return value


def _array_matrix(column: pd.Series, name: str, dtype: Any) -> np.ndarray:
    """An array column (arrays, or JSON text in CSV cells) as an (n, d) matrix; ragged or text is an error."""
    cells = [_cell_values(value, name, row) for row, value in enumerate(column)]
    lengths = np.fromiter((len(cell) for cell in cells), dtype=np.int64, count=len(cells))
    _check_lengths(lengths, name)
    matrix = np.empty((len(cells), int(lengths[0]) if lengths.size else 0), dtype=dtype)
    try:
        for row, cell in enumerate(cells):  # row by row: no second copy of the whole table
            matrix[row] = cell
    except (TypeError, ValueError):
        raise SelectionError("array column {!r} must hold arrays of numbers, but row {} holds {!r}".format(
            name, row + 1, cell)) from None
    return matrix


def _check_lengths(lengths: np.ndarray, name: str, offset: int = 0) -> None:
    if lengths.size and (lengths != lengths[0]).any():
        other = int(np.flatnonzero(lengths != lengths[0])[0])
        raise SelectionError("array column {!r} holds arrays of different lengths: row {} has {} values, row {} has "
                             "{}".format(name, offset + 1, int(lengths[0]), offset + other + 1, int(lengths[other])))
    if lengths.size and lengths[0] == 0:
        raise SelectionError("array column {!r} holds empty arrays".format(name))


def _arrow_matrix(column: Any, name: str, dtype: Any, offset: int) -> np.ndarray:
    """An Arrow list column (one row group) as an (n, d) matrix; nulls and ragged rows are errors."""
    import pyarrow as pa

    column = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    if column.null_count:
        row = int(np.flatnonzero(column.is_null().to_numpy(zero_copy_only=False))[0])
        raise SelectionError("array column {!r} is empty in row {}".format(name, offset + row + 1))
    if pa.types.is_fixed_size_list(column.type):
        width = column.type.list_size
    else:
        lengths = np.diff(column.offsets.to_numpy())
        _check_lengths(lengths, name, offset)
        width = int(lengths[0]) if lengths.size else 0
    values = column.flatten()
    if not (pa.types.is_integer(values.type) or pa.types.is_floating(values.type)):
        raise SelectionError("array column {!r} must hold arrays of numbers, not {}".format(name, column.type))
    return values.to_numpy(zero_copy_only=False).astype(dtype, copy=False).reshape(len(column), width)


def _text_as_numbers(column: pd.Series) -> Optional[np.ndarray]:
    """A text column's cells as float64 (blank cells NaN), or None when a filled cell is not a number."""
    numbers, other = _as_numbers(column)
    return None if other.any() or np.isnan(numbers).all() else numbers


def _is_feature(column: pd.Series) -> bool:
    """Numeric, not boolean; a text column (as csv cells are) counts when every filled cell is a number."""
    if pd.api.types.is_bool_dtype(column):
        return False
    if pd.api.types.is_numeric_dtype(column):
        return True
    return _text_as_numbers(column) is not None


def _missing(column: pd.Series) -> np.ndarray:
    """True where a cell holds nothing: missing, or blank text (an id or a label that is not there)."""
    missing = column.isna().to_numpy()
    if pd.api.types.is_numeric_dtype(column):
        return missing
    return missing | column.astype(object).map(lambda value: isinstance(value, str) and not value.strip()
                                               ).to_numpy(dtype=bool)


def output_columns(strategy: str) -> Tuple[str, ...]:
    """The columns ``strategy`` appends to the selected rows."""
    row = strategy_for(strategy)
    if row.use_case == "ssl":
        return OUTPUT_COLUMNS
    return ACTIVE_LEARNING_OUTPUT_COLUMNS + ((SUGGESTED_LABEL,) if row.candidates == "labeled" else ())


def _check_no_output_columns(columns: Iterable[str], strategy: str) -> None:
    clashes = [name for name in output_columns(strategy) if name in set(columns)]
    if clashes:
        raise SelectionError("input already has column(s) {} that {} writes; rename or drop them".format(
            ", ".join(clashes), strategy))


def _require_columns(columns: Sequence[str], wanted: Iterable[Tuple[str, Optional[str]]], where: Any = None) -> None:
    """Each (variable, column) of ``wanted`` whose column is set must be among ``columns``."""
    for var_name, column in wanted:
        if column and column not in columns:
            near = [name for name in columns if name.strip().lower() == column.strip().lower()]
            raise SelectionError("{} column {!r} not found{}; {}".format(
                var_name, column, " in {}".format(where) if where else "",
                "there is {!r} (names are exact: case and spaces count)".format(near[0]) if near
                else "columns are: " + _preview(columns)))


def _check_columns_exist(columns: Sequence[str], config: SelectionConfig, where: Any = None) -> None:
    _require_columns(columns, [("ID_FIELD", config.id_field), ("LABEL_FIELD", config.label_field),
                               ("LABELING_DATA_FIELD", config.labeling_data_field),
                               ("EMBEDDING_FIELD", config.embedding_field)]
                     + [("FEATURE_COLUMNS", name) for name in config.feature_column_names], where)


def _non_feature_columns(columns: Sequence[str], config: SelectionConfig, score_cols: Sequence[str],
                         index_columns: Iterable[str] = ()) -> List[str]:
    reserved = set(score_cols) | set(OUTPUT_COLUMNS) | set(ACTIVE_LEARNING_OUTPUT_COLUMNS)
    reserved |= set(LLM_SCORE_COLUMNS) | set(RULESET_SCORE_COLUMNS)
    reserved |= {config.id_field, config.label_field or ""} | set(index_columns)
    return [name for name in columns if name in reserved or name.startswith(config.score_field_prefix)]


def _embedding_matrix(df: pd.DataFrame, columns: Sequence[str], arrays: bool = False) -> np.ndarray:
    if arrays:
        return _array_matrix(df[columns[0]], columns[0], np.float32)
    text = [name for name in columns if not pd.api.types.is_numeric_dtype(df[name])]
    if not text:
        return df[list(columns)].to_numpy(dtype=np.float32)
    matrix = np.empty((len(df), len(columns)), dtype=np.float32)
    for j, name in enumerate(columns):
        numbers = _text_as_numbers(df[name]) if name in text else df[name].to_numpy(dtype=np.float64)
        if numbers is None:
            _check_numeric(df, [name], "embedding/feature")
        matrix[:, j] = numbers
    return matrix


class Pool(NamedTuple):
    """What selection reads from the prediction table, as arrays with one row per input row."""

    probabilities: np.ndarray  # (n, n_classes) float64
    classes: List[Any]  # class of each probability column
    labeled: np.ndarray  # (n,) bool: LABEL_FIELD filled, never a candidate
    vectors: Optional[np.ndarray]  # (n, d) float32 for the strategies that need embeddings, else None
    score_columns: List[str]
    score_interpretation: str  # how the score columns were read, e.g. "probabilities"
    vector_columns: List[str]
    vector_source: Optional[str]  # "embedding columns", "feature columns" or "numeric feature columns"
    known_labels: Optional[np.ndarray] = None  # (n_labeled,) object: label_texts of the labeled rows, in row order
    ids: Optional[pd.Series] = None  # (n,) the ID_FIELD values in row order, when the reader keeps them
    given: Optional[np.ndarray] = None  # (n,) int64: class position of each label, -1 unlabeled; label_review only
    members: Optional[np.ndarray] = None  # (n_members, n, n_classes) for the strategies that read members


class ColumnPlan(NamedTuple):
    """Which columns selection reads: scores, vectors, and whether each of those is one array column."""

    score_columns: List[str]
    vector_columns: List[str]  # empty unless the strategy needs embeddings
    vector_source: Optional[str]
    score_array: bool  # SCORE_FIELD names an array column: one score per class
    vector_array: bool  # EMBEDDING_FIELD: one array column


def _plan_columns(columns: Sequence[str], is_number: Callable[[str], bool], config: SelectionConfig,
                  feature_columns: Optional[Sequence[str]] = None, index_columns: Iterable[str] = (),
                  is_array: Callable[[str], bool] = lambda name: False) -> ColumnPlan:
    """The columns every reading path takes scores and vectors from, and the warnings about defaults."""
    _check_columns_exist(columns, config)
    _check_no_output_columns(columns, config.selection_strategy)
    _warn_of_unnamed_labels(columns, config)
    try:
        score_cols = planned_score_columns(columns, config)
    except SelectionError as error:
        arrays = [name for name in columns if is_array(name)]
        if config.score_field or not arrays:
            raise
        raise SelectionError("{}; column {!r} holds arrays: SCORE_FIELD={} reads it as one score per class".format(
            error, arrays[0], arrays[0])) from None
    score_array = bool(config.score_field) and is_array(config.score_field)
    if not score_array:
        class_labels(score_cols, config.score_field_prefix)  # two columns of one class fail here, before any read
    if not strategy_for(config.selection_strategy).needs_embeddings:
        return ColumnPlan(score_cols, [], None, score_array, False)
    if config.embedding_field:
        if not is_array(config.embedding_field):
            raise SelectionError("EMBEDDING_FIELD column {!r} does not hold arrays: name an array column (a parquet "
                                 "list, a JSON Lines array, a CSV cell holding a JSON array), or use "
                                 "FEATURE_COLUMNS for ordinary columns".format(config.embedding_field))
        return ColumnPlan(score_cols, [config.embedding_field], "embedding field", score_array, True)
    if config.feature_columns:
        return ColumnPlan(score_cols, config.feature_column_names, "feature columns", score_array, False)
    excluded = _non_feature_columns(columns, config, score_cols, index_columns)
    vector_cols, source = embedding_columns(columns, config.embedding_field_prefix, excluded, is_number,
                                            feature_columns=feature_columns, is_array=is_array)
    return ColumnPlan(score_cols, vector_cols, source, score_array, False)


def _element_names(name: str, width: int) -> List[str]:
    """Names of an array column's elements as matrix columns: element k is ``name[k]``."""
    return ["{}[{}]".format(name, k) for k in range(width)]


def _make_pool(scores: np.ndarray, plan: ColumnPlan, labeled: np.ndarray, vectors: Optional[np.ndarray],
               config: SelectionConfig, known_labels: Optional[np.ndarray] = None) -> Pool:
    if plan.score_array:
        names = _element_names(plan.score_columns[0], scores.shape[1])
        probabilities, score_kind = scores_to_probabilities(scores, names)
        scored = Scores(probabilities, score_kind, list(range(probabilities.shape[1])))
    else:
        scored = read_scores(scores, plan.score_columns, config)
    if vectors is not None:
        names = _element_names(plan.vector_columns[0], vectors.shape[1]) if plan.vector_array else plan.vector_columns
        _check_finite(vectors, names, "embedding/feature columns")
    return Pool(scored.probabilities, scored.classes, labeled, vectors, plan.score_columns, scored.interpretation,
                plan.vector_columns, plan.vector_source, known_labels=known_labels, members=scored.members)


def _fill_rows(target: Optional[np.ndarray], n_rows: int, rows: slice, table: Any, names: Sequence[str],
               array: bool, dtype: Any) -> Optional[np.ndarray]:
    """``target`` with the Arrow ``table``'s columns ``names`` in ``rows``; for one array column (``array``), its
    elements, ``target`` being allocated on the first block, as wide as the arrays."""
    if not array:
        for j, name in enumerate(names):
            target[rows, j] = table.column(name).to_numpy()
        return target
    block = _arrow_matrix(table.column(names[0]), names[0], dtype, rows.start)
    if target is None:
        target = np.empty((n_rows, block.shape[1]), dtype=block.dtype)
    elif block.shape[1] != target.shape[1]:
        raise SelectionError("array column {!r} holds arrays of different lengths: {} values in row 1, {} in row "
                             "{}".format(names[0], target.shape[1], block.shape[1], rows.start + 1))
    target[rows] = block
    return target


# ---- Loading: every data file under the input, read as written ----------------------------------------------------

def resolve_output_format(requested: Optional[str], input_format: str) -> str:
    """OUTPUT_FORMAT when set, else the input's format (an error for inputs of mixed formats)."""
    if requested:
        return requested
    if input_format == "jsonl":
        return "parquet"  # keeps arrays and number types as they are; CSV_COLUMNS-style text would not
    if input_format not in OUTPUT_FORMATS:
        raise SelectionError("input files come in different formats; set OUTPUT_FORMAT to one of {}".format(
            ", ".join(OUTPUT_FORMATS)))
    return input_format

class DataFile(NamedTuple):
    path: Path
    fmt: str


def _reading(path: Path, read: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """``read(*args, **kwargs)``, any error but a SelectionError (which names its cause) becoming one line naming
    ``path``."""
    try:
        return read(*args, **kwargs)
    except SelectionError:
        raise
    except Exception as error:
        raise SelectionError("cannot read {}: {}".format(path, _one_line(error))) from None


_BYTE_ORDER_MARK = b"\xef\xbb\xbf"  # UTF-8's
_DATA_SUFFIXES = ((".csv", "csv"), (".csv.gz", "csv"), (".tsv", "tsv"), (".tsv.gz", "tsv"),
                  (".parquet", "parquet"), (".pq", "parquet"))
_SEPARATORS = {"csv": ",", "tsv": "\t"}
_TYPED_FORMATS = ("parquet", "jsonl")  # formats whose files declare column types (Arrow types)
# pandas before 3 parses some decimals 1 ulp off (1.1.3 reads 0.007 as 0.006999999999999999) unless asked for
# round-trip parsing; pandas 3 parses exactly and deprecates the option.
_EXACT_FLOATS = {"float_precision": "round_trip"} if int(pd.__version__.split(".")[0]) < 3 else {}
_PANDAS_INDEX_ARTEFACT = re.compile(r"__index_level_\d+__\Z")
# Tables this step cannot read (other compressions, other table formats): failing beats leaving them out.
_UNREADABLE_DATA = re.compile(r"(\.(csv|tsv|parquet|pq)\.(bz2|xz|zip|zst|zstd|snappy|lz4|deflate|br|z)"
                              r"|\.(orc|avro|feather|arrow|xlsx|xls))\Z")


def _data_format(path: Path) -> Optional[str]:
    name = path.name.lower()
    return next((fmt for suffix, fmt in _DATA_SUFFIXES if name.endswith(suffix)), None)


# What the walk skips, and only this: job markers (Spark/Hadoop _SUCCESS, Databricks _committed_*/_started_*,
# this step's _FAILURE), parquet summary files (_metadata, _common_metadata: schemas, no rows of their own),
# Hadoop .crc checksum sidecars and hidden (dot) files and folders. Every other file is read or is an error.
_NOT_DATA = re.compile(r"(_SUCCESS|_FAILURE|_committed_.*|_started_.*|_metadata|_common_metadata|\..*|.*\.crc)\Z",
                       re.DOTALL)
_JSON_LINES_SUFFIXES = (".jsonl", ".jsonl.gz", ".ndjson", ".json", ".json.gz")
_BATCH_TRANSFORM_SUFFIX = ".out"  # Batch Transform names each output after its input: part-0.csv.out
_PARQUET_MAGIC = b"PAR1"
_OTHER_FORMATS_HINT = (".csv, .tsv (also .gz), .parquet, .pq, .jsonl, .json (JSON Lines), Batch Transform .out, "
                       "and parquet of any name")


def _format_from_content(path: Path) -> Optional[str]:
    """parquet by its magic bytes, JSON Lines by a first '{', otherwise None."""
    try:
        with open(str(path), "rb") as handle:
            head = handle.read(4096)
    except OSError as error:
        raise SelectionError("cannot read {}: {}".format(path, error.strerror or _one_line(error))) from None
    if head.startswith(_PARQUET_MAGIC):
        return "parquet"
    text = head.lstrip(_BYTE_ORDER_MARK + b" \t\r\n")
    return "jsonl" if text.startswith(b"{") else None


def file_format(path: Path) -> str:
    """How one input file is read: "csv", "tsv", "parquet" or "jsonl"; anything else is an error naming it.

    By name first (.csv, .tsv, .parquet, .pq, .jsonl, .json; a Batch Transform ``.out`` by the name it
    extends, e.g. part-0.csv.out); a ``.out`` of another name is parquet by its magic bytes, JSON Lines when
    it starts with '{', otherwise CSV; a file of any other name is read only when it is parquet (Spark part
    files without an extension).
    """
    name = path.name.lower()
    batch_transform = name.endswith(_BATCH_TRANSFORM_SUFFIX)
    inner = Path(path.name[:-len(_BATCH_TRANSFORM_SUFFIX)]) if batch_transform else path
    by_name = _data_format(inner) or ("jsonl" if inner.name.lower().endswith(_JSON_LINES_SUFFIXES) else None)
    if by_name is not None:
        return by_name
    if _UNREADABLE_DATA.search(inner.name.lower()):
        raise SelectionError("cannot read {}: a table in a form this step does not read (it reads {})".format(
            path, _OTHER_FORMATS_HINT))
    by_content = _format_from_content(path) or ("csv" if batch_transform else None)
    if by_content is not None:
        return by_content
    raise SelectionError("cannot read {}: not a table this step reads (it reads {}); only markers, .crc sidecars "
                         "and hidden files are skipped, so move this file out of the input".format(
                             path, _OTHER_FORMATS_HINT))


def _detect_file_format(file_path: Any) -> str:
    """"csv", "tsv" or "parquet" from the name of ``file_path`` (str or Path); anything else is an error."""
    fmt = _data_format(Path(file_path))
    if fmt is None:
        raise SelectionError("unsupported data file {}: expected a name ending in {}".format(
            file_path, ", ".join(suffix for suffix, _ in _DATA_SUFFIXES)))
    return fmt


def _is_within(path: str, folder: str) -> bool:
    """True when ``path`` is ``folder`` or lies inside it (both already resolved)."""
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def _check_outside(path: Path, forbidden: Sequence[str], skipped: Collection[str] = ()) -> None:
    """A path that leads into an output folder, or to a folder holding one that the walk does not skip, is an error."""
    real = _real(path)
    for other in forbidden:
        if _is_within(real, other) or (_is_within(other, real) and other not in skipped):
            raise SelectionError("input {} leads to the output folder {}: the step never reads its own output".format(
                path, other))


def _walk(folder: Path, relative: Tuple[str, ...], seen: set, forbidden: Sequence[str],
          skipped: Collection[str] = ()) -> Iterable[Tuple[Path, Optional[Tuple[str, ...]]]]:
    """Every file below ``folder``, links followed, in sorted path order, with its path relative to the input
    (None for a name that is provably not data, see ``_NOT_DATA``); unreadable entries are errors.

    ``skipped`` are the output folders inside the input: passed over where they stand (reached through
    a link they are an error, like any other output folder).
    """
    _check_outside(folder, forbidden, skipped)
    try:
        entries = sorted(os.listdir(str(folder)))
    except OSError as error:
        raise SelectionError("cannot read input folder {}: {}".format(folder, error.strerror or error)) from None
    for name in entries:
        path = folder / name
        if _NOT_DATA.match(name):
            yield path, None
            continue
        try:
            status = os.stat(str(path))
        except OSError as error:
            raise SelectionError("cannot read {}: {}".format(
                path, "a broken link" if os.path.islink(str(path)) else error.strerror or error)) from None
        key = (status.st_dev, status.st_ino)
        if key in seen:
            logger.info("Skipping %s: it links to a file or folder already read", path)
            continue
        seen.add(key)
        if stat.S_ISDIR(status.st_mode):
            if _real(path) in skipped and not os.path.islink(str(path)):
                logger.info("Not reading %s: it is an output folder of this step", path)
                continue
            if name.startswith("_"):
                raise SelectionError("cannot read {}: a folder whose name starts with _ holds a job's uncommitted or "
                                     "private output (Spark's _temporary); remove it from the input".format(path))
            yield from _walk(path, relative + (name,), seen, forbidden, skipped)
        else:
            _check_outside(path, forbidden)
            yield path, relative + (name,)


def discover_data_files(root: Path, forbidden: Sequence[Path] = ()) -> List[DataFile]:
    """Data files below ``root`` in sorted path order, each with the format it is read in (``file_format``).

    Only the names ``_NOT_DATA`` describes are skipped (counted in the log); any other file is read, or
    the run fails naming it. Links are followed (each file or folder is read once); a folder or link that
    cannot be read is an error, and so is a path that leads into one of the ``forbidden`` (output) folders.
    Output folders inside ``root`` (``check_folders_apart`` allows them) are not read.
    """
    if not root.is_dir():
        raise SelectionError("input folder {} does not exist or is not a folder".format(root))
    real_forbidden = [_real(folder) for folder in forbidden]
    inside = {folder for folder in real_forbidden if _is_within(folder, _real(root)) and folder != _real(root)}
    seen = {(os.stat(str(root)).st_dev, os.stat(str(root)).st_ino)}
    found, skipped = [], []
    for path, relative in _walk(root, (), seen, real_forbidden, inside):
        if relative is None:
            skipped.append(os.path.relpath(str(path), str(root)))
        elif not os.path.isfile(str(path)):
            raise SelectionError("cannot read {}: not a regular file".format(path))
        else:
            found.append(DataFile(path, file_format(path)))
    if skipped:
        logger.info("Skipped %d file(s) that are not data (markers, .crc sidecars, hidden files) in %s: %s",
                    len(skipped), root, _preview(skipped, 5))
    if not found:
        raise NoDataFilesError("no data files under {}: it holds only markers, .crc sidecars and hidden files ({} "
                               "skipped)".format(root, len(skipped)))
    return found


class FileColumns(NamedTuple):
    """What one data file declares before its rows are read."""

    names: List[str]  # data columns in file order (pandas index artefacts removed)
    arrow_types: Dict[str, Any]  # parquet: each column's Arrow type; csv: empty
    rows: Optional[int]  # parquet: its row count; csv: unknown (0 when it holds no data row)
    index_columns: List[str]  # parquet: named pandas index columns
    ranges: Dict[str, Tuple[int, int]]  # parquet: named RangeIndex kept only as metadata -> (start, step)
    has_header: bool = True  # csv: False when the names come from CSV_COLUMNS
    json_schema: Any = None  # JSON Lines: the (nested) Arrow schema the file is read with


_NUMBER_TEXT = re.compile(r"\s*[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?\s*\Z")


def _csv_columns(data_file: DataFile, csv_columns: Sequence[str] = ()) -> FileColumns:
    """What a csv/tsv file declares: its column names, no rows (0) when no data row follows them, and whether
    the file has a header.

    The first line is read with the csv module before pandas can rename anything. It is the header unless
    CSV_COLUMNS names the columns: then it is the header only when it is exactly those names, and a data
    row otherwise (with as many fields). Without CSV_COLUMNS, a first line holding a number is a data row
    of a file without a header: an error asking for CSV_COLUMNS, never a header made of data.
    """
    opener = gzip.open if data_file.path.name.lower().endswith(".gz") else open
    with opener(str(data_file.path), "rt", encoding="utf-8-sig", newline="") as handle:
        reader = csv.reader(handle, delimiter=_SEPARATORS[data_file.fmt])
        first = next(reader, None)
        second = next((row for row in reader if row), None)  # pandas skips blank lines too
    if not first:
        return FileColumns([], {}, 0, [], {})  # a file with no bytes: an empty partition
    if csv_columns:
        names = list(csv_columns)
        if first == names:
            return FileColumns(names, {}, None if second is not None else 0, [], {})
        if len(first) != len(names):
            raise SelectionError("{}: its first line has {} fields but CSV_COLUMNS names {} columns (and it is not "
                                 "the header CSV_COLUMNS names)".format(data_file.path, len(first), len(names)))
        return FileColumns(names, {}, None, [], {}, has_header=False)
    numbers = [cell for cell in first if _NUMBER_TEXT.match(cell)]
    if numbers:
        raise SelectionError("{}: its first line holds the number {!r}, so it is a data row, not a header (Batch "
                             "Transform writes CSV without one): set CSV_COLUMNS to the column names, "
                             "comma-separated".format(data_file.path, numbers[0]))
    blank = [position for position, name in enumerate(first, 1) if not name.strip()]
    if blank:
        raise SelectionError("{}: column {} of the header has no name (an index written by to_csv, or a trailing "
                             "separator?)".format(data_file.path, blank[0]))
    if second is not None and len(second) > len(first):
        raise SelectionError("{}: the first data row has {} fields but the header has {} (a trailing separator?)"
                             .format(data_file.path, len(second), len(first)))
    return FileColumns(first, {}, None if second is not None else 0, [], {})


_JSON_CHUNK_BYTES = 1 << 24  # lines are parsed this many bytes at a time to learn the columns' types


def _json_chunks(data_file: DataFile) -> Iterable[bytes]:
    """The file's bytes in pieces of whole lines (about ``_JSON_CHUNK_BYTES`` each), the file's leading byte order
    mark removed. A line that starts with one inside the file is an error wherever the pieces are cut: Arrow
    would drop it at the start of a piece and fail on it elsewhere."""
    opener = gzip.open if data_file.path.name.lower().endswith(".gz") else open
    with opener(str(data_file.path), "rb") as handle:
        rest = handle.read(len(_BYTE_ORDER_MARK))
        offset = len(rest) if rest == _BYTE_ORDER_MARK else 0
        rest = rest[offset:]
        for block in iter(lambda: handle.read(_JSON_CHUNK_BYTES), b""):
            block = rest + block
            cut = block.rfind(b"\n") + 1
            if cut:
                yield _without_inner_mark(block[:cut], offset, data_file.path)
                offset += cut
            rest = block[cut:]
        if rest.strip():
            yield _without_inner_mark(rest, offset, data_file.path)


def _without_inner_mark(chunk: bytes, offset: int, path: Path) -> bytes:
    at = (b"\n" + chunk).find(b"\n" + _BYTE_ORDER_MARK)  # the mark's position in chunk
    if at >= 0:
        raise SelectionError("{} has a byte order mark at the start of a line inside the file (byte {}): only one "
                             "at the very start of a file is read as such; remove it".format(path, offset + at))
    return chunk


def _unify_json_types(a: Any, b: Any, name: Optional[str], path: Path) -> Any:
    """The one type a JSON field has when one part of the file gives ``a`` and another ``b``: null gives way,
    integers and floats make floats (as Arrow does within one read), lists and objects unify element-wise.
    ``name`` is the field's dotted name; None for a whole line, whose fields are named by themselves."""
    import pyarrow as pa

    if a == b or pa.types.is_null(b):
        return a
    if pa.types.is_null(a):
        return b
    if {_arrow_kind(a), _arrow_kind(b)} == {"integer", "float"}:
        return pa.float64()
    if pa.types.is_list(a) and pa.types.is_list(b):
        return pa.list_(_unify_json_types(a.value_type, b.value_type, name, path))
    if pa.types.is_struct(a) and pa.types.is_struct(b):
        fields = {field.name: field.type for field in a}
        for field in b:
            inner = field.name if name is None else name + "." + field.name
            fields[field.name] = (_unify_json_types(fields[field.name], field.type, inner, path)
                                  if field.name in fields else field.type)
        return pa.struct(list(fields.items()))
    raise SelectionError("cannot read {}: field {!r} is {} in some lines and {} in others".format(path, name, a, b))


def _json_lines_schema(data_file: DataFile) -> Tuple[Optional[Any], int]:
    """The file's Arrow schema (fields in first-seen order; None: no lines) and its number of lines.

    Learnt a chunk at a time: Arrow's type inference holds about three times the file in memory, a read
    with the schema about once. One object per line; anything else is an error naming the file.
    """
    import io

    import pyarrow as pa
    import pyarrow.json as pj

    line_type, rows = pa.struct([]), 0
    for chunk in _json_chunks(data_file):
        head = chunk.lstrip(b" \t\r\n")
        if not rows and head and not head.startswith(b"{"):
            raise SelectionError("{} is not JSON Lines: it starts with {!r}, and JSON Lines holds one object ({{...}}) "
                                 "per line".format(data_file.path, head[:1].decode("latin-1")))
        table = pj.read_json(io.BytesIO(chunk))
        rows += table.num_rows
        line_type = _unify_json_types(line_type, pa.struct(list(table.schema)), None, data_file.path)
    return (pa.schema(list(line_type)) if line_type.num_fields else None), rows


def _flattened(table: Any) -> Any:
    """``table`` with every object field as ``outer.inner`` columns."""
    import pyarrow as pa

    while any(pa.types.is_struct(field.type) for field in table.schema):
        table = table.flatten()
    return table


def _json_lines_table(data_file: DataFile, schema: Any) -> Any:
    """A JSON Lines file as an Arrow table read with its ``schema`` (from ``_json_lines_schema``; files without
    lines never get here): arrays are list columns, objects' fields ``outer.inner`` columns."""
    import io

    import pyarrow as pa
    import pyarrow.json as pj

    options = pj.ParseOptions(explicit_schema=schema)
    return _flattened(pa.concat_tables([pj.read_json(io.BytesIO(chunk), parse_options=options)
                                        for chunk in _json_chunks(data_file)]))


def _json_lines_columns(data_file: DataFile) -> FileColumns:
    """What a JSON Lines file declares, learnt without holding its table: the flattened columns and types."""
    schema, rows = _json_lines_schema(data_file)
    if schema is None:
        return FileColumns([], {}, 0, [], {})
    flat = _flattened(schema.empty_table()).schema
    return FileColumns(list(flat.names), {field.name: field.type for field in flat}, rows, [], {},
                       json_schema=schema)


def _parquet_columns(data_file: DataFile) -> FileColumns:
    import pyarrow as pa
    import pyarrow.parquet as pq

    parquet = pq.ParquetFile(str(data_file.path))
    schema = parquet.schema_arrow
    metadata = schema.pandas_metadata or {}
    index_names = [name for name in metadata.get("index_columns", []) if isinstance(name, str)]
    artefacts = [name for name in schema.names if _PANDAS_INDEX_ARTEFACT.match(name)]
    if artefacts:
        logger.info("%s: dropping the unnamed pandas index column(s) %s (not data, never a feature)",
                    data_file.path, ", ".join(artefacts))
    # A named RangeIndex is stored as metadata only (start, stop, step): its values are rebuilt per row.
    ranges = {entry["name"]: (int(entry["start"]), int(entry["step"])) for entry in metadata.get("index_columns", [])
              if isinstance(entry, dict) and entry.get("kind") == "range" and isinstance(entry.get("name"), str)
              and entry["name"] not in schema.names}
    named_index = [name for name in index_names if name in schema.names and name not in artefacts] + list(ranges)
    # pyarrow stores a named index after the data columns; it comes first, where pandas showed it.
    names = named_index + [name for name in schema.names if name not in artefacts and name not in named_index]
    if named_index:
        logger.info("%s: pandas index column(s) %s are read as ordinary columns (never features)",
                    data_file.path, ", ".join(named_index))
    types = {name: pa.int64() if name in ranges else schema.field(name).type for name in names}
    return FileColumns(names, types, parquet.metadata.num_rows, named_index, ranges)


def _stored(columns: Sequence[str], file_columns: FileColumns) -> List[str]:
    """The ``columns`` that the parquet file stores physically (not rebuilt from its RangeIndex)."""
    return [name for name in columns if name not in file_columns.ranges]


def _with_ranges(table: Any, file_columns: FileColumns, row_numbers: np.ndarray, columns: Sequence[str]) -> Any:
    """``table`` (rows ``row_numbers`` of a file) with its RangeIndex columns rebuilt, in ``columns`` order."""
    import pyarrow as pa

    for name, (start, step) in file_columns.ranges.items():
        if name in columns:
            table = table.append_column(name, pa.array(start + step * np.asarray(row_numbers, dtype=np.int64)))
    return table.select(list(columns))


def read_file_columns(data_file: DataFile, csv_columns: Sequence[str] = ()) -> FileColumns:
    """What ``data_file`` declares: its columns, and their types where the format has them."""
    found = _reading(data_file.path, _FILE_READERS[data_file.fmt][0], data_file, csv_columns)
    duplicated = sorted({name for name in found.names if found.names.count(name) > 1})
    if duplicated:
        raise SelectionError("{} has duplicate column name(s) {}".format(data_file.path, _preview(duplicated)))
    return found


def common_columns(files: Sequence[DataFile], found: Sequence[FileColumns]) -> List[str]:
    """The column names shared by every file, in the first file's order; different columns are an error."""
    first = found[0].names
    for other, columns in zip(files[1:], found[1:]):
        names = columns.names
        if set(names) != set(first):
            differences = ["{} has {} that {} lacks".format(a.path, _preview(sorted(set(x) - set(y))), b.path)
                           for a, x, b, y in ((files[0], first, other, names), (other, names, files[0], first))
                           if set(x) - set(y)]
            raise SelectionError("files have different columns: " + "; ".join(differences))
    return first


class InputScan(NamedTuple):
    """What scan_input learns of the input folder before reading a row: its files and their agreed columns."""

    root: Path
    files: List[DataFile]
    file_columns: List[FileColumns]  # what each file declares, in the order of ``files``
    columns: List[str]  # in the first file's order
    kinds: Dict[str, str]  # column -> the kind every non-empty file declares ("text" for csv text columns)
    numbers: List[str]  # columns that must hold numbers (scores; embeddings when the strategy uses them)
    arrow_types: Dict[str, Any]  # parquet columns -> the Arrow type their parts are read as
    index_columns: List[str]  # named pandas index columns: passed through, never features
    fmt: str  # the files' common format, or "mixed"

    @property
    def arrow_schema(self) -> Any:
        """``arrow_types`` as an Arrow schema, in column order."""
        import pyarrow as pa

        return pa.schema([pa.field(name, self.arrow_types[name]) for name in self.columns])


def numeric_columns(columns: Sequence[str], config: SelectionConfig) -> Tuple[List[str], List[str]]:
    """Columns csv/tsv cells are parsed as numbers in: those that must be numbers (the scores, and the
    embeddings when the strategy uses them), and all such candidates (the embeddings always, to keep wide
    tables small). Every other csv column is text."""
    try:
        scores = planned_score_columns(columns, config)
    except SelectionError:
        scores = []  # reported when the columns are planned, after the table is known to be readable
    text = {config.id_field, config.label_field}
    for var_name, column in (("ID_FIELD", config.id_field), ("LABEL_FIELD", config.label_field)):
        if column in scores:
            raise SelectionError("{} column {!r} cannot also be a score column".format(var_name, column))
    if config.label_field and config.label_field == config.id_field:
        raise SelectionError("LABEL_FIELD and ID_FIELD are the same column {!r}".format(config.id_field))
    embeddings = [name for name in columns if name.startswith(config.embedding_field_prefix) and name not in text]
    required = scores + (embeddings if strategy_for(config.selection_strategy).needs_embeddings else [])
    return required, [name for name in columns if name in scores or name in embeddings]


class NoRowsError(SelectionError):
    """Every data file under the input is empty."""


def scan_input(root: Path, config: SelectionConfig, forbidden: Sequence[Path] = ()) -> InputScan:
    """Find the data files under ``root`` and agree on their columns and column types, reading no rows.

    Part files must have the same columns; each column must have one kind in every part (integer and
    float mix, except in the id and label columns). Parts without rows are left out: they impose nothing.
    """
    files = discover_data_files(root, forbidden)
    found = [read_file_columns(data_file, config.csv_column_names) for data_file in files]
    empty = [data_file for data_file, columns in zip(files, found) if columns.rows == 0]
    if len(empty) == len(files):
        raise NoRowsError("the input under {} has no rows".format(root))
    if empty:
        logger.info("Skipping %d file(s) without rows (empty partitions): %s", len(empty),
                    ", ".join(os.path.relpath(str(data_file.path), str(root)) for data_file in empty[:5]))
        files, found = map(list, zip(*[(f, c) for f, c in zip(files, found) if c.rows != 0]))
    formats = {data_file.fmt for data_file in files}
    input_format = formats.pop() if len(formats) == 1 else "mixed"
    resolve_output_format(config.output_format, input_format)
    columns = common_columns(files, found)
    _check_columns_exist(columns, config, files[0].path)
    required, parsed = numeric_columns(columns, config)
    strict = {config.id_field, config.label_field}
    # In a mix of csv and parquet parts, a column that parquet types as numbers is read as numbers from csv.
    typed_files = [file_columns for data_file, file_columns in zip(files, found) if data_file.fmt in _TYPED_FORMATS]
    typed = {name for file_columns in typed_files for name in columns
             if _arrow_kind(file_columns.arrow_types[name]) in ("integer", "float")} - strict
    as_numbers = set(parsed) | typed
    declared: Dict[str, List[Tuple[str, DataFile]]] = {name: [] for name in columns}
    for data_file, file_columns in zip(files, found):
        for name in columns:
            kind = _arrow_kind(file_columns.arrow_types[name]) if data_file.fmt in _TYPED_FORMATS else (
                None if name in as_numbers else "text")
            if kind is not None:
                declared[name].append((kind, data_file))
    required += sorted(typed - set(required))
    kinds = {name: _agreed_kind(name, declared[name], name in strict) for name in columns}
    arrow_types = {name: agreed_arrow_type([file_columns.arrow_types[name] for file_columns in typed_files])
                   for name in columns} if typed_files else {}
    index_columns = sorted({name for file_columns in found for name in file_columns.index_columns})
    return InputScan(root, files, found, columns, {k: v for k, v in kinds.items() if v}, required, arrow_types,
                      index_columns, input_format)


def _agreed_kind(name: str, declared: List[Tuple[str, DataFile]], strict: bool) -> Optional[str]:
    kinds = {kind for kind, _ in declared}
    if len(kinds) <= 1:
        return kinds.pop() if kinds else None
    if kinds == {"integer", "float"} and not strict:
        return "float"
    (kind_a, file_a), (kind_b, file_b) = declared[0], next(item for item in declared if item[0] != declared[0][0])
    raise SelectionError("column {!r} is {} in {} but {} in {}: part files must agree on each column's type{}".format(
        name, kind_a, file_a.path, kind_b, file_b.path,
        " (csv cells are text)" if "csv" in (file_a.fmt, file_b.fmt) or "tsv" in (file_a.fmt, file_b.fmt) else ""))


def agreed_arrow_type(types: Sequence[Any]) -> Any:
    """The one Arrow type a column is read as when its parts declare ``types`` (their kinds already agree):
    their common type, else int64 for integers, float64 for numbers, large_string for text; null parts
    impose nothing. The scan applies it to the files, the merge to the shards' agreed types."""
    import pyarrow as pa

    declared = [arrow_type for arrow_type in types if _arrow_kind(arrow_type)]
    if not declared:
        return types[0]
    if all(arrow_type == declared[0] for arrow_type in declared):
        return declared[0]
    kinds = {_arrow_kind(arrow_type) for arrow_type in declared}
    if kinds == {"integer"}:
        return pa.int64()
    if kinds <= {"integer", "float"}:
        return pa.float64()
    if kinds == {"text"}:
        return pa.large_string()
    return declared[0]


def _unified(table: Any, source: InputScan) -> Any:
    """``table``'s columns in the agreed order, cast to the agreed types, without pandas metadata."""
    table = table.select(source.columns).replace_schema_metadata(None)
    schema = source.arrow_schema
    return table if table.schema.equals(schema) else table.cast(schema)


def _read_parquet(data_file: DataFile, file_columns: FileColumns, source: InputScan) -> pd.DataFrame:
    import pyarrow.parquet as pq

    table = pq.read_table(str(data_file.path), columns=_stored(source.columns, file_columns))
    table = _with_ranges(table, file_columns, np.arange(table.num_rows), source.columns)
    return _arrow_to_pandas(_unified(table, source))


def _read_csv(data_file: DataFile, file_columns: FileColumns, source: InputScan) -> pd.DataFrame:
    """A csv/tsv file with its text columns exactly as written (no NA words) and its number columns parsed."""
    header = file_columns.names
    text = [name for name in header if source.kinds.get(name) == "text"]
    parsed = [name for name in header if name not in text]
    names = {} if file_columns.has_header else {"header": None, "names": header, "index_col": False}
    frame = pd.read_csv(data_file.path, sep=_SEPARATORS[data_file.fmt], dtype={name: object for name in text},
                        keep_default_na=False, na_values={name: [""] for name in parsed}, low_memory=False,
                        **names, **_EXACT_FLOATS)
    if list(frame.columns) != header:
        raise SelectionError("cannot read the header of {} unambiguously: pandas reads {}".format(
            data_file.path, _preview(list(frame.columns))))
    if len(frame):
        numbers = [name for name in source.numbers if not _holds_arrays(frame[name])]  # JSON arrays stay text
        _check_numeric(frame, numbers, "", where=data_file.path)
    # Selecting columns copies the whole frame on older pandas: do it only when the order differs.
    return frame if list(frame.columns) == source.columns else frame[source.columns]


# Each file format's two readers: what a file declares (columns, types, rows) and its rows as a DataFrame.
_FILE_READERS: Dict[str, Tuple[Callable[[DataFile, Sequence[str]], FileColumns],
                               Callable[[DataFile, FileColumns, InputScan], pd.DataFrame]]] = {
    "csv": (_csv_columns, _read_csv),
    "tsv": (_csv_columns, _read_csv),
    "parquet": (lambda data_file, csv_columns: _parquet_columns(data_file), _read_parquet),
    "jsonl": (lambda data_file, csv_columns: _json_lines_columns(data_file),
              lambda data_file, file_columns, source: _arrow_to_pandas(
                  _unified(_json_lines_table(data_file, file_columns.json_schema), source))),
}


def load_inference_data(inference_data_dir: Any, id_field: str = "id",
                        config: Optional[SelectionConfig] = None) -> Tuple[pd.DataFrame, str]:
    """Every data file under ``inference_data_dir`` as one table, and the files' format ("mixed" when
    they differ); ids are checked. Cells are read as in ``main`` (``config`` decides which columns are
    scores and embeddings; by default the ENV_VARS defaults)."""
    if config is None:
        config = parse_environment({"SELECTION_STRATEGY": "uncertainty", "ID_FIELD": id_field})
    source = scan_input(Path(inference_data_dir), config)
    table, _ = read_input_table(source)
    _check_ids(table[config.id_field], config.id_field)
    return table, source.fmt


def read_input_table(source: InputScan) -> Tuple[pd.DataFrame, List[int]]:
    """Every file of ``source`` as one table (header-only parts add no rows), and the number of rows each
    file gave, in file order."""
    frames = [_reading(data_file.path, _FILE_READERS[data_file.fmt][1], data_file, file_columns, source)
              for data_file, file_columns in zip(source.files, source.file_columns)]
    filled = [frame for frame in frames if len(frame)] or frames[:1]
    table = filled[0] if len(filled) == 1 else pd.concat(filled, ignore_index=True)
    table.index = pd.RangeIndex(len(table))
    if len(table) == 0:
        raise SelectionError("the input under {} has no rows".format(source.root))
    return table, [len(frame) for frame in frames]


def _check_ids(ids: pd.Series, id_field: str) -> None:
    missing = _missing(ids)
    if missing.any():
        raise SelectionError("ID_FIELD column {!r} is empty in {} row(s), e.g. row {}".format(
            id_field, int(missing.sum()), int(np.flatnonzero(missing)[0]) + 1))
    if pd.api.types.is_numeric_dtype(ids):
        # A sort needs one copy of the ids; a hash table for tens of millions of ids needs several.
        ordered = np.sort(ids.to_numpy())
        if not (ordered[1:] == ordered[:-1]).any():
            return
        del ordered
    duplicated = ids.duplicated(keep=False)
    if duplicated.any():
        examples = ids[duplicated].drop_duplicates().head(3).tolist()
        raise SelectionError("ID_FIELD column {!r} has {} row(s) with duplicate ids, e.g. {}".format(
            id_field, int(duplicated.sum()), examples))


def _rows_of_file(data_file: DataFile, file_columns: FileColumns, rows: np.ndarray, source: InputScan) -> Any:
    """The sorted ``rows`` of one parquet file as one Arrow table, read a batch at a time."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    pieces, offset = [], 0
    parquet = pq.ParquetFile(str(data_file.path))
    for batch in parquet.iter_batches(batch_size=65536, columns=_stored(source.columns, file_columns)):
        lo, hi = np.searchsorted(rows, [offset, offset + batch.num_rows])
        if hi > lo:
            taken = rows[lo:hi] - offset
            piece = pa.Table.from_batches([batch.take(pa.array(taken))])
            pieces.append(_unified(_with_ranges(piece, file_columns, rows[lo:hi], source.columns), source))
        offset += batch.num_rows
    return pa.concat_tables(pieces)


def pool_from_frame(df: pd.DataFrame, config: SelectionConfig,
                    feature_columns: Optional[Sequence[str]] = None, index_columns: Iterable[str] = (),
                    locate: Callable[[int], str] = _table_row) -> Pool:
    """The selection arrays of an in-memory prediction table.

    ``feature_columns``, when given, are the vectors of diversity and badge if the table has no
    EMBEDDING_FIELD_PREFIX columns (``select_samples``' ``strategy_config["feature_columns"]``); ``index_columns``
    (a parquet file's named pandas index) are never features. ``locate`` names the file and row of a
    position in error messages.
    """
    columns = [str(name) for name in df.columns]
    plan = _plan_columns(columns, lambda name: not _holds_arrays(df[name]) and _is_feature(df[name]), config,
                         feature_columns, index_columns, is_array=lambda name: _holds_arrays(df[name]))
    if plan.score_array:
        scores = _array_matrix(df[plan.score_columns[0]], plan.score_columns[0], np.float64)
    else:
        _check_numeric(df, plan.score_columns, "score")
        scores = df[list(plan.score_columns)].to_numpy(dtype=np.float64, copy=True)
    vectors = _embedding_matrix(df, plan.vector_columns, plan.vector_array) if plan.vector_columns else None
    labeled = ~_missing(df[config.label_field]) if config.label_field else np.zeros(len(df), dtype=bool)
    known = label_texts(df[config.label_field][labeled]) if config.label_field else None
    pool = _make_pool(scores, plan, labeled, vectors, config, known)
    if _reviews_labels(config):
        pool = pool._replace(given=given_class_positions(df[config.label_field], labeled, pool.classes,
                                                         config.label_field, locate))
    return pool._replace(ids=df[config.id_field]) if config.id_field in df.columns else pool


def pool_from_parquet(source: InputScan, config: SelectionConfig, keep_ids: bool = False) -> Pool:
    """The selection arrays of parquet files, filled one row group at a time.

    Only the id, label, score and vector columns are read, straight into preallocated arrays, so
    memory stays near the arrays themselves instead of an Arrow table plus a DataFrame plus copies.
    The ids are checked and then dropped unless ``keep_ids`` (the stopping block matches them).
    """
    import pyarrow.parquet as pq

    is_number = {name: source.kinds.get(name) in ("integer", "float") for name in source.columns}
    is_array = {name: source.kinds.get(name) == "array" for name in source.columns}
    plan = _plan_columns(source.columns, is_number.__getitem__, config, index_columns=source.index_columns,
                         is_array=is_array.__getitem__)
    score_cols, vector_cols = plan.score_columns, plan.vector_columns
    for names, what in ((score_cols, "score"), (vector_cols, "embedding/feature")):
        text = [name for name in names if not (is_number[name] or is_array[name])]
        if text:
            raise SelectionError("{} column {!r} must hold numbers, but its parquet type is {}".format(
                what, text[0], source.arrow_types[text[0]]))
    readers = [pq.ParquetFile(str(data_file.path)) for data_file in source.files]
    n_rows = sum(reader.metadata.num_rows for reader in readers)  # > 0: scan_input leaves out files without rows
    scores = None if plan.score_array else np.empty((n_rows, len(score_cols)), dtype=np.float64)
    vectors = None if plan.vector_array or not vector_cols else np.empty((n_rows, len(vector_cols)), dtype=np.float32)
    labeled = np.zeros(n_rows, dtype=bool)
    given = np.full(n_rows, -1, dtype=np.int64) if _reviews_labels(config) else None
    classes = None if plan.score_array else class_labels(score_cols, config.score_field_prefix)
    ids, known, offset = [], [], 0
    wanted = [name for name in dict.fromkeys([config.id_field, config.label_field] + score_cols + vector_cols) if name]
    for data_file, file_columns, reader in zip(source.files, source.file_columns, readers):
        file_start = offset
        for group in range(reader.num_row_groups):
            table = _reading(data_file.path, reader.read_row_group, group, columns=_stored(wanted, file_columns))
            table = _with_ranges(table, file_columns, np.arange(table.num_rows) + (offset - file_start), wanted)
            rows = slice(offset, offset + table.num_rows)
            scores = _fill_rows(scores, n_rows, rows, table, score_cols, plan.score_array, np.float64)
            vectors = _fill_rows(vectors, n_rows, rows, table, vector_cols, plan.vector_array, np.float32)
            ids.append(table.column(config.id_field).to_pandas())
            if config.label_field:
                labels = _arrow_to_pandas(table.select([config.label_field]))  # integers with nulls stay exact
                labeled[rows] = ~_missing(labels[config.label_field])
                known.append(label_texts(labels[config.label_field][labeled[rows]]))
                if given is not None:
                    first_row = offset - file_start
                    given[rows] = given_class_positions(
                        labels[config.label_field], labeled[rows],
                        list(range(scores.shape[1])) if classes is None else classes, config.label_field,
                        lambda position: "row {} of {}".format(first_row + position + 1, data_file.path))
            offset += table.num_rows
    all_ids = pd.concat(ids, ignore_index=True)
    del ids
    _check_ids(all_ids, config.id_field)
    pool = _make_pool(scores, plan, labeled, vectors, config, np.concatenate(known) if config.label_field else None)
    return pool._replace(ids=all_ids if keep_ids else None, given=given)


def read_calibration(root: Path, config: SelectionConfig, forbidden: Sequence[Path] = ()) -> CalibrationTable:
    """calibration_data under ``root``, read by the rules of the evaluation data; every row must be labeled."""
    where = "calibration_data ({})".format(root)
    if not config.label_field:
        raise SelectionError("calibration_data needs LABEL_FIELD: the column holding each calibration row's true "
                             "label")
    # Its format never decides the output's; its rows are never candidates.
    reading = config._replace(output_format=config.output_format or "csv")
    source = FrameSource(scan_input(root, reading, forbidden))
    table, pool = source.frame, source.pool(reading)
    unlabeled = np.flatnonzero(~pool.labeled)
    if unlabeled.size:
        raise SelectionError("{}: LABEL_FIELD {!r} is empty in {} row(s), e.g. row {} (id {!r}): every calibration "
                             "row needs its true label".format(where, config.label_field, unlabeled.size,
                                                               int(unlabeled[0]) + 1,
                                                               table[config.id_field].iloc[int(unlabeled[0])]))
    labels = calibration_label_positions(table[config.label_field], pool.classes, where)
    logger.info("Read %d calibration rows from %s (%d file(s)); they must be rows the model was not trained on",
                len(table), root, len(source.table.files))
    return CalibrationTable(Calibration(pool.probabilities, labels), table[config.id_field], pool.score_columns,
                            pool.score_interpretation, root)


class InputFacts(NamedTuple):
    """What the metadata says about the input a selection read."""

    files: List[str]  # relative paths, in a single run's order
    fmt: Optional[str]  # the files' common format, or "mixed" (None: a shard that received no files)
    arrow_types: Dict[str, Any]  # parquet input: each column's agreed Arrow type (kept in parquet output)


class TableSource:
    """The rows of a scanned input, read the way its storage allows: the pool, the full rows at given
    positions, and the rows a shard forwards, one Arrow table per input file. ``open_source`` picks the
    implementation; a new storage is one subclass."""

    def __init__(self, table: InputScan, row_counts: Sequence[int]):
        self.table = table
        self.row_counts = list(row_counts)  # rows of each input file, in file order
        self.starts = np.cumsum([0] + self.row_counts)  # each file's first global position; last: all rows

    def pool(self, config: SelectionConfig, keep_ids: bool = False) -> Pool:
        """The selection arrays (ids checked; kept when ``keep_ids`` or when the storage holds them anyway)."""
        raise NotImplementedError

    def rows_at(self, positions: np.ndarray) -> pd.DataFrame:
        """The full rows at global ``positions``, in that order."""
        raise NotImplementedError

    def column_dtypes(self) -> Dict[str, str]:
        """The pandas type of each column as this source holds the rows; empty when its types are Arrow's."""
        return {}

    def _file_rows(self, index: int, rows: np.ndarray, positions: np.ndarray) -> Any:
        """File ``index``'s ``rows`` (sorted, inside it; global ``positions``) as one Arrow table."""
        raise NotImplementedError

    def _locate(self, position: int) -> str:
        """The file and the row (1 = its first data row) of a global ``position``, for error messages."""
        index = int(np.searchsorted(self.starts, position, side="right")) - 1
        return "row {} of {}".format(int(position - self.starts[index]) + 1, self.table.files[index].path)

    def file_pieces(self, positions: np.ndarray) -> List[Tuple[int, np.ndarray, Any]]:
        """The rows at sorted ``positions``, one Arrow table per file holding any: (file, rows in it, table)."""
        pieces = []
        for index in range(len(self.table.files)):
            lo, hi = np.searchsorted(positions, self.starts[index:index + 2])
            if hi > lo:
                local = positions[lo:hi] - self.starts[index]
                pieces.append((index, local, self._file_rows(index, local, positions[lo:hi])))
        return pieces


class FrameSource(TableSource):
    """Files read whole into one DataFrame (csv, tsv, JSON Lines, mixed formats)."""

    def __init__(self, table: InputScan):
        self.frame, row_counts = read_input_table(table)
        super().__init__(table, row_counts)

    def pool(self, config: SelectionConfig, keep_ids: bool = False) -> Pool:
        _check_ids(self.frame[config.id_field], config.id_field)
        return pool_from_frame(self.frame, config, index_columns=self.table.index_columns, locate=self._locate)

    def rows_at(self, positions: np.ndarray) -> pd.DataFrame:
        return self.frame.iloc[positions].reset_index(drop=True)

    def column_dtypes(self) -> Dict[str, str]:
        return {name: str(self.frame[name].dtype) for name in self.table.columns}

    def _file_rows(self, index: int, rows: np.ndarray, positions: np.ndarray) -> Any:
        import pyarrow as pa

        return pa.Table.from_pandas(self.rows_at(positions), preserve_index=False)


class ParquetSource(TableSource):
    """Parquet files read a row group at a time: the pool straight into arrays, rows only where wanted."""

    def __init__(self, table: InputScan):
        super().__init__(table, [file_columns.rows for file_columns in table.file_columns])

    def pool(self, config: SelectionConfig, keep_ids: bool = False) -> Pool:
        return pool_from_parquet(self.table, config, keep_ids=keep_ids)

    def rows_at(self, positions: np.ndarray) -> pd.DataFrame:
        import pyarrow as pa

        order = np.argsort(positions, kind="stable")
        pieces = [table for _, _, table in self.file_pieces(np.asarray(positions, dtype=np.int64)[order])]
        rows = _arrow_to_pandas(pa.concat_tables(pieces) if pieces else self.table.arrow_schema.empty_table())
        return rows.iloc[np.argsort(order)].reset_index(drop=True)  # the inverse of the sorting permutation

    def _file_rows(self, index: int, rows: np.ndarray, positions: np.ndarray) -> Any:
        data_file = self.table.files[index]
        return _reading(data_file.path, _rows_of_file, data_file, self.table.file_columns[index], rows, self.table)


def open_source(table: InputScan) -> TableSource:
    """The source that reads ``table``: parquet files by row group, any other format (or a mix) whole."""
    return ParquetSource(table) if table.fmt == "parquet" else FrameSource(table)


# ---- Summary and report: the facts people look at, as log lines and a self-contained HTML page --------------------
# Pure functions returning values or text; main writes the page. The facts over the pool are additive counts,
# so shards compute them on their rows and the merge adds them up to what a single run reports.

REPORT_FILENAME = "selection_report.html"
CONFIDENCE_BINS = 20  # histogram bins of the top-class probability over [0, 1]
COVERAGE_THRESHOLDS = (0.8, 0.9, 0.95, 0.99)  # SSL: candidates at or above each, beside CONFIDENCE_THRESHOLD
PROJECTION_POINTS = 2000  # at most this many candidates, picks and labeled rows each drawn in the projection
REPORT_CLASSES = 40  # classes drawn in the class-mix chart (the largest); the rest are counted in a note
LOG_CLASSES = 20  # classes named in the per-class log line


def settings_read(config: SelectionConfig) -> Dict[str, Any]:
    """The settings this run read: every general one and its strategy's own (``Strategy.reads``), without
    other strategies' settings, the embedding prefix when no embeddings are read, the sharding settings of
    a single run or the labeling data field when no tasks are written."""
    strategy = strategy_for(config.selection_strategy)
    unread = {field for row in STRATEGY_TABLE for field in row.reads} - set(strategy.reads)
    if not strategy.needs_embeddings:
        unread |= {"embedding_field_prefix", "embedding_field", "feature_columns"}
    if strategy.needs_members:  # its scores are the members' columns
        unread |= {"score_field", "score_field_prefix"}
    if config.selection_role == "single":
        unread |= {"oversampling", "resource_config_path"}
    if not LABELING_FORMATS_BY_NAME[config.labeling_format].files:
        unread.add("labeling_data_field")
    return {field: value for field, value in config._asdict().items() if field not in unread}


def coverage_thresholds(config: SelectionConfig) -> Tuple[float, ...]:
    """Confidence levels whose candidate counts an SSL run reports (none for active learning)."""
    strategy = strategy_for(config.selection_strategy)
    if strategy.use_case != "ssl":
        return ()
    used = (config.confidence_threshold,) if ENV_VARS_BY_NAME["CONFIDENCE_THRESHOLD"].field in strategy.reads else ()
    return tuple(sorted(set(COVERAGE_THRESHOLDS + used)))


def _confidence_bins(confidence: np.ndarray) -> np.ndarray:
    return np.clip((confidence * CONFIDENCE_BINS).astype(np.int64), 0, CONFIDENCE_BINS - 1)


def pool_facts(probabilities: np.ndarray, labeled: np.ndarray, classes: Sequence[Any],
               known_labels: Optional[np.ndarray], thresholds: Sequence[float]) -> Dict[str, Any]:
    """Additive counts over a pool: the candidates' predicted classes, confidence histogram, confidence sum
    and rows at or above each threshold, and how many labeled rows the model's guess agrees with.

    ``known_labels`` holds ``label_texts`` of the labeled rows in row order (None: no LABEL_FIELD).
    """
    per_class = np.zeros(len(classes), dtype=np.int64)
    histogram = np.zeros(CONFIDENCE_BINS, dtype=np.int64)
    coverage = np.zeros(len(thresholds), dtype=np.int64)
    confidence_sum, guesses = 0.0, []
    for start in range(0, labeled.shape[0], _CHUNK_ROWS):
        block = probabilities[start:start + _CHUNK_ROWS]
        is_candidate = ~labeled[start:start + _CHUNK_ROWS]
        top = block.argmax(axis=1)
        confidence = block[np.arange(block.shape[0]), top][is_candidate]
        per_class += np.bincount(top[is_candidate], minlength=len(classes))
        histogram += np.bincount(_confidence_bins(confidence), minlength=CONFIDENCE_BINS)
        coverage += np.array([np.count_nonzero(confidence >= t) for t in thresholds], dtype=np.int64)
        confidence_sum += float(confidence.sum())
        guesses.append(top[~is_candidate])
    facts = {"pool_per_class": {str(label): int(n) for label, n in zip(classes, per_class)},
             "confidence_histogram": histogram.tolist(), "confidence_sum": confidence_sum,
             "threshold_coverage": {_plain(t): int(n) for t, n in zip(thresholds, coverage)}}
    if known_labels is not None and known_labels.size:
        names = label_texts(pd.Series([str(label) for label in classes], dtype=object))
        agreeing = int(np.count_nonzero(names[np.concatenate(guesses)] == known_labels))
        facts["label_agreement"] = {"compared": int(known_labels.size), "agreeing": agreeing}
    return facts


def add_pool_facts(parts: Sequence[Mapping[str, Any]]) -> Dict[str, Any]:
    """``pool_facts`` of the union of the pools that ``parts`` describe (the shards' counts added up)."""
    def add(a: Any, b: Any) -> Any:
        if a is None or b is None:
            return b if a is None else a
        if isinstance(a, Mapping):
            return {key: add(a.get(key), b.get(key)) for key in dict.fromkeys(list(a) + list(b))}
        if isinstance(a, list):
            return [x + y for x, y in zip(a, b)]
        return a + b

    return dict(functools.reduce(add, parts, None) or {})


def summary_fields(facts: Mapping[str, Any], chosen: np.ndarray, use_case: str) -> Dict[str, Any]:
    """The metadata's summary fields from a pool's ``pool_facts`` and the selected rows' probabilities."""
    candidates = sum(facts["pool_per_class"].values())
    confidence = chosen.max(axis=1) if chosen.size else np.empty(0)
    fields = {
        "pool_per_class": dict(facts["pool_per_class"]),
        "confidence_mean": {
            "candidates": round(facts["confidence_sum"] / candidates, 6) if candidates else None,
            "selected": round(float(confidence.mean()), 6) if confidence.size else None},
        "confidence_histogram": {
            "bin_width": 1.0 / CONFIDENCE_BINS, "candidates": list(facts["confidence_histogram"]),
            "selected": np.bincount(_confidence_bins(confidence), minlength=CONFIDENCE_BINS).tolist()},
    }
    if use_case == "ssl":
        fields["threshold_coverage"] = dict(facts["threshold_coverage"])
    agreement = facts.get("label_agreement")
    if agreement:
        fields["label_agreement"] = dict(agreement, share=round(agreement["agreeing"] / agreement["compared"], 6))
    return fields


def _evenly(rows: np.ndarray, limit: int) -> np.ndarray:
    """At most ``limit`` of ``rows``, evenly spaced (deterministic, keeps the first and the last)."""
    if rows.size <= limit:
        return rows
    return rows[np.linspace(0, rows.size - 1, limit).round().astype(np.int64)]


def _principal_axes(X: np.ndarray) -> np.ndarray:
    """The first two principal directions of the centered ``X`` (n, d), as a (d, 2) matrix."""
    if X.shape[1] <= 512:  # eigenvectors of the small covariance matrix, largest first
        axes = np.linalg.eigh(X.T @ X)[1][:, ::-1][:, :2]
    else:  # subspace iteration: the top two of a wide matrix without its full SVD
        basis = np.random.default_rng(0).standard_normal((X.shape[1], 10))
        for _ in range(6):
            basis = np.linalg.qr(X.T @ (X @ basis))[0]
        reduced = X @ basis
        axes = basis @ np.linalg.eigh(reduced.T @ reduced)[1][:, ::-1][:, :2]
    return np.pad(axes, ((0, 0), (0, 2 - axes.shape[1])))


def projection(vectors: np.ndarray, labeled: np.ndarray, picks: np.ndarray,
               limit: int = PROJECTION_POINTS) -> Dict[str, Any]:
    """A 2-D PCA of an evenly spaced sample of the candidate rows, and the picks and labeled rows on its axes.

    ``vectors`` (n, d) are what the strategy measured distances on; ``picks`` are positions in them.
    Returns the drawn points (each at most ``limit``) and how many rows each set has in all.
    """
    candidates = np.flatnonzero(~labeled)
    sample = _evenly(candidates, limit)
    X = vectors[sample].astype(np.float64)
    mean = X.mean(axis=0)
    axes = _principal_axes(X - mean)

    def project(rows: np.ndarray) -> np.ndarray:
        return (vectors[rows].astype(np.float64) - mean) @ axes

    return {"candidates": project(sample), "candidate_count": int(candidates.size),
            "picks": project(_evenly(np.asarray(picks), limit)), "pick_count": int(len(picks)),
            "labeled": project(_evenly(np.flatnonzero(labeled), limit)), "labeled_count": int(labeled.sum())}


def _largest(per_class: Mapping[str, int], limit: int) -> List[str]:
    """Every class in its order when there are at most ``limit``, else the ``limit`` largest."""
    if len(per_class) <= limit:
        return list(per_class)
    return sorted(per_class, key=lambda label: -per_class[label])[:limit]


def _percent(part: float, whole: float) -> str:
    return "{:.1f} %".format(100.0 * part / whole) if whole else "n/a"


def summary_lines(metadata: Mapping[str, Any]) -> List[str]:
    """The run's summary as log lines: counts, class mix, and the SSL coverage or the active-learning confidence."""
    candidates, selected = metadata["candidate_count"], metadata["selected_count"]
    lines = ["Pool {} rows: {} labeled, {} candidates; selected {} ({} of the candidates)".format(
        metadata["pool_size"], metadata["labeled_count"], candidates, selected, _percent(selected, candidates))]
    pool_per_class = metadata["pool_per_class"]
    shown = _largest(pool_per_class, LOG_CLASSES)
    mix = "; ".join("{}: {} vs {} ({} vs {} rows)".format(
        label, _percent(metadata["selected_per_class"][label], selected), _percent(pool_per_class[label], candidates),
        metadata["selected_per_class"][label], pool_per_class[label]) for label in shown)
    hidden = len(pool_per_class) - len(shown)
    more = " ... and {} more classes".format(hidden) if hidden else ""
    lines.append("Per predicted class, share of the selected vs of the candidates: " + mix + more)
    threshold = metadata["config"].get("confidence_threshold")
    if "threshold_coverage" in metadata:
        lines.append("Candidates at or above a confidence of " + "; ".join("{}: {} ({}){}".format(
            level, count, _percent(count, candidates), " (CONFIDENCE_THRESHOLD)" if float(level) == threshold else "")
            for level, count in metadata["threshold_coverage"].items()))
    agreement = metadata.get("label_agreement")
    if agreement:
        lines.append("The model's guess equals LABEL_FIELD {!r} on {} of {} labeled rows ({}); labeled rows are "
                     "usually training rows, so this overstates its accuracy on the candidates".format(
                         metadata["config"]["label_field"], agreement["agreeing"], agreement["compared"],
                         _percent(agreement["agreeing"], agreement["compared"])))
    means = metadata["confidence_mean"]
    if metadata["use_case"] != "ssl" and means["selected"] is not None:
        versus = "" if means["candidates"] is None else " vs {:.3f} on the candidates".format(means["candidates"])
        lines.append("Mean confidence (top-class probability): {:.3f} on the selected rows{}".format(
            means["selected"], versus))
    return lines


# The page: inline SVG and CSS only, every text escaped. Marks carry a class naming what they draw.
_REPORT_STYLE = (
    "body{font-family:sans-serif;margin:24px;color:#222;max-width:1100px}"
    "table{border-collapse:collapse;margin:8px 0 16px}td,th{border:1px solid #ccc;padding:3px 8px;text-align:left}"
    "th{background:#f3f3f3}.num{text-align:right}.note{color:#666;font-size:90%}"
    "svg{border:1px solid #ddd;background:#fff;margin:6px 0}svg text{font-size:11px;fill:#333}"
    ".pool{fill:#9aa5b1}.selected{fill:#d9480f}.labeled{fill:#2b8a3e}"
    ".threshold{stroke:#1c7ed6;stroke-width:2;stroke-dasharray:5,3}"
)


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _table(rows: Sequence[Sequence[Any]], header: Sequence[str]) -> str:
    def cell(tag: str, value: Any) -> str:
        numeric = isinstance(value, numbers.Number) and not isinstance(value, bool)
        return "<{0}{1}>{2}</{0}>".format(tag, ' class="num"' if numeric else "", _e(value))
    head = "<tr>" + "".join(cell("th", name) for name in header) + "</tr>"
    return "<table>" + head + "".join("<tr>" + "".join(cell("td", v) for v in row) + "</tr>" for row in rows) \
        + "</table>"


def _svg(width: int, height: int, label: str, body: List[str]) -> str:
    return '<svg xmlns="http://www.w3.org/2000/svg" width="{0}" height="{1}" viewBox="0 0 {0} {1}" role="img" ' \
        'aria-label="{2}">{3}</svg>'.format(width, height, _e(label), "".join(body))


def _bar(x: float, y: float, width: float, height: float, kind: str, title: str) -> str:
    return '<rect class="{}" x="{:.1f}" y="{:.1f}" width="{:.1f}" height="{:.1f}"><title>{}</title></rect>'.format(
        kind, x, y, max(width, 0.0), max(height, 0.0), _e(title))


def _text(x: float, y: float, text: Any, anchor: str = "start") -> str:
    return '<text x="{:.1f}" y="{:.1f}" text-anchor="{}">{}</text>'.format(x, y, anchor, _e(text))


def class_mix_svg(pool_per_class: Mapping[str, int], selected_per_class: Mapping[str, int]) -> str:
    """Horizontal bars: each class's share of the candidates (grey) and of the selected rows (orange)."""
    candidates, selected = sum(pool_per_class.values()), sum(selected_per_class.values())
    shown = _largest(pool_per_class, REPORT_CLASSES)
    shares = [(label, pool_per_class[label], selected_per_class.get(label, 0)) for label in shown]
    row, left, width = 26, 150, 420
    widest = max([n / candidates for _, n, _ in shares if candidates]
                 + [n / selected for _, _, n in shares if selected] + [1e-12])
    body = []
    for i, (label, n_pool, n_selected) in enumerate(shares):
        y = 20 + i * row
        body.append(_text(left - 6, y + 15, str(label)[:24], "end"))
        for offset, kind, count, total, noun in ((2, "pool", n_pool, candidates, "candidates"),
                                                 (13, "selected", n_selected, selected, "selected")):
            body.append(_bar(left, y + offset, width * (count / total if total else 0.0) / widest, 10, kind,
                             "class {}: {} of {} {} ({})".format(label, count, total, noun, _percent(count, total))))
        body.append(_text(left + width + 8, y + 15, "{} of the selected, {} of the candidates".format(
            _percent(n_selected, selected), _percent(n_pool, candidates))))
    return _svg(left + width + 260, 30 + row * len(shown), "class mix of candidates and selected rows", body)


def confidence_svg(histogram: Mapping[str, Any], threshold: Optional[float]) -> str:
    """The candidates' top-class probability histogram (grey) and the selected rows' (orange), each as a share
    of its own total, with the threshold as a dashed line."""
    left, top, width, height = 50, 16, 600, 200
    series = [("pool", histogram["candidates"], 0.0), ("selected", histogram["selected"], 0.5)]
    step = width / CONFIDENCE_BINS
    body = ['<line x1="{0}" y1="{1}" x2="{2}" y2="{1}" stroke="#888"/>'.format(left, top + height, left + width)]
    tallest = max([count / max(sum(counts), 1) for _, counts, _ in series for count in counts] + [1e-12])
    for kind, counts, offset in series:
        total = sum(counts)
        for i, count in enumerate(counts):
            if count:
                bar = height * (count / total) / tallest
                body.append(_bar(left + (i + offset) * step + 1, top + height - bar, step / 2 - 1, bar, kind,
                                 "{} rows with confidence in [{:.2f}, {:.2f}): {} ({})".format(
                                     "candidate" if kind == "pool" else "selected", i / CONFIDENCE_BINS,
                                     (i + 1) / CONFIDENCE_BINS, count, _percent(count, total))))
    for tick in (0.0, 0.25, 0.5, 0.75, 1.0):
        body.append(_text(left + tick * width, top + height + 16, _plain(tick), "middle"))
    body.append(_text(left + width / 2, top + height + 34, "top-class probability (confidence)", "middle"))
    if threshold is not None:
        x = left + threshold * width
        body.append('<line class="threshold" x1="{0:.1f}" y1="{1}" x2="{0:.1f}" y2="{2}"><title>threshold {3}'
                    '</title></line>'.format(x, top - 6, top + height, _e(threshold)))
        body.append(_text(x - 4, top + 8, "threshold {}".format(_plain(threshold)), "end"))
    return _svg(left + width + 20, top + height + 44, "confidence histogram", body)


def projection_svg(drawing: Mapping[str, Any]) -> str:
    """Scatter of the projection: candidates grey, labeled rows green, picks orange (drawn last, on top)."""
    size, margin = 520, 14
    layers = [("pool", drawing["candidates"], 1.6), ("labeled", drawing["labeled"], 2.4),
              ("selected", drawing["picks"], 3.4)]
    points = np.vstack([xy for _, xy, _ in layers if len(xy)] or [np.zeros((1, 2))])
    low, high = points.min(axis=0), points.max(axis=0)
    scale = (size - 2 * margin) / np.where(high > low, high - low, 1.0)
    body = []
    for kind, xy, radius in layers:
        for x, y in (np.asarray(xy, dtype=np.float64).reshape(-1, 2) - low) * scale + margin:
            body.append('<circle class="{}" cx="{:.1f}" cy="{:.1f}" r="{}"/>'.format(kind, x, size - y, radius))
    return _svg(size, size, "2-D projection of the embeddings", body)


def _legend(kind: str, text: str) -> str:
    return '<span><svg width="12" height="12"><rect class="{}" width="12" height="12"/></svg> {}</span> '.format(
        kind, _e(text))


def selection_report_html(metadata: Mapping[str, Any], drawing: Optional[Mapping[str, Any]] = None) -> str:
    """The selection report: one self-contained HTML page (no script, no network) of ``metadata`` and, for
    the embedding strategies, the ``projection`` drawing. Its size is bounded whatever the pool's."""
    config = metadata["config"]
    threshold = config.get("confidence_threshold")
    counts = [("pool rows", metadata["pool_size"]), ("labeled rows (never selected)", metadata["labeled_count"]),
              ("candidates", metadata["candidate_count"]), ("selected", metadata["selected_count"])]
    parts = [
        "<h1>Selection report: {} ({})</h1>".format(_e(metadata["strategy"]), _e(metadata["use_case"])),
        '<p class="note">job type {}, written {} by active_sample_selection.py; the numbers are in '
        "selection_metadata.json beside this file.</p>".format(_e(metadata["job_type"]), _e(metadata["timestamp"])),
        "<h2>Summary</h2><ul>" + "".join("<li>{}</li>".format(_e(line)) for line in summary_lines(metadata))
        + "</ul>",
        "<h2>Counts</h2>" + _table(counts, ("", "rows")),
        "<h2>Class mix: candidates vs selected</h2>"
        + _legend("pool", "share of the candidates") + _legend("selected", "share of the selected rows")
        + "<br>" + class_mix_svg(metadata["pool_per_class"], metadata["selected_per_class"]),
    ]
    if len(metadata["pool_per_class"]) > REPORT_CLASSES:
        parts.append('<p class="note">The {} largest of {} predicted classes are drawn.</p>'.format(
            REPORT_CLASSES, len(metadata["pool_per_class"])))
    parts.append("<h2>Model confidence of the candidates and the selected rows</h2>"
                 + _legend("pool", "candidates") + _legend("selected", "selected rows") + "<br>"
                 + confidence_svg(metadata["confidence_histogram"],
                                  threshold if metadata["use_case"] == "ssl" else None))
    if drawing is not None:
        parts.append("<h2>Embeddings: 2-D projection (PCA)</h2>"
                     + _legend("pool", "candidates") + _legend("labeled", "labeled rows")
                     + _legend("selected", "selected rows") + "<br>" + projection_svg(drawing)
                     + '<p class="note">{} of {} candidates, {} of {} selected and {} of {} labeled rows drawn '
                     "(evenly spaced samples); axes: the first two principal components of the drawn candidates"
                     "{}.</p>".format(len(drawing["candidates"]), drawing["candidate_count"], len(drawing["picks"]),
                                      drawing["pick_count"], len(drawing["labeled"]), drawing["labeled_count"],
                                      drawing.get("note", "")))
    sharding = metadata.get("sharding")
    if sharding:
        shards = [(s["host"], s["pool_size"], s["candidate_count"], s["forwarded_count"]) for s in sharding["shards"]]
        parts.append("<h2>Shards</h2>" + _table(shards, ("host", "pool rows", "candidates", "sent to the merge"))
                     + '<p class="note">merge chose from {} rows; {}.</p>'.format(
                         sharding["merged_candidates"], _e(sharding["guarantee"])))
    parts.append("<h2>Settings read</h2>" + _table(sorted(config.items()), ("setting", "value")))
    return ('<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; style-src \'unsafe-inline\'">'
            "<title>Selection report: {}</title><style>{}</style></head><body>\n{}\n</body></html>\n").format(
                _e(metadata["strategy"]), _REPORT_STYLE, "\n".join(parts))


# ---- Stopping: agreement with last round's predictions, and the stopping block ------------------------------------
# A signal for the pipeline, never an input to the selection: stabilizing predictions (Bloodgood and
# Vijay-Shanker, CoNLL 2009) stop once consecutive models agree on the unlabeled rows (Cohen's kappa).

class PredictedClasses(NamedTuple):
    """A prediction table reduced to what agreement needs: ids and each row's predicted class."""

    ids: pd.Series  # (n,) ID_FIELD values, unique
    classes: List[Any]  # class of each score column, in the table's column order
    predicted: np.ndarray  # (n,) int: position in ``classes`` of each row's largest probability


class StoppingCounts(NamedTuple):
    """Sums from which the stopping block is computed; shards' counts add up to a single run's."""

    classes: List[str]  # this round's classes, in score-column order (the confusion matrix's order)
    previous_given: bool
    confusion: Optional[np.ndarray]  # (n_classes, n_classes) int64: previous class x current class, or None
    candidate_count: int  # rows without a label this round
    uncertainty_sum: float  # margin uncertainty 1 - (p1 - p2), summed over the candidates
    uncertainty_max: Optional[float]  # its maximum; None without candidates
    id_dtypes: Tuple[str, str] = ("", "")  # how the ids were read: (previous table, this round's table)


# Previous tables are read for their ids and scores only: with a strategy that needs no embeddings.
_SCORES_ONLY_STRATEGY = next(strategy.name for strategy in STRATEGY_TABLE if not strategy.needs_embeddings)


def read_previous_predictions(folder: Path, config: SelectionConfig,
                              forbidden: Sequence[Path] = ()) -> PredictedClasses:
    """Last round's prediction table under ``folder``, read by the rules of ``evaluation_data``.

    The id and score settings (ID_FIELD, SCORE_FIELD, SCORE_FIELD_PREFIX) are this run's; its label
    column, if any, is not read (agreement is measured on the rows unlabeled now). Errors name the channel.
    """
    reading = config._replace(selection_strategy=_SCORES_ONLY_STRATEGY, label_field=None,
                              labeling_data_field=None, output_format=OUTPUT_FORMATS[0])
    try:
        source = scan_input(folder, reading, forbidden)
        pool = open_source(source).pool(reading, keep_ids=True)
    except SelectionError as error:
        raise SelectionError("{} {}: {}".format(PREVIOUS_CHANNEL, folder, _one_line(error))) from None
    logger.info("Read %d rows of previous predictions from %s (%d file(s))", len(pool.ids), folder,
                len(source.files))
    return PredictedClasses(pool.ids.reset_index(drop=True), list(pool.classes), pool.probabilities.argmax(axis=1))


def _previous_class_positions(previous_classes: Sequence[Any], classes: Sequence[Any]) -> np.ndarray:
    """Position among ``classes`` of each previous class (matched by name); other class sets are an error."""
    names = [str(label) for label in classes]
    previous_names = [str(label) for label in previous_classes]
    if sorted(names) != sorted(previous_names):
        raise SelectionError("{} scores the classes {} but evaluation_data scores {}: both rounds' models must "
                             "predict the same classes".format(PREVIOUS_CHANNEL, previous_names, names))
    position = {name: j for j, name in enumerate(names)}
    return np.array([position[name] for name in previous_names], dtype=np.int64)


def agreement_confusion(previous: PredictedClasses, ids: pd.Series, predicted: np.ndarray,
                        candidates: np.ndarray, classes: Sequence[Any]) -> np.ndarray:
    """Confusion matrix of previous against current predicted class over the ids found in both tables
    and unlabeled now.

    Parameters
    ----------
    previous : PredictedClasses
        Last round's ids and predicted classes; its classes may come in another column order.
    ids : Series of shape (n_rows,)
        This round's ids.
    predicted : ndarray of shape (n_rows,)
        Position in ``classes`` of each row's predicted class.
    candidates : ndarray of shape (n_rows,), bool
        Rows without a label this round.
    classes : sequence of length n_classes

    Returns
    -------
    ndarray of shape (n_classes, n_classes), int64
        Entry [i, j]: common rows predicted ``classes[i]`` last round and ``classes[j]`` now.
    """
    n_classes = len(classes)
    previous_in_current = _previous_class_positions(previous.classes, classes)[previous.predicted]
    rows = np.flatnonzero(candidates)
    where = pd.Index(previous.ids).get_indexer(pd.Index(ids.iloc[rows] if len(rows) < len(ids) else ids))
    found = where >= 0
    codes = previous_in_current[where[found]] * n_classes + np.asarray(predicted)[rows[found]]
    return np.bincount(codes, minlength=n_classes * n_classes).reshape(n_classes, n_classes).astype(np.int64)


def cohen_kappa(confusion: Any) -> Optional[float]:
    """Cohen's kappa of a square confusion matrix of counts; None when it holds no row.

    kappa = (p_o - p_e) / (1 - p_e), computed from integer counts as (n tr(C) - r.c) / (n^2 - r.c) with r, c
    the row and column sums. When both raters put every row in one and the same class (p_e = p_o = 1) the
    ratio is 0/0; agreement is then complete and 1.0 is returned.
    """
    counts = np.asarray(confusion, dtype=np.int64)
    n = int(counts.sum())
    if n == 0:
        return None
    chance = int(np.dot(counts.sum(axis=1).astype(object), counts.sum(axis=0).astype(object)))
    agree = int(np.trace(counts))
    if chance == n * n:
        return 1.0
    return (n * agree - chance) / (n * n - chance)


def stopping_counts(pool: Pool, previous: Optional[PredictedClasses] = None) -> StoppingCounts:
    """The stopping block's sums over ``pool``: margin uncertainty of the candidates and, with ``previous``,
    the agreement confusion matrix (the pool must then carry its ids)."""
    candidates = ~pool.labeled
    uncertainty = _uncertainty_scores(pool.probabilities, "margin")[candidates]
    confusion, id_dtypes = None, ("", "")
    if previous is not None:
        confusion = agreement_confusion(previous, pool.ids, pool.probabilities.argmax(axis=1), candidates,
                                        pool.classes)
        id_dtypes = (str(previous.ids.dtype), str(pool.ids.dtype))
    return StoppingCounts([str(label) for label in pool.classes], previous is not None, confusion,
                          int(candidates.sum()), float(uncertainty.sum()),
                          float(uncertainty.max()) if uncertainty.size else None, id_dtypes)


def merged_stopping_counts(shard_counts: Sequence[Optional[Mapping[str, Any]]]) -> StoppingCounts:
    """The counts of a single run over all shards, from the ``stopping`` entries of their manifests."""
    if any(counts is None for counts in shard_counts):
        raise SelectionError("a shard manifest has no stopping counts: shards and merge must run the same script")
    given = {bool(counts["previous_given"]) for counts in shard_counts}
    if len(given) > 1:
        raise SelectionError("some shards read {} and others did not: give it to the shard step only, whole "
                             "(FullyReplicated) to every instance".format(PREVIOUS_CHANNEL))
    maxima = [counts["uncertainty_max"] for counts in shard_counts if counts["uncertainty_max"] is not None]
    confusion = None
    if given.pop():
        confusion = sum(np.asarray(counts["confusion"], dtype=np.int64) for counts in shard_counts)
    first = shard_counts[0]
    return StoppingCounts(list(first["classes"]), confusion is not None, confusion,
                          sum(int(counts["candidate_count"]) for counts in shard_counts),
                          math.fsum(float(counts["uncertainty_sum"]) for counts in shard_counts),
                          max(maxima) if maxima else None, tuple(first["id_dtypes"]))


def _agreement_note(counts: StoppingCounts, kappa: Optional[float]) -> Optional[str]:
    if not counts.previous_given:
        return "no {} given: the agreement needs last round's prediction table".format(PREVIOUS_CHANNEL)
    if kappa is None:
        previous_dtype, current_dtype = counts.id_dtypes
        return ("no id of {} is among this round's {} unlabeled rows (ids read as {} there, {} here): check that "
                "both tables come from the same pool".format(PREVIOUS_CHANNEL, counts.candidate_count,
                                                               previous_dtype, current_dtype))
    if np.count_nonzero(counts.confusion) == 1 and np.trace(counts.confusion):
        return "both rounds predict one class for every common row: kappa is 0/0 there, taken as 1.0"
    return None


def stopping_block(counts: StoppingCounts, labeled_count: int, config: SelectionConfig) -> Dict[str, Any]:
    """The metadata's ``stopping`` block: the figures, each enabled criterion that is met, and should_stop."""
    kappa = cohen_kappa(counts.confusion) if counts.confusion is not None else None
    common = int(counts.confusion.sum()) if counts.confusion is not None else 0
    # Rounded to 12 significant digits: shards sum in another order than a single run, a few ulps apart.
    mean = float("{:.12g}".format(counts.uncertainty_sum / counts.candidate_count)) if counts.candidate_count else None
    reasons = []
    if config.stop_agreement > 0 and kappa is not None and kappa >= config.stop_agreement:
        reasons.append("STOP_AGREEMENT: prediction_agreement {:.6g} >= {}".format(kappa, _plain(config.stop_agreement)))
    if config.stop_max_labeled > 0 and labeled_count >= config.stop_max_labeled:
        reasons.append("STOP_MAX_LABELED: labeled_count {} >= {}".format(labeled_count, config.stop_max_labeled))
    max_uncertainty = counts.uncertainty_max
    if config.stop_max_uncertainty > 0 and max_uncertainty is not None and max_uncertainty < config.stop_max_uncertainty:
        reasons.append("STOP_MAX_UNCERTAINTY: max_uncertainty {:.6g} < {}".format(
            max_uncertainty, _plain(config.stop_max_uncertainty)))
    block: Dict[str, Any] = {
        "prediction_agreement": kappa,
        "common_rows": common,
        "mean_uncertainty": mean,
        "max_uncertainty": max_uncertainty,
        "labeled_count": int(labeled_count),
        "should_stop": bool(reasons),
        "reasons": reasons,
        "criteria": {"STOP_AGREEMENT": config.stop_agreement, "STOP_MAX_LABELED": config.stop_max_labeled,
                     "STOP_MAX_UNCERTAINTY": config.stop_max_uncertainty},
    }
    note = _agreement_note(counts, kappa)
    if note is not None:
        block["note"] = note
    if counts.previous_given and kappa is None:
        logger.warning("Stopping: %s", note)
    logger.info("Stopping: agreement %s over %d common rows, max uncertainty %s, labeled %d: should_stop=%s%s",
                "n/a" if kappa is None else "{:.4f}".format(kappa), common,
                "n/a" if max_uncertainty is None else "{:.4f}".format(max_uncertainty), labeled_count,
                block["should_stop"], " ({})".format("; ".join(reasons)) if reasons else "")
    return block


# ---- Engine: the one path from pool to annotated rows, for every role ---------------------------------------------

def select_from_pool(pool: Pool, config: SelectionConfig, calibration: Optional[Calibration] = None) -> Selection:
    """Run the configured strategy over the pool's candidates (rows without a label; the labeled rows for a
    strategy that reviews labels).

    Returns the selected rows' positions in the pool, in rank order, with their selection scores (and,
    for SSL strategies, the per-class thresholds applied). ``calibration`` is what strategies that need
    calibration_data read.
    """
    strategy = strategy_for(config.selection_strategy)
    if strategy.needs_calibration and calibration is None:
        raise _no_calibration_error(config)
    rows = np.flatnonzero(candidate_mask(pool, strategy))
    n_rows = pool.labeled.shape[0]
    if rows.size == 0:
        raise no_candidates_error(strategy, n_rows, config.label_field)
    n_labeled = int(pool.labeled.sum())
    logger.info("Scores from %s read as %s; %d rows, %d labeled, %d candidates", _preview(pool.score_columns),
                pool.score_interpretation, n_rows, n_labeled, rows.size)
    if strategy.batched and config.batch_size >= rows.size:
        logger.info("BATCH_SIZE=%d is not smaller than the %d candidates: selecting them all", config.batch_size,
                    rows.size)
    sampler = make_sampler(config)
    candidates = _candidates(pool, rows, calibration)
    selection = sampler._select(candidates, config.batch_size)
    thresholds = sampler.class_thresholds(candidates, selection) if strategy.use_case == "ssl" else None
    _log_rule(sampler, candidates, strategy, pool.classes)
    return selection._replace(indices=rows[selection.indices], class_thresholds=thresholds)


def _no_calibration_error(config: SelectionConfig) -> SelectionError:
    return SelectionError("SELECTION_STRATEGY={} needs the input {!r} (--{} on the command line): the model's "
                          "predictions on held-out labeled rows".format(config.selection_strategy, CALIBRATION_CHANNEL,
                                                                       CALIBRATION_CHANNEL))


def candidate_mask(pool: Pool, strategy: Strategy) -> np.ndarray:
    """The rows ``strategy`` selects among: the unlabeled ones, or the labeled ones for a strategy reviewing labels."""
    return pool.labeled if strategy.candidates == "labeled" else ~pool.labeled


def no_candidates_error(strategy: Strategy, n_rows: int, label_field: Optional[str]) -> SelectionError:
    if strategy.candidates == "labeled":
        return SelectionError("no candidate rows: none of the {} rows has LABEL_FIELD {!r} filled, and {} selects "
                              "among the labeled rows only".format(n_rows, label_field, strategy.name))
    return SelectionError("no candidate rows: all {} rows have LABEL_FIELD {!r} filled".format(n_rows, label_field))


def _candidates(pool: Pool, rows: np.ndarray, calibration: Optional[Calibration] = None) -> Candidates:
    every_row = rows.size == pool.labeled.shape[0]
    probabilities = pool.probabilities if every_row else pool.probabilities[rows]
    members = None if pool.members is None else (pool.members if every_row else pool.members[:, rows])
    if pool.given is not None:
        return Candidates(probabilities, labels=pool.given[rows], members=members, calibration=calibration)
    if pool.vectors is None:
        return Candidates(probabilities, members=members, calibration=calibration)
    embeddings = pool.vectors if every_row else pool.vectors[rows]
    labeled = None if every_row else pool.vectors[pool.labeled]
    return Candidates(probabilities, embeddings, labeled, members=members, calibration=calibration)


def annotate(rows: pd.DataFrame, predictions: "Predictions", scores: np.ndarray, strategy: str) -> pd.DataFrame:
    """The selected ``rows`` (in rank order) with the output columns appended.

    ``predictions`` (the model's guess) and ``scores`` belong to the same rows. Every
    strategy adds selection_score, selection_rank and data_source; SSL strategies also pseudo_label
    and confidence, active-learning strategies the same guess as predicted_label and predicted_confidence;
    strategies that review labeled rows repeat it as suggested_label, the name label review gives it.
    """
    is_ssl = strategy_for(strategy).use_case == "ssl"
    added = {
        SELECTION_SCORE: np.asarray(scores, dtype=np.float64),
        SELECTION_RANK: np.arange(1, len(rows) + 1, dtype=np.int64),
        DATA_SOURCE: np.full(len(rows), DATA_SOURCE_SSL if is_ssl else DATA_SOURCE_ACTIVE_LEARNING, dtype=object),
    }
    label_column, confidence_column = (PSEUDO_LABEL, CONFIDENCE) if is_ssl else (PREDICTED_LABEL, PREDICTED_CONFIDENCE)
    added[label_column] = pd.Series(predictions.labels, index=rows.index).infer_objects()
    added[confidence_column] = predictions.confidence
    if SUGGESTED_LABEL in output_columns(strategy):
        added[SUGGESTED_LABEL] = added[PREDICTED_LABEL]
    # One concat rather than a column at a time: wide inputs would otherwise fragment the frame.
    return pd.concat([rows, pd.DataFrame(added, index=rows.index)], axis=1)


class Predictions(NamedTuple):
    """The model's guess for each selected row: its top class and that class's probability."""

    classes: Tuple[Any, ...]  # every class, in score-column order
    labels: np.ndarray  # (n_selected,) object: the top class of each row
    confidence: np.ndarray  # (n_selected,) float64: its probability

    @classmethod
    def of(cls, probabilities: np.ndarray, classes: Sequence[Any]) -> "Predictions":
        """The guess for each row of ``probabilities`` (shape (n_rows, n_classes))."""
        classes = tuple(classes)
        return cls(classes, np.asarray(classes, dtype=object)[probabilities.argmax(axis=1)], probabilities.max(axis=1))


class SelectionResult(NamedTuple):
    """What a selection produced: the output rows and the facts the metadata reports."""

    rows: Optional[pd.DataFrame]  # selected rows in rank order, with the output columns (a shard: None)
    counts: Dict[str, Any]  # pool_size, labeled_count, candidate_count, selected_count, selected_per_class, ...
    details: Dict[str, Any]  # score columns and how they were read, classes, vector columns
    predictions: Optional[Predictions] = None  # the model's guess for the same rows (labeling tasks show it)
    drawing: Optional[Dict[str, Any]] = None  # the report's 2-D projection (strategies that read embeddings)
    stopping: Optional["StoppingCounts"] = None  # what the metadata's stopping block is computed from
    sharding: Optional[Dict[str, Any]] = None  # a merge: the shards and its guarantee; a shard: its manifest


POOL_COUNTS = ("pool_size", "labeled_count", "candidate_count")  # the counts of a pool, in the metadata's order
REVIEW_FACTS = "review"  # the metadata entry of a strategy's own facts (Selection.facts)


class PoolTotals(NamedTuple):
    """What the metadata says about the whole pool, whether one machine read it or shards did."""

    counts: Dict[str, int]  # pool_size, labeled_count, candidate_count
    facts: Dict[str, Any]  # pool_facts: additive counts over every row
    stopping: Optional["StoppingCounts"]  # what the metadata's stopping block is computed from


def pool_totals(pool: Pool, config: SelectionConfig, previous: Optional["PredictedClasses"] = None) -> PoolTotals:
    """The totals of one machine's pool (a single run's, or a shard's for its manifest)."""
    candidates = candidate_mask(pool, strategy_for(config.selection_strategy))
    counts = {"pool_size": int(pool.labeled.shape[0]), "labeled_count": int(pool.labeled.sum()),
              "candidate_count": int(candidates.sum())}
    facts = pool_facts(pool.probabilities, pool.labeled, pool.classes, pool.known_labels, coverage_thresholds(config))
    return PoolTotals(counts, facts, stopping_counts(pool, previous))


def run_selection(pool: Pool, config: SelectionConfig, fetch_rows: Callable[[np.ndarray], pd.DataFrame],
                  previous: Optional["PredictedClasses"] = None,
                  calibration: Optional[CalibrationTable] = None) -> SelectionResult:
    """Select from ``pool``, fetch the full rows at the selected positions and annotate them.

    This is the one path behind ``main``, the command line and ``select_samples``. ``fetch_rows``
    returns the input rows at the given positions, in that order. Pass the pool without keeping a
    reference: its arrays are released before the rows are fetched. ``previous`` (last round's
    predicted classes; the pool must then carry its ids) feeds the stopping counts. With ``calibration``
    (calibration_data; the pool must carry its ids, which it may not share), SSL strategies report a
    precision estimate.
    """
    arrays = _checked_calibration(pool, calibration, config.id_field)
    selection = select_from_pool(pool, config, arrays)
    summary = summarize_selection(pool, selection, config, pool_totals(pool, config, previous), arrays)
    del pool
    return annotated_result(summary, selection, config, fetch_rows)


def _checked_calibration(pool: Pool, calibration: Optional[CalibrationTable], id_field: str) -> Optional[Calibration]:
    """The arrays of ``calibration`` once its ids are checked apart from the pool's and its scores read as the pool's
    (a single run's pool, a shard's or the merge's)."""
    if calibration is None:
        return None
    check_calibration_apart(pool.ids, calibration, id_field)
    check_calibration_fits(calibration, pool.score_columns, pool.score_interpretation)
    return calibration.calibration


def summarize_selection(pool: Pool, selection: Selection, config: SelectionConfig, totals: PoolTotals,
                        calibration: Optional[Calibration] = None) -> SelectionResult:
    """What the metadata and the report say about the selection, computed while ``pool`` is at hand (a single
    run's pool, or the merge's pool of every shard's forwarded rows, whose ``totals`` the shards counted); the
    rows are fetched later."""
    chosen = pool.probabilities[selection.indices]
    predictions = Predictions.of(chosen, pool.classes)
    review = {REVIEW_FACTS: selection.facts} if selection.facts else {}
    counts = dict(totals.counts, **_selected_counts(predictions.labels, pool.classes, selection.scores), **review,
                  **summary_fields(totals.facts, chosen, strategy_for(config.selection_strategy).use_case),
                  **_estimate_facts(config, calibration, selection, chosen, pool.classes))
    vectors = {} if pool.vectors is None else {"vector_columns": len(pool.vector_columns),
                                                "vector_source": pool.vector_source}
    details = {"score_columns": pool.score_columns, "score_interpretation": pool.score_interpretation, **vectors,
               "classes": [str(label) for label in pool.classes]}
    drawing = None if pool.vectors is None else projection(pool.vectors, pool.labeled, selection.indices)
    return SelectionResult(rows=None, counts=counts, details=details, predictions=predictions, drawing=drawing,
                           stopping=totals.stopping)


def annotated_result(summary: SelectionResult, selection: Selection, config: SelectionConfig,
                     fetch_rows: Callable[[np.ndarray], pd.DataFrame]) -> SelectionResult:
    """``summary`` with the selected rows fetched and annotated."""
    rows = annotate(fetch_rows(selection.indices), summary.predictions, selection.scores, config.selection_strategy)
    return summary._replace(rows=rows)


def _log_rule(sampler: _Sampler, candidates: Candidates, strategy: Strategy, classes: Sequence[Any]) -> None:
    """Say which classes a calibrated rule refused, and what it would take to qualify them."""
    if not strategy.needs_calibration:
        return
    details = sampler.rule_details(candidates)
    logger.info("Thresholds from calibration_data (fixed-sequence scan, TARGET_PRECISION=%g): %s",
                details["target_precision"], _preview(["{}: {}".format(label, "none" if found["threshold"] is None
                                                                      else "{:.4g}".format(found["threshold"]))
                                                       for label, found in zip(classes, details["classes"])], 20))
    refused = [(label, found) for label, found in zip(classes, details["classes"]) if not found["qualified"]]
    if not refused:
        return
    needs = "; ".join("class {}: {} calibration rows predicted as it, {} correct{}".format(
        label, found["calibration_rows"], found["calibration_correct"],
        ", about {} needed at that precision".format(found["rows_needed"]) if found["rows_needed"]
        else ", its calibration precision cannot reach the target") for label, found in refused[:10])
    text = ("TARGET_PRECISION={:g} at PRECISION_CONFIDENCE={:g}: a class needs at least {} calibration rows predicted "
            "as it, all correct, above its threshold (more when some are wrong); ").format(
        details["target_precision"], details["precision_confidence"], details["minimum_rows"])
    if len(refused) == len(details["classes"]):
        logger.warning("No class reached %s%s. Selecting no rows.", text, needs)
    else:
        logger.warning("%d of %d classes get no pseudo-labels: %s%s", len(refused), len(details["classes"]), text,
                       needs)


def _estimate_facts(config: SelectionConfig, calibration: Optional[Calibration], selection: Selection,
                    chosen: np.ndarray, classes: Sequence[Any]) -> Dict[str, Any]:
    """The metadata's precision_estimate of an SSL selection (nothing for active learning)."""
    strategy = strategy_for(config.selection_strategy)
    if strategy.use_case != "ssl":
        return {}
    if calibration is None:
        return {"precision_estimate": {"available": False, "reason": "no calibration_data input: give the model's "
                                       "predictions on held-out labeled rows to estimate the pseudo-labels' precision"}}
    estimate = precision_estimate(calibration, selection.class_thresholds, chosen.argmax(axis=1), classes)
    if strategy.needs_calibration:
        candidates = Candidates(chosen[:0], calibration=calibration)
        rule = make_sampler(config).rule_details(candidates)
        estimate["rule"] = dict(rule, classes={str(label): found for label, found in zip(classes, rule["classes"])})
    overall = estimate["overall"]
    if overall["precision"] is None:
        logger.info("Precision estimate: the rule selects none of the %d calibration rows",
                    estimate["calibration_rows"])
    else:
        logger.info("Pseudo-label precision estimated on %d of %d calibration rows: %.1f %% (95 %% interval "
                    "%.1f-%.1f %%); class-mix total variation %s", overall["selected_calibration_rows"],
                    estimate["calibration_rows"], 100 * overall["precision"], 100 * overall["interval"][0],
                    100 * overall["interval"][1],
                    "n/a" if estimate["class_mix_total_variation"] is None
                    else "{:.2f}".format(estimate["class_mix_total_variation"]))
    return {"precision_estimate": estimate}


def _selected_counts(labels: np.ndarray, classes: Sequence[Any], scores: np.ndarray) -> Dict[str, Any]:
    """selected_count, selected_per_class (``labels``: each selected row's predicted class) and selection_score."""
    per_class = pd.Series(labels, dtype=object).astype(str).value_counts()
    return {
        "selected_count": int(scores.size),
        "selected_per_class": {str(label): int(per_class.get(str(label), 0)) for label in classes},
        "selection_score": _score_summary(scores),
    }


def _score_summary(scores: np.ndarray) -> Dict[str, Optional[float]]:
    if scores.size == 0:
        return {"min": None, "median": None, "max": None}
    values = np.asarray(scores, dtype=np.float64)
    return {"min": float(values.min()), "median": float(np.median(values)), "max": float(values.max())}


# Keys of select_samples' strategy_config that are not SelectionConfig fields, or are its own parameters.
_SEED_ONLY_KEYS = ("feature_columns",)
_PARAMETER_FIELDS = ("selection_strategy", "batch_size", "id_field")


def config_from_settings(strategy: str, batch_size: int, strategy_config: Optional[Mapping[str, Any]] = None,
                         id_field: str = "id") -> SelectionConfig:
    """A ``SelectionConfig`` from Python values, parsed and checked exactly like the environment.

    ``strategy_config`` keys are ``SelectionConfig`` field names (``confidence_threshold``, ``metric``,
    ``label_field``, ...); missing keys and None take the ``ENV_VARS`` defaults. Unknown keys are an error.
    ``batch_size`` is checked only for the strategies that read it.
    """
    settings = dict(strategy_config or {})
    fields = {var.field: var for var in ENV_VARS}
    unknown = sorted(key for key in settings
                     if key not in _SEED_ONLY_KEYS and (key not in fields or key in _PARAMETER_FIELDS))
    if unknown:
        raise SelectionError("strategy_config has unknown key(s) {}: expected some of {}".format(
            ", ".join(unknown), ", ".join(sorted(set(fields) - set(_PARAMETER_FIELDS)) + list(_SEED_ONLY_KEYS))))
    # SSL strategies select every qualifying row: their batch_size is not read (and may be 0 or None).
    batched = strategy_for(strategy).batched
    # The seed's feature_columns (a list) keeps its own meaning, see select_samples; FEATURE_COLUMNS is the env's.
    return config_from_values(dict(settings, feature_columns=None, selection_strategy=strategy,
                                   batch_size=batch_size if batched else None, id_field=id_field))


def select_samples(df: pd.DataFrame, strategy: str, batch_size: int,
                   strategy_config: Optional[Mapping[str, Any]] = None, id_field: str = "id") -> pd.DataFrame:
    """Apply ``strategy`` to the prediction table ``df`` and return the selected rows.

    Parameters
    ----------
    df : DataFrame
        The prediction table: an id column, score columns (for committee, each member's) and, for diversity
        and badge, embeddings.
    strategy : str
        One of ``STRATEGIES``; an unknown name is a ``ValueError`` naming it.
    batch_size : int
        Rows to select (uncertainty, diversity, badge, committee).
    strategy_config : mapping, optional
        Settings by ``SelectionConfig`` field name, as a caller's own ``main`` would build them
        (``confidence_threshold``, ``max_samples``, ``k_per_class``, ``uncertainty_mode``, ``metric``,
        ``random_seed``, ``feature_columns``) plus ``diversity_method``, ``uncertainty_prefilter``,
        ``committee_prefixes``, ``disagreement``, ``label_field``, ``score_field``, ``score_field_prefix``,
        ``embedding_field_prefix`` and ``use_case``.
    id_field : str, default="id"

    Returns
    -------
    DataFrame
        The selected rows of ``df`` (its index kept) in rank order with ``selection_score``,
        ``selection_rank`` and ``data_source`` appended (SSL strategies also ``pseudo_label`` and
        ``confidence``). Rows whose label field is filled are never selected. With nothing to choose from
        (no rows, or every row labeled, logged as a warning) it is empty but has those columns; the
        columns are checked all the same. (The pipeline step instead fails on an empty pool.)
    """
    config = config_from_settings(strategy, batch_size, strategy_config, id_field)
    _require_columns([str(name) for name in df.columns], [("ID_FIELD", config.id_field)])
    _check_ids(df[config.id_field], config.id_field)
    feature_columns = (strategy_config or {}).get("feature_columns")
    pool = pool_from_frame(df, config, feature_columns)
    if not candidate_mask(pool, strategy_for(config.selection_strategy)).any():
        return _nothing_selected(df, pool, config)
    return run_selection(pool, config, lambda positions: df.iloc[positions]).rows


def _nothing_selected(df: pd.DataFrame, pool: Pool, config: SelectionConfig) -> pd.DataFrame:
    """``select_samples``' answer for a frame without candidates: no rows, the output columns."""
    if len(df):
        reason = no_candidates_error(strategy_for(config.selection_strategy), len(df), config.label_field)
        logger.warning("select_samples: %s; nothing selected", str(reason).replace("LABEL_FIELD", "label_field"))
    return annotate(df.iloc[:0], Predictions.of(pool.probabilities[:0], pool.classes), np.empty(0),
                    config.selection_strategy)


# ---- Sharding: SELECTION_ROLE=shard on each instance, merge on one ------------------------------------------------
# A multi-instance job (input ShardedByS3Key) runs the shards; one instance merges their outputs. See
# docs/scaling.md.

SHARD_FORMAT = "active-sampling-shard/1"
SHARD_PREFIX = "shard-"
SHARD_COLUMN_PREFIX = "__shard_"
SHARD_FILE = SHARD_COLUMN_PREFIX + "file"  # input path relative to the input folder ("/"-separated)
SHARD_ROW = SHARD_COLUMN_PREFIX + "row"  # row number inside that file
SHARD_SCORE = SHARD_COLUMN_PREFIX + "score"  # the shard's selection score, float64
SHARD_WEIGHT = SHARD_COLUMN_PREFIX + "weight"  # badge: the shard's candidates nearest to this pick
SHARD_PROBABILITY = SHARD_COLUMN_PREFIX + "p"  # + class position: the probabilities as the shard read them
_HOST_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
# Settings shards and merge need not share: who runs where, and the labeling tasks only the merge writes.
_ROLE_INDEPENDENT = ("selection_role", "resource_config_path", "labeling_format", "labeling_data_field")


class ResourceConfig(NamedTuple):
    """Who this instance is among the instances of one processing job."""

    current_host: str
    hosts: List[str]


def read_resource_config(path: Path) -> ResourceConfig:
    """``current_host`` and ``hosts`` from SageMaker's resource config (RESOURCE_CONFIG_PATH)."""
    try:
        document = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SelectionError("resource config {} not found: set RESOURCE_CONFIG_PATH to the file that names this "
                             "instance (current_host) and all instances (hosts)".format(path)) from None
    except (OSError, ValueError) as error:
        raise SelectionError("cannot read resource config {}: {}".format(path, _one_line(error))) from None
    current, hosts = (document.get(key) if isinstance(document, dict) else None for key in ("current_host", "hosts"))
    if not isinstance(hosts, list) or not hosts or not all(isinstance(h, str) and _HOST_NAME.match(h) for h in hosts):
        raise SelectionError("resource config {}: hosts must be a non-empty list of host names, got {!r}".format(
            path, hosts))
    if len(set(hosts)) != len(hosts):
        raise SelectionError("resource config {}: hosts lists a host twice: {}".format(path, _preview(hosts)))
    if current not in hosts:
        raise SelectionError("resource config {}: current_host {!r} is not among hosts {}".format(
            path, current, _preview(hosts)))
    return ResourceConfig(current, list(hosts))


def sharding_unsupported(config: SelectionConfig) -> Optional[str]:
    """Why this configuration cannot be sharded, or None: its strategy row has a sharding rule or not."""
    if strategy_for(config.selection_strategy).sharding is not None:
        return None
    return "SELECTION_STRATEGY={} cannot be sharded: use SELECTION_ROLE=single".format(config.selection_strategy)


def check_role_fits_instances(config: SelectionConfig) -> Optional[ResourceConfig]:
    """The resource config a shard needs; single and merge runs must be on one instance.

    A single run on N instances would select N times from the same data and overwrite its own files.
    """
    path = Path(config.resource_config_path)
    unsupported = sharding_unsupported(config) if config.selection_role != "single" else None
    if unsupported:
        raise SelectionError(unsupported)
    if config.selection_role == "shard":
        return read_resource_config(path)
    if not path.is_file():
        return None
    resources = read_resource_config(path)
    if len(resources.hosts) > 1:
        raise SelectionError(
            "SELECTION_ROLE={} runs on one instance, but this job has {} ({}): with more than one instance, run "
            "SELECTION_ROLE=shard and merge in a second one-instance step".format(
                config.selection_role, len(resources.hosts), _preview(resources.hosts)))
    return resources


def shared_settings(config: SelectionConfig) -> Dict[str, Any]:
    """The settings every shard and the merge must share (all but the role and the resource config)."""
    return {field: value for field, value in config._asdict().items() if field not in _ROLE_INDEPENDENT}


def config_fingerprint(config: SelectionConfig) -> str:
    """SHA-256 of the shared settings, to compare a run's shards and merge at a glance."""
    text = json.dumps(shared_settings(config), sort_keys=True, default=_json_default)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def shard_file_names(host: str) -> Dict[str, str]:
    """File names of one shard's outputs: unique per host, since all hosts upload to one S3 prefix."""
    stem = SHARD_PREFIX + host
    return {"manifest": stem + ".json", "piece": stem + ".{:05d}.parquet", "labeled": stem + ".labeled.npy"}


def _path_key(relative: str) -> Tuple[str, ...]:
    """Sort key of a relative input path, as ``sorted(Path.rglob())`` orders files (part by part)."""
    return tuple(relative.split("/"))


def _check_no_shard_columns(columns: Sequence[str]) -> None:
    reserved = [name for name in columns if name.startswith(SHARD_COLUMN_PREFIX)]
    if reserved:
        raise SelectionError("input has column(s) {} whose prefix {!r} is reserved for a shard's outputs; rename "
                             "them".format(_preview(reserved), SHARD_COLUMN_PREFIX))


def run_shard(input_dir: Path, samples_dir: Path, metadata_dir: Path, config: SelectionConfig,
              resources: ResourceConfig, job_type: str,
              previous: Optional["PredictedClasses"] = None, calibration: Optional[CalibrationTable] = None
              ) -> Tuple[SelectionResult, InputFacts, List[Tuple[Path, Callable[[Path], None]]]]:
    """Select this shard's candidates: what a selection returns (no rows; the manifest the merge checks the
    shard's outputs against as ``sharding``), its input, and the files to write with their writers.

    ``previous`` (last round's predictions, read whole by every shard) feeds the shard's stopping counts,
    which the merge adds up.
    """
    source = None
    try:  # with more instances than files, an instance receives none
        source = scan_input(input_dir, config, (samples_dir, metadata_dir)) if input_dir.is_dir() else None
    except (NoDataFilesError, NoRowsError):
        pass
    if source is None:
        logger.info("This shard received no rows under %s: it sends no candidates", input_dir)
    shard = _NO_ROWS if source is None else _shard_select(source, config, resources, previous, calibration)
    manifest = shard_manifest(config, resources, job_type, calibration, shard)
    files = [(samples_dir / name, lambda target, piece=piece: _write_arrow(piece, target))
             for name, piece in zip(manifest["candidate_files"], shard.pieces)]
    if manifest["labeled_file"]:
        files.append((samples_dir / manifest["labeled_file"], lambda target: _save_npy(target, shard.labeled)))
    text = json.dumps(manifest, indent=2, default=_json_default, allow_nan=False) + "\n"
    files += [(folder / shard_file_names(resources.current_host)["manifest"],
               lambda target: target.write_text(text, encoding="utf-8")) for folder in (samples_dir, metadata_dir)]
    logger.info("Shard %s (%d of %d): %d rows, %d candidates, sending %d", resources.current_host,
                resources.hosts.index(resources.current_host) + 1, len(resources.hosts), manifest["pool_size"],
                manifest["candidate_count"], manifest["forwarded_count"])
    result = SelectionResult(rows=None, counts=shard.totals.counts, details=shard.details,
                             stopping=shard.totals.stopping, sharding=manifest)
    return result, shard.inputs, files


def _write_arrow(table: Any, target: Path) -> None:
    import pyarrow.parquet as pq

    pq.write_table(table, str(target))


def _save_npy(target: Path, array: np.ndarray) -> None:
    with open(str(target), "wb") as handle:
        np.save(handle, array, allow_pickle=False)


def _schema_text(source: InputScan) -> Optional[str]:
    """The agreed Arrow types of a parquet input, serialized for the manifest (None for csv/tsv)."""
    import base64

    if not source.arrow_types:
        return None
    return base64.b64encode(source.arrow_schema.serialize().to_pybytes()).decode("ascii")


class ShardSelection(NamedTuple):
    """What one shard computed from its rows: how it read them, its pool's totals, and what it forwards."""

    inputs: InputFacts  # its files ("/"-separated, relative to its input folder) and their format
    reading: Dict[str, Any]  # columns, kinds, arrow_schema (``_schema_text``) and column_dtypes, as read
    totals: PoolTotals
    details: Dict[str, Any]  # how the shard read scores and vectors: the merge checks every shard agrees
    rule_facts: Dict[str, Any]  # the strategy row's own manifest entries (``ShardRule.shard_facts``)
    radius: Optional[float]  # diversity: the covering radius its picks leave, in chord units
    pieces: List[Any]  # the forwarded rows, one Arrow table per input file holding any
    labeled: Optional[np.ndarray]  # labeled rows' vectors, for rules that send them


def _shard_select(source: InputScan, config: SelectionConfig, resources: ResourceConfig,
                  previous: Optional["PredictedClasses"] = None, calibration: Optional[CalibrationTable] = None
                  ) -> ShardSelection:
    """The shard's pool, its strategy row's picks among the shard's candidates, and the rows it forwards."""
    import pyarrow as pa

    _check_no_shard_columns(source.columns)
    relative = [os.path.relpath(str(f.path), str(source.root)).replace(os.sep, "/") for f in source.files]
    rows = open_source(source)
    pool = rows.pool(config, keep_ids=previous is not None or calibration is not None)
    strategy = strategy_for(config.selection_strategy)
    rule = strategy.sharding
    candidates = np.flatnonzero(candidate_mask(pool, strategy))
    own = _candidates(pool, candidates, _checked_calibration(pool, calibration, config.id_field))
    labeled = own.labeled_embeddings if rule.sends_labeled_vectors else None
    totals = pool_totals(pool, config, previous)
    details = {"score_columns": pool.score_columns, "score_interpretation": pool.score_interpretation,
               "vector_columns": pool.vector_columns or None, "vector_source": pool.vector_source,
               "classes": pool.classes}
    rule_facts, picks = {}, ShardPicks(np.empty(0, dtype=np.int64), np.empty(0), np.empty(0, dtype=np.int64), None)
    if candidates.size:
        rule_facts = rule.shard_facts(own)
        seed = [int(config.random_seed), resources.hosts.index(resources.current_host)]  # no two shards draw alike
        picks = rule.send(config, own, seed)
    order = np.argsort(candidates[picks.indices], kind="stable")  # forwarded in input order
    positions = candidates[picks.indices][order]
    sent = picks.indices[order]
    scores = np.asarray(picks.scores, dtype=np.float64)[order]
    probabilities = own.probabilities
    del pool, own
    pieces, done = [], 0
    for index, local, table in rows.file_pieces(positions):
        chunk = slice(done, done + local.size)
        done += local.size
        added = [(SHARD_FILE, pa.array([relative[index]] * local.size, pa.string())),
                 (SHARD_ROW, pa.array(local.astype(np.int64))),
                 (SHARD_SCORE, pa.array(scores[chunk])),
                 (SHARD_WEIGHT, pa.array(picks.weights[order][chunk].astype(np.int64)))]
        added += [(SHARD_PROBABILITY + str(j), pa.array(probabilities[sent[chunk], j]))
                  for j in range(probabilities.shape[1])]
        for name, values in added:
            table = table.append_column(name, values)
        pieces.append(table)
    reading = {"columns": source.columns, "kinds": source.kinds, "arrow_schema": _schema_text(source),
               "column_dtypes": rows.column_dtypes()}
    return ShardSelection(InputFacts(relative, source.fmt, source.arrow_types), reading, totals, details, rule_facts,
                          picks.radius, pieces, labeled)


_NO_ROWS = ShardSelection(inputs=InputFacts([], None, {}),
                          reading={"columns": [], "kinds": {}, "arrow_schema": None, "column_dtypes": {}},
                          totals=PoolTotals({key: 0 for key in POOL_COUNTS}, {}, None), details={}, rule_facts={},
                          radius=None, pieces=[], labeled=None)  # a shard that received no rows: it sends none


def shard_manifest(config: SelectionConfig, resources: ResourceConfig, job_type: str,
                   calibration: Optional[CalibrationTable], shard: ShardSelection) -> Dict[str, Any]:
    """The manifest the merge checks a shard's outputs against."""
    names = shard_file_names(resources.current_host)
    labeled = 0 if shard.labeled is None else int(shard.labeled.shape[0])
    stopping = shard.totals.stopping
    return {
        "format": SHARD_FORMAT, "host": resources.current_host, "hosts": resources.hosts, "job_type": job_type,
        "config_fingerprint": config_fingerprint(config), "config": shared_settings(config),
        "input_files": shard.inputs.files, "input_format": shard.inputs.fmt, **shard.reading,
        **shard.totals.counts, "forwarded_count": sum(piece.num_rows for piece in shard.pieces),
        "candidate_files": [names["piece"].format(number) for number in range(len(shard.pieces))],
        "labeled_file": names["labeled"] if labeled else None, "labeled_vectors": labeled,
        "candidate_vector_sum": None, "covering_radius_chord": shard.radius, "details": shard.details,
        "stopping": None if stopping is None else stopping._asdict(),
        "calibration_fingerprint": calibration_fingerprint(calibration), **shard.rule_facts,
        **({} if stopping is None else {"pool_facts": shard.totals.facts}),
    }


class ShardOutput(NamedTuple):
    """One shard's manifest and the folder it was found in."""

    manifest: Dict[str, Any]
    folder: Path


def read_shard_outputs(root: Path, skipped: Sequence[Path] = ()) -> List[ShardOutput]:
    """Every shard manifest under the merge's input folder, in path order, except in the ``skipped`` (output)
    folders."""
    if not root.is_dir():
        raise SelectionError("input folder {} does not exist or is not a folder".format(root))
    outputs = []
    skipped_real = [_real(folder) for folder in skipped]
    for path in sorted(root.rglob(SHARD_PREFIX + "*.json")):
        if any(part.startswith((".", "_")) for part in path.relative_to(root).parts):
            continue
        if any(_is_within(_real(path.parent), folder) for folder in skipped_real):
            continue
        try:
            manifest = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as error:
            raise SelectionError("cannot read shard manifest {}: {}".format(path, _one_line(error))) from None
        if not isinstance(manifest, dict) or manifest.get("format") != SHARD_FORMAT:
            raise SelectionError("{} is not a shard manifest of this script (format {!r})".format(path, SHARD_FORMAT))
        outputs.append(ShardOutput(manifest, path.parent))
    if not outputs:
        raise SelectionError("no shard outputs ({}<host>.json) under {}: point evaluation_data of the merge at the "
                             "shard step's selected_samples".format(SHARD_PREFIX, root))
    return outputs


_AGREEMENT = (
    ("score_columns", "score columns"),
    ("score_interpretation", "how scores were read"),
    ("classes", "classes"),
    ("vector_columns", "embedding columns"),
)


def check_shard_manifests(manifests: Sequence[Mapping[str, Any]], config: SelectionConfig) -> List[str]:
    """Every host of the run exactly once, run with this configuration, reading its data the same way.

    Returns the hosts in their resource-config order; any gap or disagreement is an error naming the host.
    """
    by_host: Dict[str, Mapping[str, Any]] = {}
    for manifest in manifests:
        host = manifest["host"]
        if host in by_host:
            raise SelectionError("host {} sent shard outputs twice: outputs of different runs share the merge's input "
                                 "folder".format(host))
        by_host[host] = manifest
    hosts = list(manifests[0]["hosts"])
    for manifest in manifests:
        if list(manifest["hosts"]) != hosts:
            raise SelectionError("host {} ran among hosts {} but host {} among {}: outputs of different runs share "
                                 "the merge's input folder".format(manifest["host"], _preview(manifest["hosts"]),
                                                                  manifests[0]["host"], _preview(hosts)))
    missing = [host for host in hosts if host not in by_host]
    if missing:
        raise SelectionError("shard output of host {} is missing ({} of {} hosts found: {})".format(
            missing[0], len(by_host), len(hosts), _preview(sorted(by_host))))
    fingerprint = config_fingerprint(config)
    for host in hosts:
        if by_host[host]["config_fingerprint"] != fingerprint:
            raise SelectionError("host {} ran with a different configuration than this merge: {}".format(
                host, _first_difference(by_host[host]["config"], config)))
    _check_agreement([by_host[host] for host in hosts], {config.id_field, config.label_field})
    return hosts


def _first_difference(settings: Mapping[str, Any], config: SelectionConfig) -> str:
    """The first variable whose value in a shard's ``settings`` differs from ``config``'s, as NAME=there, here."""
    expected = json.loads(json.dumps(shared_settings(config), default=_json_default))
    for var in ENV_VARS:
        if var.field in expected and settings.get(var.field) != expected[var.field]:
            return "{}={!r} there, {!r} here".format(var.name, settings.get(var.field), expected[var.field])
    return "the same settings, another fingerprint (another version of this script?)"


def _check_agreement(manifests: Sequence[Mapping[str, Any]], strict: Iterable[Optional[str]]) -> None:
    """Shards that read data must have read it as one run would: same columns, same score reading."""
    with_rows = [manifest for manifest in manifests if manifest["pool_size"]]
    if not with_rows:
        raise SelectionError("no shard received any rows (hosts {})".format(_preview([m["host"] for m in manifests])))
    first = with_rows[0]
    for manifest in with_rows[1:]:
        if set(manifest["columns"]) != set(first["columns"]):
            extra = sorted(set(manifest["columns"]) ^ set(first["columns"]))
            raise SelectionError("host {} read columns that host {} did not (or the other way): {}".format(
                manifest["host"], first["host"], _preview(extra)))
        for name in first["columns"]:
            kinds = {manifest["kinds"].get(name), first["kinds"].get(name)} - {None}
            if len(kinds) > 1 and not (kinds == {"integer", "float"} and name not in strict):
                raise SelectionError("column {!r} is {} in host {}'s files but {} in host {}'s: part files must agree "
                                     "on each column's type".format(name, manifest["kinds"].get(name),
                                                                    manifest["host"], first["kinds"].get(name),
                                                                    first["host"]))
        for key, what in _AGREEMENT:
            if manifest["details"].get(key) != first["details"].get(key):
                raise SelectionError("host {} disagrees with host {} on {}: {!r} there, {!r} on {}; a single run "
                                     "reads the whole pool one way".format(
                                         manifest["host"], first["host"], what, manifest["details"].get(key),
                                         first["details"].get(key), first["host"]))


class MergedPool(NamedTuple):
    """All shards' forwarded rows in input order: the pool the merge selects from (the fields of ``Pool``
    the engine reads), what the shards sent with each row, and where each row is stored."""

    ids: pd.Series
    probabilities: np.ndarray
    classes: List[Any]
    labeled: np.ndarray  # every forwarded row is a candidate
    vectors: Optional[np.ndarray]
    score_columns: List[str]
    score_interpretation: str
    vector_columns: Optional[List[str]]
    vector_source: Optional[str]
    scores: np.ndarray  # the shard's selection score of each row
    weights: np.ndarray  # the rows of its shard each row stands for
    file_rank: np.ndarray
    row: np.ndarray
    pieces: List[Any]  # Arrow tables as the shards wrote them
    piece: np.ndarray  # which piece holds each row
    piece_row: np.ndarray  # and where in it
    calibration: Optional[Calibration] = None  # calibration_data, as the merge read it


def _read_pieces(outputs: Sequence[ShardOutput]) -> List[Any]:
    import pyarrow.parquet as pq

    pieces = []
    for output in outputs:
        manifest, count = output.manifest, 0
        for name in manifest["candidate_files"]:
            path = output.folder / name
            try:
                pieces.append(pq.read_table(str(path)))
            except Exception as error:
                raise SelectionError("cannot read shard candidates {} of host {}: {}".format(
                    path, manifest["host"], _one_line(error))) from None
            count += pieces[-1].num_rows
        if count != manifest["forwarded_count"]:
            raise SelectionError("host {}: its candidate files hold {} rows, its manifest says {}".format(
                manifest["host"], count, manifest["forwarded_count"]))
    return pieces


def _read_merged_pool(outputs: Sequence[ShardOutput], config: SelectionConfig, first: Mapping[str, Any]
                      ) -> MergedPool:
    """The merge's pool, read as the shards describe it (``first``: the details of a single run's first file)."""
    vector_columns = first["vector_columns"]
    pieces = [piece for piece in _read_pieces(outputs) if piece.num_rows]
    if not pieces:
        raise SelectionError("no shard sent candidates")

    def gather(name: str, dtype: Any) -> np.ndarray:
        return np.concatenate([piece.column(name).to_numpy().astype(dtype) for piece in pieces])

    paths = np.concatenate([np.asarray(piece.column(SHARD_FILE).to_pylist(), dtype=object) for piece in pieces])
    ranks = {path: rank for rank, path in enumerate(sorted(set(paths), key=_path_key))}
    file_rank = np.array([ranks[path] for path in paths], dtype=np.int64)
    row = gather(SHARD_ROW, np.int64)
    order = np.lexsort((row, file_rank))
    piece = np.repeat(np.arange(len(pieces)), [p.num_rows for p in pieces])[order]
    piece_row = np.concatenate([np.arange(p.num_rows) for p in pieces])[order]
    probabilities = np.column_stack([gather(SHARD_PROBABILITY + str(j), np.float64)
                                     for j in range(len(first["classes"]))])
    vectors = None
    if vector_columns and _is_list(pieces[0].schema.field(vector_columns[0]).type):  # EMBEDDING_FIELD
        vectors = np.concatenate([_arrow_matrix(piece.column(vector_columns[0]), vector_columns[0], np.float32, 0)
                                  for piece in pieces])[order]
    elif vector_columns:
        vectors = np.column_stack([gather(name, np.float32) for name in vector_columns])[order]
    ids = pd.concat([p.select([config.id_field]).to_pandas()[config.id_field] for p in pieces], ignore_index=True)
    return MergedPool(ids=ids.iloc[order].reset_index(drop=True), probabilities=probabilities[order],
                      classes=first["classes"], labeled=np.zeros(order.size, dtype=bool), vectors=vectors,
                      score_columns=first["score_columns"], score_interpretation=first["score_interpretation"],
                      vector_columns=vector_columns, vector_source=first["vector_source"],
                      scores=gather(SHARD_SCORE, np.float64)[order], weights=gather(SHARD_WEIGHT, np.float64)[order],
                      file_rank=file_rank[order], row=row[order], pieces=pieces, piece=piece, piece_row=piece_row)


def _merged_rows(pool: MergedPool, chosen: np.ndarray, columns: Sequence[str], schema: Any,
                 dtypes: Dict[str, Any]) -> pd.DataFrame:
    """Full rows of ``chosen`` (positions in the pool, in rank order).

    Parquet pieces are cast to the types all shards agree on and converted as ``ParquetSource.rows_at`` converts
    a single run's rows; csv/tsv pieces are converted one by one and ``dtypes`` applied (``_merged_dtypes``).
    """
    import pyarrow as pa

    by_input_order = np.sort(chosen)
    tables = []
    for number in dict.fromkeys(pool.piece[by_input_order].tolist()):  # one piece per file, in input order
        rows = by_input_order[pool.piece[by_input_order] == number]
        tables.append(pool.pieces[number].select(list(columns)).take(pa.array(pool.piece_row[rows])))
    if schema is not None:
        tables = [table if table.schema.equals(schema) else table.cast(schema) for table in tables]
        merged = _arrow_to_pandas(pa.concat_tables(tables) if tables else schema.empty_table())
    else:
        frames = [table.to_pandas() for table in tables]
        merged = pd.concat(frames, ignore_index=True) if frames else pool.pieces[0].select(
            list(columns)).slice(0, 0).to_pandas()
        for name, dtype in dtypes.items():
            if merged[name].dtype != dtype:
                merged[name] = merged[name].astype(dtype)
    inverse = np.searchsorted(by_input_order, chosen)
    return merged.iloc[inverse].reset_index(drop=True)


def _agreed_schema(manifests: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> Any:
    """The Arrow types a single run would read every column of the shards' parquet input as
    (``agreed_arrow_type`` over the shards' agreed types, as ``_schema_text`` wrote them)."""
    import base64

    import pyarrow as pa

    schemas = [pa.ipc.read_schema(pa.py_buffer(base64.b64decode(manifest["arrow_schema"]))) for manifest in manifests]
    return pa.schema([pa.field(name, agreed_arrow_type([schema.field(name).type for schema in schemas]))
                      for name in columns])


def _merged_dtypes(manifests: Sequence[Mapping[str, Any]]) -> Dict[str, Any]:
    """Numeric columns whose type differs between shards, and the type a single run's concat gives them.

    A single run concatenates all CSV files; a column that is int64 in one shard and float64 in
    another is float64 there. (Parquet runs concatenate only the pieces they select from, see docs.)
    """
    seen: Dict[str, set] = {}
    for manifest in manifests:
        for name, dtype in manifest["column_dtypes"].items():
            seen.setdefault(name, set()).add(dtype)
    result = {}
    for name, types in seen.items():
        if len(types) > 1:
            try:
                numpy_types = [np.dtype(text) for text in types]
            except TypeError:
                continue
            if all(t.kind in "iuf" for t in numpy_types):
                result[name] = np.result_type(*numpy_types)
    return result


def merge_select(input_dir: Path, config: SelectionConfig, skipped: Sequence[Path] = (),
                 calibration: Optional[CalibrationTable] = None) -> Tuple[SelectionResult, InputFacts]:
    """The merge role: check all shards, then select from their candidates as a single run would.

    ``skipped``: the output folders, never read (they may lie inside ``input_dir``)."""
    outputs = read_shard_outputs(input_dir, skipped)
    hosts = check_shard_manifests([output.manifest for output in outputs], config)
    outputs = sorted(outputs, key=lambda output: hosts.index(output.manifest["host"]))
    manifests = [output.manifest for output in outputs]
    with_rows = [manifest for manifest in manifests if manifest["pool_size"]]
    first_shard = min(with_rows, key=lambda manifest: _path_key(manifest["input_files"][0]))  # a single run's
    first = first_shard["details"]  # column order and reading come from its first file
    counts = {key: sum(manifest[key] for manifest in manifests) for key in POOL_COUNTS}
    if counts["candidate_count"] == 0:
        raise no_candidates_error(strategy_for(config.selection_strategy), counts["pool_size"], config.label_field)
    check_calibration_agreement(manifests, calibration)
    pool = _read_merged_pool(outputs, config, first)
    _check_ids(pool.ids, config.id_field)
    pool = pool._replace(calibration=_checked_calibration(pool, calibration, config.id_field))
    selection, guarantee = _merge_strategy(config, pool, outputs, counts["candidate_count"])
    totals = PoolTotals(counts, add_pool_facts([manifest["pool_facts"] for manifest in with_rows]),
                        merged_stopping_counts([manifest["stopping"] for manifest in with_rows]))
    formats = {manifest["input_format"] for manifest in with_rows}
    schema = _agreed_schema(with_rows, first_shard["columns"]) if formats == {"parquet"} else None
    dtypes = {} if "parquet" in formats else _merged_dtypes(with_rows)
    sharding = dict(guarantee, hosts=hosts, config_fingerprint=config_fingerprint(config),
                    shards=[{key: manifest[key] for key in ("host", "pool_size", "candidate_count", "forwarded_count")}
                            for manifest in manifests], merged_candidates=int(len(pool.ids)))
    summary = summarize_selection(pool, selection, config, totals, pool.calibration)
    note = "; sharded run: the candidates are the rows the shards sent to the merge"  # what the projection draws
    summary = summary._replace(sharding=sharding, drawing=summary.drawing and dict(summary.drawing, note=note))
    result = annotated_result(summary, selection, config,
                              lambda rows: _merged_rows(pool, rows, first_shard["columns"], schema, dtypes))
    input_files = sorted((name for manifest in manifests for name in manifest["input_files"]), key=_path_key)
    return result, InputFacts(input_files, formats.pop() if len(formats) == 1 else "mixed",
                              {} if schema is None else {field.name: field.type for field in schema})


def calibration_fingerprint(calibration: Optional[CalibrationTable]) -> Optional[str]:
    """SHA-256 of the calibration arrays, so that the merge can check every shard read the same rows."""
    if calibration is None:
        return None
    digest = hashlib.sha256(np.ascontiguousarray(calibration.calibration.probabilities).tobytes())
    digest.update(np.ascontiguousarray(calibration.calibration.labels).tobytes())
    return digest.hexdigest()


def check_calibration_agreement(manifests: Sequence[Mapping[str, Any]],
                                calibration: Optional[CalibrationTable]) -> None:
    own = calibration_fingerprint(calibration)
    for manifest in manifests:
        theirs = manifest.get("calibration_fingerprint")
        if theirs != own:
            how = ("read no calibration_data but the merge did" if theirs is None else
                   "read calibration_data but the merge got none" if own is None else
                   "read other calibration_data than the merge")
            raise SelectionError("shard {} {}: give every shard and the merge the same calibration_data".format(
                manifest["host"], how))


def _merge_strategy(config: SelectionConfig, pool: MergedPool, outputs: Sequence[ShardOutput],
                    candidate_count: int) -> Tuple[Selection, Dict[str, Any]]:
    """The strategy row's merge, and for SSL with calibration_data the per-class thresholds of its selection,
    found among the merged rows (they hold every selected row and, per class, every row a single run's rule
    would weigh)."""
    strategy = strategy_for(config.selection_strategy)
    if strategy.batched and config.batch_size >= candidate_count:
        logger.info("BATCH_SIZE=%d is not smaller than the %d candidates: selecting them all", config.batch_size,
                    candidate_count)
    selection, guarantee = strategy.sharding.merge(config, pool, outputs)
    if strategy.use_case == "ssl" and pool.calibration is not None and selection.class_thresholds is None:
        thresholds = make_sampler(config).class_thresholds(Candidates(pool.probabilities), selection)
        selection = selection._replace(class_thresholds=thresholds)
    return selection, guarantee


# ---- Writing: result files, markers and the output folders' ownership ---------------------------------------------

def save_selected_samples(selected_df: pd.DataFrame, output_dir: str, output_format: str = "csv",
                          metadata: Optional[Dict[str, Any]] = None,
                          arrow_types: Optional[Mapping[str, Any]] = None) -> str:
    """Write ``selected_samples.<output_format>`` atomically (temporary name, then rename); return its path.

    ``metadata``, when given, is also written next to it as ``selection_metadata.json``.
    ``output_format`` is case-insensitive. ``arrow_types`` (the input's, for parquet output) keep the type
    of a column whose selected cells are all missing, which pandas alone would write as null.
    """
    output_format = str(output_format).lower()
    if output_format not in OUTPUT_FORMATS:
        raise SelectionError("unsupported output format {!r}: expected one of {}".format(
            output_format, ", ".join(OUTPUT_FORMATS)))
    path = Path(output_dir) / "{}.{}".format(SAMPLES_BASENAME, output_format)
    path.parent.mkdir(parents=True, exist_ok=True)
    frame = selected_df.reset_index(drop=True)
    if output_format == "parquet":
        _write_atomically(path, lambda target: _write_arrow(_typed_table(frame, arrow_types or {}), target))
    else:
        frame = _with_json_cells(frame)
        _write_atomically(path, lambda target: frame.to_csv(str(target), sep=_SEPARATORS[output_format],
                                                            index=False))
    logger.info("Wrote %d selected rows to %s", len(frame), path)
    if metadata is not None:
        save_selection_metadata(metadata, output_dir)
    return str(path)


def _typed_table(frame: pd.DataFrame, arrow_types: Mapping[str, Any]) -> Any:
    """``frame`` as an Arrow table; columns pandas can only call null take their input type."""
    import pyarrow as pa

    table = pa.Table.from_pandas(frame, preserve_index=False)
    for position, field in enumerate(table.schema):
        if pa.types.is_null(field.type) and field.name in arrow_types:
            table = table.set_column(position, pa.field(field.name, arrow_types[field.name]),
                                     pa.nulls(table.num_rows, arrow_types[field.name]))
    return table


def _is_container(value: Any) -> bool:
    return isinstance(value, (list, tuple, dict, np.ndarray))


def _json_ready(value: Any) -> Any:
    """``value`` as plain Python for ``json.dumps``: float32 elements by their shortest float32 text (0.689,
    not 0.6890000104904175), float64 by Python's round-trip repr, arrays inside arrays as lists."""
    if isinstance(value, np.ndarray):
        if value.dtype == np.float32:
            return [float(str(element)) for element in value.ravel()] if value.ndim == 1 else [
                _json_ready(row) for row in value]
        return [_json_ready(element) for element in value.tolist()]
    if isinstance(value, (list, tuple)):
        return [_json_ready(element) for element in value]
    if isinstance(value, dict):
        return {str(key): _json_ready(element) for key, element in value.items()}
    if isinstance(value, np.float32):
        return float(str(value))
    if isinstance(value, np.generic):
        return value.item()
    return value


def _with_json_cells(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with every array or object cell as exact JSON text, the one way a CSV/TSV cell holds it."""
    containers = [name for name in frame.columns if frame[name].dtype == object
                  and frame[name].map(_is_container).any()]
    if not containers:
        return frame
    frame = frame.copy()
    for name in containers:
        frame[name] = frame[name].map(lambda value: json.dumps(_json_ready(value), separators=(",", ":"))
                                      if _is_container(value) else value)
    return frame


def save_selection_metadata(metadata: Dict[str, Any], metadata_dir: str) -> str:
    """Write ``selection_metadata.json`` atomically."""
    path = Path(metadata_dir) / METADATA_FILENAME
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(metadata, indent=2, default=_json_default, allow_nan=False)
    _write_atomically(path, lambda target: target.write_text(text + "\n", encoding="utf-8"))
    logger.info("Wrote selection metadata to %s", path)
    return str(path)


def save_selection_report(text: str, metadata_dir: Path) -> Path:
    """Write ``selection_report.html`` atomically; return its path."""
    path = metadata_dir / REPORT_FILENAME
    _write_atomically(path, lambda target: target.write_text(text, encoding="utf-8"))
    return path


RESULT_NAMES = (tuple("{}.{}".format(SAMPLES_BASENAME, fmt) for fmt in OUTPUT_FORMATS) + (METADATA_FILENAME,)
                + (REPORT_FILENAME,)
                + tuple(name for row in LABELING_FORMAT_TABLE for name in row.files))


def check_folders_apart(input_dir: Path, samples_dir: Path, metadata_dir: Path,
                        labeling_dir: Optional[Path] = None) -> None:
    """Refuse output folders that equal or contain the input folder, or equal each other; an output folder
    inside the input must hold nothing but this step's own files.

    Paths are compared after resolving links, so the step can neither write into its input nor read its
    own output back: the input walk skips the output folders inside the input (pytest's ``tmp_path`` with
    the outputs in ``tmp_path / "output"``). ``labeling_dir`` is checked too when this run writes labeling
    tasks.
    """
    source = _real(input_dir)
    outputs = [(SAMPLES_CHANNEL, samples_dir), (METADATA_CHANNEL, metadata_dir)]
    if labeling_dir is not None:
        outputs.append((LABELING_CHANNEL, labeling_dir))
    real_outputs = {_real(folder) for _, folder in outputs}
    for channel, folder in outputs:
        target = _real(folder)
        if _is_within(source, target):
            problem = "it is the input folder" if target == source else "it contains the input folder"
        elif _is_within(target, source):
            problem = _input_files_in_output(folder, real_outputs)
        else:
            problem = None
        if problem:
            raise SelectionError("output folder {} ({}) overlaps the input folder {}: {}; the step never writes into "
                                 "its input nor reads its output".format(folder, channel, input_dir, problem))
    for position, (channel, folder) in enumerate(outputs):
        for other_channel, other in outputs[position + 1:]:
            if _real(folder) == _real(other):
                raise SelectionError("the output folders {} and {} are the same folder; give each channel its "
                                     "own".format(channel, other_channel))


def _input_files_in_output(folder: Path, outputs: Collection[str]) -> Optional[str]:
    """Why the output ``folder`` inside the input is input too, or None when it holds only this step's files:
    the markers, the result files its ``_SUCCESS`` lists, dot-files (temporary names) and other output folders."""
    try:
        if not os.path.lexists(str(folder)):
            return None
        if not folder.is_dir():
            return "it lies inside the input and is not a folder"
        marker = folder / SUCCESS_MARKER
        listed = set(marker.read_text(encoding="utf-8", errors="replace").splitlines()) if marker.is_file() else set()
        for name in sorted(os.listdir(str(folder))):
            path = folder / name
            if name in (SUCCESS_MARKER, FAILURE_MARKER) or name.startswith(".") or _real(path) in outputs:
                continue
            ours = name in listed and (name in RESULT_NAMES or name.startswith(SHARD_PREFIX))
            if not (ours and path.is_file() and not path.is_symlink()):
                return ("it lies inside the input and holds {}, which no _SUCCESS of this step lists: choose an "
                        "empty folder".format(name))
    except OSError as error:
        return "it lies inside the input and cannot be listed ({})".format(error.strerror or _one_line(error))
    return None


def _ours(folder: Path) -> List[Path]:
    """Result files in ``folder`` that an earlier run provably wrote: those its ``_SUCCESS`` lists."""
    marker = folder / SUCCESS_MARKER
    if not marker.is_file():
        return []
    listed = marker.read_text(encoding="utf-8").splitlines()
    return [folder / name for name in listed if name in RESULT_NAMES and (folder / name).is_file()]


def _remove_ours(folder: Path, written: Iterable[Path] = ()) -> None:
    """Remove from ``folder`` this run's files, an earlier run's listed results, and both markers."""
    for path in list(written) + _ours(folder) + [folder / SUCCESS_MARKER, folder / FAILURE_MARKER]:
        if path.parent == folder and (path.is_file() or path.is_symlink()):
            path.unlink()


# _write_atomically's temporary names: "." + the final name + "." + mkstemp's 8 random characters + ".tmp".
_OWN_TEMPORARY = re.compile(r"\.(?P<name>.+)\.[a-z0-9_]{8}\.tmp\Z")
LOCK_NAME = ".active_sample_selection.lock"


def _is_own_temporary(name: str) -> bool:
    """A temporary file this step writes (and a run killed while writing leaves behind)."""
    match = _OWN_TEMPORARY.match(name)
    return bool(match) and (match.group("name") in RESULT_NAMES or match.group("name").startswith(SHARD_PREFIX))


class FolderInUseError(SelectionError):
    """Another run of this step holds an output folder: this run touches nothing in it."""

    def __init__(self, folder: Path) -> None:
        super().__init__("output folder {} is in use by another run of this step (it holds {}): wait for that run to "
                         "finish, or give this run its own folders".format(folder, LOCK_NAME))


def _lock_folder(folder: Path) -> Optional[int]:
    """An exclusive lock on ``folder`` (a descriptor to ``_unlock_folder``); the kernel releases it when the
    process dies, so a killed run never blocks the next. None where the system has no ``flock``."""
    try:
        import fcntl
    except ImportError:  # not POSIX: no lock
        return None
    path = str(folder / LOCK_NAME)
    while True:
        descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(descriptor)
            raise FolderInUseError(folder) from None
        try:
            current = os.stat(path).st_ino == os.fstat(descriptor).st_ino
        except FileNotFoundError:
            current = False
        if current:  # else the run that held it removed the file in between: lock the one there now
            return descriptor
        os.close(descriptor)


def _unlock_folder(folder: Path, descriptor: Optional[int]) -> None:
    if descriptor is None:
        return
    try:
        os.unlink(str(folder / LOCK_NAME))  # before releasing it: no later run can lock a removed file
    except OSError:
        pass
    os.close(descriptor)


def claim_output_folders(folders: Sequence[Path]) -> List[Tuple[Path, Optional[int]]]:
    """Create the output folders and lock each for this run: one writer per folder at a time.

    A folder that another run holds is a ``FolderInUseError`` (the locks taken so far are released).
    """
    claimed: List[Tuple[Path, Optional[int]]] = []
    try:
        for folder in dict.fromkeys(folders):
            if folder.exists() and not folder.is_dir():
                raise SelectionError("output path {} exists and is not a folder".format(folder))
            folder.mkdir(parents=True, exist_ok=True)
            claimed.append((folder, _lock_folder(folder)))
    except BaseException as error:
        release_output_folders(claimed)
        if isinstance(error, OSError):
            raise _unwritable(error) from None
        raise
    return claimed


def _unwritable(error: OSError) -> SelectionError:
    return SelectionError("cannot write to the output folder {}: {}".format(
        error.filename or "", error.strerror or _one_line(error)))


def release_output_folders(claimed: Sequence[Tuple[Path, Optional[int]]]) -> None:
    for folder, descriptor in claimed:
        _unlock_folder(folder, descriptor)


def _remove_own_temporaries(folder: Path) -> None:
    """Remove this step's temporary files that a killed run left in ``folder`` (held by this run)."""
    for name in sorted(os.listdir(str(folder))):
        if _is_own_temporary(name) and (folder / name).is_file():
            logger.info("Removing %s, left by a run of this step that did not finish", folder / name)
            (folder / name).unlink()


def _prepare_outputs(folders: Sequence[Path]) -> None:
    """Remove an earlier run's results from the output folders (created by ``claim_output_folders``), and
    nothing else.

    A result name (selected_samples.*, selection_metadata.json, the labeling tasks files) that no earlier
    ``_SUCCESS`` lists was not provably written by this step: it is left alone and the run stops.
    """
    try:
        for folder in folders:
            proven = {path.name for path in _ours(folder)}
            foreign = [name for name in RESULT_NAMES if (folder / name).exists() and name not in proven]
            if foreign:
                raise SelectionError("output folder {} already holds {}, which no _SUCCESS of this step lists: it "
                                     "is left untouched; remove it or choose an empty folder".format(
                                         folder, foreign[0]))
        for folder in folders:
            _remove_ours(folder)
            _remove_own_temporaries(folder)
            if not os.access(str(folder), os.W_OK):
                raise PermissionError(errno.EACCES, "Permission denied", str(folder))
    except OSError as error:
        raise _unwritable(error) from None


def _present(*folders: Optional[Path]) -> Tuple[Path, ...]:
    return tuple(folder for folder in folders if folder is not None)


def _named_folder(paths: Any, channel: str) -> Optional[Path]:
    """The folder ``paths`` names usably for ``channel``, or None (no error: failures are recorded with it)."""
    folder = paths.get(channel) if isinstance(paths, Mapping) else None
    return Path(folder) if isinstance(folder, (str, os.PathLike)) and str(folder) else None


def _output_folders(output_paths: Any) -> List[Path]:
    """The output folders that ``output_paths`` names usably (no error when it does not)."""
    return list(_present(*(_named_folder(output_paths, channel) for channel in (SAMPLES_CHANNEL, METADATA_CHANNEL))))


def _record_failure(folders: Sequence[Path], input_dir: Optional[Path], error: BaseException,
                    written: Iterable[Path] = (), folders_checked: bool = False) -> None:
    """Leave ``_FAILURE`` (the one-line reason) and none of this step's results in every output folder
    that can be written. Folders inside the input are written only once ``check_folders_apart`` accepted
    them (``folders_checked``): before that, or when it refused them, nothing is written in the input tree."""
    written = list(written)
    for folder in dict.fromkeys(folders):
        if not folders_checked and input_dir is not None and _is_within(_real(folder), _real(input_dir)):
            continue
        try:
            if folder.exists() and not folder.is_dir():
                continue
            folder.mkdir(parents=True, exist_ok=True)
            _remove_ours(folder, written)
            (folder / FAILURE_MARKER).write_text(_one_line(error) + "\n", encoding="utf-8")
        except OSError as marker_error:
            logger.warning("Could not write %s in %s: %s", FAILURE_MARKER, folder, _one_line(marker_error))


def _mark_success(folder: Path, written: Sequence[Path]) -> Path:
    """``_SUCCESS`` listing the files this run wrote in ``folder``, so a later run may remove exactly those."""
    names = [path.name for path in written if path.parent == folder]
    marker = folder / SUCCESS_MARKER
    try:
        marker.write_text("".join(name + "\n" for name in names), encoding="utf-8")
    except OSError as error:
        raise SelectionError("cannot write {}: {}".format(marker, error.strerror or _one_line(error))) from None
    return marker


# ---- main and the command line ------------------------------------------------------------------------------------

def _library_versions() -> Dict[str, Optional[str]]:
    arrow = sys.modules.get("pyarrow")
    return {"python": platform.python_version(), "numpy": np.__version__, "pandas": pd.__version__,
            "pyarrow": getattr(arrow, "__version__", None)}


def _job_type(job_args: Any) -> str:
    """``job_type`` from an argparse Namespace or a mapping."""
    if isinstance(job_args, (str, bytes)):
        raise SelectionError("job_args must be an argparse.Namespace or a mapping holding job_type, got the {} {!r}"
                             .format(type(job_args).__name__, job_args))
    job_type = job_args.get("job_type") if isinstance(job_args, Mapping) else getattr(job_args, "job_type", None)
    if not isinstance(job_type, str) or not job_type.strip():
        raise SelectionError("--job_type is required, e.g. --job_type ssl_selection or active_learning_selection")
    return job_type.strip()


def _channel(paths: Any, key: str, kind: str) -> Path:
    if not isinstance(paths, Mapping):
        raise SelectionError("{} paths must be a mapping of channel names to folders, not {}".format(
            kind, type(paths).__name__))
    value = paths.get(key)
    if not value:
        raise SelectionError("{} path {!r} is missing".format(kind, key))
    if not isinstance(value, (str, os.PathLike)):
        raise SelectionError("{} path {!r} must be a string or a path, not {}".format(kind, key, type(value).__name__))
    return Path(value)


def _optional_inputs(input_paths: Any) -> Dict[str, Path]:
    """The folders of the optional input channels (``OPTIONAL_INPUT_CHANNELS``) this run was given, by channel.

    Missing, None and "" mean not given; a folder that is named must exist.
    """
    folders = {}
    for channel in OPTIONAL_INPUT_CHANNELS:
        value = input_paths.get(channel) if isinstance(input_paths, Mapping) else None
        if value is None or (isinstance(value, str) and value == ""):
            continue
        folders[channel] = _channel(input_paths, channel, "input")
        if not folders[channel].is_dir():
            raise SelectionError("input folder {} ({}) does not exist or is not a folder".format(
                folders[channel], channel))
    return folders


def _check_optional_inputs_apart(inputs: Mapping[str, Path], outputs: Sequence[Path]) -> None:
    """Optional inputs may neither hold nor lie in an output folder (links resolved), like evaluation_data."""
    for channel, folder in inputs.items():
        for output in outputs:
            if _is_within(_real(output), _real(folder)) or _is_within(_real(folder), _real(output)):
                raise SelectionError("output folder {} overlaps the input folder {} ({}): the step never writes "
                                     "into its input nor reads its output; use separate folders".format(
                                         output, folder, channel))


def _outside_optional_inputs(folders: Sequence[Path], input_paths: Any) -> List[Path]:
    """``folders`` without those inside a named optional input folder, where no _FAILURE may be written."""
    inputs = [_real(folder) for folder in _present(*(_named_folder(input_paths, channel)
                                                     for channel in OPTIONAL_INPUT_CHANNELS))]
    return [folder for folder in folders if not any(_is_within(_real(folder), other) for other in inputs)]


def _read_previous(folder: Optional[Path], config: SelectionConfig,
                   outputs: Sequence[Path]) -> Optional[PredictedClasses]:
    """Last round's predictions when previous_predictions is given (read by the shards, not by a merge)."""
    if folder is None:
        return None
    if config.selection_role == "merge":
        raise SelectionError("{} is read by the shard step (each shard matches its own rows); the merge adds up "
                             "their counts: give it to the shard step, not to the merge".format(PREVIOUS_CHANNEL))
    return read_previous_predictions(folder, config, forbidden=outputs)


def _labeling_channel(output_paths: Any, environ_vars: Any) -> Optional[Path]:
    """The labeling_tasks folder when this run may write tasks: its path is given and LABELING_FORMAT is set to
    something other than none. Read raw, before the variables are parsed and without raising, so that a
    failure is recorded there too."""
    raw = environ_vars.get("LABELING_FORMAT") if isinstance(environ_vars, Mapping) else None
    requested = "" if raw is None else str(raw).strip().lower()
    labeling = LABELING_FORMATS_BY_NAME.get(requested or ENV_VARS_BY_NAME["LABELING_FORMAT"].default)
    return _named_folder(output_paths, LABELING_CHANNEL) if labeling is None or labeling.files else None


def _check_labeling_channel(config: SelectionConfig, labeling_dir: Optional[Path]) -> None:
    if LABELING_FORMATS_BY_NAME[config.labeling_format].files and labeling_dir is None:
        raise SelectionError("LABELING_FORMAT={} needs the output path {!r} (--{} on the command line)".format(
            config.labeling_format, LABELING_CHANNEL, LABELING_CHANNEL))


def _calibration_channel(folder: Optional[Path], config: SelectionConfig) -> Optional[Path]:
    """The calibration_data ``folder`` when one is given, checked against the settings (``main`` checks it lies
    apart from the outputs, as every optional input)."""
    strategy = strategy_for(config.selection_strategy)
    if folder is None:
        if strategy.needs_calibration:
            raise _no_calibration_error(config)
        return None
    if strategy.use_case != "ssl":
        raise SelectionError("calibration_data is given but SELECTION_STRATEGY={} selects rows for humans to label: "
                             "calibration_data measures pseudo-label precision, for the SSL strategies {}; leave it "
                             "out".format(config.selection_strategy, ", ".join(SSL_STRATEGIES)))
    return folder


def _write_labeling_tasks(result: SelectionResult, config: SelectionConfig,
                          labeling_dir: Optional[Path]) -> Tuple[List[Path], Dict[str, Any]]:
    """Write the tasks when LABELING_FORMAT asks for them; return their paths and the metadata's ``labeling``
    entry (nothing when there are no tasks)."""
    if not LABELING_FORMATS_BY_NAME[config.labeling_format].files or labeling_dir is None:
        return [], {}
    files = labeling_files(result.rows, result.predictions, config)
    paths = save_labeling_files(files, labeling_dir)
    return paths, {"labeling": {"format": config.labeling_format, "task_count": int(len(result.rows)),
                                "files": sorted(files)}}


def main(
    input_paths: Mapping[str, str],
    output_paths: Mapping[str, str],
    environ_vars: Mapping[str, Any],
    job_args: Any,
) -> Dict[str, Any]:
    """Select rows from the prediction table in ``input_paths["evaluation_data"]``.

    ``input_paths["previous_predictions"]`` (optional) is last round's prediction table: the metadata's
    ``stopping`` block then measures how much the two rounds' predictions agree.

    SELECTION_ROLE=shard instead writes one instance's candidates and its manifest (returned in the
    metadata as ``sharding``), and SELECTION_ROLE=merge selects from all shards' outputs found in
    ``evaluation_data`` (docs/scaling.md).
    Writes ``selected_samples/selected_samples.<fmt>`` and ``selection_metadata/selection_metadata.json``
    atomically (with ``LABELING_FORMAT`` also the tasks files in ``labeling_tasks``), then ``_SUCCESS``
    (listing them) in every folder, and returns the metadata. This is the
    failure boundary: on any error every output folder that can be written is left with only
    ``_FAILURE`` (holding the one-line reason), nothing outside this step's own files is touched, and
    the error is re-raised; expected errors are ``SelectionError``. ``environ_vars`` values are strings
    (ints and floats are read through ``str``); ``job_args`` is a Namespace or a mapping.
    """
    started = time.time()
    written: List[Path] = []
    claimed: List[Tuple[Path, Optional[int]]] = []
    labeling_dir = _labeling_channel(output_paths, environ_vars)
    folders_checked = False
    try:
        samples_dir = _channel(output_paths, SAMPLES_CHANNEL, "output")
        metadata_dir = _channel(output_paths, METADATA_CHANNEL, "output")
        input_dir = _channel(input_paths, INPUT_CHANNEL, "input")
        check_folders_apart(input_dir, samples_dir, metadata_dir, labeling_dir)
        outputs = _present(samples_dir, metadata_dir, labeling_dir)
        optional_inputs = _optional_inputs(input_paths)
        _check_optional_inputs_apart(optional_inputs, outputs)
        folders_checked = True  # before any output folder is created (claimed)
        claimed = claim_output_folders(outputs)
        config = parse_environment(environ_vars)
        _check_labeling_channel(config, labeling_dir)
        calibration_dir = _calibration_channel(optional_inputs.get(CALIBRATION_CHANNEL), config)
        job_type = _job_type(job_args)
        resources = check_role_fits_instances(config)
        previous = _read_previous(optional_inputs.get(PREVIOUS_CHANNEL), config, outputs)
        _prepare_outputs(outputs)
        logger.info("Strategy %s (use case %s, job type %s, role %s)", config.selection_strategy, config.use_case,
                    job_type, config.selection_role)
        result, inputs, role_files = _run_role(config, input_dir, samples_dir, metadata_dir, outputs, calibration_dir,
                                               previous, resources, job_type)
        for path, write in role_files:
            written.append(path)
            _write_atomically(path, write)
        output_format = "parquet" if result.rows is None else resolve_output_format(config.output_format, inputs.fmt)
        labeling: Dict[str, Any] = {}
        if result.rows is not None:
            written.append(Path(save_selected_samples(result.rows, str(samples_dir), output_format,
                                                      arrow_types=inputs.arrow_types)))
            tasks_written, labeling = _write_labeling_tasks(result, config, labeling_dir)
            written += tasks_written
        metadata = selection_metadata(config, job_type, result, inputs, output_format,
                                      os.path.relpath(str(written[0]), str(samples_dir)), labeling, started)
        if result.rows is not None:
            written.append(Path(save_selection_metadata(metadata, str(metadata_dir))))
            written.append(save_selection_report(selection_report_html(metadata, result.drawing), metadata_dir))
        for folder in outputs:
            written.append(_mark_success(folder, written))
    except BaseException as error:
        folders = _outside_optional_inputs(_output_folders(output_paths) + list(_present(labeling_dir)), input_paths)
        if isinstance(error, FolderInUseError):  # only the folders this run holds are its to mark
            folders = [folder for folder, _ in claimed]
        _record_failure(folders, _named_folder(input_paths, INPUT_CHANNEL), error, written, folders_checked)
        raise
    finally:
        release_output_folders(claimed)
    if result.rows is not None:  # a shard said what it sends; the merge reports the selection
        logger.info("Selected %d of %d candidates (pool of %d) with %s in %.2fs", metadata["selected_count"],
                    metadata["candidate_count"], metadata["pool_size"], config.selection_strategy,
                    metadata["elapsed_seconds"])
        for line in summary_lines(metadata):
            logger.info("%s", line)
        logger.info("Selection report: %s", metadata_dir / REPORT_FILENAME)
    return metadata


def _run_role(config: SelectionConfig, input_dir: Path, samples_dir: Path, metadata_dir: Path,
              outputs: Sequence[Path], calibration_dir: Optional[Path], previous: Optional[PredictedClasses],
              resources: Optional[ResourceConfig], job_type: str
              ) -> Tuple[SelectionResult, InputFacts, List[Tuple[Path, Callable[[Path], None]]]]:
    """The selection of this run's SELECTION_ROLE, its input, and the files only this role writes (a shard's)."""
    source = scan_input(input_dir, config, forbidden=outputs) if config.selection_role == "single" else None
    calibration = None if calibration_dir is None else read_calibration(calibration_dir, config, outputs)
    if config.selection_role == "merge":
        return merge_select(input_dir, config, skipped=outputs, calibration=calibration) + ([],)
    if config.selection_role == "shard":
        return run_shard(input_dir, samples_dir, metadata_dir, config, resources, job_type, previous, calibration)
    logger.info("Reading %d %s file(s) from %s", len(source.files), source.fmt, source.root)
    rows = open_source(source)
    result = run_selection(rows.pool(config, keep_ids=previous is not None or calibration is not None), config,
                           rows.rows_at, previous, calibration)
    inputs = InputFacts([os.path.relpath(str(f.path), str(input_dir)) for f in source.files], source.fmt,
                        source.arrow_types)
    return result, inputs, []


def selection_metadata(config: SelectionConfig, job_type: str, result: SelectionResult, inputs: InputFacts,
                       output_format: str, output_file: str, labeling: Mapping[str, Any],
                       started: float) -> Dict[str, Any]:
    """The run's metadata, in every role: what ``main`` returns (a shard's holds its manifest as ``sharding``)."""
    metadata = {
        "strategy": config.selection_strategy,
        "use_case": config.use_case,
        "job_type": job_type,
        "config": settings_read(config),
        **result.counts,
        "output_format": output_format,
        "output_file": output_file,
        "input_files": inputs.files,
        "details": dict(result.details, input_format=inputs.fmt),
        **labeling,
        "library_versions": _library_versions(),
        "timestamp": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    if result.sharding is not None:
        metadata["sharding"] = result.sharding
    metadata["stopping"] = None if result.stopping is None else stopping_block(
        result.stopping, result.counts["labeled_count"], config)
    metadata["elapsed_seconds"] = round(time.time() - started, 3)
    return metadata


class _ArgumentParser(argparse.ArgumentParser):
    """Reports a bad command line as a SelectionError, so it gets ``_FAILURE`` like any other bad input."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise SelectionError("bad command line: {}".format(message))


def build_argument_parser() -> argparse.ArgumentParser:
    parser = _ArgumentParser(
        allow_abbrev=False,
        description="Select rows from a prediction table for pseudo-labeling (ssl) or human labeling "
                    "(active learning). Configuration comes from environment variables; see ENV_VARS.")
    parser.add_argument("--job_type", help="job type recorded in the metadata, e.g. ssl_selection")
    parser.add_argument("--" + INPUT_CHANNEL, default=CONTAINER_INPUT_PATHS[INPUT_CHANNEL],
                        help="folder with the prediction table (default: %(default)s)")
    for channel in OPTIONAL_INPUT_CHANNELS:
        parser.add_argument("--" + channel, default=CONTAINER_INPUT_PATHS[channel],
                            help="optional input folder (default: %(default)s, read when it exists)")
    for channel, path in CONTAINER_OUTPUT_PATHS.items():
        parser.add_argument("--" + channel, default=path, help="output folder (default: %(default)s)")
    return parser


def _paths_despite_errors(argv: Optional[Sequence[str]]) -> Dict[str, str]:
    """The channel folders of a command line that failed to parse: every ``--channel value`` found."""
    tokens = list(sys.argv[1:] if argv is None else argv)
    paths = dict(CONTAINER_INPUT_PATHS, **CONTAINER_OUTPUT_PATHS)
    for position, token in enumerate(tokens):
        for channel in paths:
            flag = "--" + channel
            if token.startswith(flag + "="):
                paths[channel] = token[len(flag) + 1:]
            elif token == flag and position + 1 < len(tokens) and not tokens[position + 1].startswith("--"):
                paths[channel] = tokens[position + 1]
    return paths


def _folders_are_apart(paths: Mapping[str, str]) -> bool:
    """Whether ``check_folders_apart`` accepts the input and output folders of ``paths`` (no error raised)."""
    try:
        check_folders_apart(Path(paths[INPUT_CHANNEL]), Path(paths[SAMPLES_CHANNEL]), Path(paths[METADATA_CHANNEL]))
    except SelectionError:
        return False
    return True


def _command_line_inputs(args: argparse.Namespace) -> Dict[str, str]:
    """Input folders of a parsed command line; an optional channel left at its container path is read only
    when that folder exists (SageMaker mounts only the inputs a job was given)."""
    paths = {INPUT_CHANNEL: getattr(args, INPUT_CHANNEL)}
    for channel in OPTIONAL_INPUT_CHANNELS:
        given = getattr(args, channel)
        if given != CONTAINER_INPUT_PATHS[channel] or os.path.isdir(given):
            paths[channel] = given
    return paths


def _configure_logging() -> None:
    root = logging.getLogger()
    if not root.handlers:
        logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                            format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logger.setLevel(logging.INFO)


def cli(argv: Optional[Sequence[str]] = None, environ: Optional[Mapping[str, str]] = None) -> int:
    """Command-line entry point; returns the process exit code (0 success, 1 failure)."""
    _configure_logging()
    parser = build_argument_parser()
    try:
        args = parser.parse_args(argv)
    except SelectionError as error:
        paths = _paths_despite_errors(argv)
        _record_failure(_output_folders(paths), _named_folder(paths, INPUT_CHANNEL), error,
                        folders_checked=_folders_are_apart(paths))
        logger.error("%s", _one_line(error))
        return 1
    environ = os.environ if environ is None else environ
    environ_vars = {var.name: environ.get(var.name) for var in ENV_VARS}
    input_paths = _command_line_inputs(args)
    output_paths = {channel: getattr(args, channel) for channel in CONTAINER_OUTPUT_PATHS}
    try:
        main(input_paths, output_paths, environ_vars, args)
    except SelectionError as error:
        logger.error("%s", _one_line(error))
        return 1
    except Exception:
        logger.error("Selection failed unexpectedly:\n%s", traceback.format_exc())
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(cli())
