"""Read the answers of a labeling tool back into an ``id,label`` table.

Two exports are understood:

* a Label Studio JSON export (``/api/projects/{id}/export?exportType=JSON``, or "Export > JSON" in the UI):
  a list of tasks, each with ``data`` and ``annotations``; every annotation that was not skipped
  (``was_cancelled``) and holds one ``choices`` result with one choice is one answer;
* a SageMaker Ground Truth output manifest: one JSON object per line, the input manifest's attributes plus
  ``<label-attribute>`` and ``<label-attribute>-metadata`` whose ``class-name`` is the answer.

Each id gets a label only when all its answers agree. Ids whose answers disagree, that have no answer, or
(given the tasks that were sent) that never came back are reported in ``problems`` and left out of
``labels``: nothing is guessed.
"""

import json
from pathlib import Path
from typing import Any, Dict, Iterable, List, NamedTuple, Optional, Sequence, Tuple, Union

import pandas as pd

PathLike = Union[str, Path]

MISSING = "missing"
CONFLICTING = "conflicting"
NOT_RETURNED = "not_returned"
PROBLEM_COLUMNS = ("problem", "answers", "detail")


class LabelReadError(ValueError):
    """The export cannot be read as the expected format (as opposed to answers that are missing or disagree)."""


class LabelsReadBack(NamedTuple):
    """What came back from a labeling tool.

    Attributes
    ----------
    labels : pandas.DataFrame
        Columns ``[id_field, label_field]``, one row per id whose answers agree, in the order the ids first
        appear in the export.
    problems : pandas.DataFrame
        Columns ``[id_field, "problem", "answers", "detail"]``: ``problem`` is ``conflicting`` (the answers
        disagree), ``missing`` (the task came back without an answer: skipped, failed or empty) or
        ``not_returned`` (a task that was sent is not in the export); ``answers`` lists the distinct answers,
        ``|``-separated.
    """

    labels: pd.DataFrame
    problems: pd.DataFrame


class _Answers(NamedTuple):
    """Everything one id received, in export order."""

    labels: List[str]
    notes: List[str]


def read_label_studio_export(
    export: Union[PathLike, Sequence[Dict[str, Any]]],
    *,
    id_field: str = "id",
    label_field: str = "label",
    from_name: Optional[str] = None,
    expected_ids: Optional[Iterable[Any]] = None,
) -> LabelsReadBack:
    """Turn a Label Studio JSON export into an ``id,label`` table.

    Parameters
    ----------
    export : path or list of dict
        The export file (a JSON list of tasks) or the already parsed list.
    id_field : str, default="id"
        Key in each task's ``data`` holding the row id (the selection's ``ID_FIELD``).
    label_field : str, default="label"
        Name of the label column in the returned table.
    from_name : str, optional
        Name of the ``<Choices>`` control whose answers are read. Unset: every ``choices`` result, which must
        then all come from one control.
    expected_ids : iterable, optional
        The ids that were sent for labeling; those absent from the export are reported as ``not_returned``.

    Returns
    -------
    LabelsReadBack
    """
    tasks = _load_json_list(export) if isinstance(export, (str, Path)) else list(export)
    control = from_name if from_name is not None else _single_choices_control(tasks)
    answers: Dict[Any, _Answers] = {}
    for position, task in enumerate(tasks):
        row_id = _task_id(task, id_field, position)
        received = answers.setdefault(row_id, _Answers([], []))
        for annotation in task.get("annotations") or []:
            _add_annotation(received, annotation, control)
    return _resolve(answers, id_field, label_field, expected_ids)


def read_ground_truth_manifest(
    manifest: PathLike,
    *,
    id_field: str = "id",
    label_field: str = "label",
    label_attribute: Optional[str] = None,
    expected_ids: Optional[Iterable[Any]] = None,
) -> LabelsReadBack:
    """Turn a Ground Truth output manifest (classification jobs) into an ``id,label`` table.

    Parameters
    ----------
    manifest : path
        The output manifest (``output.manifest``): one JSON object per line.
    id_field : str, default="id"
        Attribute holding the row id, as written into the input manifest.
    label_field : str, default="label"
        Name of the label column in the returned table.
    label_attribute : str, optional
        The labeling job's label attribute name (by default its job name). Unset: the one attribute ``A`` that
        has an ``A-metadata`` object with a ``class-name``; more than one is an error.
    expected_ids : iterable, optional
        The ids that were sent for labeling; those absent from the manifest are reported as ``not_returned``.

    Returns
    -------
    LabelsReadBack
    """
    lines = read_json_lines(manifest)
    attribute = label_attribute if label_attribute is not None else _single_label_attribute(lines, manifest)
    answers: Dict[Any, _Answers] = {}
    for number, line in lines:
        row_id = line.get(id_field)
        if not _is_id(row_id):
            raise LabelReadError("{} line {}: no {!r} attribute holding the row id (found {})".format(
                manifest, number, id_field, _preview(sorted(line))))
        received = answers.setdefault(row_id, _Answers([], []))
        label, note = _ground_truth_answer(line, attribute)
        if label is not None:
            received.labels.append(label)
        else:
            received.notes.append(note)
    return _resolve(answers, id_field, label_field, expected_ids)


def read_json_lines(path: PathLike) -> List[Tuple[int, Dict[str, Any]]]:
    """The JSON objects of a JSON Lines file with their 1-based line numbers; blank lines are skipped."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise LabelReadError("cannot read {}: {}".format(path, error)) from None
    objects = []
    for number, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            value = json.loads(raw)
        except ValueError as error:
            raise LabelReadError("{} line {} is not JSON: {}".format(path, number, error)) from None
        if not isinstance(value, dict):
            raise LabelReadError("{} line {} is not a JSON object".format(path, number))
        objects.append((number, value))
    return objects


def _load_json_list(path: PathLike) -> List[Dict[str, Any]]:
    try:
        value = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise LabelReadError("cannot read {} as JSON: {}".format(path, error)) from None
    if not isinstance(value, list) or not all(isinstance(task, dict) for task in value):
        raise LabelReadError("{} is not a Label Studio JSON export (a list of tasks); export with "
                             "exportType=JSON".format(path))
    return value


def _is_id(value: Any) -> bool:
    # bool is an int in Python, but never an id we wrote.
    return isinstance(value, (str, int)) and not isinstance(value, bool) and value != ""


def _task_id(task: Dict[str, Any], id_field: str, position: int) -> Any:
    data = task.get("data")
    row_id = data.get(id_field) if isinstance(data, dict) else None
    if not _is_id(row_id):
        raise LabelReadError("task {} (Label Studio id {}) has no data.{} holding the row id".format(
            position, task.get("id"), id_field))
    return row_id


def _choices_results(annotation: Dict[str, Any]) -> List[Dict[str, Any]]:
    return [result for result in annotation.get("result") or [] if result.get("type") == "choices"]


def _single_choices_control(tasks: Sequence[Dict[str, Any]]) -> Optional[str]:
    names = {result.get("from_name") for task in tasks for annotation in task.get("annotations") or []
             for result in _choices_results(annotation)}
    if len(names) > 1:
        raise LabelReadError("the export holds answers of several choices controls ({}); pass from_name "
                             "(--from-name) to pick one".format(", ".join(sorted(map(str, names)))))
    return names.pop() if names else None


def _add_annotation(received: _Answers, annotation: Dict[str, Any], control: Optional[str]) -> None:
    if annotation.get("was_cancelled"):
        received.notes.append("skipped by annotator {}".format(annotation.get("completed_by")))
        return
    chosen = [choice for result in _choices_results(annotation) if result.get("from_name") == control
              for choice in (result.get("value") or {}).get("choices") or []]
    if not chosen:
        received.notes.append("annotation {} has no choice".format(annotation.get("id")))
    elif len(chosen) > 1:
        # Several choices in one answer is not a single label; keep them all so the id shows as conflicting.
        received.labels.extend(str(choice) for choice in chosen)
    else:
        received.labels.append(str(chosen[0]))


def _single_label_attribute(lines: Sequence[Tuple[int, Dict[str, Any]]], manifest: PathLike) -> Optional[str]:
    names = set()
    for _, line in lines:
        for key, value in line.items():
            if key.endswith("-metadata") and isinstance(value, dict) and "class-name" in value:
                names.add(key[: -len("-metadata")])
    if len(names) > 1:
        raise LabelReadError("{} holds the labels of several jobs ({}); pass label_attribute "
                             "(--label-attribute) to pick one".format(manifest, ", ".join(sorted(names))))
    return names.pop() if names else None


def _ground_truth_answer(line: Dict[str, Any], attribute: Optional[str]) -> Tuple[Optional[str], str]:
    """The line's class name, or None and why there is none."""
    if attribute is None:
        return None, "no label attribute"
    metadata = line.get(attribute + "-metadata")
    if not isinstance(metadata, dict):
        return None, "no {}-metadata".format(attribute)
    if "failure-reason" in metadata:
        return None, "failed: {}".format(metadata["failure-reason"])
    class_name = metadata.get("class-name")
    if attribute not in line or not isinstance(class_name, str) or class_name == "":
        return None, "no {} with a class-name".format(attribute)
    return class_name, ""


def _resolve(answers: Dict[Any, _Answers], id_field: str, label_field: str,
             expected_ids: Optional[Iterable[Any]]) -> LabelsReadBack:
    labeled, problems = [], []
    for row_id, received in answers.items():
        distinct = list(dict.fromkeys(received.labels))
        if len(distinct) == 1:
            labeled.append((row_id, distinct[0]))
        elif distinct:
            counts = ", ".join("{} x{}".format(label, received.labels.count(label)) for label in distinct)
            problems.append((row_id, CONFLICTING, "|".join(distinct), counts))
        else:
            problems.append((row_id, MISSING, "", "; ".join(received.notes) or "no annotation"))
    for row_id in expected_ids if expected_ids is not None else ():
        if row_id not in answers:
            problems.append((row_id, NOT_RETURNED, "", "sent for labeling but not in the export"))
    labels = pd.DataFrame(labeled, columns=[id_field, label_field], dtype=object)
    return LabelsReadBack(labels, pd.DataFrame(problems, columns=[id_field, *PROBLEM_COLUMNS], dtype=object))


def _preview(names: Sequence[str], limit: int = 6) -> str:
    shown = ", ".join(names[:limit])
    return shown + (", ..." if len(names) > limit else "")


def read_sent_ids(tasks: PathLike, *, id_field: str = "id") -> List[Any]:
    """The row ids of the tasks that were sent: a Label Studio tasks file (a JSON list) or a Ground Truth
    input manifest (JSON Lines), as the selection step writes them."""
    path = Path(tasks)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise LabelReadError("cannot read {}: {}".format(path, error)) from None
    if text.lstrip().startswith("["):
        return [_task_id(task, id_field, position) for position, task in enumerate(_load_json_list(path))]
    ids = []
    for number, line in read_json_lines(path):
        if not _is_id(line.get(id_field)):
            raise LabelReadError("{} line {}: no {!r} attribute holding the row id".format(path, number, id_field))
        ids.append(line[id_field])
    return ids
