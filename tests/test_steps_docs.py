from pathlib import Path

from active_sampling.scripts import active_sample_selection as script
from active_sampling.steps import ActiveSampleSelectionConfig
from active_sampling.steps.docs import main, render_config_reference

DOC = Path(__file__).resolve().parents[1] / "docs" / "config.md"


def test_committed_reference_is_the_generated_one():
    assert DOC.read_text(encoding="utf-8") == render_config_reference(), (
        "docs/config.md is stale: run python -m active_sampling.steps.docs --write docs/config.md")


def test_reference_lists_every_field_env_var_and_channel():
    text = render_config_reference()
    for name in ActiveSampleSelectionConfig.model_fields:
        assert f"| `{name}` |" in text
    for var in script.ENV_VARS:
        assert f"`{var.name}`" in text
    for name, path in {**script.CONTAINER_INPUT_PATHS, **script.CONTAINER_OUTPUT_PATHS}.items():
        assert f"| `{name}` |" in text and f"`{path}`" in text


def test_write_option(tmp_path):
    target = tmp_path / "config.md"
    assert main(["--write", str(target)]) == 0
    assert target.read_text(encoding="utf-8") == render_config_reference()
