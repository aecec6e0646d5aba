"""pyproject.toml gives Python 3.9 SageMaker SDK v2, Python 3.10+ either major, and extras that pin one."""

from pathlib import Path

import pytest
from packaging.requirements import Requirement

tomllib = pytest.importorskip("tomllib", reason="tomllib needs Python 3.11")

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"
PROJECT = tomllib.loads(PYPROJECT.read_text())["project"]


def sagemaker_versions_allowed(requirements, python_version):
    """A predicate over SDK versions: what the sagemaker requirements allow on ``python_version``."""
    specifiers = [
        requirement.specifier for requirement in map(Requirement, requirements)
        if requirement.name == "sagemaker"
        and (requirement.marker is None or requirement.marker.evaluate({"python_version": python_version}))
    ]
    assert specifiers, f"no sagemaker requirement applies on Python {python_version}"
    return lambda version: all(specifier.contains(version) for specifier in specifiers)


@pytest.mark.parametrize("python_version, allowed, refused", [
    ("3.9", ["2.254.0", "2.257.7"], ["2.253.1", "3.0.1", "3.27.0"]),
    ("3.10", ["2.254.0", "2.257.7", "3.0.1", "3.27.0"], ["2.253.1", "4.0.0"]),
    ("3.13", ["2.257.7", "3.27.0"], ["2.253.1", "4.0.0"]),
])
def test_plain_install(python_version, allowed, refused):
    accepts = sagemaker_versions_allowed(PROJECT["dependencies"], python_version)
    assert [version for version in allowed + refused if accepts(version)] == allowed


@pytest.mark.parametrize("extra, allowed, refused", [
    ("sdk2", ["2.254.0", "2.257.7"], ["2.253.1", "3.0.1"]),
    ("sdk3", ["3.0.1", "3.27.0"], ["2.257.7", "4.0.0"]),
])
def test_extras_pin_one_major(extra, allowed, refused):
    accepts = sagemaker_versions_allowed(PROJECT["dependencies"] + PROJECT["optional-dependencies"][extra], "3.11")
    assert [version for version in allowed + refused if accepts(version)] == allowed
