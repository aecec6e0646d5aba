"""The labeling-format table's promise: a new labeling format is one renderer, one settings rule and one row, and
no code outside the table decides by a format's name."""

import ast

import pytest

from conftest import SCRIPT_PATH, prediction_table, script_module as script, write_table
from test_hostile import assert_failed, run_cli


def refuse_the_id_column(config):
    if config.labeling_data_field == config.id_field:
        raise script.SelectionError("LABELING_DATA_FIELD={} is the id column: annotators would see only ids".format(
            config.labeling_data_field))


def rank_and_id_lines(tasks, kind, predictions, config):
    """One file: a line per task, its rank, a tab, its id and a tab, what annotators see."""
    return ("".join("{}\t{}\t{}\n".format(task.rank, task.row_id, task.shown) for task in tasks),)


ID_LIST = script.LabelingFormat("id_list", ("id_list.tsv",), refuse_the_id_column, rank_and_id_lines)


@pytest.fixture
def id_list_format(monkeypatch):
    """LABELING_FORMAT_TABLE with one more row, and what the script derives from the table derived again."""
    table = script.LABELING_FORMAT_TABLE + (ID_LIST,)
    monkeypatch.setattr(script, "LABELING_FORMAT_TABLE", table)
    monkeypatch.setattr(script, "LABELING_FORMATS_BY_NAME", {row.name: row for row in table})
    monkeypatch.setattr(script, "LABELING_FORMATS", tuple(row.name for row in table))
    monkeypatch.setattr(script, "ENV_VARS", script.declared_env_vars())
    monkeypatch.setattr(script, "RESULT_NAMES", script.RESULT_NAMES + ID_LIST.files)
    return ID_LIST


def _texts_table():
    table = prediction_table(n=30, labeled_fraction=0.2, seed=3)
    table["text"] = ["text of row {}".format(i) for i in range(len(table))]
    return table


ENV = {"SELECTION_STRATEGY": "uncertainty", "BATCH_SIZE": "5", "LABEL_FIELD": "label",
       "LABELING_FORMAT": "id_list", "LABELING_DATA_FIELD": "text"}


def test_a_new_row_is_rendered_into_labeling_tasks(id_list_format, run):
    write_table(_texts_table(), run.input_dir)
    metadata = run.main(ENV)
    selected = run.selected()
    expected = "".join("{}\t{}\t{}\n".format(rank, row_id, text) for rank, row_id, text in zip(
        selected["selection_rank"], selected["id"], selected["text"]))
    assert (run.labeling_dir / "id_list.tsv").read_text() == expected
    assert metadata["labeling"] == {"format": "id_list", "task_count": 5, "files": ["id_list.tsv"]}
    assert sorted(path.name for path in run.labeling_dir.iterdir()) == ["_SUCCESS", "id_list.tsv"]


def _folders(run):
    return (run.samples_dir, run.metadata_dir, run.labeling_dir)


def test_the_rows_settings_rule_is_applied(id_list_format, run, caplog):
    write_table(_texts_table(), run.input_dir)
    code = run_cli(run, script, dict(ENV, LABELING_DATA_FIELD="id"))
    assert_failed(run, caplog, code, "LABELING_DATA_FIELD=id is the id column", folders=_folders(run))


def test_a_format_without_a_row_is_refused_naming_the_rows(run, caplog):
    write_table(_texts_table(), run.input_dir)
    code = run_cli(run, script, ENV)
    assert_failed(run, caplog, code,
                  "LABELING_FORMAT='id_list' is not allowed: expected one of none, ground_truth, label_studio",
                  folders=_folders(run))


def test_the_table_is_the_only_list_of_labeling_formats():
    names = tuple(row.name for row in script.LABELING_FORMAT_TABLE)
    assert script.ENV_VARS_BY_NAME["LABELING_FORMAT"].choices == names == script.LABELING_FORMATS
    assert all(name in script.RESULT_NAMES for row in script.LABELING_FORMAT_TABLE for name in row.files)
    assert [row.name for row in script.LABELING_FORMAT_TABLE if not row.files] == ["none"]  # the default: no tasks
    assert script.ENV_VARS_BY_NAME["LABELING_FORMAT"].default == "none"


def _table_assignment(tree):
    return next(node for node in tree.body if isinstance(node, ast.Assign)
                and any(getattr(target, "id", None) == "LABELING_FORMAT_TABLE" for target in node.targets))


def test_no_code_outside_the_table_decides_by_a_labeling_format_name():
    tree = ast.parse(SCRIPT_PATH.read_text(encoding="utf-8"))
    table = _table_assignment(tree)
    inside = {id(node) for node in ast.walk(table)}
    names = {row.name for row in script.LABELING_FORMAT_TABLE if row.files}
    outside = [node.lineno for node in ast.walk(tree) if id(node) not in inside
               and isinstance(node, ast.Constant) and node.value in names]
    assert outside == [], "labeling format names used outside LABELING_FORMAT_TABLE, lines {}".format(outside)
    compared = [node.lineno for node in ast.walk(tree) if isinstance(node, ast.Compare)
                and any(isinstance(side, (ast.Attribute, ast.Name))
                        and getattr(side, "attr", getattr(side, "id", None)) == "labeling_format"
                        for side in [node.left] + node.comparators)]
    assert compared == [], "labeling_format compared by name on lines {}".format(compared)
