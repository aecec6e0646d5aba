"""Render docs/config.md from the config model and the script contract, so the reference cannot drift.

``python -m active_sampling.steps.docs`` prints the text; ``--write PATH`` writes it; a test compares
the committed file with ``render_config_reference()``.
"""

import argparse
import inspect
import sys
import typing
from typing import Any, List, Optional, Sequence

from pydantic.fields import FieldInfo

from ..core.contract import ScriptContract
from ..scripts import active_sample_selection as script
from .config import ActiveSampleSelectionConfig
from .contract import ACTIVE_SAMPLE_SELECTION_CONTRACT
from .spec import ACTIVE_SAMPLE_SELECTION_SPEC

_NONE = type(None)


def _type_text(annotation: Any) -> str:
    origin = typing.get_origin(annotation)
    arguments = typing.get_args(annotation)
    if origin is typing.Literal:
        return " | ".join(f"`{value}`" for value in arguments)
    if origin is typing.Union and _NONE in arguments:
        rest = [argument for argument in arguments if argument is not _NONE]
        return " or ".join(_type_text(argument) for argument in rest) + " or None"
    return getattr(annotation, "__name__", str(annotation))


def _constraints_text(info: FieldInfo) -> str:
    parts = []
    for item in info.metadata:
        for attribute, symbol in (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<")):
            value = getattr(item, attribute, None)
            if value is not None:
                parts.append(f"{symbol} {value}")
        if getattr(item, "min_length", None):
            parts.append("not empty")
        if getattr(item, "pattern", None):
            parts.append(f"matches `{item.pattern}`")
    return ", ".join(parts)


def _default_text(info: FieldInfo) -> str:
    return "" if info.is_required() else f"`{info.default!r}`"


def _env_var(info: FieldInfo) -> str:
    extra = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
    return f"`{extra['env_var']}`" if "env_var" in extra else ""


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def _table(header: Sequence[str], rows: List[Sequence[str]]) -> List[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(_cell(str(value)) for value in row) + " |" for row in rows]
    return lines + [""]


def _field_rows(model: type, names: Sequence[str], with_default: bool) -> List[Sequence[str]]:
    rows = []
    for name in names:
        info = model.model_fields[name]
        row = [f"`{name}`", _type_text(info.annotation)]
        if with_default:
            row.append(_default_text(info))
        row += [_constraints_text(info), _env_var(info), info.description or ""]
        rows.append(row)
    return rows


def _derived_rows(model: type) -> List[Sequence[str]]:
    rows = []
    for name in model.derived_properties():
        doc = inspect.getdoc(getattr(model, name)) or ""
        rows.append([f"`{name}`", doc.splitlines()[0] if doc else ""])
    return rows


def render_config_reference(model: type = ActiveSampleSelectionConfig,
                            contract: ScriptContract = ACTIVE_SAMPLE_SELECTION_CONTRACT) -> str:
    """The Markdown text of docs/config.md."""
    tiers = model.fields_by_tier()
    lines = [
        "# ActiveSampleSelection configuration reference",
        "",
        "Generated from `ActiveSampleSelectionConfig` and the script contract by",
        "`python -m active_sampling.steps.docs --write docs/config.md`; a test fails when this file differs",
        "from the generated text.",
        "",
        "## Essential user inputs",
        "",
        "No default: every config must give them.",
        "",
    ]
    lines += _table(["field", "type", "constraints", "env var", "description"],
                    _field_rows(model, tiers["essential"], with_default=False))
    lines += ["## System fields", "", "Defaults that fit most pipelines; the env var column names the variable "
              "the field sets in the processing job (left out of the job's environment when the value is None).", ""]
    lines += _table(["field", "type", "default", "constraints", "env var", "description"],
                    _field_rows(model, tiers["system"], with_default=True))
    lines += ["## Derived values", "", "Read-only properties computed from the fields above.", ""]
    lines += _table(["property", "meaning"], _derived_rows(model))
    lines += ["## Strategies and use cases", "",
              "A config whose `selection_strategy` does not fit its `use_case` is rejected when it is created.", ""]
    lines += _table(["use_case", "allowed selection_strategy"], [
        ["`ssl`", ", ".join(f"`{name}`" for name in script.SSL_STRATEGIES)],
        ["`active_learning`", ", ".join(f"`{name}`" for name in script.ACTIVE_LEARNING_STRATEGIES)],
        ["`auto`", ", ".join(f"`{name}`" for name in script.STRATEGIES)],
    ])
    lines += ["## Script contract", "", f"Entry point: `{contract.entry_point}`, run as "
              + " ".join(f"`--{name} <{name}>`" for name in contract.expected_arguments) + ".", ""]
    lines += _table(["channel", "direction", "container path", "description"], [
        [f"`{name}`", "input", f"`{path}`", ACTIVE_SAMPLE_SELECTION_SPEC.dependencies[name].description]
        for name, path in contract.expected_input_paths.items()
    ] + [
        [f"`{name}`", "output", f"`{path}`", ACTIVE_SAMPLE_SELECTION_SPEC.outputs[name].description]
        for name, path in contract.expected_output_paths.items()
    ])
    lines += _table(["environment variable", "required", "script default"], [
        [f"`{name}`", "yes", ""] for name in contract.required_env_vars
    ] + [
        [f"`{name}`", "no", f"`{default}`" if default else "unset"] for name, default in contract.optional_env_vars.items()
    ])
    return "\n".join(lines).rstrip("\n") + "\n"


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", metavar="PATH", help="write the reference to PATH instead of printing it")
    args = parser.parse_args(argv)
    text = render_config_reference()
    if args.write:
        with open(args.write, "w", encoding="utf-8") as handle:
            handle.write(text)
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
