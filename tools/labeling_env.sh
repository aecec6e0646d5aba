#!/usr/bin/env bash
# Runs the test against a real Label Studio server (tests/labeling_server), with the server installed in its own
# virtual environment .venv-labeling at the repository root. The tests themselves run in the project's .venv: they
# only start `label-studio` from .venv-labeling and talk to it over HTTP on 127.0.0.1.
#
#   bash tools/labeling_env.sh build        create or refresh .venv-labeling only
#   bash tools/labeling_env.sh test [ARGS]  build if needed, run pytest on tests/labeling_server (ARGS passed on)
#
# A machine without Python >= 3.10 (label-studio's floor), or where the install fails, prints
# "LABELING CHECK NOT RUN: <reason>" and exits 0, so `make test` still works there; LABELING_REQUIRED=1 turns that
# into exit 1. LABELING_PYTHON=/path/to/python picks the interpreter explicitly. The server and every dependency are
# pinned in tools/labeling_requirements.txt.
set -uo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
readonly REPO_ROOT
readonly VENV="$REPO_ROOT/.venv-labeling"
readonly STAMP="$VENV/.requirements"
readonly TEST_PYTHON="$REPO_ROOT/.venv/bin/python"
readonly TEST_PATH="tests/labeling_server"
# One server version with every dependency pinned: its API and export format are what the test checks.
readonly REQUIREMENTS_FILE="$REPO_ROOT/tools/labeling_requirements.txt"

readonly ENV_NAME="labeling_env" CHECK_NAME="LABELING" REQUIRED_VAR="LABELING_REQUIRED"
# shellcheck source=tools/env_lib.sh
source "$REPO_ROOT/tools/env_lib.sh"
readonly SUPPORTED="(3, 10) <= v < (4, 0)"

# Python 3.11 first, the version tools/labeling_requirements.txt was frozen with; then any other >= 3.10.
# Candidates are run once before they are trusted: a pyenv shim exists even for a version that is not selected.
find_python() {
    local candidates=("${LABELING_PYTHON:-}") name
    mapfile -t -O 1 candidates < <(pyenv_pythons 3.11)
    for name in python3.11 python3.12 python3.10 python3.13 python3; do
        candidates+=("$(command -v "$name" 2>/dev/null)")
    done
    first_python "$SUPPORTED" "${candidates[@]}"
}

requirement_list() {
    grep -v '^#' "$REQUIREMENTS_FILE"
}

venv_is_current() {
    python_satisfies "$SUPPORTED" "$VENV/bin/python" && [[ -x "$VENV/bin/label-studio" ]] && [[ -f "$STAMP" ]] \
        && [[ "$(cat "$STAMP")" == "$(requirement_list)" ]]
}

build_venv() {
    local python started
    if venv_is_current; then
        return 0
    fi
    python="$(find_python)" || not_run "no Python >= 3.10 found for label-studio (tried \$LABELING_PYTHON," \
        "pyenv's 3.11, python3.11, python3.12, python3.10, python3.13, python3 on PATH)"
    say "building .venv-labeling with $("$python" -c 'import sys; print(sys.executable, sys.version.split()[0])'):" \
        "$(requirement_list | grep -c '==') pinned packages from tools/labeling_requirements.txt"
    started=$SECONDS
    rm -rf "$VENV"
    if ! "$python" -m venv "$VENV"; then
        rm -rf "$VENV"
        not_run "could not create .venv-labeling with $python"
    fi
    if ! venv_pip_install --requirement "$REQUIREMENTS_FILE"; then
        rm -rf "$VENV"
        not_run "pip could not install tools/labeling_requirements.txt into .venv-labeling (errors above)"
    fi
    requirement_list >"$STAMP"
    say "built in $((SECONDS - started)) s"
}

run_tests() {
    build_venv
    cd "$REPO_ROOT" || exit 1
    [[ -x "$TEST_PYTHON" ]] || not_run "$TEST_PYTHON does not exist; run make venv first"
    # (not `label-studio --version`: it migrates a database in ~/.local/share and can hang)
    say "$(grep '^label-studio==' "$REQUIREMENTS_FILE")"
    LABEL_STUDIO_BIN="$VENV/bin/label-studio" "$TEST_PYTHON" -m pytest -q "$TEST_PATH" -p no:cacheprovider "$@"
}

dispatch "$@"
