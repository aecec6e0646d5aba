#!/usr/bin/env bash
# Runs the entry script's tests (tests/script) under the library versions of the SageMaker scikit-learn 1.2-1
# processing image, in a second virtual environment .venv-legacy at the repository root.
#
#   bash tools/legacy_env.sh build        create or refresh .venv-legacy only
#   bash tools/legacy_env.sh test [ARGS]  build if needed, print the imported versions, run pytest (ARGS passed on)
#
# A machine without Python 3.9, or where the install fails, prints "LEGACY CHECK NOT RUN: <reason>" and exits 0,
# so `make test` still works there; LEGACY_REQUIRED=1 turns that into exit 1. LEGACY_PYTHON=/path/to/python3.9
# picks the interpreter explicitly.
set -uo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
readonly REPO_ROOT
readonly VENV="$REPO_ROOT/.venv-legacy"
readonly STAMP="$VENV/.requirements"
readonly PYTHON_VERSION="3.9"
readonly TEST_PATH="tests/script"
# The image's pins (scipy: sagemaker-scikit-learn-container's requirements.txt since its PR #192, the version
# scikit-learn 1.2.1 runs with there), then the newest pytest and hypothesis that pip resolves for Python 3.9.
readonly REQUIREMENTS=(
    numpy==1.24.1
    pandas==1.1.3
    pyarrow==14.0.1
    scipy==1.8.0
    pytest==8.4.2
    hypothesis==6.141.1
)

readonly ENV_NAME="legacy_env" CHECK_NAME="LEGACY" REQUIRED_VAR="LEGACY_REQUIRED"
# shellcheck source=tools/env_lib.sh
source "$REPO_ROOT/tools/env_lib.sh"

find_python39() {
    local candidates=("${LEGACY_PYTHON:-}" "$(command -v "python$PYTHON_VERSION" 2>/dev/null)")
    mapfile -t -O "${#candidates[@]}" candidates < <(pyenv_pythons "$PYTHON_VERSION")
    first_python "v == (3, 9)" "${candidates[@]}"
}

requirement_list() {
    printf '%s\n' "${REQUIREMENTS[@]}"
}

venv_is_current() {
    python_satisfies "v == (3, 9)" "$VENV/bin/python" && [[ -f "$STAMP" ]] && [[ "$(cat "$STAMP")" == "$(requirement_list)" ]]
}

build_venv() {
    local python
    if venv_is_current; then
        return 0
    fi
    python="$(find_python39)" || not_run "no Python $PYTHON_VERSION interpreter found (tried \$LEGACY_PYTHON," \
        "python$PYTHON_VERSION on PATH, pyenv versions $PYTHON_VERSION.*); install one, e.g. pyenv install $PYTHON_VERSION"
    say "building .venv-legacy with $("$python" -c 'import sys; print(sys.executable, sys.version.split()[0])'):" \
        "${REQUIREMENTS[*]}"
    rm -rf "$VENV"
    if ! "$python" -m venv "$VENV"; then
        rm -rf "$VENV"
        not_run "could not create .venv-legacy with $python"
    fi
    if ! venv_pip_install "${REQUIREMENTS[@]}"; then
        rm -rf "$VENV"
        not_run "pip could not install ${REQUIREMENTS[*]} into .venv-legacy (errors above)"
    fi
    requirement_list >"$STAMP"
}

# Prints the versions actually imported and fails if they are not the pinned ones.
check_versions() {
    "$VENV/bin/python" - "${REQUIREMENTS[@]}" <<'EOF'
import sys

import numpy
import pandas
import pyarrow
import scipy

imported = {"numpy": numpy.__version__, "pandas": pandas.__version__, "pyarrow": pyarrow.__version__,
            "scipy": scipy.__version__}
print("legacy_env: python %s, numpy %s, pandas %s, pyarrow %s, scipy %s"
      % (sys.version.split()[0], imported["numpy"], imported["pandas"], imported["pyarrow"], imported["scipy"]))
pins = dict(requirement.split("==") for requirement in sys.argv[1:])
wrong = ["%s %s (pinned %s)" % (name, imported[name], pins[name]) for name in imported if imported[name] != pins[name]]
if wrong:
    sys.exit("legacy_env: imported versions differ from the pins: " + ", ".join(wrong))
EOF
}

run_tests() {
    build_venv
    check_versions || not_run "numpy, pandas, pyarrow or scipy do not import at the pinned versions in .venv-legacy"
    cd "$REPO_ROOT" || exit 1
    [[ -d "$TEST_PATH" ]] || not_run "$TEST_PATH does not exist"
    "$VENV/bin/python" -m pytest -q "$TEST_PATH" -p no:cacheprovider "$@"
}

dispatch "$@"
