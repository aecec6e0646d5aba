"""Select rows from a model's prediction table for pseudo-labeling or for human labeling.

This is the entry script of the ActiveSampleSelection SageMaker processing step. It is uploaded to the
container on its own, so it depends only on the standard library, numpy and pandas (pyarrow for parquet),
and it must keep running on Python 3.9 with pandas 1.1.3 and numpy 1.24.1 (SageMaker sklearn 1.2-1 image).

Two use cases share one contract:

* semi-supervised learning ("ssl"): ``confidence_threshold`` and ``top_k_per_class`` pick rows whose
  prediction is confident enough to be used as a pseudo-label;
* active learning: ``uncertainty``, ``diversity`` (k-center greedy core-set, Sener & Savarese 2018, or the
  rows nearest k-means centroids; optionally among the most uncertain rows only, the hybrid of Zhdanov 2019)
  and ``badge`` (k-means++ seeding on gradient embeddings, Ash et al. 2020) pick rows worth a human label.

Run in the container as ``python active_sample_selection.py --job_type ssl_selection`` with the
environment variables listed in ``ENV_VARS``; locally, the channels can be pointed at folders with
``--evaluation_data``, ``--selected_samples``, ``--selection_metadata`` and ``--labeling_tasks``. Tests call
``main``. With ``LABELING_FORMAT`` set, an active-learning selection is also written as labeling tasks: a
SageMaker Ground Truth input manifest or a Label Studio tasks file with its labeling configuration.

The file reads in the order the data flows: constants; settings (``ENV_VARS``, ``parse_environment``);
loading; scores and pool; samplers; engine (``STRATEGY_TABLE``, ``run_selection``); sharding; labeling
tasks; writing; ``main`` and the command line. ``ENV_VARS`` is declared in the settings section and built
once the strategy table exists, since its SELECTION_STRATEGY choices are the table's names.
"""

import argparse
import csv
import datetime
import errno
import hashlib
import gzip
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
from typing import Any, Callable, Dict, Iterable, List, Mapping, NamedTuple, Optional, Sequence, Tuple
from xml.sax.saxutils import quoteattr

import numpy as np
import pandas as pd

logger = logging.getLogger("active_sample_selection")


# ---- Constants and errors ------------------------------------------------------------------------------------

USE_CASES = ("ssl", "active_learning", "auto")
UNCERTAINTY_MODES = ("margin", "entropy", "least_confidence")
METRICS = ("euclidean", "cosine")
DIVERSITY_METHODS = ("kcenter", "kmeans")
OUTPUT_FORMATS = ("csv", "tsv", "parquet")
SELECTION_ROLES = ("single", "shard", "merge")
LABELING_FORMATS = ("none", "ground_truth", "label_studio")

INPUT_CHANNEL = "evaluation_data"
SAMPLES_CHANNEL = "selected_samples"
METADATA_CHANNEL = "selection_metadata"
LABELING_CHANNEL = "labeling_tasks"  # optional: used only with a LABELING_FORMAT
CONTAINER_INPUT_PATHS = {INPUT_CHANNEL: "/opt/ml/processing/input/evaluation_data"}
CONTAINER_OUTPUT_PATHS = {
    SAMPLES_CHANNEL: "/opt/ml/processing/output/selected_samples",
    METADATA_CHANNEL: "/opt/ml/processing/output/selection_metadata",
    LABELING_CHANNEL: "/opt/ml/processing/output/labeling_tasks",
}
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
DATA_SOURCE_SSL = "pseudo_labeled"
DATA_SOURCE_ACTIVE_LEARNING = "active_learning"

PROBABILITY_SUM_TOLERANCE = 1e-3
PROBABILITY_RANGE_TOLERANCE = 1e-6  # probabilities this far outside [0, 1] are rounding noise, clipped
MIXED_SCORES_SHARE = 0.01  # logits whose rows look like probabilities this often are a mixed table: an error
MIXED_SINGLE_SCORE_SHARE = 0.1  # one score column with fewer values outside [0, 1] than this is a mixed column
_CHUNK_ROWS = 1 << 20  # rows per block where a whole-table temporary would be large
MAX_SEED = 2**32 - 1


class SelectionError(ValueError):
    """An expected failure caused by the input or the configuration; reported as one line."""


class NoDataFilesError(SelectionError, FileNotFoundError):
    """The input folder holds no data files (also a ``FileNotFoundError``, as seed 000 specifies)."""


def _one_line(error: Any) -> str:
    return " ".join(str(error).split()) or type(error).__name__


def _preview(names: Sequence[Any], limit: int = 8) -> str:
    names = list(names)
    shown = ", ".join(str(name) for name in names[:limit])
    return shown + (" ... ({} in all)".format(len(names)) if len(names) > limit else "")


# ---- Settings: the environment variables, parsed and checked before any data is read -------------------------

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


def _declare_env_vars(strategy_names: Sequence[str]) -> Tuple[EnvVar, ...]:
    """Every environment variable of the script contract; the strategy names come from STRATEGY_TABLE."""
    return (
        EnvVar("SELECTION_STRATEGY", "selection_strategy", "choice", None,
               "Selection strategy.", choices=tuple(strategy_names)),
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
               "Seed of badge's k-means++ sampling and of diversity's k-means.", minimum=0, maximum=MAX_SEED),
        EnvVar("CONFIDENCE_THRESHOLD", "confidence_threshold", "float", "0.9",
               "confidence_threshold: minimum max-probability of a selected row.", minimum=0.5, maximum=1.0),
        EnvVar("MAX_SAMPLES", "max_samples", "int", "0",
               "confidence_threshold: keep at most this many, the most confident (0 = no limit).", minimum=0),
        EnvVar("K_PER_CLASS", "k_per_class", "int", "100",
               "top_k_per_class: rows kept per predicted class.", minimum=1),
        EnvVar("UNCERTAINTY_MODE", "uncertainty_mode", "choice", "margin",
               "uncertainty, and diversity's pre-filter: how uncertainty is measured.", choices=UNCERTAINTY_MODES),
        EnvVar("BATCH_SIZE", "batch_size", "int", "32",
               "uncertainty, diversity, badge: number of rows to select.", minimum=1),
        EnvVar("METRIC", "metric", "choice", "euclidean",
               "diversity, badge: distance between embeddings.", choices=METRICS),
        EnvVar("SELECTION_ROLE", "selection_role", "choice", "single",
               "single: select from the whole input; shard: one instance of a multi-instance job picks its own "
               "candidates; merge: selects from every shard's candidates.", choices=SELECTION_ROLES),
        EnvVar("OVERSAMPLING", "oversampling", "int", "4",
               "diversity, badge with SELECTION_ROLE=shard: each shard picks OVERSAMPLING x BATCH_SIZE "
               "candidates.", minimum=1, maximum=1000),
        EnvVar("RESOURCE_CONFIG_PATH", "resource_config_path", "str", RESOURCE_CONFIG_PATH,
               "SageMaker's resource config (current_host, hosts), read by shard and merge; local runs point it "
               "at their own file."),
        EnvVar("DIVERSITY_METHOD", "diversity_method", "choice", "kcenter",
               "diversity: kcenter (greedy farthest-first from the labeled rows) or kmeans (k-means with "
               "BATCH_SIZE clusters, the row nearest each centroid).", choices=DIVERSITY_METHODS),
        EnvVar("UNCERTAINTY_PREFILTER", "uncertainty_prefilter", "int", "0",
               "diversity: choose among the UNCERTAINTY_PREFILTER x BATCH_SIZE most uncertain candidates by "
               "UNCERTAINTY_MODE only (the uncertain-and-diverse hybrid; 0 = all candidates).", minimum=0),
        EnvVar("LABELING_FORMAT", "labeling_format", "choice", "none",
               "Also write the active-learning selection as labeling tasks into labeling_tasks: a SageMaker "
               "Ground Truth input manifest, or Label Studio tasks with their labeling configuration.",
               choices=LABELING_FORMATS),
        EnvVar("LABELING_DATA_FIELD", "labeling_data_field", "str", "",
               "Column annotators see: a text, or an s3:// or https:// URI of the object to label. "
               "Required with a LABELING_FORMAT."),
    )


class SelectionConfig(NamedTuple):
    """Typed value of every variable in ``ENV_VARS``, one field per ``EnvVar.field``; see ``parse_environment``.

    Optional fields are None when the variable is unset.
    """

    selection_strategy: str
    use_case: str
    id_field: str
    label_field: Optional[str]
    score_field: Optional[str]
    score_field_prefix: str
    embedding_field_prefix: str
    output_format: Optional[str]
    random_seed: int
    confidence_threshold: float
    max_samples: int
    k_per_class: int
    uncertainty_mode: str
    batch_size: int
    metric: str
    selection_role: str
    oversampling: int
    resource_config_path: str
    diversity_method: str
    uncertainty_prefilter: int
    labeling_format: str
    labeling_data_field: Optional[str]


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
    out_of_range = (
        not math.isfinite(number)
        or (var.minimum is not None and number < var.minimum)
        or (var.maximum is not None and number > var.maximum)
    )
    if out_of_range:
        raise SelectionError("{}={!r} is out of range: expected {}".format(var.name, raw, _allowed_text(var)))
    return number


def validate_strategy_for_use_case(strategy: str, use_case: str) -> None:
    """Refuse strategies that work against the use case; ``auto`` allows every strategy.

    Raises ``SelectionError`` (a ``ValueError``) for a mismatch and for an unknown strategy or use case.
    """
    if use_case not in USE_CASES:
        raise SelectionError("unknown use case {!r}: expected one of {}".format(use_case, ", ".join(USE_CASES)))
    own = strategy_for(strategy).use_case
    if use_case == "auto" or use_case == own:
        return
    if use_case == "ssl":
        raise SelectionError(
            "SELECTION_STRATEGY={} is not allowed with USE_CASE=ssl: it selects uncertain or merely diverse rows, "
            "whose predictions would become noisy pseudo-labels; use one of {} (or USE_CASE=auto)".format(
                strategy, ", ".join(SSL_STRATEGIES)))
    raise SelectionError(
        "SELECTION_STRATEGY={} is not allowed with USE_CASE=active_learning: it selects rows the model is "
        "already confident about, which wastes human labeling effort; use one of {} (or USE_CASE=auto)".format(
            strategy, ", ".join(ACTIVE_LEARNING_STRATEGIES)))


def _env_text(name: str, raw: Any) -> Optional[str]:
    """An environment value as text: str and None as they are, int and float through ``str``."""
    if raw is None or isinstance(raw, str):
        return raw
    if isinstance(raw, (int, float, np.integer, np.floating)) and not isinstance(raw, (bool, np.bool_)):
        return str(raw)
    raise SelectionError("{}={!r} is a {}: environment values must be strings (or numbers)".format(
        name, raw, type(raw).__name__))


def parse_environment(environ_vars: Mapping[str, Any]) -> SelectionConfig:
    """Parse and range-check every variable of ``ENV_VARS``; missing, None and "" all mean unset.

    Values are strings as in a real environment; ints and floats are accepted and read through ``str``.
    """
    if environ_vars is None:
        environ_vars = {}
    if not isinstance(environ_vars, Mapping):
        raise SelectionError("environ_vars must be a mapping of variable names to strings, not {}".format(
            type(environ_vars).__name__))
    values = {}
    for var in ENV_VARS:
        raw = _env_text(var.name, environ_vars.get(var.name))
        if raw is None or raw.strip() == "":
            if var.required:
                raise SelectionError("{} is required: expected {}".format(var.name, _allowed_text(var)))
            raw = var.default
        values[var.field] = None if raw == "" else _parse_env_value(var, raw)
    config = SelectionConfig(**values)
    validate_strategy_for_use_case(config.selection_strategy, config.use_case)
    validate_labeling_settings(config.labeling_format, config.labeling_data_field,
                               strategy=config.selection_strategy, id_field=config.id_field)
    return config


def validate_labeling_settings(labeling_format: str, field: Optional[str], *, strategy: str, id_field: str) -> None:
    """LABELING_DATA_FIELD goes with a LABELING_FORMAT, and only active-learning selections become tasks.

    Raises ``SelectionError`` naming the variable and the fix.
    """
    if labeling_format == "none":
        if field:
            raise SelectionError("LABELING_DATA_FIELD={!r} is set but LABELING_FORMAT=none: set LABELING_FORMAT="
                                 "ground_truth or LABELING_FORMAT=label_studio, or unset it".format(field))
        return
    if not field:
        raise SelectionError("LABELING_FORMAT={} needs LABELING_DATA_FIELD=<column>: the column annotators see "
                             "(a text, or an s3:// or https:// URI of the object to label)".format(labeling_format))
    if strategy_for(strategy).use_case != "active_learning":
        raise SelectionError(
            "LABELING_FORMAT={} is not allowed with SELECTION_STRATEGY={}: it picks rows whose predictions become "
            "pseudo-labels, not rows for humans to label; use one of {} or LABELING_FORMAT=none".format(
                labeling_format, strategy, ", ".join(ACTIVE_LEARNING_STRATEGIES)))
    if labeling_format == "label_studio" and not _LABEL_STUDIO_NAME.fullmatch(field):
        raise SelectionError("LABELING_DATA_FIELD={!r} cannot be a Label Studio variable ($name): with "
                             "LABELING_FORMAT=label_studio it must be letters, digits and _".format(field))
    if labeling_format == "ground_truth" and (id_field in GROUND_TRUTH_SOURCE_KEYS or id_field.startswith("$")):
        raise SelectionError("ID_FIELD={!r} cannot be a Ground Truth manifest attribute: it is reserved for the "
                             "object (source, source-ref) or starts with $".format(id_field))


# ---- Loading: every data file under the input, read as written -----------------------------------------------

class DataFile(NamedTuple):
    path: Path
    fmt: str


_DATA_SUFFIXES = ((".csv", "csv"), (".csv.gz", "csv"), (".tsv", "tsv"), (".tsv.gz", "tsv"),
                  (".parquet", "parquet"), (".pq", "parquet"))
_SEPARATORS = {"csv": ",", "tsv": "\t"}
# pandas before 3 parses some decimals 1 ulp off (1.1.3 reads 0.007 as 0.006999999999999999) unless asked for
# round-trip parsing; pandas 3 parses exactly and deprecates the option.
_EXACT_FLOATS = {"float_precision": "round_trip"} if int(pd.__version__.split(".")[0]) < 3 else {}
_PANDAS_INDEX_ARTEFACT = re.compile(r"__index_level_\d+__\Z")
# Tables this step cannot read (other compressions, other table formats): failing beats leaving them out.
_UNREADABLE_DATA = re.compile(r"(\.(csv|tsv|parquet|pq)\.(bz2|xz|zip|zst|zstd|snappy|lz4|deflate|br|z)"
                              r"|\.(orc|avro|feather|arrow|xlsx|xls))\Z")


def _data_format(path: Path) -> Optional[str]:
    name = path.name.lower()
    for suffix, fmt in _DATA_SUFFIXES:
        if name.endswith(suffix):
            return fmt
    return None


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


def _check_outside(path: Path, forbidden: Sequence[str]) -> None:
    real = os.path.realpath(str(path))
    for other in forbidden:
        if _is_within(real, other) or _is_within(other, real):
            raise SelectionError("input {} leads to the output folder {}: the step never reads its own output".format(
                path, other))


def _walk(folder: Path, relative: Tuple[str, ...], seen: set,
          forbidden: Sequence[str]) -> Iterable[Tuple[Path, Tuple[str, ...]]]:
    """Every file below ``folder``, links followed, in sorted path order; unreadable entries are errors."""
    _check_outside(folder, forbidden)
    try:
        entries = sorted(os.listdir(str(folder)))
    except OSError as error:
        raise SelectionError("cannot read input folder {}: {}".format(folder, error.strerror or error)) from None
    for name in entries:
        if name.startswith((".", "_")):
            continue
        path = folder / name
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
            yield from _walk(path, relative + (name,), seen, forbidden)
        else:
            _check_outside(path, forbidden)
            yield path, relative + (name,)


def discover_data_files(root: Path, forbidden: Sequence[Path] = ()) -> List[DataFile]:
    """Data files below ``root`` in sorted path order; hidden and ``_``-prefixed names are not data.

    Links are followed (each file or folder is read once); a folder or link that cannot be read is an
    error, and so is a path that leads into one of the ``forbidden`` (output) folders.
    """
    if not root.is_dir():
        raise SelectionError("input folder {} does not exist or is not a folder".format(root))
    real_forbidden = [os.path.realpath(str(folder)) for folder in forbidden]
    seen = {(os.stat(str(root)).st_dev, os.stat(str(root)).st_ino)}
    found, ignored = [], []
    for path, relative in _walk(root, (), seen, real_forbidden):
        fmt = _data_format(path)
        if fmt is None and _UNREADABLE_DATA.search(path.name.lower()):
            raise SelectionError("cannot read {}: a table in a form this step does not read (supported: {})".format(
                path, ", ".join(suffix for suffix, _ in _DATA_SUFFIXES)))
        if fmt is None:
            ignored.append("/".join(relative))
        elif not os.path.isfile(str(path)):
            raise SelectionError("cannot read {}: not a regular file".format(path))
        else:
            found.append(DataFile(path, fmt))
    if ignored:
        logger.info("Ignoring %d non-data file(s) in %s: %s", len(ignored), root, ", ".join(ignored[:5]))
    if not found:
        raise NoDataFilesError("no data files (.csv, .tsv, .parquet, .csv.gz, .tsv.gz) found under {}".format(root))
    return found


class FileColumns(NamedTuple):
    """What one data file declares before its rows are read."""

    names: List[str]  # data columns in file order (pandas index artefacts removed)
    arrow_types: Dict[str, Any]  # parquet: each column's Arrow type; csv: empty
    rows: Optional[int]  # parquet: its row count; csv: unknown (0 when it holds no data row)
    index_columns: List[str]  # parquet: named pandas index columns
    ranges: Dict[str, Tuple[int, int]]  # parquet: named RangeIndex kept only as metadata -> (start, step)


def _open_text(data_file: DataFile) -> Any:
    if data_file.path.name.lower().endswith(".gz"):
        return gzip.open(str(data_file.path), "rt", encoding="utf-8-sig", newline="")
    return open(str(data_file.path), "r", encoding="utf-8-sig", newline="")


def _csv_header(data_file: DataFile) -> Tuple[List[str], bool]:
    """The header of a csv/tsv file, read with the csv module before pandas can rename anything, and
    whether a data row follows it."""
    with _open_text(data_file) as handle:
        reader = csv.reader(handle, delimiter=_SEPARATORS[data_file.fmt])
        header = next(reader, None)
        first_row = next((row for row in reader if row), None)  # pandas skips blank lines too
    if not header:
        return [], False  # a file with no bytes: an empty partition
    blank = [position for position, name in enumerate(header, 1) if not name.strip()]
    if blank:
        raise SelectionError("{}: column {} of the header has no name (an index written by to_csv, or a trailing "
                             "separator?)".format(data_file.path, blank[0]))
    if first_row is not None and len(first_row) > len(header):
        raise SelectionError("{}: the first data row has {} fields but the header has {} (a trailing separator?)"
                             .format(data_file.path, len(first_row), len(header)))
    return header, first_row is not None


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


def read_file_columns(data_file: DataFile) -> FileColumns:
    try:
        if data_file.fmt == "parquet":
            found = _parquet_columns(data_file)
        else:
            header, has_rows = _csv_header(data_file)
            found = FileColumns(header, {}, None if has_rows else 0, [], {})
    except SelectionError:
        raise
    except Exception as error:
        raise SelectionError("cannot read {}: {}".format(data_file.path, _one_line(error))) from None
    duplicated = sorted({name for name in found.names if found.names.count(name) > 1})
    if duplicated:
        raise SelectionError("{} has duplicate column name(s) {}".format(data_file.path, _preview(duplicated)))
    return found


def read_column_names(data_file: DataFile) -> List[str]:
    return read_file_columns(data_file).names


def common_columns(files: Sequence[DataFile], found: Optional[Sequence[FileColumns]] = None) -> List[str]:
    """The column names shared by every file, in the first file's order; different columns are an error."""
    found = [read_file_columns(data_file) for data_file in files] if found is None else found
    first = found[0].names
    for other, columns in zip(files[1:], found[1:]):
        names = columns.names
        if set(names) != set(first):
            differences = ["{} has {} that {} lacks".format(a.path, _preview(sorted(set(x) - set(y))), b.path)
                           for a, x, b, y in ((files[0], first, other, names), (other, names, files[0], first))
                           if set(x) - set(y)]
            raise SelectionError("files have different columns: " + "; ".join(differences))
    return first


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
    return str(arrow_type)


class InputTable(NamedTuple):
    """The input folder's files and their agreed columns, known before any row is read."""

    root: Path
    files: List[DataFile]
    file_columns: List[FileColumns]  # what each file declares, in the order of ``files``
    columns: List[str]  # in the first file's order
    kinds: Dict[str, str]  # column -> the kind every non-empty file declares ("text" for csv text columns)
    numbers: List[str]  # columns that must hold numbers (scores; embeddings when the strategy uses them)
    arrow_types: Dict[str, Any]  # parquet columns -> the Arrow type their parts are read as
    index_columns: List[str]  # named pandas index columns: passed through, never features
    fmt: str  # the files' common format, or "mixed"


def numeric_columns(columns: Sequence[str], config: SelectionConfig) -> Tuple[List[str], List[str]]:
    """Columns csv/tsv cells are parsed as numbers in: those that must be numbers (the scores, and the
    embeddings when the strategy uses them), and all such candidates (the embeddings always, to keep wide
    tables small). Every other csv column is text."""
    try:
        scores = extract_score_columns(columns, config.score_field, config.score_field_prefix)
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


def scan_input(root: Path, config: SelectionConfig, forbidden: Sequence[Path] = ()) -> InputTable:
    """Find the data files under ``root`` and agree on their columns and column types, reading no rows.

    Part files must have the same columns; each column must have one kind in every part (integer and
    float mix, except in the id and label columns). Parts without rows are left out: they impose nothing.
    """
    files = discover_data_files(root, forbidden)
    found = [read_file_columns(data_file) for data_file in files]
    empty = [data_file for data_file, columns in zip(files, found) if columns.rows == 0]
    if len(empty) == len(files):
        raise SelectionError("the input under {} has no rows".format(root))
    if empty:
        # Empty partitions (a header only, no bytes, a parquet file without rows) add nothing: no rows,
        # no columns, no types.
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
    typed = {name for data_file, file_columns in zip(files, found) if data_file.fmt == "parquet"
             for name in columns if _arrow_kind(file_columns.arrow_types[name]) in ("integer", "float")} - strict
    as_numbers = set(parsed) | typed
    declared: Dict[str, List[Tuple[str, DataFile]]] = {name: [] for name in columns}
    for data_file, file_columns in zip(files, found):
        for name in columns:
            kind = _arrow_kind(file_columns.arrow_types[name]) if data_file.fmt == "parquet" else (
                None if name in as_numbers else "text")
            if kind is not None:
                declared[name].append((kind, data_file))
    required += sorted(typed - set(required))
    kinds = {name: _agreed_kind(name, declared[name], name in strict) for name in columns}
    arrow_types = _agreed_arrow_types(files, found, columns, kinds)
    index_columns = sorted({name for file_columns in found for name in file_columns.index_columns})
    return InputTable(root, files, found, columns, {k: v for k, v in kinds.items() if v}, required, arrow_types,
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


def _agreed_arrow_types(files: Sequence[DataFile], found: Sequence[FileColumns], columns: Sequence[str],
                        kinds: Mapping[str, Optional[str]]) -> Dict[str, Any]:
    import pyarrow as pa

    parquet = [(f, c) for f, c in zip(files, found) if f.fmt == "parquet"]
    if not parquet:
        return {}
    agreed = {}
    for name in columns:
        types = [c.arrow_types[name] for _, c in parquet if _arrow_kind(c.arrow_types[name])]
        kind = kinds[name]
        if not types:
            agreed[name] = parquet[0][1].arrow_types[name]
        elif all(t == types[0] for t in types):
            agreed[name] = types[0]
        elif kind == "integer":
            agreed[name] = pa.int64()
        elif kind == "float":
            agreed[name] = pa.float64()
        elif kind == "text":
            agreed[name] = pa.large_string()
        else:
            agreed[name] = types[0]
    return agreed


def _arrow_to_pandas(table: Any) -> pd.DataFrame:
    """An Arrow table as a DataFrame without pandas metadata; integer columns with nulls stay exact (Int64)."""
    import pyarrow as pa

    nullable = {pa.int8(): pd.Int8Dtype(), pa.int16(): pd.Int16Dtype(), pa.int32(): pd.Int32Dtype(),
                pa.int64(): pd.Int64Dtype(), pa.uint8(): pd.UInt8Dtype(), pa.uint16(): pd.UInt16Dtype(),
                pa.uint32(): pd.UInt32Dtype(), pa.uint64(): pd.UInt64Dtype()}
    table = table.replace_schema_metadata(None)
    columns = {}
    for name, column in zip(table.column_names, table.columns):
        single = pa.table({name: column})
        with_nulls = pa.types.is_integer(column.type) and column.null_count > 0
        columns[name] = single.to_pandas(types_mapper=nullable.get if with_nulls else None)[name]
    return pd.DataFrame(columns, columns=table.column_names)


def _unified(table: Any, source: InputTable) -> Any:
    """``table``'s columns in the agreed order, cast to the agreed types, without pandas metadata."""
    import pyarrow as pa

    table = table.select(source.columns).replace_schema_metadata(None)
    schema = pa.schema([pa.field(name, source.arrow_types[name]) for name in source.columns])
    return table if table.schema.equals(schema) else table.cast(schema)


def _read_file(data_file: DataFile, file_columns: FileColumns, source: InputTable) -> pd.DataFrame:
    try:
        if data_file.fmt == "parquet":
            import pyarrow.parquet as pq

            table = pq.read_table(str(data_file.path), columns=_stored(source.columns, file_columns))
            table = _with_ranges(table, file_columns, np.arange(table.num_rows), source.columns)
            return _arrow_to_pandas(_unified(table, source))
        frame = _read_csv(data_file, source)
    except SelectionError:
        raise
    except Exception as error:
        raise SelectionError("cannot read {}: {}".format(data_file.path, _one_line(error))) from None
    return frame


def _read_csv(data_file: DataFile, source: InputTable) -> pd.DataFrame:
    """A csv/tsv file with its text columns exactly as written (no NA words) and its number columns parsed."""
    header, _ = _csv_header(data_file)
    text = [name for name in header if source.kinds.get(name) == "text"]
    parsed = [name for name in header if name not in text]
    frame = pd.read_csv(data_file.path, sep=_SEPARATORS[data_file.fmt], dtype={name: object for name in text},
                        keep_default_na=False, na_values={name: [""] for name in parsed}, low_memory=False,
                        **_EXACT_FLOATS)
    if list(frame.columns) != header:
        raise SelectionError("cannot read the header of {} unambiguously: pandas reads {}".format(
            data_file.path, _preview(list(frame.columns))))
    if len(frame):
        _check_numeric(frame, source.numbers, "", where=data_file.path)
    return _in_column_order(frame, source.columns)


def load_inference_data(inference_data_dir: Any, id_field: str = "id",
                        config: Optional[SelectionConfig] = None) -> Tuple[pd.DataFrame, str]:
    """Every data file under ``inference_data_dir`` as one table, and the files' format ("mixed" when
    they differ); ids are checked. Cells are read as in ``main`` (``config`` decides which columns are
    scores and embeddings; by default the ENV_VARS defaults)."""
    if config is None:
        config = parse_environment({"SELECTION_STRATEGY": "uncertainty", "ID_FIELD": id_field})
    source = scan_input(Path(inference_data_dir), config)
    table = read_input_table(source)
    _check_ids(table[config.id_field], config.id_field)
    return table, source.fmt


def read_input_table(source: InputTable) -> pd.DataFrame:
    """Every file of ``source`` as one table; header-only parts add no rows."""
    frames = [_read_file(data_file, file_columns, source)
              for data_file, file_columns in zip(source.files, source.file_columns)]
    filled = [frame for frame in frames if len(frame)] or frames[:1]
    table = filled[0] if len(filled) == 1 else pd.concat(filled, ignore_index=True)
    table.index = pd.RangeIndex(len(table))
    if len(table) == 0:
        raise SelectionError("the input under {} has no rows".format(source.root))
    return table


def _in_column_order(frame: pd.DataFrame, order: List[str]) -> pd.DataFrame:
    # Selecting columns copies the whole frame on older pandas: do it only when the order differs.
    return frame if list(frame.columns) == order else frame[order]


def _check_ids(ids: pd.Series, id_field: str) -> None:
    missing = ids.isna().to_numpy()
    if not pd.api.types.is_numeric_dtype(ids):
        missing = missing | ids.astype(object).map(lambda value: isinstance(value, str) and not value.strip()
                                                   ).to_numpy(dtype=bool)
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


def _rows_of_file(data_file: DataFile, file_columns: FileColumns, rows: np.ndarray, source: InputTable) -> List[Any]:
    """Arrow tables holding the sorted ``rows`` of one parquet file, one table per batch that has any."""
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
    return pieces


def read_rows_at(source: InputTable, positions: np.ndarray) -> pd.DataFrame:
    """Full rows at global ``positions`` (in that order) of parquet ``source``, reading one batch at a time."""
    import pyarrow as pa

    positions = np.asarray(positions, dtype=np.int64)
    order = np.argsort(positions, kind="stable")
    wanted = positions[order]
    pieces, offset = [], 0
    for data_file, file_columns in zip(source.files, source.file_columns):
        lo, hi = np.searchsorted(wanted, [offset, offset + file_columns.rows])
        if hi > lo:
            try:
                pieces += _rows_of_file(data_file, file_columns, wanted[lo:hi] - offset, source)
            except Exception as error:
                raise SelectionError("cannot read {}: {}".format(data_file.path, _one_line(error))) from None
        offset += file_columns.rows
    if pieces:
        rows = _arrow_to_pandas(pa.concat_tables(pieces))
    else:
        schema = pa.schema([pa.field(name, source.arrow_types[name]) for name in source.columns])
        rows = _arrow_to_pandas(schema.empty_table())
    inverse = np.empty_like(order)
    inverse[order] = np.arange(order.size)
    return rows.iloc[inverse].reset_index(drop=True)


# ---- Scores and pool: probabilities, embeddings and labeled rows as arrays -----------------------------------

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
    prefixed = [name for name in names if name.startswith(score_prefix) and len(name) > len(score_prefix)]
    if prefixed:
        return sorted(prefixed, key=lambda name: _class_sort_key(name[len(score_prefix):]))
    for family in (LLM_SCORE_COLUMNS, RULESET_SCORE_COLUMNS):
        present = [name for name in family if name in names]
        if present:
            return present[:1]
    raise SelectionError(
        "no score columns found: looked for SCORE_FIELD (unset), columns starting with SCORE_FIELD_PREFIX={!r}, "
        "then {}; columns are: {}".format(score_prefix, ", ".join(LLM_SCORE_COLUMNS + RULESET_SCORE_COLUMNS),
                                          _preview(names)))


def _is_class_number(suffix: str) -> bool:
    # str.isdigit accepts superscripts and other scripts' digits that int() rejects or reads differently.
    return suffix.isascii() and suffix.isdigit()


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


def _first_non_number(column: pd.Series) -> Tuple[int, Any]:
    """Position and value of the first cell of ``column`` that is neither a number nor empty."""
    values = column.astype(object)
    coerced = pd.to_numeric(values, errors="coerce").to_numpy()
    blank = values.map(lambda value: value is None or value != value or (isinstance(value, str)
                                                                          and not value.strip())).to_numpy(dtype=bool)
    flagged = np.flatnonzero(np.isnan(coerced.astype(np.float64)) & ~blank)
    position = int(flagged[0]) if flagged.size else 0
    return position, values.iloc[position]


def _check_numeric(df: pd.DataFrame, columns: Sequence[str], what: str, where: Any = None) -> None:
    for name in columns:
        column = df[name]
        if pd.api.types.is_numeric_dtype(column) and not pd.api.types.is_bool_dtype(column):
            continue
        position, value = _first_non_number(column)
        raise SelectionError("{}column {!r} must hold numbers, but row {}{} holds {!r}".format(
            what + " " if what else "", name, position + 1, " of {}".format(where) if where else "", value))


def _check_finite(values: np.ndarray, names: Sequence[str], what: str) -> None:
    if all(np.isfinite(values[start:start + _CHUNK_ROWS]).all() for start in range(0, values.shape[0], _CHUNK_ROWS)):
        return
    bad = ~np.isfinite(values)
    if bad.any():
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


def _in_unit_range(values: np.ndarray) -> np.ndarray:
    return (values >= -PROBABILITY_RANGE_TOLERANCE) & (values <= 1.0 + PROBABILITY_RANGE_TOLERANCE)


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


def normalize_scores_to_probabilities(df: pd.DataFrame, score_cols: Sequence[str], *,
                                      score_prefix: str = "prob_class_") -> pd.DataFrame:
    """A copy of ``df`` with standardized ``prob_class_<class>`` probability columns (seed 000).

    The scores are read as in ``probabilities_from_frame``; the class of each column is its suffix
    after ``score_prefix`` (0 and 1 for a single score column). Existing ``prob_class_<class>`` columns
    are replaced; every other column is kept as it is. ``attrs["score_interpretation"]`` says how the
    scores were read.
    """
    probabilities, interpretation = probabilities_from_frame(df, score_cols)
    result = df.copy()
    for j, label in enumerate(class_labels(score_cols, score_prefix)):
        result["prob_class_{}".format(label)] = probabilities[:, j]  # replaced in place when present
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


def embedding_columns(
    columns: Sequence[str], prefix: str, excluded: Iterable[str], is_number: Callable[[str], bool],
    feature_columns: Optional[Sequence[str]] = None,
) -> Tuple[List[str], str]:
    """Columns that describe each row for distance computations, and where they came from.

    The ``prefix`` columns when there are any; otherwise ``feature_columns`` when given (they must
    exist); otherwise every column that ``is_number`` accepts (numeric, not boolean) and that is not
    excluded (the id, label, score and output columns).
    """
    embedded = [name for name in columns if name.startswith(prefix)]
    if embedded:
        return embedded, "embedding columns"
    if feature_columns:
        _require_columns(columns, [("feature_columns", name) for name in feature_columns])
        return list(feature_columns), "feature columns"
    skip = set(excluded)
    features = [name for name in columns if name not in skip and is_number(name)]
    if not features:
        raise SelectionError("diversity and badge need embeddings: no columns start with EMBEDDING_FIELD_PREFIX={!r} "
                             "and no numeric feature columns were found".format(prefix))
    logger.info("No %s* columns: using %d numeric feature column(s) instead: %s", prefix, len(features),
                _preview(features))
    return features, "numeric feature columns"


def _blank(values: pd.Series) -> np.ndarray:
    return values.map(lambda value: value is None or value != value or (isinstance(value, str) and not value.strip())
                      ).to_numpy(dtype=bool)


def _text_as_numbers(column: pd.Series) -> Optional[np.ndarray]:
    """A text column's cells as float64 (blank cells NaN), or None when a filled cell is not a number."""
    values = column.astype(object)
    blank = _blank(values)
    if blank.all():
        return None
    numbers = pd.to_numeric(values.where(~blank, np.nan), errors="coerce").to_numpy(dtype=np.float64)
    return None if (np.isnan(numbers) & ~blank).any() else numbers


def _is_feature(column: pd.Series) -> bool:
    """Numeric, not boolean; a text column (as csv cells are) counts when every filled cell is a number."""
    if pd.api.types.is_bool_dtype(column):
        return False
    if pd.api.types.is_numeric_dtype(column):
        return True
    return _text_as_numbers(column) is not None


def labeled_mask(df: pd.DataFrame, label_field: Optional[str]) -> np.ndarray:
    """True where LABEL_FIELD is filled (not missing, not blank)."""
    if not label_field:
        return np.zeros(len(df), dtype=bool)
    labels = df[label_field]
    filled = labels.notna().to_numpy()
    if not pd.api.types.is_numeric_dtype(labels):
        filled = filled & labels.astype(str).str.strip().ne("").to_numpy()
    return filled


def output_columns(strategy: str) -> Tuple[str, ...]:
    """The columns ``strategy`` appends to the selected rows."""
    if strategy_for(strategy).use_case == "ssl":
        return OUTPUT_COLUMNS
    return SELECTION_SCORE, SELECTION_RANK, DATA_SOURCE


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
                               ("LABELING_DATA_FIELD", config.labeling_data_field)], where)


def _non_feature_columns(columns: Sequence[str], config: SelectionConfig, score_cols: Sequence[str],
                         index_columns: Iterable[str] = ()) -> List[str]:
    reserved = set(score_cols) | set(OUTPUT_COLUMNS) | set(LLM_SCORE_COLUMNS) | set(RULESET_SCORE_COLUMNS)
    reserved |= {config.id_field, config.label_field or ""} | set(index_columns)
    return [name for name in columns if name in reserved or name.startswith(config.score_field_prefix)]


def _embedding_matrix(df: pd.DataFrame, columns: Sequence[str]) -> np.ndarray:
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


def _plan_columns(columns: Sequence[str], is_number: Callable[[str], bool], config: SelectionConfig,
                  feature_columns: Optional[Sequence[str]] = None,
                  index_columns: Iterable[str] = ()) -> Tuple[List[str], List[str], Optional[str]]:
    """Score columns, vector columns (empty unless the strategy needs them) and the vectors' source."""
    _check_columns_exist(columns, config)
    _check_no_output_columns(columns, config.selection_strategy)
    score_cols = extract_score_columns(columns, config.score_field, config.score_field_prefix)
    class_labels(score_cols, config.score_field_prefix)  # two columns of one class fail here, before any read
    if not strategy_for(config.selection_strategy).needs_embeddings:
        return score_cols, [], None
    excluded = _non_feature_columns(columns, config, score_cols, index_columns)
    vector_cols, source = embedding_columns(columns, config.embedding_field_prefix, excluded, is_number,
                                            feature_columns=feature_columns)
    return score_cols, vector_cols, source


def _make_pool(scored: Tuple[np.ndarray, str], score_cols: List[str], labeled: np.ndarray,
               vectors: Optional[np.ndarray], vector_cols: List[str], vector_source: Optional[str],
               config: SelectionConfig) -> Pool:
    probabilities, score_kind = scored
    if vectors is not None:
        _check_finite(vectors, vector_cols, "embedding/feature columns")
    return Pool(probabilities, class_labels(score_cols, config.score_field_prefix), labeled, vectors, score_cols,
                score_kind, vector_cols, vector_source)


def pool_from_frame(df: pd.DataFrame, config: SelectionConfig,
                    feature_columns: Optional[Sequence[str]] = None, index_columns: Iterable[str] = ()) -> Pool:
    """The selection arrays of an in-memory prediction table.

    ``feature_columns``, when given, are the vectors of diversity and badge if the table has no
    EMBEDDING_FIELD_PREFIX columns (seed 001's ``strategy_config["feature_columns"]``); ``index_columns``
    (a parquet file's named pandas index) are never features.
    """
    columns = [str(name) for name in df.columns]
    score_cols, vector_cols, vector_source = _plan_columns(columns, lambda name: _is_feature(df[name]), config,
                                                           feature_columns, index_columns)
    scored = probabilities_from_frame(df, score_cols)
    vectors = _embedding_matrix(df, vector_cols) if vector_cols else None
    return _make_pool(scored, score_cols, labeled_mask(df, config.label_field), vectors, vector_cols,
                      vector_source, config)


def pool_from_parquet(source: InputTable, config: SelectionConfig) -> Pool:
    """The selection arrays of parquet files, filled one row group at a time.

    Only the id, label, score and vector columns are read, straight into preallocated arrays, so
    memory stays near the arrays themselves instead of an Arrow table plus a DataFrame plus copies.
    """
    import pyarrow.parquet as pq

    is_number = {name: source.kinds.get(name) in ("integer", "float") for name in source.columns}
    score_cols, vector_cols, vector_source = _plan_columns(source.columns, is_number.__getitem__, config,
                                                           source.index_columns)
    for names, what in ((score_cols, "score"), (vector_cols, "embedding/feature")):
        text = [name for name in names if not is_number[name]]
        if text:
            raise SelectionError("{} column {!r} must hold numbers, but its parquet type is {}".format(
                what, text[0], source.arrow_types[text[0]]))
    readers = [pq.ParquetFile(str(data_file.path)) for data_file in source.files]
    n_rows = sum(reader.metadata.num_rows for reader in readers)
    if n_rows == 0:
        raise SelectionError("the input under {} has no rows".format(source.root))
    scores = np.empty((n_rows, len(score_cols)), dtype=np.float64)
    vectors = np.empty((n_rows, len(vector_cols)), dtype=np.float32) if vector_cols else None
    labeled = np.zeros(n_rows, dtype=bool)
    ids, offset = [], 0
    wanted = [config.id_field] + ([config.label_field] if config.label_field else []) + score_cols + vector_cols
    wanted = list(dict.fromkeys(wanted))
    for data_file, file_columns, reader in zip(source.files, source.file_columns, readers):
        file_start = offset
        for group in range(reader.num_row_groups):
            try:
                table = reader.read_row_group(group, columns=_stored(wanted, file_columns))
            except Exception as error:
                raise SelectionError("cannot read {}: {}".format(data_file.path, _one_line(error))) from None
            table = _with_ranges(table, file_columns, np.arange(table.num_rows) + (offset - file_start), wanted)
            rows = slice(offset, offset + table.num_rows)
            for j, name in enumerate(score_cols):
                scores[rows, j] = table.column(name).to_numpy()
            for j, name in enumerate(vector_cols):
                vectors[rows, j] = table.column(name).to_numpy()
            ids.append(table.column(config.id_field).to_pandas())
            if config.label_field:
                labels = pd.DataFrame({config.label_field: table.column(config.label_field).to_pandas()})
                labeled[rows] = labeled_mask(labels, config.label_field)
            offset += table.num_rows
    _check_ids(pd.concat(ids, ignore_index=True), config.id_field)
    del ids
    return _make_pool(scores_to_probabilities(scores, score_cols), score_cols, labeled, vectors, vector_cols,
                      vector_source, config)


# ---- Samplers: pure functions of arrays, and the five sampler classes ----------------------------------------

def _as_matrix(values: Any, name: str, dtype: Any) -> np.ndarray:
    matrix = np.ascontiguousarray(values, dtype=dtype)
    if matrix.ndim != 2 or matrix.shape[0] == 0 or matrix.shape[1] == 0:
        raise ValueError("{} must be a non-empty 2-D array, got shape {}".format(name, matrix.shape))
    if not np.isfinite(matrix).all():
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


class _Progress:
    """Logs a long loop's progress about every 10% or every 10 seconds."""

    def __init__(self, label: str, total: int, min_total: int = 50):
        self.label, self.total = label, total
        self.enabled = total >= min_total
        self.start = self.last = time.time()
        self.next_fraction = 0.1

    def update(self, done: int) -> None:
        if not self.enabled:
            return
        now = time.time()
        if done / self.total < self.next_fraction and now - self.last < 10.0:
            return
        self.last = now
        self.next_fraction = math.floor(done / self.total * 10 + 1) / 10
        elapsed = now - self.start
        remaining = elapsed / done * (self.total - done) if done else float("nan")
        logger.info("%s: %d/%d picks, %.1fs elapsed, ~%.1fs remaining", self.label, done, self.total, elapsed,
                    remaining)


_DUPLICATE_TOLERANCE = 1e-5


class Candidates(NamedTuple):
    """The arrays a sampler chooses from, one row per candidate (labeled rows are never candidates)."""

    probabilities: Optional[np.ndarray]  # (n, n_classes) float64
    embeddings: Optional[np.ndarray] = None  # (n, d) float32, for the strategies that need them
    labeled_embeddings: Optional[np.ndarray] = None  # (m, d) float32: the labeled rows, diversity's first centers


def _candidate_rows(indices: Any, n_rows: int) -> Optional[np.ndarray]:
    """``indices`` checked as distinct row positions in [0, n_rows), or None (all rows)."""
    if indices is None:
        return None
    rows = np.asarray(indices)
    if rows.ndim != 1 or (rows.size and not np.issubdtype(rows.dtype, np.integer)):
        raise ValueError("indices must be a 1-D array of integer row positions, got {} of shape {}".format(
            rows.dtype, rows.shape))
    rows = rows.astype(np.int64)
    if rows.size and (rows.min() < 0 or rows.max() >= n_rows):
        raise ValueError("indices must lie in [0, {}), got values from {} to {}".format(n_rows, rows.min(),
                                                                                       rows.max()))
    if np.unique(rows).size != rows.size:
        raise ValueError("indices must not repeat a row")
    return rows


def _positive_int(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError("{} must be an integer >= {}, got {!r}".format(name, minimum, value))
    return int(value)


def _choice(name: str, value: Any, allowed: Sequence[str]) -> str:
    if value not in allowed:
        raise ValueError("{} must be one of {}, got {!r}".format(name, ", ".join(allowed), value))
    return value


class _Sampler:
    """What the five samplers share.

    ``select(candidates, batch_size)`` is what the engine runs: it trusts its (already validated) arrays,
    may overwrite ``candidates.embeddings`` and returns the picks in rank order with their scores.
    ``select_batch`` is the seeds' API: it validates its arrays, never modifies them, and returns row
    positions, or entries of ``indices`` when given (the sampler then chooses among those rows only).
    """

    def select(self, candidates: Candidates, batch_size: int) -> Selection:
        raise NotImplementedError

    def _select_among(self, candidates: Candidates, batch_size: int, indices: Any) -> np.ndarray:
        n_rows = next(len(array) for array in candidates[:2] if array is not None)
        rows = _candidate_rows(indices, n_rows)
        if rows is None:
            return self.select(candidates, batch_size).indices
        if rows.size == 0:
            return rows
        subset = Candidates(*(None if array is None else array[rows] for array in candidates[:2]),
                            candidates.labeled_embeddings)
        return rows[self.select(subset, batch_size).indices]


def confidence_threshold_selection(probabilities: np.ndarray, threshold: float, max_samples: int = 0) -> Selection:
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
    confidence = probabilities.max(axis=1)
    eligible = np.flatnonzero(confidence >= threshold)
    limit = max_samples if max_samples > 0 else eligible.size
    chosen = eligible[top_k_indices(confidence[eligible], limit)]
    return Selection(chosen, confidence[chosen])


def top_k_per_class_selection(probabilities: np.ndarray, k_per_class: int) -> Selection:
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
    predicted = probabilities.argmax(axis=1)
    confidence = probabilities.max(axis=1)
    by_class = np.argsort(predicted.astype(np.int16 if probabilities.shape[1] < 2**15 else np.int64),
                          kind="stable")
    bounds = np.concatenate([[0], np.cumsum(np.bincount(predicted, minlength=probabilities.shape[1]))])
    picked = [by_class[start:stop][top_k_indices(confidence[by_class[start:stop]], k_per_class)]
              for start, stop in zip(bounds[:-1], bounds[1:])]
    chosen = np.concatenate(picked) if picked else np.empty(0, dtype=np.int64)
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
    random_seed : int, default=42
        Unused: the selection is deterministic (ties go to the lower row). Kept for the seeds' signature.
    """

    def __init__(self, confidence_threshold: float = 0.9, max_samples: int = 0, random_seed: Optional[int] = 42):
        if not 0.0 <= float(confidence_threshold) <= 1.0:
            raise ValueError("confidence_threshold must lie in [0, 1], got {!r}".format(confidence_threshold))
        self.confidence_threshold = float(confidence_threshold)
        self.max_samples = _positive_int("max_samples", max_samples, 0)
        self.random_seed = random_seed

    def select(self, candidates: Candidates, batch_size: Optional[int] = None) -> Selection:
        return confidence_threshold_selection(candidates.probabilities, self.confidence_threshold, self.max_samples)

    def select_batch(self, probabilities: Any, indices: Any = None) -> np.ndarray:
        """Positions (or entries of ``indices``) of the selected rows, most confident first."""
        return self._select_among(Candidates(_as_matrix(probabilities, "probabilities", np.float64)), 0, indices)


class TopKPerClassSampler(_Sampler):
    """The ``k_per_class`` most confident rows of every predicted class, ranked by confidence (SSL).

    Parameters
    ----------
    k_per_class : int, default=100
    random_seed : int, default=42
        Unused: the selection is deterministic (ties go to the lower row). Kept for the seeds' signature.
    """

    def __init__(self, k_per_class: int = 100, random_seed: Optional[int] = 42):
        self.k_per_class = _positive_int("k_per_class", k_per_class, 1)
        self.random_seed = random_seed

    def select(self, candidates: Candidates, batch_size: Optional[int] = None) -> Selection:
        return top_k_per_class_selection(candidates.probabilities, self.k_per_class)

    def select_batch(self, probabilities: Any, indices: Any = None) -> np.ndarray:
        """Positions (or entries of ``indices``) of the selected rows, most confident first."""
        return self._select_among(Candidates(_as_matrix(probabilities, "probabilities", np.float64)), 0, indices)


def uncertainty_scores(probabilities: np.ndarray, mode: str = "margin") -> np.ndarray:
    """Per-row uncertainty, higher = more uncertain, computed in chunks to bound temporaries.

    margin: 1 - (p1 - p2) with p1 >= p2 the two largest probabilities; entropy: -sum p log p (natural
    log, 0 log 0 = 0); least_confidence: 1 - p1.
    """
    if mode not in UNCERTAINTY_MODES:
        raise ValueError("mode must be one of {}, got {!r}".format(UNCERTAINTY_MODES, mode))
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
    strategy : {"margin", "entropy", "least_confidence"}, default="margin"
        How uncertainty is measured; see ``uncertainty_scores``.
    random_seed : int, default=42
        Unused: the selection is deterministic (ties go to the lower row). Kept for the seeds' signature.
    """

    def __init__(self, strategy: str = "margin", random_seed: Optional[int] = 42):
        self.strategy = _choice("strategy", strategy, UNCERTAINTY_MODES)
        self.random_seed = random_seed

    def compute_scores(self, probabilities: Any) -> np.ndarray:
        """Uncertainty of each row, shape (n_rows,); higher is more uncertain."""
        return uncertainty_scores(_as_matrix(probabilities, "probabilities", np.float64), self.strategy)

    def select(self, candidates: Candidates, batch_size: int) -> Selection:
        scores = uncertainty_scores(candidates.probabilities, self.strategy)
        chosen = top_k_indices(scores, batch_size)
        return Selection(chosen, scores[chosen])

    def select_batch(self, probabilities: Any, batch_size: int, indices: Any = None) -> np.ndarray:
        """Positions (or entries of ``indices``) of the ``batch_size`` most uncertain rows, most uncertain first."""
        candidates = Candidates(_as_matrix(probabilities, "probabilities", np.float64))
        return self._select_among(candidates, _positive_int("batch_size", batch_size, 1), indices)


def _normalize_rows(matrix: np.ndarray) -> np.ndarray:
    """Unit-length rows (in place); all-zero rows stay zero."""
    norms = np.sqrt(np.einsum("ij,ij->i", matrix, matrix))
    norms[norms == 0] = 1
    matrix /= norms[:, None]
    return matrix


def _min_sq_distances(X: np.ndarray, sq_norms: np.ndarray, centers: np.ndarray) -> np.ndarray:
    """Squared euclidean distance from every row of X to its nearest center, in bounded blocks."""
    center_sq = np.einsum("ij,ij->i", centers, centers)
    block_rows = max(1, (1 << 24) // max(1, centers.shape[0]))
    result = np.empty(X.shape[0], dtype=X.dtype)
    for start in range(0, X.shape[0], block_rows):
        block = X[start:start + block_rows]
        d2 = block @ centers.T
        d2 *= -2
        d2 += sq_norms[start:start + block_rows, None]
        d2 += center_sq[None, :]
        np.min(d2, axis=1, out=result[start:start + block_rows])
    np.maximum(result, 0, out=result)
    return result


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
        self._ceiling: Optional[np.ndarray] = None  # built by the first full-pass fold
        self._highest_snap: Optional[np.ndarray] = None

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
        product and is overwritten as scratch; only the rows whose unsnapped value is below ``_ceiling`` (at
        least their distance, and strictly above any snap threshold they can meet) can go down, so the snap
        and the minimum run on those alone.
        """
        if rows is None:
            dots *= -2
            dots += self.sq_norms
            dots += self.sq_norms[center]
            if self._ceiling is None:
                with np.errstate(under="ignore"):  # next above 0 is subnormal; it still compares exactly
                    highest = np.nextafter(self.tolerances + self.tolerances.max(), np.inf)
                self._ceiling = np.maximum(self.d2, highest)
                self._highest_snap = highest
            rows = np.flatnonzero(np.less(dots, self._ceiling, out=self._duplicates))
            return self._fold_rows(dots[rows], center, rows)
        dots *= -2
        dots += self.sq_norms[rows]
        dots += self.sq_norms[center]
        return self._fold_rows(dots, center, rows)

    def _fold_rows(self, values: np.ndarray, center: int, rows: np.ndarray) -> np.ndarray:
        """Snap and fold the expanded squared distances ``values`` of ``rows`` into ``self.d2``."""
        threshold = self.tolerances[rows] + self.tolerances[center]
        np.copyto(values, 0, where=values <= threshold)
        decreased = np.flatnonzero(values < self.d2[rows])
        down = rows[decreased]
        self.d2[down] = values[decreased]
        if self._ceiling is not None:  # d2 only goes down, so a stale ceiling is merely loose
            self._ceiling[down] = np.maximum(values[decreased], self._highest_snap[down])
        return down


# ---- Triangle-inequality pruning shared by k-center and BADGE ----
# A row x with nearest center a at distance d(x) cannot come closer to a new center c when
# d(a, c) >= 2 d(x) (Elkan 2003). The kernels compute distances only for the rows this cannot rule
# out, with a slack that covers float rounding and the duplicate snap, so every skipped row is one whose
# full-pass value would have left its distance unchanged: the picks are those of one full pass per pick.

_GATHER_ALIGNMENT = 64  # rows per BLAS call are padded to a multiple of this (see _RowDots)
_MAX_UNCHECKED_PICKS = 32  # after a check that did not pay, the next is 1, 2, 4, ... up to this many picks later
# Costs per row relative to one row of a full pass (one matrix-vector product over all n rows). They are fixed
# ratios, not timings, so the choice is the same on a loaded machine. A gathered row costs a random read, a copy
# and its product: 2-4x a streamed row for 16 <= D <= 128, more in BADGE (a strided read of the row's C residuals).
# The check is a few passes over n numbers, worth about _CHECK_BYTES of a row in k-center and less against BADGE's
# heavier full pass (float64, two products); both measured on the benchmark's KEEL tables, where a k-center check
# with D <= 50 never pays for itself.
_GATHER_COST = {"kcenter": 4.0, "badge": 6.0}
_CHECK_BYTES = {"kcenter": 160.0, "badge": 48.0}
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
    and ``sqrt(u) + sqrt(v) <= 2 sqrt((u + v) / 2)``. The left side is one number per center; the check
    is a few passes over n numbers and is backed off while it rules out too few rows to pay for itself.
    """

    def __init__(self, sq_norms: np.ndarray, nearest: np.ndarray, centers: np.ndarray, center_sq: np.ndarray,
                 capacity: int, slack: float, gather_cost: float, check_cost: float):
        n_rows = sq_norms.shape[0]
        self.slack = slack
        self.slack_sq = (slack * sq_norms.astype(np.float64)).astype(sq_norms.dtype)  # in d2's dtype: no casts
        self.nearest = nearest.astype(np.intp)
        self.centers = np.empty((centers.shape[0] + capacity, centers.shape[1]), dtype=np.float64)
        self.centers[:centers.shape[0]] = centers
        self.center_sq = np.empty(self.centers.shape[0], dtype=np.float64)
        self.center_sq[:centers.shape[0]] = center_sq
        self.n_centers = centers.shape[0]
        self.gather_cost, self.check_cost = gather_cost, check_cost
        self._limits = np.empty(n_rows, dtype=sq_norms.dtype)
        self._keys = np.empty(n_rows, dtype=sq_norms.dtype)
        self._live = np.empty(n_rows, dtype=bool)
        self._unchecked, self._skip = 0, 0  # full passes before the next check, and the current back-off
        self.computed = 0  # row-center distances computed, for the logs and the benchmarks

    def _per_row(self, kind: str) -> float:
        """Cost of one row of ``kind`` ("stream": in a full pass, "gather": computed alone, "check": the bound).

        Fixed ratios, so the way a pick is computed (never its value) depends on the input alone.
        """
        if kind == "stream":
            return 1.0
        return self.gather_cost if kind == "gather" else self.check_cost

    def live_rows(self, center: np.ndarray, center_sq: float, d2: np.ndarray) -> Optional[np.ndarray]:
        """Rows (ascending) the new center may come closer to; None when one full pass is the cheaper way.

        The check runs while it pays for itself; after one that did not, the next full passes skip it, twice as
        many each time up to ``_MAX_UNCHECKED_PICKS``, so on inputs where most rows stay live the kernel is
        today's loop plus a check every few dozen picks. A check that alone costs what gathering may save
        never runs.
        """
        n_rows = d2.shape[0]
        if self.n_centers == 0 or self._unchecked > 0 or self._per_row("check") >= _PAYING_SHARE:
            self._unchecked = max(0, self._unchecked - 1)
            self.computed += n_rows
            return None
        gaps = self.centers[:self.n_centers] - center
        limit = np.einsum("ij,ij->i", gaps, gaps)
        limit *= 0.25 * (1.0 - 1e-9)
        limit -= self.slack / 2 * (self.center_sq[:self.n_centers] + center_sq)
        # In float32 the check rounds by < 2^-23 (|x|^2 + |a|^2 + |c|^2), far inside the slack's spare half.
        np.take(limit.astype(self._limits.dtype), self.nearest, out=self._limits)
        np.add(d2, self.slack_sq, out=self._keys)
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

    def add_center(self, center: np.ndarray, center_sq: float, moved: np.ndarray) -> None:
        """Record the new center, nearest now to the ``moved`` rows."""
        index = self.n_centers
        self.centers[index] = center
        self.center_sq[index] = center_sq
        self.n_centers += 1
        self.nearest[moved] = index


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


def _nearest_of_centers(X: np.ndarray, sq_norms: np.ndarray, centers: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """``_min_sq_distances`` (the same arithmetic) and each row's first nearest center."""
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
    vectors, so the same loop applies. A row the new center provably cannot bring closer
    (``_TriangleBound``) keeps its distance without computing it; the others get the value a full pass
    gives them (``_RowDots``), so the picks are those of one full pass per pick.

    Returns the picked row indices in order and each one's distance to its nearest center (euclidean,
    or 1 - cosine similarity) at the moment it was picked.
    """
    if metric not in METRICS:
        raise ValueError("metric must be one of {}, got {!r}".format(METRICS, metric))
    X = _as_matrix(X, "X", np.float32)
    n_rows = X.shape[0]
    n_select = min(int(n_select), n_rows)
    if initial_centers is None or len(initial_centers) == 0:
        centers = X.mean(axis=0, dtype=np.float64).astype(np.float32)[None, :]
    else:
        centers = _as_matrix(initial_centers, "initial_centers", np.float32)
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
    bound = _TriangleBound(sq_norms, nearest_center, centers, np.einsum("ij,ij->i", centers, centers,
                           dtype=np.float64), n_select, _pruning_slack(X.shape[1]),
                           gather_cost=_GATHER_COST["kcenter"], check_cost=_CHECK_BYTES["kcenter"] / (4 * X.shape[1]))
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
        rows = bound.live_rows(center, float(sq_norms[chosen]), nearest.d2)
        if rows is None:
            np.dot(X, center, out=dots)
            moved = nearest.fold(dots, chosen)
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

    With ``uncertainty_prefilter`` = beta > 0 it is the uncertain-and-diverse hybrid (Zhdanov 2019; seed 004):
    only the beta x batch_size most uncertain candidates by ``uncertainty_mode`` are considered
    (``uncertainty_prefilter``); k-center still starts from the labeled rows.

    Parameters
    ----------
    metric : {"euclidean", "cosine"}, default="euclidean"
    random_seed : int or None, default=42
        Seed of the k-means++ start of ``method="kmeans"``; k-center is deterministic (it starts from the
        labeled rows or the candidates' mean).
    method : {"kcenter", "kmeans"}, default="kcenter"
    uncertainty_prefilter : int, default=0
        beta; 0 considers every candidate.
    uncertainty_mode : {"margin", "entropy", "least_confidence"}, default="margin"
        The pre-filter's uncertainty measure; see ``uncertainty_scores``.
    """

    def __init__(self, metric: str = "euclidean", random_seed: Optional[int] = 42, method: str = "kcenter",
                 uncertainty_prefilter: int = 0, uncertainty_mode: str = "margin"):
        self.metric = _choice("metric", metric, METRICS)
        self.random_seed = random_seed
        self.method = _choice("method", method, DIVERSITY_METHODS)
        self.uncertainty_prefilter = _positive_int("uncertainty_prefilter", uncertainty_prefilter, 0)
        self.uncertainty_mode = _choice("uncertainty_mode", uncertainty_mode, UNCERTAINTY_MODES)

    def select(self, candidates: Candidates, batch_size: int) -> Selection:
        kept = self._prefilter(candidates.probabilities, batch_size, candidates.embeddings.shape[0])
        embeddings = candidates.embeddings if kept is None else candidates.embeddings[kept]
        if self.method == "kmeans":
            indices, scores = kmeans_representatives(embeddings, batch_size, metric=self.metric,
                                                     random_state=self.random_seed, copy=False)
        else:
            indices, scores = k_center_greedy(embeddings, batch_size, initial_centers=candidates.labeled_embeddings,
                                              metric=self.metric, copy=False)
        return Selection(indices if kept is None else kept[indices], scores)

    def _prefilter(self, probabilities: Optional[np.ndarray], batch_size: int, n_rows: int) -> Optional[np.ndarray]:
        """The kept candidates' positions, or None when every candidate stays."""
        if self.uncertainty_prefilter == 0:
            return None
        if probabilities is None:
            raise ValueError("uncertainty_prefilter needs the candidates' probabilities")
        n_keep = self.uncertainty_prefilter * batch_size
        if n_keep >= n_rows:
            logger.info("Uncertainty pre-filter keeps all %d candidates (%d x BATCH_SIZE=%d)", n_rows,
                        self.uncertainty_prefilter, batch_size)
            return None
        logger.info("Uncertainty pre-filter: the %d most uncertain of %d candidates by %s (%d x BATCH_SIZE=%d)",
                    n_keep, n_rows, self.uncertainty_mode, self.uncertainty_prefilter, batch_size)
        return uncertainty_prefilter(probabilities, n_keep, mode=self.uncertainty_mode)

    def select_batch(self, embeddings: Any, batch_size: int, indices: Any = None, *,
                     labeled_embeddings: Any = None, probabilities: Any = None) -> np.ndarray:
        """Positions (or entries of ``indices``) of the picks in order.

        ``labeled_embeddings`` (shape (m, d)), the already-labeled rows, are k-center's initial centers;
        ``probabilities`` (shape (n, n_classes)) are needed when ``uncertainty_prefilter`` > 0.
        """
        matrix = np.array(_as_matrix(embeddings, "embeddings", np.float32))  # select() centers it in place
        labeled = None if labeled_embeddings is None or len(labeled_embeddings) == 0 else _as_matrix(
            labeled_embeddings, "labeled_embeddings", np.float32)
        if labeled is not None and labeled.shape[1] != matrix.shape[1]:
            raise ValueError("labeled_embeddings have {} columns, embeddings {}".format(labeled.shape[1],
                                                                                      matrix.shape[1]))
        scores = None if probabilities is None else _as_matrix(probabilities, "probabilities", np.float64)
        if scores is not None and scores.shape[0] != matrix.shape[0]:
            raise ValueError("embeddings and probabilities have different row counts: {} and {}".format(
                matrix.shape[0], scores.shape[0]))
        candidates = Candidates(scores, matrix, labeled)
        return self._select_among(candidates, _positive_int("batch_size", batch_size, 1), indices)

    def _compute_distances(self, X: Any, Y: Any) -> np.ndarray:
        """Distances between the rows of X (n, d) and Y (m, d) as an (n, m) array: euclidean or 1 - cosine."""
        X = _as_matrix(X, "X", np.float64)
        Y = _as_matrix(Y, "Y", np.float64)
        if self.metric == "cosine":
            X, Y = _normalize_rows(X.copy()), _normalize_rows(Y.copy())
            return 1.0 - X @ Y.T
        d2 = np.einsum("ij,ij->i", X, X)[:, None] - 2.0 * (X @ Y.T) + np.einsum("ij,ij->i", Y, Y)[None, :]
        return np.sqrt(np.maximum(d2, 0.0))


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
    if int(n_keep) < 1:
        raise ValueError("n_keep must be at least 1, got {}".format(n_keep))
    probabilities = _as_matrix(probabilities, "probabilities", np.float64)
    return np.sort(top_k_indices(uncertainty_scores(probabilities, mode), int(n_keep)))


def kmeans_representatives(
    X: Any, n_select: int, *, metric: str = "euclidean", random_state: Any = None, max_iter: int = 100,
    tol: float = 1e-4, copy: bool = True
) -> Tuple[np.ndarray, np.ndarray]:
    """k-means with ``n_select`` clusters; the row nearest each centroid (seed 004, Zhdanov 2019).

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

    Returns
    -------
    indices : ndarray of shape (min(n_select, n_rows),), dtype int64
        Picked rows, the one standing for the largest cluster first (ties to the lower row index).
    cluster_sizes : ndarray of shape (min(n_select, n_rows),), dtype float64
        Rows in each pick's cluster (0 for a fill-in pick).
    """
    if metric not in METRICS:
        raise ValueError("metric must be one of {}, got {!r}".format(METRICS, metric))
    if int(max_iter) < 1:
        raise ValueError("max_iter must be at least 1, got {}".format(max_iter))
    if not float(tol) >= 0.0:
        raise ValueError("tol must be at least 0, got {}".format(tol))
    X = _as_matrix(X, "X", np.float32)
    if copy or not X.flags.writeable:
        X = X.copy()
    n_rows = X.shape[0]
    n_select = max(0, min(int(n_select), n_rows))
    if n_select >= n_rows:
        return np.arange(n_rows, dtype=np.int64), np.ones(n_rows, dtype=np.float64)
    if metric == "cosine":
        X = _normalize_rows(X)
    X -= X.mean(axis=0, dtype=np.float64).astype(np.float32)
    rng = np.random.default_rng(random_state)
    centers = X[_kmeans_plusplus(X, n_select, rng)]
    shift_tolerance = float(tol) * float(np.mean(np.var(X, axis=0, dtype=np.float64)))
    labels = None
    for _ in range(int(max_iter)):
        new_labels, d2 = _assign_to_centers(X, centers)
        if labels is not None and np.array_equal(new_labels, labels):
            break
        labels = new_labels
        new_centers = _cluster_means(X, labels, centers, d2)
        shift = float(np.sum((new_centers.astype(np.float64) - centers) ** 2))
        centers = new_centers
        if shift <= shift_tolerance:
            break
    labels, d2 = _assign_to_centers(X, centers)
    return _nearest_to_each_centroid(labels, d2, n_select)


def _kmeans_plusplus(X: np.ndarray, n_clusters: int, rng: np.random.Generator) -> np.ndarray:
    """k-means++ seeding: row positions of the initial centers (distinct while rows are distinct)."""
    n_rows = X.shape[0]
    sq_norms = np.einsum("ij,ij->i", X, X)
    nearest = _NearestCenter(sq_norms, np.full(n_rows, np.inf, dtype=np.float32))
    chosen = np.empty(n_clusters, dtype=np.int64)
    dots = np.empty(n_rows, dtype=np.float32)
    pick = _draw_proportional(np.ones(n_rows), rng)
    for position in range(n_clusters):
        chosen[position] = pick
        np.dot(X, X[pick], out=dots)
        nearest.add(dots, pick)
        nearest.d2[pick] = 0.0
        pick = _draw_proportional(nearest.d2, rng)
        if pick < 0:  # every row duplicates a center: the rest start on unused rows, in order
            rest = np.setdiff1d(np.arange(n_rows), chosen[:position + 1], assume_unique=True)
            chosen[position + 1:] = rest[:n_clusters - position - 1]
            break
    return chosen


def _assign_to_centers(X: np.ndarray, centers: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """Nearest center of every row (ties to the lower center) and the squared distance to it, in blocks."""
    center_sq = np.einsum("ij,ij->i", centers, centers)
    block_rows = max(1, (1 << 24) // centers.shape[0])
    labels = np.empty(X.shape[0], dtype=np.int64)
    d2 = np.empty(X.shape[0], dtype=np.float32)
    for start in range(0, X.shape[0], block_rows):
        block = X[start:start + block_rows]
        distances = block @ centers.T
        distances *= -2
        distances += np.einsum("ij,ij->i", block, block)[:, None]
        distances += center_sq[None, :]
        nearest = np.argmin(distances, axis=1)
        labels[start:start + block_rows] = nearest
        d2[start:start + block_rows] = distances[np.arange(block.shape[0]), nearest]
    np.maximum(d2, 0, out=d2)
    return labels, d2


def _cluster_means(X: np.ndarray, labels: np.ndarray, centers: np.ndarray, d2: np.ndarray) -> np.ndarray:
    """Mean of each cluster's rows; an empty cluster moves to the farthest row from its center not yet used."""
    n_clusters = centers.shape[0]
    counts = np.bincount(labels, minlength=n_clusters)
    sums = np.zeros(centers.shape, dtype=np.float64)
    block_rows = max(1, (1 << 24) // n_clusters)
    for start in range(0, X.shape[0], block_rows):
        block_labels = labels[start:start + block_rows]
        one_hot = (block_labels[:, None] == np.arange(n_clusters)[None, :]).astype(np.float32)
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


def _nearest_to_each_centroid(labels: np.ndarray, d2: np.ndarray, n_select: int) -> Tuple[np.ndarray, np.ndarray]:
    """One row per non-empty cluster (its member nearest the centroid), largest cluster first; fill-ins after."""
    order = np.lexsort((np.arange(labels.shape[0]), d2, labels))  # by cluster, then distance, then row
    first_of_cluster = np.ones(order.shape[0], dtype=bool)
    first_of_cluster[1:] = labels[order[1:]] != labels[order[:-1]]
    picks = order[first_of_cluster]
    sizes = np.bincount(labels)[labels[picks]].astype(np.float64)
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


def gradient_embeddings(embeddings: Any, probabilities: Any) -> np.ndarray:
    """BADGE's gradient embeddings ``(p - onehot(argmax p)) (x) h`` as an (n, C*D) float64 matrix.

    Materialized, so only for small inputs and for checking; ``badge_kmeanspp`` never builds it.
    """
    H = _as_matrix(embeddings, "embeddings", np.float64)
    residual = _prediction_residuals(_as_matrix(probabilities, "probabilities", np.float64))
    return (residual[:, :, None] * H[:, None, :]).reshape(H.shape[0], -1)


def badge_kmeanspp(
    embeddings: Any, probabilities: Any, n_select: int, *, metric: str = "euclidean", random_state: Any = None,
    sample_weight: Any = None,
) -> Tuple[np.ndarray, np.ndarray]:
    """BADGE (Ash et al. 2020): k-means++ seeding over gradient embeddings ``g_i = (p_i - e_yhat_i) (x) h_i``.

    The first pick is the row with the largest gradient norm; every next pick is drawn with probability
    proportional to its squared distance to the nearest pick so far (D^2 sampling), which trades off
    uncertainty (gradient magnitude) and diversity. The n x C*D gradient matrix is never built:
    ``g_i . g_j = (d_i . d_j)(h_i . h_j)``, so each pick costs one n x D (float32) and one n x C
    matrix-vector product. A draw is ``u = rng.random() * sum(D2)`` located in ``cumsum(D2)`` by binary
    search; picked rows and exact duplicates of picks have D2 = 0 and are never drawn. Rows whose nearest
    pick cannot change (``_TriangleBound``, in gradient space: the picks' gradients are built, one C*D
    vector each) keep their D2 uncomputed, the others get a full pass's value, so the draws are the same. When every
    remaining row duplicates a pick (sum(D2) = 0), the rest are taken by decreasing gradient norm.

    ``metric="cosine"`` normalizes d and h (hence g) first; the first pick still maximizes the raw norm.
    ``sample_weight`` (n,) non-negative, as in k-means|| (Bahmani et al. 2012): draws are proportional to
    weight x D^2 (the merge of a sharded run weighs each shard's pick by the rows it stands for).
    Returns the picked row indices in order and each one's distance to its nearest earlier pick at the
    moment it was picked (the first pick reports its gradient norm, or 1.0 for cosine).
    """
    if metric not in METRICS:
        raise ValueError("metric must be one of {}, got {!r}".format(METRICS, metric))
    H = _as_matrix(embeddings, "embeddings", np.float32)
    residual = _prediction_residuals(_as_matrix(probabilities, "probabilities", np.float64))
    if residual.shape[0] != H.shape[0]:
        raise ValueError("embeddings and probabilities have different row counts: {} and {}".format(
            H.shape[0], residual.shape[0]))
    rng = np.random.default_rng(random_state)
    n_rows = H.shape[0]
    n_select = min(int(n_select), n_rows)
    weights = None if sample_weight is None else _sample_weights(sample_weight, n_rows)
    raw_sq_norms = np.einsum("ij,ij->i", residual, residual) * np.einsum("ij,ij->i", H, H, dtype=np.float64)
    if metric == "cosine":
        H = _normalize_rows(H.copy())
        residual = _normalize_rows(residual)
    sq_norms = np.einsum("ij,ij->i", residual, residual) * np.einsum("ij,ij->i", H, H, dtype=np.float64)
    indices = np.empty(n_select, dtype=np.int64)
    distances = np.empty(n_select, dtype=np.float64)
    if n_select == 0:
        return indices, distances
    residual_by_class = np.ascontiguousarray(residual.T)  # (C, n): a faster product than (n, C) by a vector
    del residual
    nearest = _NearestCenter(sq_norms, np.full(n_rows, np.inf))
    min_d2 = nearest.d2
    n_classes = residual_by_class.shape[0]
    bound = _TriangleBound(sq_norms, np.zeros(n_rows, dtype=np.intp), np.empty((0, n_classes * H.shape[1])),
                           np.empty(0), n_select, _pruning_slack(H.shape[1]),
                           gather_cost=_GATHER_COST["badge"],
                           check_cost=_CHECK_BYTES["badge"] / (4 * H.shape[1] + 8 * n_classes))
    h_row_dots, residual_row_dots = _RowDots(H, rows_axis=0), _RowDots(residual_by_class, rows_axis=1)
    h_dot = np.empty(n_rows, dtype=np.float32)
    dots = np.empty(n_rows, dtype=np.float64)
    chosen = int(np.argmax(raw_sq_norms))
    indices[0] = chosen
    distances[0] = 1.0 if metric == "cosine" else math.sqrt(raw_sq_norms[chosen])
    progress = _Progress("BADGE k-means++", n_select)
    for pick in range(1, n_select + 1):
        gradient = np.multiply.outer(residual_by_class[:, chosen], H[chosen].astype(np.float64)).ravel()
        rows = bound.live_rows(gradient, float(sq_norms[chosen]), min_d2)
        if rows is None:
            np.dot(H, H[chosen], out=h_dot)
            np.dot(residual_by_class[:, chosen], residual_by_class, out=dots)
            dots *= h_dot
            moved = np.union1d(nearest.fold(dots, chosen), [chosen])
        else:
            row_dots = residual_row_dots(residual_by_class[:, chosen], rows)
            row_dots *= h_row_dots(H[chosen], rows)
            moved = np.union1d(nearest.fold(row_dots, chosen, rows), [chosen])
        min_d2[chosen] = 0.0
        bound.add_center(gradient, float(sq_norms[chosen]), moved)
        progress.update(pick)
        if pick == n_select:
            break
        chosen = _draw_proportional(min_d2 if weights is None else min_d2 * weights, rng)
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
    total = cumulative[-1]
    if not total > 0.0:
        return -1
    position = int(np.searchsorted(cumulative, rng.random() * total, side="right"))
    if position >= weights.shape[0]:  # rounding put the draw at the very end
        position = int(np.flatnonzero(weights > 0)[-1])
    return position


class BADGESampler(_Sampler):
    """BADGE: k-means++ seeding on gradient embeddings (active learning); see ``badge_kmeanspp``.

    Parameters
    ----------
    metric : {"euclidean", "cosine"}, default="euclidean"
    random_seed : int or None, default=42
        Seed of the D^2 sampling; the same seed gives the same picks. None draws a fresh seed.
    """

    def __init__(self, metric: str = "euclidean", random_seed: Optional[int] = 42):
        self.metric = _choice("metric", metric, METRICS)
        self.random_seed = random_seed

    def compute_gradient_embeddings(self, features: Any, probabilities: Any) -> np.ndarray:
        """The (n_rows, n_classes * n_features) gradient embeddings; for small inputs (selection never builds it)."""
        return gradient_embeddings(features, probabilities)

    def select(self, candidates: Candidates, batch_size: int) -> Selection:
        indices, distances = badge_kmeanspp(candidates.embeddings, candidates.probabilities, batch_size,
                                            metric=self.metric, random_state=self.random_seed)
        return Selection(indices, distances)

    def select_batch(self, features: Any, probabilities: Any, batch_size: int, indices: Any = None) -> np.ndarray:
        """Positions (or entries of ``indices``) of the picks in order."""
        matrix = _as_matrix(features, "features", np.float32)
        probabilities = _as_matrix(probabilities, "probabilities", np.float64)
        if matrix.shape[0] != probabilities.shape[0]:
            raise ValueError("features and probabilities have different row counts: {} and {}".format(
                matrix.shape[0], probabilities.shape[0]))
        candidates = Candidates(probabilities, matrix)
        return self._select_among(candidates, _positive_int("batch_size", batch_size, 1), indices)


# ---- Engine: the strategy table and the one path from pool to annotated rows ---------------------------------

class Strategy(NamedTuple):
    """One row of ``STRATEGY_TABLE``: how a SELECTION_STRATEGY value is run."""

    name: str
    sampler: type  # the sampler class that runs it
    use_case: str  # "ssl" or "active_learning"
    needs_embeddings: bool  # reads the EMBEDDING_FIELD_PREFIX (or feature) columns
    batched: bool  # selects BATCH_SIZE rows
    settings: Mapping[str, str]  # SelectionConfig field -> keyword of the sampler's constructor

    @property
    def reads(self) -> Tuple[str, ...]:
        """Every SelectionConfig field that changes what this strategy selects."""
        return tuple(self.settings) + (("batch_size",) if self.batched else ())


# The strategies. Everything else (the SELECTION_STRATEGY choices, use-case rules, the step's config,
# contract and docs) is derived from this table: a new strategy is one sampler class and one row here.
STRATEGY_TABLE = (
    Strategy("confidence_threshold", ConfidenceThresholdSampler, "ssl", needs_embeddings=False, batched=False,
             settings={"confidence_threshold": "confidence_threshold", "max_samples": "max_samples"}),
    Strategy("top_k_per_class", TopKPerClassSampler, "ssl", needs_embeddings=False, batched=False,
             settings={"k_per_class": "k_per_class"}),
    Strategy("uncertainty", UncertaintySampler, "active_learning", needs_embeddings=False, batched=True,
             settings={"uncertainty_mode": "strategy"}),
    Strategy("diversity", DiversitySampler, "active_learning", needs_embeddings=True, batched=True,
             settings={"metric": "metric", "random_seed": "random_seed", "diversity_method": "method",
                       "uncertainty_prefilter": "uncertainty_prefilter", "uncertainty_mode": "uncertainty_mode"}),
    Strategy("badge", BADGESampler, "active_learning", needs_embeddings=True, batched=True,
             settings={"metric": "metric", "random_seed": "random_seed"}),
)
STRATEGIES_BY_NAME = {strategy.name: strategy for strategy in STRATEGY_TABLE}
STRATEGIES = tuple(STRATEGIES_BY_NAME)
SSL_STRATEGIES = tuple(strategy.name for strategy in STRATEGY_TABLE if strategy.use_case == "ssl")
ACTIVE_LEARNING_STRATEGIES = tuple(strategy.name for strategy in STRATEGY_TABLE
                                   if strategy.use_case == "active_learning")
EMBEDDING_STRATEGIES = tuple(strategy.name for strategy in STRATEGY_TABLE if strategy.needs_embeddings)
ENV_VARS = _declare_env_vars(STRATEGIES)
ENV_VARS_BY_NAME = {var.name: var for var in ENV_VARS}


def strategy_for(name: str) -> Strategy:
    """The ``STRATEGY_TABLE`` row of ``name``; an unknown name is a ``SelectionError`` (a ``ValueError``)."""
    try:
        return STRATEGIES_BY_NAME[name]
    except (KeyError, TypeError):
        raise SelectionError("unknown strategy {!r}: expected one of {}".format(name, ", ".join(STRATEGIES))) from None


def make_sampler(config: SelectionConfig) -> _Sampler:
    """The configured strategy's sampler, built from the settings its table row names."""
    strategy = strategy_for(config.selection_strategy)
    return strategy.sampler(**{keyword: getattr(config, field) for field, keyword in strategy.settings.items()})


def select_from_pool(pool: Pool, config: SelectionConfig) -> Selection:
    """Run the configured strategy over the pool's candidates (rows without a label).

    Returns the selected rows' positions in the pool, in rank order, with their selection scores.
    The pool's vectors may be overwritten (diversity centers them in place).
    """
    strategy = strategy_for(config.selection_strategy)
    rows = np.flatnonzero(~pool.labeled)
    n_rows = pool.labeled.shape[0]
    if rows.size == 0:
        raise SelectionError("no candidate rows: all {} rows have LABEL_FIELD {!r} filled".format(
            n_rows, config.label_field))
    logger.info("Scores from %s read as %s; %d rows, %d labeled, %d candidates", _preview(pool.score_columns),
                pool.score_interpretation, n_rows, n_rows - rows.size, rows.size)
    if strategy.batched and config.batch_size >= rows.size:
        logger.info("BATCH_SIZE=%d is not smaller than the %d candidates: selecting them all", config.batch_size,
                    rows.size)
    selection = make_sampler(config).select(_candidates(pool, rows, strategy), config.batch_size)
    return Selection(rows[selection.indices], selection.scores)


def _candidates(pool: Pool, rows: np.ndarray, strategy: Strategy) -> Candidates:
    every_row = rows.size == pool.labeled.shape[0]
    probabilities = pool.probabilities if every_row else pool.probabilities[rows]
    if pool.vectors is None:
        return Candidates(probabilities)
    embeddings = pool.vectors if every_row else pool.vectors[rows]
    labeled = None if every_row else pool.vectors[pool.labeled]
    return Candidates(probabilities, embeddings, labeled)


def annotate(rows: pd.DataFrame, probabilities: np.ndarray, classes: Sequence[Any], scores: np.ndarray,
             strategy: str) -> pd.DataFrame:
    """The selected ``rows`` (in rank order) with the output columns appended.

    ``probabilities`` (shape (n_selected, n_classes)) and ``scores`` belong to the same rows. Every
    strategy adds selection_score, selection_rank and data_source; SSL strategies also pseudo_label
    and confidence.
    """
    is_ssl = strategy_for(strategy).use_case == "ssl"
    added = {
        SELECTION_SCORE: np.asarray(scores, dtype=np.float64),
        SELECTION_RANK: np.arange(1, len(rows) + 1, dtype=np.int64),
        DATA_SOURCE: np.full(len(rows), DATA_SOURCE_SSL if is_ssl else DATA_SOURCE_ACTIVE_LEARNING, dtype=object),
    }
    if is_ssl:
        added[PSEUDO_LABEL] = pd.Series(predicted_classes(probabilities, classes), index=rows.index).infer_objects()
        added[CONFIDENCE] = probabilities.max(axis=1)
    # One concat rather than a column at a time: wide inputs would otherwise fragment the frame.
    return pd.concat([rows, pd.DataFrame(added, index=rows.index)], axis=1)


def predicted_classes(probabilities: np.ndarray, classes: Sequence[Any]) -> np.ndarray:
    """The class of each row's largest probability (object array of shape (n_rows,))."""
    return np.asarray(classes, dtype=object)[probabilities.argmax(axis=1)]


class Predictions(NamedTuple):
    """The model's guess for each selected row: its top class and that class's probability."""

    classes: Tuple[Any, ...]  # every class, in score-column order
    labels: np.ndarray  # (n_selected,) object: the top class of each row
    confidence: np.ndarray  # (n_selected,) float64: its probability


class SelectionResult(NamedTuple):
    """What a selection produced: the output rows and the facts the metadata reports."""

    rows: pd.DataFrame  # selected rows in rank order, with the output columns
    counts: Dict[str, Any]  # pool_size, labeled_count, candidate_count, selected_count, selected_per_class, ...
    details: Dict[str, Any]  # score columns and how they were read, classes, vector columns
    predictions: Optional[Predictions] = None  # the model's guess for the same rows (labeling tasks show it)


def run_selection(pool: Pool, config: SelectionConfig,
                  fetch_rows: Callable[[np.ndarray], pd.DataFrame]) -> SelectionResult:
    """Select from ``pool``, fetch the full rows at the selected positions and annotate them.

    This is the one path behind ``main``, the command line and ``select_samples``. ``fetch_rows``
    returns the input rows at the given positions, in that order. Pass the pool without keeping a
    reference: its arrays are released before the rows are fetched.
    """
    selection = select_from_pool(pool, config)
    chosen = pool.probabilities[selection.indices]
    counts, details = _selection_facts(pool, selection, chosen)
    classes = pool.classes
    del pool
    rows = annotate(fetch_rows(selection.indices), chosen, classes, selection.scores, config.selection_strategy)
    predictions = Predictions(tuple(classes), predicted_classes(chosen, classes), chosen.max(axis=1))
    return SelectionResult(rows, counts, details, predictions)


def _selection_facts(pool: Pool, selection: Selection, chosen: np.ndarray) -> Tuple[Dict[str, Any], Dict[str, Any]]:
    n_rows = int(pool.labeled.shape[0])
    labeled = int(pool.labeled.sum())
    classes = [str(label) for label in pool.classes]
    counts = {"pool_size": n_rows, "labeled_count": labeled, "candidate_count": n_rows - labeled,
              **_selected_counts(chosen, pool.classes, selection.scores)}
    vectors = {} if pool.vectors is None else {"vector_columns": len(pool.vector_columns),
                                                "vector_source": pool.vector_source}
    details = {"score_columns": pool.score_columns, "score_interpretation": pool.score_interpretation, **vectors,
               "classes": classes}
    return counts, details


def _selected_counts(chosen: np.ndarray, classes: Sequence[Any], scores: np.ndarray) -> Dict[str, Any]:
    """selected_count, selected_per_class (predicted class) and selection_score of the selected rows."""
    per_class = pd.Series(predicted_classes(chosen, classes), dtype=object).astype(str).value_counts()
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
    settings.update(selection_strategy=strategy, batch_size=batch_size if batched else None, id_field=id_field)
    environ = {var.name: None if settings.get(var.field) is None else str(settings[var.field])
               for var in ENV_VARS}
    return parse_environment(environ)


def select_samples(df: pd.DataFrame, strategy: str, batch_size: int,
                   strategy_config: Optional[Mapping[str, Any]] = None, id_field: str = "id") -> pd.DataFrame:
    """Apply ``strategy`` to the prediction table ``df`` and return the selected rows (seed 000's engine).

    Parameters
    ----------
    df : DataFrame
        The prediction table: an id column, score columns and, for diversity and badge, embeddings.
    strategy : str
        One of ``STRATEGIES``; an unknown name is a ``ValueError`` naming it.
    batch_size : int
        Rows to select (uncertainty, diversity, badge).
    strategy_config : mapping, optional
        Settings by ``SelectionConfig`` field name, as seed 001's ``main`` builds them
        (``confidence_threshold``, ``max_samples``, ``k_per_class``, ``uncertainty_mode``, ``metric``,
        ``random_seed``, ``feature_columns``) plus ``diversity_method``, ``uncertainty_prefilter``,
        ``label_field``, ``score_field``, ``score_field_prefix``, ``embedding_field_prefix`` and ``use_case``.
    id_field : str, default="id"

    Returns
    -------
    DataFrame
        The selected rows of ``df`` (its index kept) in rank order with ``selection_score``,
        ``selection_rank`` and ``data_source`` appended (SSL strategies also ``pseudo_label`` and
        ``confidence``). Rows whose label field is filled are never selected.
    """
    config = config_from_settings(strategy, batch_size, strategy_config, id_field)
    _require_columns([str(name) for name in df.columns], [("ID_FIELD", config.id_field)])
    _check_ids(df[config.id_field], config.id_field)
    feature_columns = (strategy_config or {}).get("feature_columns")
    return run_selection(pool_from_frame(df, config, feature_columns), config,
                         lambda positions: df.iloc[positions]).rows


# ---- Sharding: SELECTION_ROLE=shard on each instance, merge on one -------------------------------------------
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
EXACT_STRATEGIES = ("confidence_threshold", "top_k_per_class", "uncertainty")
_HOST_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_RADIUS_SLACK = 1e-4  # relative: float32 distances may round a radius down by this much
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
    """Why this configuration cannot be sharded (yet), or None."""
    if config.selection_strategy != "diversity":
        return None
    if config.diversity_method != "kcenter":
        return "DIVERSITY_METHOD={} cannot be sharded yet: use kcenter or SELECTION_ROLE=single".format(
            config.diversity_method)
    if config.uncertainty_prefilter:
        return "UNCERTAINTY_PREFILTER={} cannot be sharded yet: use 0 or SELECTION_ROLE=single".format(
            config.uncertainty_prefilter)
    return None


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


def shard_seed(random_seed: int, hosts: Sequence[str], host: str) -> List[int]:
    """A seed per shard, so that shards do not draw the same random sequence."""
    return [int(random_seed), hosts.index(host)]


def shard_pick_count(config: SelectionConfig) -> int:
    """Candidates a diversity or badge shard sends: OVERSAMPLING x BATCH_SIZE."""
    return config.oversampling * config.batch_size


def _chord(distance: float, metric: str) -> float:
    """A distance that obeys the triangle inequality: euclidean as is, ``1 - cos`` as ``|u - v|`` of unit vectors."""
    return math.sqrt(2.0 * max(distance, 0.0)) if metric == "cosine" else float(distance)


def _from_chord(chord: float, metric: str) -> float:
    return chord * chord / 2.0 if metric == "cosine" else chord


def _distance_to_nearest(point: np.ndarray, rows: np.ndarray, metric: str) -> float:
    """Chord distance from ``point`` to the nearest of ``rows`` (float64)."""
    point, rows = np.asarray(point, dtype=np.float64)[None, :], np.asarray(rows, dtype=np.float64)
    if metric == "cosine":
        point, rows = _normalize_rows(point.copy()), _normalize_rows(rows.copy())
    return float(np.sqrt(((rows - point) ** 2).sum(axis=1).min()))


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
    X = _as_matrix(X, "X", np.float32)
    has_initial = initial_centers is not None and len(initial_centers) > 0
    if not has_initial and mean is None:
        mean = X.mean(axis=0, dtype=np.float64)
    centers = initial_centers if has_initial else np.asarray(mean, dtype=np.float32)[None, :]
    if n_select >= X.shape[0]:
        indices, distances = k_center_greedy(X, n_select, initial_centers=centers, metric=metric)
        return indices, distances, 0.0
    indices, distances = k_center_greedy(X, n_select + 1, initial_centers=centers, metric=metric)
    radius = _chord(distances[-1], metric)
    if not has_initial:
        radius += _distance_to_nearest(centers[0], X[indices[:-1]], metric)
    return indices[:-1], distances[:-1], radius


def covering_radius_bound(shard_radii: Sequence[float], merge_radius: float, metric: str) -> float:
    """Upper bound on the covering radius of the whole pool by the merged selection and the labeled rows.

    The radii are in chord units (``k_center_with_radius``); the bound comes back in METRIC's. A row of
    shard i lies within ``r_i`` of a labeled row or of a pick that shard sent, and every sent pick within
    ``r_merge`` of a final center, so by the triangle inequality the row lies within ``max_i r_i + r_merge``;
    the two-round greedy is a 4-approximation (Malkomes et al., NIPS 2015).
    """
    chord = (max(shard_radii, default=0.0) + merge_radius) * (1.0 + _RADIUS_SLACK)
    return _from_chord(chord, metric)


def nearest_pick_counts(embeddings: Any, probabilities: Any, picks: np.ndarray, *, metric: str = "euclidean"
                        ) -> np.ndarray:
    """How many rows have each pick as their nearest pick in BADGE's gradient space (ties: the earlier pick).

    Uses ``g_i . g_p = (d_i . d_p)(h_i . h_p)`` in blocks, never the n x C*D gradients.
    """
    H = _as_matrix(embeddings, "embeddings", np.float32)
    residual = _prediction_residuals(_as_matrix(probabilities, "probabilities", np.float64))
    if metric == "cosine":
        H, residual = _normalize_rows(H.copy()), _normalize_rows(residual)
    sq_norms = np.einsum("ij,ij->i", residual, residual) * np.einsum("ij,ij->i", H, H, dtype=np.float64)
    picks = np.asarray(picks, dtype=np.int64)
    H_picks, residual_picks, picks_sq_norms = H[picks], residual[picks], sq_norms[picks]
    nearest = np.empty(H.shape[0], dtype=np.int64)
    block = max(1, (1 << 22) // max(1, picks.size))
    for start in range(0, H.shape[0], block):
        rows = slice(start, start + block)
        d2 = (residual[rows] @ residual_picks.T) * (H[rows] @ H_picks.T)
        d2 *= -2.0
        d2 += sq_norms[rows, None]
        d2 += picks_sq_norms[None, :]
        nearest[rows] = np.argmin(d2, axis=1)
    return np.bincount(nearest, minlength=picks.size).astype(np.int64)


class ShardPicks(NamedTuple):
    """A shard's candidates: positions among its candidate rows, scores, weights, covering radius."""

    indices: np.ndarray
    scores: np.ndarray
    weights: np.ndarray
    radius: Optional[float]  # diversity: chord units


def shard_candidates(config: SelectionConfig, probabilities: np.ndarray, vectors: Optional[np.ndarray],
                     labeled_vectors: Optional[np.ndarray], seed: Any) -> ShardPicks:
    """What one shard sends to the merge.

    Exact strategies send what a single run would select from the shard alone (every qualifying row for
    confidence_threshold without MAX_SAMPLES): the global selection is a subset of the union. diversity
    sends OVERSAMPLING x BATCH_SIZE k-center picks and the covering radius they leave; badge as many D^2
    draws, each weighted by the shard's rows nearest to it.
    """
    n_candidates = probabilities.shape[0]
    if config.selection_strategy in EXACT_STRATEGIES:
        selection = make_sampler(config).select(Candidates(probabilities), config.batch_size)
        return ShardPicks(selection.indices, selection.scores, np.ones(selection.indices.size, np.int64), None)
    n_picks = shard_pick_count(config)
    if config.selection_strategy == "diversity":
        indices, distances, radius = k_center_with_radius(vectors, n_picks, initial_centers=labeled_vectors,
                                                          metric=config.metric)
        return ShardPicks(indices, distances, np.ones(indices.size, np.int64), radius)
    indices, distances = badge_kmeanspp(vectors, probabilities, min(n_picks, n_candidates), metric=config.metric,
                                        random_state=seed)
    weights = nearest_pick_counts(vectors, probabilities, indices, metric=config.metric)
    return ShardPicks(indices, distances, weights, None)


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


def _shard_input(root: Path, config: SelectionConfig, forbidden: Sequence[Path]) -> Optional[InputTable]:
    """The data this shard received, or None: with more instances than files, an instance receives none."""
    files: List[DataFile] = []
    if root.is_dir():
        try:
            files = discover_data_files(root, forbidden)
        except NoDataFilesError:
            pass
    if not files or all(read_file_columns(data_file).rows == 0 for data_file in files):
        logger.info("This shard received no rows under %s: it sends no candidates", root)
        return None
    return scan_input(root, config, forbidden)


def run_shard(input_dir: Path, samples_dir: Path, metadata_dir: Path, config: SelectionConfig,
              resources: ResourceConfig, job_type: str) -> Tuple[Dict[str, Any], List[Path]]:
    """Select this shard's candidates and write them with the manifest the merge checks them against.

    Returns the manifest and the files written (which are removed again if writing fails midway).
    """
    names = shard_file_names(resources.current_host)
    source = _shard_input(input_dir, config, forbidden=(samples_dir, metadata_dir))
    manifest: Dict[str, Any] = {
        "format": SHARD_FORMAT, "host": resources.current_host, "hosts": resources.hosts, "job_type": job_type,
        "config_fingerprint": config_fingerprint(config), "config": shared_settings(config), "input_files": [],
        "input_format": None, "columns": [], "kinds": {}, "arrow_schema": None, "column_dtypes": {},
        "pool_size": 0, "labeled_count": 0, "candidate_count": 0, "forwarded_count": 0, "candidate_files": [],
        "labeled_file": None, "labeled_vectors": 0, "candidate_vector_sum": None, "covering_radius_chord": None,
        "details": {},
    }
    written: List[Path] = []
    try:
        if source is not None:
            pieces, labeled, shard_manifest = _shard_select(source, config, resources)
            manifest.update(shard_manifest)
            for number, piece in enumerate(pieces):
                written.append(samples_dir / names["piece"].format(number))
                _write_atomically(written[-1], lambda target: _write_arrow(piece, target))
                manifest["candidate_files"].append(written[-1].name)
            if labeled is not None and labeled.shape[0]:
                written.append(samples_dir / names["labeled"])
                _write_atomically(written[-1], lambda target: _save_npy(target, labeled))
                manifest.update(labeled_file=written[-1].name, labeled_vectors=int(labeled.shape[0]))
        text = json.dumps(manifest, indent=2, default=_json_default, allow_nan=False) + "\n"
        for folder in (samples_dir, metadata_dir):
            written.append(folder / names["manifest"])
            _write_atomically(written[-1], lambda target: target.write_text(text, encoding="utf-8"))
    except BaseException:
        for path in written:
            if path.is_file():
                path.unlink()
        raise
    logger.info("Shard %s (%d of %d): %d rows, %d candidates, sending %d", resources.current_host,
                resources.hosts.index(resources.current_host) + 1, len(resources.hosts), manifest["pool_size"],
                manifest["candidate_count"], manifest["forwarded_count"])
    return manifest, written


def _write_arrow(table: Any, target: Path) -> None:
    import pyarrow.parquet as pq

    pq.write_table(table, str(target))


def _save_npy(target: Path, array: np.ndarray) -> None:
    with open(str(target), "wb") as handle:
        np.save(handle, array, allow_pickle=False)


def _schema_text(source: InputTable) -> Optional[str]:
    """The agreed Arrow types of a parquet input, serialized for the manifest (None for csv/tsv)."""
    import base64

    import pyarrow as pa

    if not source.arrow_types:
        return None
    schema = pa.schema([pa.field(name, source.arrow_types[name]) for name in source.columns])
    return base64.b64encode(schema.serialize().to_pybytes()).decode("ascii")


def _schema_from_text(text: str) -> Any:
    import base64

    import pyarrow as pa

    return pa.ipc.read_schema(pa.py_buffer(base64.b64decode(text)))


def _arrow_pieces(source: InputTable, df: Optional[pd.DataFrame], row_counts: Sequence[int],
                  positions: np.ndarray) -> List[Tuple[int, np.ndarray, Any]]:
    """The rows at sorted ``positions``, one Arrow table per input file holding any: (file, rows in it, table).

    Parquet rows come as ``read_rows_at`` reads them (the shard's agreed types; the merge casts them to
    the types all shards agree on); csv/tsv rows come from the shard's frame.
    """
    import pyarrow as pa

    starts = np.cumsum([0] + list(row_counts))
    pieces = []
    for index, (data_file, file_columns) in enumerate(zip(source.files, source.file_columns)):
        lo, hi = np.searchsorted(positions, [starts[index], starts[index + 1]])
        if hi == lo:
            continue
        local = positions[lo:hi] - starts[index]
        if df is None:
            try:
                table = pa.concat_tables(_rows_of_file(data_file, file_columns, local, source))
            except Exception as error:
                raise SelectionError("cannot read {}: {}".format(data_file.path, _one_line(error))) from None
        else:
            table = pa.Table.from_pandas(df.iloc[positions[lo:hi]].reset_index(drop=True), preserve_index=False)
        pieces.append((index, local, table))
    return pieces


def _shard_select(source: InputTable, config: SelectionConfig,
                  resources: ResourceConfig) -> Tuple[List[Any], Optional[np.ndarray], Dict[str, Any]]:
    """The shard's forwarded rows (one Arrow table per input file), its labeled vectors and its manifest."""
    import pyarrow as pa

    _check_no_shard_columns(source.columns)
    relative = [os.path.relpath(str(f.path), str(source.root)).replace(os.sep, "/") for f in source.files]
    df = None
    if source.fmt == "parquet":
        pool = pool_from_parquet(source, config)
        row_counts = [file_columns.rows for file_columns in source.file_columns]
    else:
        frames = [_read_file(data_file, file_columns, source)
                  for data_file, file_columns in zip(source.files, source.file_columns)]
        row_counts = [len(frame) for frame in frames]
        df = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
        df.index = pd.RangeIndex(len(df))
        _check_ids(df[config.id_field], config.id_field)
        pool = pool_from_frame(df, config, index_columns=source.index_columns)
    candidates = np.flatnonzero(~pool.labeled)
    vectors = labeled_vectors = None
    if pool.vectors is not None:
        vectors = pool.vectors[candidates]
        if config.selection_strategy == "diversity" and candidates.size < pool.labeled.size:
            labeled_vectors = pool.vectors[pool.labeled]
    probabilities = pool.probabilities[candidates]
    manifest = {
        "input_files": relative, "input_format": source.fmt, "columns": source.columns, "kinds": source.kinds,
        "arrow_schema": _schema_text(source), "pool_size": int(pool.labeled.size),
        "labeled_count": int(pool.labeled.sum()), "candidate_count": int(candidates.size),
        "column_dtypes": {} if df is None else {name: str(df[name].dtype) for name in source.columns},
        "details": {"score_columns": pool.score_columns, "score_interpretation": pool.score_interpretation,
                    "vector_columns": pool.vector_columns or None, "vector_source": pool.vector_source,
                    "classes": pool.classes},
    }
    if config.selection_strategy == "diversity" and candidates.size:
        manifest["candidate_vector_sum"] = vectors.sum(axis=0, dtype=np.float64)
    if candidates.size:
        picks = shard_candidates(config, probabilities, vectors, labeled_vectors,
                                 shard_seed(config.random_seed, resources.hosts, resources.current_host))
    else:
        empty = np.empty(0, dtype=np.int64)
        picks = ShardPicks(empty, np.empty(0), empty, None)
    del pool, vectors
    order = np.argsort(candidates[picks.indices], kind="stable")  # forwarded in input order
    positions = candidates[picks.indices][order]
    sent = picks.indices[order]
    manifest.update(covering_radius_chord=picks.radius, forwarded_count=int(positions.size))
    pieces, done = [], 0
    for index, local, table in _arrow_pieces(source, df, row_counts, positions):
        chunk = slice(done, done + local.size)
        done += local.size
        added = [(SHARD_FILE, pa.array([relative[index]] * local.size, pa.string())),
                 (SHARD_ROW, pa.array(local.astype(np.int64))),
                 (SHARD_SCORE, pa.array(np.asarray(picks.scores, dtype=np.float64)[order][chunk])),
                 (SHARD_WEIGHT, pa.array(picks.weights[order][chunk].astype(np.int64)))]
        added += [(SHARD_PROBABILITY + str(j), pa.array(probabilities[sent[chunk], j]))
                  for j in range(probabilities.shape[1])]
        for name, values in added:
            table = table.append_column(name, values)
        pieces.append(table)
    return pieces, labeled_vectors, manifest


class ShardOutput(NamedTuple):
    """One shard's manifest and the folder it was found in."""

    manifest: Dict[str, Any]
    folder: Path


def read_shard_outputs(root: Path) -> List[ShardOutput]:
    """Every shard manifest under the merge's input folder, in path order."""
    if not root.is_dir():
        raise SelectionError("input folder {} does not exist or is not a folder".format(root))
    outputs = []
    for path in sorted(root.rglob(SHARD_PREFIX + "*.json")):
        if any(part.startswith((".", "_")) for part in path.relative_to(root).parts):
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


class MergedPool(NamedTuple):
    """All shards' forwarded rows in input order: what selection reads, and where each row is stored."""

    ids: pd.Series
    probabilities: np.ndarray
    scores: np.ndarray
    weights: np.ndarray
    file_rank: np.ndarray
    row: np.ndarray
    vectors: Optional[np.ndarray]
    pieces: List[Any]  # Arrow tables as the shards wrote them
    piece: np.ndarray  # which piece holds each row
    piece_row: np.ndarray  # and where in it


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


def _read_merged_pool(outputs: Sequence[ShardOutput], config: SelectionConfig, n_classes: int,
                      vector_columns: Optional[Sequence[str]]) -> MergedPool:
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
    probabilities = np.column_stack([gather(SHARD_PROBABILITY + str(j), np.float64) for j in range(n_classes)])
    vectors = None
    if vector_columns:
        vectors = np.column_stack([gather(name, np.float32) for name in vector_columns])[order]
    ids = pd.concat([p.select([config.id_field]).to_pandas()[config.id_field] for p in pieces], ignore_index=True)
    return MergedPool(ids.iloc[order].reset_index(drop=True), probabilities[order],
                      gather(SHARD_SCORE, np.float64)[order], gather(SHARD_WEIGHT, np.float64)[order],
                      file_rank[order], row[order], vectors, pieces, piece, piece_row)


def _merged_rows(pool: MergedPool, chosen: np.ndarray, columns: Sequence[str], schema: Any,
                 dtypes: Dict[str, Any]) -> pd.DataFrame:
    """Full rows of ``chosen`` (positions in the pool, in rank order).

    Parquet pieces are cast to the types all shards agree on and converted as ``read_rows_at`` converts
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
    """The Arrow types a single run would read every parquet column as, from the shards' agreed types
    (the rule of ``_agreed_arrow_types``); None unless every shard with rows read parquet."""
    import pyarrow as pa

    if any(manifest["input_format"] != "parquet" for manifest in manifests):
        return None
    schemas = [_schema_from_text(manifest["arrow_schema"]) for manifest in manifests]
    fields = []
    for name in columns:
        types = [schema.field(name).type for schema in schemas if _arrow_kind(schema.field(name).type)]
        kinds = {_arrow_kind(arrow_type) for arrow_type in types}
        if not types:
            agreed = schemas[0].field(name).type
        elif all(arrow_type == types[0] for arrow_type in types):
            agreed = types[0]
        elif kinds == {"integer"}:
            agreed = pa.int64()
        elif kinds <= {"integer", "float"}:
            agreed = pa.float64()
        elif kinds == {"text"}:
            agreed = pa.large_string()
        else:
            agreed = types[0]
        fields.append(pa.field(name, agreed))
    return pa.schema(fields)


def _merged_dtypes(manifests: Sequence[Mapping[str, Any]]) -> Dict[str, Any]:
    """Numeric columns whose type differs between shards, and the type a single run's concat gives them.

    A single run concatenates all CSV files; a column that is int64 in one shard and float64 in
    another is float64 there. (Parquet runs concatenate only the pieces they select from, see docs.)
    """
    if any(manifest["input_format"] == "parquet" for manifest in manifests):
        return {}
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


def _merge_centers(outputs: Sequence[ShardOutput], n_columns: int) -> Tuple[Optional[np.ndarray], np.ndarray]:
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


class MergeResult(NamedTuple):
    """What the merge selected, and what the metadata reports about the input and the shards."""

    result: SelectionResult
    input_files: List[str]  # relative paths, in a single run's order
    input_format: str
    output_format: str
    sharding: Dict[str, Any]


def merge_select(input_dir: Path, config: SelectionConfig) -> MergeResult:
    """The merge role: check all shards, then select from their candidates as a single run would."""
    outputs = read_shard_outputs(input_dir)
    hosts = check_shard_manifests([output.manifest for output in outputs], config)
    outputs = sorted(outputs, key=lambda output: hosts.index(output.manifest["host"]))
    manifests = [output.manifest for output in outputs]
    with_rows = [manifest for manifest in manifests if manifest["pool_size"]]
    first_shard = min(with_rows, key=lambda manifest: _path_key(manifest["input_files"][0]))  # a single run's
    first = first_shard["details"]  # column order and reading come from its first file
    counts = {key: sum(manifest[key] for manifest in manifests)
              for key in ("pool_size", "labeled_count", "candidate_count")}
    if counts["candidate_count"] == 0:
        raise SelectionError("no candidate rows: all {} rows have LABEL_FIELD {!r} filled".format(
            counts["pool_size"], config.label_field))
    pool = _read_merged_pool(outputs, config, len(first["classes"]), first["vector_columns"])
    _check_ids(pool.ids, config.id_field)
    selection, sharding = _merge_strategy(config, pool, outputs, counts["candidate_count"])
    chosen = pool.probabilities[selection.indices]
    counts.update(_selected_counts(chosen, first["classes"], selection.scores))
    rows = _merged_rows(pool, selection.indices, first_shard["columns"],
                        _agreed_schema(with_rows, first_shard["columns"]), _merged_dtypes(with_rows))
    rows = annotate(rows, chosen, first["classes"], selection.scores, config.selection_strategy)
    vectors = {} if not first["vector_columns"] else {"vector_columns": len(first["vector_columns"]),
                                                        "vector_source": first["vector_source"]}
    details = {"score_columns": first["score_columns"], "score_interpretation": first["score_interpretation"],
               **vectors, "classes": [str(label) for label in first["classes"]]}
    formats = {manifest["input_format"] for manifest in with_rows}
    input_format = formats.pop() if len(formats) == 1 else "mixed"
    input_files = sorted((name for manifest in manifests for name in manifest["input_files"]), key=_path_key)
    sharding.update(
        hosts=hosts, config_fingerprint=config_fingerprint(config),
        shards=[{key: manifest[key] for key in ("host", "pool_size", "candidate_count", "forwarded_count")}
                for manifest in manifests],
        merged_candidates=int(len(pool.ids)))
    predictions = Predictions(tuple(first["classes"]), predicted_classes(chosen, first["classes"]),
                              chosen.max(axis=1))
    return MergeResult(SelectionResult(rows, counts, details, predictions), input_files, input_format,
                       resolve_output_format(config.output_format, input_format), sharding)


def _merge_strategy(config: SelectionConfig, pool: MergedPool, outputs: Sequence[ShardOutput],
                    candidate_count: int) -> Tuple[Selection, Dict[str, Any]]:
    strategy = config.selection_strategy
    keys = (pool.file_rank, pool.row)
    if strategy in ACTIVE_LEARNING_STRATEGIES and config.batch_size >= candidate_count:
        logger.info("BATCH_SIZE=%d is not smaller than the %d candidates: selecting them all", config.batch_size,
                    candidate_count)
    if strategy in EXACT_STRATEGIES:
        limit = {"confidence_threshold": config.max_samples, "top_k_per_class": config.k_per_class,
                 "uncertainty": config.batch_size}[strategy]
        groups = pool.probabilities.argmax(axis=1) if strategy == "top_k_per_class" else None
        indices = merge_ranked(pool.scores, keys, limit, groups)
        return Selection(indices, pool.scores[indices]), {"guarantee": "exact"}
    vectors = pool.vectors
    if strategy == "diversity":
        labeled, mean = _merge_centers(outputs, vectors.shape[1])
        indices, distances, radius = k_center_with_radius(vectors, config.batch_size, initial_centers=labeled,
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
    indices, distances = badge_kmeanspp(vectors, pool.probabilities, config.batch_size, metric=config.metric,
                                        random_state=config.random_seed, sample_weight=pool.weights)
    return Selection(indices, distances), {
        "guarantee": "weighted D^2 sampling over the shards' D^2 picks, as in k-means|| (Bahmani et al. 2012); "
                     "first pick exact (largest gradient norm)",
        "oversampling": config.oversampling,
        "represented_rows": int(pool.weights.sum()),
    }


# ---- Labeling tasks: the selection as a Ground Truth manifest or Label Studio tasks --------------------------
# Pure functions: they take the annotated rows, the model's predictions and the settings, and return the
# files' text; main writes them into the labeling_tasks channel.

GROUND_TRUTH_MANIFEST = "ground_truth.manifest"
GROUND_TRUTH_CATEGORIES = "ground_truth_label_categories.json"
LABEL_STUDIO_TASKS = "label_studio_tasks.json"
LABEL_STUDIO_CONFIG = "label_studio_config.xml"
LABELING_FILES = {"ground_truth": (GROUND_TRUTH_MANIFEST, GROUND_TRUTH_CATEGORIES),
                  "label_studio": (LABEL_STUDIO_TASKS, LABEL_STUDIO_CONFIG)}
PREDICTED_LABEL = "predicted_label"  # manifest attributes of the model's guess
PREDICTED_CONFIDENCE = "predicted_confidence"
LABEL_STUDIO_CHOICES = "label"  # name of the <Choices> control: from_name of predictions and answers
LABEL_STUDIO_OBJECTS = {"text": ("Text", "text"), "uri": ("Image", "image")}  # data kind -> (tag, name)
MODEL_VERSION_PREFIX = "active_sampling/"
# Ground Truth's input manifest rules (Developer Guide, "Input manifest files"): one JSON object per line of at
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


def _json_scalar(value: Any) -> Any:
    value = value.item() if isinstance(value, np.generic) else value
    return value if isinstance(value, (str, int, float)) else str(value)


def _row_name(task: LabelingTask, id_field: str) -> str:
    return "selected row {} ({}={!r})".format(task.rank, id_field, task.row_id)


def labeling_tasks(rows: pd.DataFrame, predictions: Predictions, config: SelectionConfig) -> List[LabelingTask]:
    """One task per selected row, in rank order; each shown value must be a non-blank text.

    ``rows`` are the annotated selected rows (``annotate``), ``predictions`` the model's guess for them.
    """
    field = config.labeling_data_field
    tasks = [LabelingTask(_json_scalar(row_id), shown, int(rank), float(score), str(predicted), float(confidence))
             for row_id, shown, rank, score, predicted, confidence in zip(
                 rows[config.id_field], rows[field], rows[SELECTION_RANK], rows[SELECTION_SCORE],
                 predictions.labels, predictions.confidence)]
    for task in tasks:
        if isinstance(task.shown, str) and task.shown.strip():
            continue
        if isinstance(task.shown, str) or _is_missing(task.shown):
            what = "is empty"
        else:
            what = "holds {} {}".format("the number" if isinstance(task.shown, numbers.Number) else "the value",
                                        task.shown)
        raise SelectionError("LABELING_DATA_FIELD column {!r} {} in the {}: expected a text or an s3:// or "
                             "https:// URI".format(field, what, _row_name(task, config.id_field)))
    return tasks


def _is_missing(value: Any) -> bool:
    return value is None or bool(pd.isna(value))


def labeling_data_kind(tasks: Sequence[LabelingTask], config: SelectionConfig) -> str:
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


def ground_truth_manifest_lines(tasks: Sequence[LabelingTask], kind: str, config: SelectionConfig) -> List[str]:
    """Ground Truth input manifest lines: ``source`` (a text) or ``source-ref`` (an S3 URI), then the id, rank,
    score and the model's prediction as extra attributes; every line checked against Ground Truth's limits."""
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
        line = json.dumps(entry, ensure_ascii=False, allow_nan=False)
        if len(line) > GROUND_TRUTH_MAX_LINE_CHARS:
            raise SelectionError("the Ground Truth manifest line of the {} has {} characters; Ground Truth accepts "
                                 "at most {}".format(where, len(line), GROUND_TRUTH_MAX_LINE_CHARS))
        lines.append(line)
    return lines


def ground_truth_label_categories(classes: Sequence[Any]) -> Dict[str, Any]:
    """The label category configuration of a classification job (``LabelCategoryConfigS3Uri``)."""
    return {"document-version": GROUND_TRUTH_CATEGORIES_VERSION, "labels": [{"label": str(c)} for c in classes]}


def label_studio_tasks(tasks: Sequence[LabelingTask], kind: str, config: SelectionConfig) -> List[Dict[str, Any]]:
    """Label Studio tasks: ``data`` holds the shown field, the id, rank and score; the model's top class and its
    probability are a prediction, so annotators start from the model's guess."""
    object_name = LABEL_STUDIO_OBJECTS[kind][1]
    model_version = MODEL_VERSION_PREFIX + config.selection_strategy
    return [{
        "data": {config.labeling_data_field: task.shown, config.id_field: task.row_id, SELECTION_RANK: task.rank,
                 SELECTION_SCORE: task.score},
        "predictions": [{
            "model_version": model_version,
            "score": task.confidence,
            "result": [{"from_name": LABEL_STUDIO_CHOICES, "to_name": object_name, "type": "choices",
                        "value": {"choices": [task.predicted]}}],
        }],
    } for task in tasks]


def label_studio_config(classes: Sequence[Any], kind: str, data_field: str) -> str:
    """The labeling configuration matching ``label_studio_tasks``: the shown field (a Text, or an Image for
    URIs) and one single-choice control with the classes of the score columns."""
    tag, name = LABEL_STUDIO_OBJECTS[kind]
    choices = "".join("    <Choice value={}/>\n".format(quoteattr(str(label))) for label in classes)
    return ('<View>\n  <{tag} name="{name}" value="${field}"/>\n'
            '  <Choices name="{control}" toName="{name}" choice="single" showInline="true">\n{choices}'
            '  </Choices>\n</View>\n').format(tag=tag, name=name, field=data_field, control=LABEL_STUDIO_CHOICES,
                                             choices=choices)


def labeling_files(rows: pd.DataFrame, predictions: Predictions, config: SelectionConfig) -> Dict[str, str]:
    """The labeling_tasks channel's files for ``config.labeling_format`` (file name -> text)."""
    tasks = labeling_tasks(rows, predictions, config)
    kind = labeling_data_kind(tasks, config)
    if config.labeling_format == "ground_truth":
        lines = ground_truth_manifest_lines(tasks, kind, config)
        return {GROUND_TRUTH_MANIFEST: "".join(line + "\n" for line in lines),
                GROUND_TRUTH_CATEGORIES: json.dumps(ground_truth_label_categories(predictions.classes), indent=2,
                                                    ensure_ascii=False) + "\n"}
    if config.labeling_format == "label_studio":
        # One task per line: a JSON list that Label Studio imports as it is, and that reads and diffs well.
        lines = [json.dumps(task, ensure_ascii=False, allow_nan=False)
                 for task in label_studio_tasks(tasks, kind, config)]
        return {LABEL_STUDIO_TASKS: "[\n" + ",\n".join(lines) + "\n]\n",
                LABEL_STUDIO_CONFIG: label_studio_config(predictions.classes, kind, config.labeling_data_field)}
    raise SelectionError("LABELING_FORMAT={!r} writes no tasks".format(config.labeling_format))


def save_labeling_files(files: Mapping[str, str], labeling_dir: Path) -> List[str]:
    """Write each file atomically into ``labeling_dir``; return their paths."""
    labeling_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, text in files.items():
        path = labeling_dir / name
        _write_atomically(path, lambda target, text=text: target.write_text(text, encoding="utf-8"))
        paths.append(str(path))
    logger.info("Wrote labeling tasks to %s: %s", labeling_dir, ", ".join(files))
    return paths


# ---- Writing: result files, markers and the output folders' ownership ----------------------------------------

def resolve_output_format(requested: Optional[str], input_format: str) -> str:
    """OUTPUT_FORMAT when set, else the input's format (an error for inputs of mixed formats)."""
    if requested:
        return requested
    if input_format not in OUTPUT_FORMATS:
        raise SelectionError("input files come in different formats; set OUTPUT_FORMAT to one of {}".format(
            ", ".join(OUTPUT_FORMATS)))
    return input_format


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


def save_selected_samples(selected_df: pd.DataFrame, output_dir: str, output_format: str = "csv",
                          metadata: Optional[Dict[str, Any]] = None) -> str:
    """Write ``selected_samples.<output_format>`` atomically (temporary name, then rename); return its path.

    ``metadata``, when given, is also written next to it as ``selection_metadata.json`` (seed 001).
    ``output_format`` is case-insensitive.
    """
    output_format = str(output_format).lower()
    if output_format not in OUTPUT_FORMATS:
        raise SelectionError("unsupported output format {!r}: expected one of {}".format(
            output_format, ", ".join(OUTPUT_FORMATS)))
    path = Path(output_dir) / "{}.{}".format(SAMPLES_BASENAME, output_format)
    path.parent.mkdir(parents=True, exist_ok=True)
    frame = selected_df.reset_index(drop=True)
    if output_format == "parquet":
        _write_atomically(path, lambda target: frame.to_parquet(str(target), index=False))
    else:
        _write_atomically(path, lambda target: frame.to_csv(str(target), sep=_SEPARATORS[output_format],
                                                            index=False))
    logger.info("Wrote %d selected rows to %s", len(frame), path)
    if metadata is not None:
        save_selection_metadata(metadata, output_dir)
    return str(path)


def _json_default(value: Any) -> Any:
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError("not JSON serializable: {!r}".format(value))


def save_selection_metadata(metadata: Dict[str, Any], metadata_dir: str) -> str:
    """Write ``selection_metadata.json`` atomically."""
    path = Path(metadata_dir) / METADATA_FILENAME
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(metadata, indent=2, default=_json_default, allow_nan=False)
    _write_atomically(path, lambda target: target.write_text(text + "\n", encoding="utf-8"))
    logger.info("Wrote selection metadata to %s", path)
    return str(path)


RESULT_NAMES = (tuple("{}.{}".format(SAMPLES_BASENAME, fmt) for fmt in OUTPUT_FORMATS) + (METADATA_FILENAME,)
                + tuple(name for names in LABELING_FILES.values() for name in names))


def _real(path: Path) -> str:
    return os.path.realpath(str(path))


def check_folders_apart(input_dir: Path, samples_dir: Path, metadata_dir: Path,
                        labeling_dir: Optional[Path] = None) -> None:
    """Refuse output folders that equal, contain or lie inside the input folder, or equal each other.

    Paths are compared after resolving links, so the step can neither write into its input nor read its
    own output back. ``labeling_dir`` is checked too when this run writes labeling tasks.
    """
    source = _real(input_dir)
    outputs = [(SAMPLES_CHANNEL, samples_dir), (METADATA_CHANNEL, metadata_dir)]
    if labeling_dir is not None:
        outputs.append((LABELING_CHANNEL, labeling_dir))
    for channel, folder in outputs:
        target = _real(folder)
        if _is_within(target, source) or _is_within(source, target):
            raise SelectionError("output folder {} ({}) overlaps the input folder {}: the step never writes into "
                                 "its input nor reads its output; use separate folders".format(
                                     folder, channel, input_dir))
    for position, (channel, folder) in enumerate(outputs):
        for other_channel, other in outputs[position + 1:]:
            if _real(folder) == _real(other):
                raise SelectionError("the output folders {} and {} are the same folder; give each channel its "
                                     "own".format(channel, other_channel))


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


def _prepare_outputs(samples_dir: Path, metadata_dir: Path, labeling_dir: Optional[Path] = None) -> None:
    """Create the output folders and remove an earlier run's results from them, and nothing else.

    A result name (selected_samples.*, selection_metadata.json, the labeling tasks files) that no earlier
    ``_SUCCESS`` lists was not provably written by this step: it is left alone and the run stops.
    """
    folders = _present(samples_dir, metadata_dir, labeling_dir)
    try:
        for folder in folders:
            if folder.exists() and not folder.is_dir():
                raise SelectionError("output path {} exists and is not a folder".format(folder))
            folder.mkdir(parents=True, exist_ok=True)
        for folder in folders:
            proven = {path.name for path in _ours(folder)}
            foreign = [name for name in RESULT_NAMES if (folder / name).exists() and name not in proven]
            if foreign:
                raise SelectionError("output folder {} already holds {}, which no _SUCCESS of this step lists: it "
                                     "is left untouched; remove it or choose an empty folder".format(
                                         folder, foreign[0]))
        for folder in folders:
            _remove_ours(folder)
            if not os.access(str(folder), os.W_OK):
                raise PermissionError(errno.EACCES, "Permission denied", str(folder))
    except OSError as error:
        raise SelectionError("cannot write to the output folder {}: {}".format(
            error.filename or "", error.strerror or _one_line(error))) from None


def _present(*folders: Optional[Path]) -> Tuple[Path, ...]:
    return tuple(folder for folder in folders if folder is not None)


def _output_folders(output_paths: Any) -> List[Path]:
    """The output folders that ``output_paths`` names usably (no error when it does not)."""
    if not isinstance(output_paths, Mapping):
        return []
    folders = [output_paths.get(channel) for channel in (SAMPLES_CHANNEL, METADATA_CHANNEL)]
    return [Path(folder) for folder in folders if isinstance(folder, (str, os.PathLike)) and str(folder)]


def _input_folder(input_paths: Any) -> Optional[Path]:
    folder = input_paths.get(INPUT_CHANNEL) if isinstance(input_paths, Mapping) else None
    return Path(folder) if isinstance(folder, (str, os.PathLike)) and str(folder) else None


def _record_failure(folders: Sequence[Path], input_dir: Optional[Path], error: BaseException,
                    written: Iterable[Path] = ()) -> None:
    """Leave ``_FAILURE`` (the one-line reason) and none of this step's results in every output folder
    that can be written, except folders inside the input, which the step never writes to."""
    written = list(written)
    for folder in dict.fromkeys(folders):
        if input_dir is not None and _is_within(_real(folder), _real(input_dir)):
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


# ---- main and the command line -------------------------------------------------------------------------------

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


def _labeling_channel(output_paths: Any, environ_vars: Any) -> Optional[Path]:
    """The labeling_tasks folder when this run may write tasks: its path is given and LABELING_FORMAT is set to
    something other than none. Read raw, before the variables are parsed and without raising, so that a
    failure is recorded there too."""
    raw = environ_vars.get("LABELING_FORMAT") if isinstance(environ_vars, Mapping) else None
    requested = "" if raw is None else str(raw).strip().lower()
    folder = output_paths.get(LABELING_CHANNEL) if isinstance(output_paths, Mapping) else None
    usable = isinstance(folder, (str, os.PathLike)) and str(folder) != ""
    return Path(folder) if usable and requested not in ("", "none") else None


def _check_labeling_channel(config: SelectionConfig, labeling_dir: Optional[Path]) -> None:
    if config.labeling_format != "none" and labeling_dir is None:
        raise SelectionError("LABELING_FORMAT={} needs the output path {!r} (--{} on the command line)".format(
            config.labeling_format, LABELING_CHANNEL, LABELING_CHANNEL))


def _select(source: InputTable, config: SelectionConfig) -> Tuple[SelectionResult, str]:
    """Read the prediction table of ``source`` and run the selection; also returns the output format."""
    output_format = resolve_output_format(config.output_format, source.fmt)
    logger.info("Reading %d %s file(s) from %s", len(source.files), source.fmt, source.root)
    if source.fmt == "parquet":
        result = run_selection(pool_from_parquet(source, config), config,
                               lambda positions: read_rows_at(source, positions))
    else:
        df = read_input_table(source)
        _check_ids(df[config.id_field], config.id_field)
        result = run_selection(pool_from_frame(df, config, index_columns=source.index_columns), config,
                               lambda positions: df.iloc[positions].reset_index(drop=True))
    return result, output_format


def _write_labeling_tasks(result: SelectionResult, config: SelectionConfig,
                          labeling_dir: Optional[Path]) -> Tuple[List[Path], Dict[str, Any]]:
    """Write the tasks when LABELING_FORMAT asks for them; return their paths and the metadata's ``labeling``
    entry (nothing when there are no tasks)."""
    if config.labeling_format == "none" or labeling_dir is None:
        return [], {}
    files = labeling_files(result.rows, result.predictions, config)
    paths = [Path(path) for path in save_labeling_files(files, labeling_dir)]
    return paths, {"labeling": {"format": config.labeling_format, "task_count": int(len(result.rows)),
                                "files": sorted(files)}}


def main(
    input_paths: Mapping[str, str],
    output_paths: Mapping[str, str],
    environ_vars: Mapping[str, Any],
    job_args: Any,
) -> Dict[str, Any]:
    """Select rows from the prediction table in ``input_paths["evaluation_data"]``.

    SELECTION_ROLE=shard instead writes one instance's candidates and returns its manifest, and
    SELECTION_ROLE=merge selects from all shards' outputs found in ``evaluation_data`` (docs/scaling.md).
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
    labeling_dir = _labeling_channel(output_paths, environ_vars)
    try:
        samples_dir = _channel(output_paths, SAMPLES_CHANNEL, "output")
        metadata_dir = _channel(output_paths, METADATA_CHANNEL, "output")
        input_dir = _channel(input_paths, INPUT_CHANNEL, "input")
        check_folders_apart(input_dir, samples_dir, metadata_dir, labeling_dir)
        config = parse_environment(environ_vars)
        _check_labeling_channel(config, labeling_dir)
        job_type = _job_type(job_args)
        resources = check_role_fits_instances(config)
        _prepare_outputs(samples_dir, metadata_dir, labeling_dir)
        logger.info("Strategy %s (use case %s, job type %s, role %s)", config.selection_strategy, config.use_case,
                    job_type, config.selection_role)
        if config.selection_role == "shard":
            manifest, shard_files = run_shard(input_dir, samples_dir, metadata_dir, config, resources, job_type)
            written += shard_files
            for folder in _present(samples_dir, metadata_dir, labeling_dir):
                written.append(_mark_success(folder, written))
            return manifest
        sharding = None
        if config.selection_role == "merge":
            result, input_files, input_format, output_format, sharding = merge_select(input_dir, config)
        else:
            source = scan_input(input_dir, config, forbidden=_present(samples_dir, metadata_dir, labeling_dir))
            result, output_format = _select(source, config)
            input_files = [os.path.relpath(str(f.path), str(input_dir)) for f in source.files]
            input_format = source.fmt
        written.append(Path(save_selected_samples(result.rows, str(samples_dir), output_format)))
        tasks_written, labeling = _write_labeling_tasks(result, config, labeling_dir)
        written += tasks_written
        metadata = {
            "strategy": config.selection_strategy,
            "use_case": config.use_case,
            "job_type": job_type,
            "config": config._asdict(),
            **result.counts,
            "output_format": output_format,
            "output_file": os.path.relpath(str(written[0]), str(samples_dir)),
            "input_files": input_files,
            "details": dict(result.details, input_format=input_format),
            **labeling,
            "library_versions": _library_versions(),
            "timestamp": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        }
        if sharding is not None:
            metadata["sharding"] = sharding
        metadata["elapsed_seconds"] = round(time.time() - started, 3)
        written.append(Path(save_selection_metadata(metadata, str(metadata_dir))))
        for folder in _present(samples_dir, metadata_dir, labeling_dir):
            written.append(_mark_success(folder, written))
    except BaseException as error:
        folders = _output_folders(output_paths) + list(_present(labeling_dir))
        _record_failure(folders, _input_folder(input_paths), error, written)
        raise
    logger.info("Selected %d of %d candidates (pool of %d) with %s in %.2fs", metadata["selected_count"],
                metadata["candidate_count"], metadata["pool_size"], config.selection_strategy,
                metadata["elapsed_seconds"])
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
        _record_failure(_output_folders(paths), _input_folder(paths), error)
        logger.error("%s", _one_line(error))
        return 1
    environ = os.environ if environ is None else environ
    environ_vars = {var.name: environ.get(var.name) for var in ENV_VARS}
    input_paths = {INPUT_CHANNEL: getattr(args, INPUT_CHANNEL)}
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
