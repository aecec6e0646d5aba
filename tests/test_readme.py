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
