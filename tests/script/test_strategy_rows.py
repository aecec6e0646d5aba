"""The strategy table's promise: a new strategy is one sampler class and one row, and its row alone
decides how (or whether) it runs sharded."""

import ast

import numpy as np
import pandas as pd
import pytest

import sharding as sim
from conftest import SCRIPT_PATH, script_module as script, write_table
from test_hostile import assert_failed, run_cli


class FirstRowsSampler(script._Sampler):
    """Selects the first ``batch_size`` candidates in input order; the score is the candidate's position.

    A sampler implements ``_select`` on checked arrays; the public ``select`` and the engine both run it."""

    def _select(self, candidates, batch_size):
        n = min(batch_size, candidates.probabilities.shape[0])
        return script.Selection(np.arange(n), np.arange(n, dtype=np.float64))


SIXTH = script.Strategy("first_rows", FirstRowsSampler, "active_learning", needs_embeddings=False, batched=True,
                        settings={}, sharding=None)


@pytest.fixture
def sixth_strategy(monkeypatch):
    """STRATEGY_TABLE with one more row, as a developer adding a strategy would add it."""
    monkeypatch.setitem(script.STRATEGIES_BY_NAME, SIXTH.name, SIXTH)
    env_vars = tuple(var._replace(choices=var.choices + (SIXTH.name,)) if var.name == "SELECTION_STRATEGY" else var
                     for var in script.ENV_VARS)
    monkeypatch.setattr(script, "ENV_VARS", env_vars)
    return SIXTH


def _pool(folder, n=12):
    table = pd.DataFrame({"id": ["r{:02d}".format(i) for i in range(n)],
                          "prob_class_0": np.linspace(0.05, 0.95, n), "prob_class_1": 1 - np.linspace(0.05, 0.95, n),
                          "label": [None, "1", None, "0"] + [None] * (n - 4)})
    write_table(table, folder, "csv")
    return table


def test_a_sixth_strategy_runs_single_through_its_row(sixth_strategy, run):
    _pool(run.input_dir)
    metadata = run.main({"SELECTION_STRATEGY": "first_rows", "BATCH_SIZE": "3", "LABEL_FIELD": "label"})
    selected = run.selected()
    # Rows r01 and r03 are labeled; the first three candidates in input order are r00, r02, r04.
    assert selected["id"].tolist() == ["r00", "r02", "r04"]
    assert selected["selection_score"].tolist() == [0.0, 1.0, 2.0]
    assert metadata["strategy"] == "first_rows"


@pytest.mark.parametrize("role", ["shard", "merge"])
def test_a_row_without_sharding_is_refused_when_sharded_never_run_as_another(sixth_strategy, tmp_path, role):
    pool_dir = tmp_path / "pool"
    _pool(pool_dir)
    config = sim.resource_config(tmp_path, "algo-1", ["algo-1", "algo-2"])
    env = {"SELECTION_STRATEGY": "first_rows", "BATCH_SIZE": "3", "SELECTION_ROLE": role,
           "RESOURCE_CONFIG_PATH": str(config)}
    with pytest.raises(script.SelectionError) as raised:
        sim.run_main(pool_dir, tmp_path / "out", env)
    assert str(raised.value) == "SELECTION_STRATEGY=first_rows cannot be sharded: use SELECTION_ROLE=single"
    assert not (tmp_path / "out" / "selected_samples" / "_SUCCESS").exists()
    assert not list((tmp_path / "out" / "selected_samples").glob("shard-*")) \
        if (tmp_path / "out" / "selected_samples").exists() else True


def test_the_refusal_is_one_line_and_the_failure_contract(sixth_strategy, run, caplog):
    _pool(run.input_dir)
    config = sim.resource_config(run.root, "algo-1", ["algo-1", "algo-2"])
    env = {"SELECTION_STRATEGY": "first_rows", "SELECTION_ROLE": "shard", "RESOURCE_CONFIG_PATH": str(config)}
    assert_failed(run, caplog, run_cli(run, script, env), "SELECTION_STRATEGY=first_rows cannot be sharded")


def test_every_row_names_its_sharding_rule_or_none():
    for row in script.STRATEGY_TABLE:
        assert row.sharding is None or isinstance(row.sharding, script.ShardRule), row.name


def _strategy_names_in(node):
    return {sub.value for sub in ast.walk(node)
            if isinstance(sub, ast.Constant) and isinstance(sub.value, str) and sub.value in script.STRATEGIES}


def test_no_code_outside_the_table_decides_by_a_strategy_name():
    """No comparison, membership test or dict lookup keyed by a strategy's name outside STRATEGY_TABLE."""
    tree = ast.parse(SCRIPT_PATH.read_text(encoding="utf-8"))
    table = next(node for node in tree.body if isinstance(node, ast.Assign)
                 and any(getattr(target, "id", None) == "STRATEGY_TABLE" for target in node.targets))
    inside = {id(sub) for sub in ast.walk(table)}
    offenders = []
    for node in ast.walk(tree):
        if id(node) in inside:
            continue
        if isinstance(node, ast.Compare) and _strategy_names_in(node):
            offenders.append((node.lineno, sorted(_strategy_names_in(node))))
        if isinstance(node, ast.Dict) and any(isinstance(key, ast.Constant) and key.value in script.STRATEGIES
                                              for key in node.keys if key is not None):
            offenders.append((node.lineno, "dict keyed by strategy names"))
        if isinstance(node, ast.Assign) and isinstance(node.value, (ast.Tuple, ast.List, ast.Set)) \
                and _strategy_names_in(node.value):
            offenders.append((node.lineno, "collection of strategy names"))
    assert offenders == []


def test_no_two_top_level_definitions_share_a_name():
    """A second def of the same name silently replaces the first (two sections each wrote a helper)."""
    tree = ast.parse(SCRIPT_PATH.read_text(encoding="utf-8"))
    names = [node.name for node in tree.body if isinstance(node, (ast.FunctionDef, ast.ClassDef))]
    assert sorted({name for name in names if names.count(name) > 1}) == []
