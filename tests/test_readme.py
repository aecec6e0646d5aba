"""The README's environment-variable table says what the script's ENV_VARS say."""

import re
from pathlib import Path

from active_sampling.scripts import active_sample_selection as script

README = Path(__file__).resolve().parents[1] / "README.md"


def readme_rows():
    rows = {}
    for line in README.read_text().splitlines():
        match = re.match(r"\| `([A-Z_]+)` \| ([^|]+) \| ([^|]+) \|", line)
        if match:
            rows[match.group(1)] = (match.group(2).strip(), match.group(3).strip())
    return rows


def documented_default(var):
    if var.required:
        return "required"
    return "unset" if var.default == "" else "`{}`".format(var.default)


def test_every_env_var_is_documented_with_its_default_and_choices():
    rows = readme_rows()
    assert set(rows) == {var.name for var in script.ENV_VARS}
    for var in script.ENV_VARS:
        default, allowed = rows[var.name]
        assert default == documented_default(var), var.name
        if var.choices:
            assert allowed == ", ".join("`{}`".format(choice) for choice in var.choices), var.name


def test_readme_names_the_container_paths():
    text = README.read_text()
    for path in list(script.CONTAINER_INPUT_PATHS.values()) + list(script.CONTAINER_OUTPUT_PATHS.values()):
        assert path in text


def score_table_strategies():
    """The strategies named by the rows of the README's one table of what selection_score is."""
    text = README.read_text()
    table = text[text.index("What `selection_score` is, per strategy"):]
    table = table[:table.index("\n\n", table.index("| --- |"))]
    return [re.match(r"\| (\w+)", line).group(1) for line in table.splitlines()[4:]]


def test_one_table_says_what_selection_score_is_for_every_strategy():
    assert set(score_table_strategies()) == set(script.STRATEGIES)
    strategies_table = README.read_text().split("## Strategies", 1)[1].split("\n\n", 2)[1]
    assert "selection_score" not in strategies_table.splitlines()[0], "said in one table, not two"
