"""The entry script reads in data-flow order: its ``# ---- `` sections are layers, and no section uses a name that
a later section defines. ``__all__`` lists the public API."""

import ast
import re
from pathlib import Path

import pytest

from conftest import script_module as script

SCRIPT_PATH = Path(script.__file__)
SECTION_HEADER = re.compile(r"^# ---- ")

# The functions and classes the seeds' documentation and tests are written against.
SEED_API = ("main", "select_samples", "load_inference_data", "extract_score_columns",
            "normalize_scores_to_probabilities", "save_selected_samples", "validate_strategy_for_use_case",
            "UncertaintySampler", "DiversitySampler", "BADGESampler", "ConfidenceThresholdSampler",
            "TopKPerClassSampler")


def _bound_names(node):
    """Every name a top-level node binds at module level."""
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return {node.name}
    targets = node.targets if isinstance(node, ast.Assign) else [getattr(node, "target", None)]
    return {name.id for target in targets if target is not None for name in ast.walk(target)
            if isinstance(name, ast.Name)}


def _local_names(node):
    """Names bound inside a function or class body (arguments, assignments, loops, imports, handlers)."""
    local = set()
    for inner in ast.walk(node):
        if isinstance(inner, ast.arg):
            local.add(inner.arg)
        elif isinstance(inner, ast.Name) and isinstance(inner.ctx, (ast.Store, ast.Del)):
            local.add(inner.id)
        elif isinstance(inner, (ast.Import, ast.ImportFrom)):
            local.update((alias.asname or alias.name).split(".")[0] for alias in inner.names)
        elif isinstance(inner, ast.ExceptHandler) and inner.name:
            local.add(inner.name)
        elif isinstance(inner, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and inner is not node:
            local.add(inner.name)
    return local


def forward_references(source):
    """``(user, name, user's section, defining section)`` for each top-level definition that uses a module-level
    name first defined in a later section (sections start at lines beginning with ``# ---- ``)."""
    lines = source.splitlines()
    headers = [number for number, line in enumerate(lines, start=1) if SECTION_HEADER.match(line)]

    def section_of(line_number):
        return sum(1 for header in headers if header <= line_number)

    tree = ast.parse(source)
    defined_in = {}
    for node in tree.body:
        for name in _bound_names(node):
            defined_in.setdefault(name, section_of(node.lineno))
    found = []
    for node in tree.body:
        user_section = section_of(node.lineno)
        local = _local_names(node) if isinstance(node, (ast.FunctionDef, ast.ClassDef)) else set()
        used = {inner.id for inner in ast.walk(node) if isinstance(inner, ast.Name)
                and isinstance(inner.ctx, ast.Load)} - local
        for name in sorted(used):
            if defined_in.get(name, 0) > user_section:
                user = sorted(_bound_names(node)) or ["line {}".format(node.lineno)]
                found.append((user[0], name, user_section, defined_in[name]))
    return sorted(set(found))


def test_no_section_uses_a_name_a_later_section_defines():
    source = SCRIPT_PATH.read_text()
    headers = [line for line in source.splitlines() if SECTION_HEADER.match(line)]
    assert len(headers) >= 8, "the script is organised in sections"
    assert forward_references(source) == []


def test_the_layer_check_finds_a_forward_reference_and_ignores_locals():
    source = "\n".join([
        "# ---- first", "def early():", "    return late()", "def shadowing(late):", "    return late",
        "def local_loop():", "    for late in range(3):", "        pass", "    return late",
        "# ---- second", "def late():", "    return early()", "VALUE = late()",
    ])
    assert forward_references(source) == [("early", "late", 1, 2)]


def test_all_lists_the_public_api():
    exported = set(script.__all__)
    assert len(exported) == len(script.__all__), "no name twice"
    assert not [name for name in exported if name.startswith("_")]
    assert not [name for name in exported if not hasattr(script, name)]
    assert set(SEED_API) <= exported
    samplers = {name for name, value in vars(script).items()
                if isinstance(value, type) and issubclass(value, script._Sampler) and not name.startswith("_")}
    assert samplers <= exported and {strategy.sampler.__name__ for strategy in script.STRATEGY_TABLE} <= exported


@pytest.mark.parametrize("name", ["STRATEGY_TABLE", "Strategy", "SelectionConfig", "SelectionError",
                                  "parse_environment", "run_selection"])
def test_all_lists_the_engine_and_its_table(name):
    assert name in script.__all__
