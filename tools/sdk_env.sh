#!/usr/bin/env bash
# Runs the SageMaker-SDK-facing tests (pytest marker "sdk") under SDK v2, in a second virtual environment
# .venv-sdk2 at the repository root; the main .venv has SDK v3 (Makefile). Together they test the step
# builders on both majors, and tests/test_sdk_golden.py compares the two SDKs' pipeline definitions by
# running examples/pipeline.py under the main .venv's interpreter (SDK_PEER_PYTHON).
#
#   bash tools/sdk_env.sh build        create or refresh .venv-sdk2 only
#   bash tools/sdk_env.sh test [ARGS]  build if needed, check the SDK major, run pytest -m sdk (ARGS passed on)
#
# The interpreter is Python 3.9 when one is found (SDK_PYTHON, python3.9 on PATH, pyenv 3.9.*), since v2 on
# 3.9 is the combination only this environment covers; otherwise python3. The environment is rebuilt when
# pyproject.toml or the interpreter changes. Unlike the legacy check, a failure here is always a failure.
set -uo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
readonly REPO_ROOT
readonly VENV="$REPO_ROOT/.venv-sdk2"
readonly STAMP="$VENV/.installed"
readonly SDK_MAJOR=2
readonly EXTRAS="sdk-tests,sdk2"
readonly PEER_PYTHON="$REPO_ROOT/.venv/bin/python"

readonly ENV_NAME="sdk_env"
# shellcheck source=tools/env_lib.sh
source "$REPO_ROOT/tools/env_lib.sh"

fail() { echo "sdk_env: $*" >&2; exit 1; }

find_python() {
    if [[ -n "${SDK_PYTHON:-}" ]]; then
        echo "$SDK_PYTHON"
        return 0
    fi
    local candidates=("$(command -v python3.9 2>/dev/null)")
    mapfile -t -O 1 candidates < <(pyenv_pythons 3.9)
    first_python "v == (3, 9)" "${candidates[@]}" || command -v python3
}

# What the environment was built from: the interpreter, its version and pyproject.toml.
fingerprint() {
    local python="$1"
    echo "$python $("$python" -c 'import sys; print(sys.version.split()[0])') $EXTRAS"
    cat "$REPO_ROOT/pyproject.toml"
}

build_venv() {
    local python
    python="$(find_python)" || fail "no Python interpreter found"
    if [[ -f "$STAMP" ]] && [[ "$(cat "$STAMP")" == "$(fingerprint "$python")" ]]; then
        return 0
    fi
    say "building .venv-sdk2 with $python: pip install -e '.[$EXTRAS]'"
    rm -rf "$VENV"
    "$python" -m venv "$VENV" || fail "could not create .venv-sdk2 with $python"
    # --no-compile: the tests import a small part of the SDK; byte-compiling all of it costs a minute of CPU.
    if ! venv_pip_install --no-compile -e "$REPO_ROOT[$EXTRAS]"; then
        rm -rf "$VENV"
        fail "pip could not install '.[$EXTRAS]' into .venv-sdk2 (errors above)"
    fi
    fingerprint "$python" >"$STAMP"
}

run_tests() {
    build_venv
    [[ -x "$PEER_PYTHON" ]] || fail "$PEER_PYTHON is missing: the golden test compares against the main .venv (make venv)"
    cd "$REPO_ROOT" || exit 1
    "$VENV/bin/python" -c "import sys; from importlib.metadata import version; \
print('sdk_env: python %s, sagemaker %s' % (sys.version.split()[0], version('sagemaker')))"
    # Only the modules that carry the marker are collected: the others may import what this environment lacks.
    local modules
    mapfile -t modules < <(grep -l "pytest.mark.sdk" tests/test_*.py)
    SDK_EXPECTED_MAJOR="$SDK_MAJOR" SDK_PEER_PYTHON="$PEER_PYTHON" \
        "$VENV/bin/python" -m pytest -q -m sdk -p no:cacheprovider "${modules[@]}" "$@"
}

dispatch "$@"
