"""All SageMaker SDK imports live in active_sampling/core/sdk.py, so an SDK v3 module can replace it."""

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "active_sampling"
SDK_MODULE = PACKAGE / "core" / "sdk.py"


def imported_modules(path):
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.module


def test_only_the_sdk_module_imports_sagemaker():
    importers = sorted(
        str(path.relative_to(PACKAGE)) for path in PACKAGE.rglob("*.py")
        if any(name.split(".")[0] == "sagemaker" for name in imported_modules(path))
    )
    assert importers == ["core/sdk.py"]


def test_contract_spec_and_config_load_without_the_sdk():
    code = (
        "import sys; sys.modules['sagemaker'] = None\n"
        "from active_sampling.steps import ActiveSampleSelectionConfig, ACTIVE_SAMPLE_SELECTION_SPEC\n"
        "from active_sampling.steps.docs import render_config_reference\n"
        "assert 'sagemaker' not in {m.split('.')[0] for m in sys.modules if sys.modules[m] is not None}\n"
        "print(len(render_config_reference()) > 0)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "True"
