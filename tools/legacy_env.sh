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
# The image's pins, then the newest pytest and hypothesis that pip resolves for Python 3.9.
readonly REQUIREMENTS=(
    numpy==1.24.1
    pandas==1.1.3
    pyarrow==14.0.1
    pytest==8.4.2
    hypothesis==6.141.1
)

say() { echo "legacy_env: $*"; }

# Prints the reason, then exits 0 (or 1 with LEGACY_REQUIRED=1): a missing interpreter is not a test failure.
not_run() {
    echo
    echo "LEGACY CHECK NOT RUN: $*"
    echo
    if [[ "${LEGACY_REQUIRED:-0}" == "1" ]]; then
        exit 1
    fi
    exit 0
}

is_python39() {
    [[ -n "$1" ]] && "$1" -c "import sys; sys.exit(sys.version_info[:2] != (3, 9))" >/dev/null 2>&1
}

# A pyenv shim named python3.9 exists even when 3.9 is not the selected version, and then fails when run,
# so every candidate is run once before it is trusted.
find_python39() {
    local candidate root
    local candidates=("${LEGACY_PYTHON:-}" "$(command -v "python$PYTHON_VERSION" 2>/dev/null)")
    root="$(pyenv root 2>/dev/null)" || root="${PYENV_ROOT:-$HOME/.pyenv}"
    while IFS= read -r candidate; do
        candidates+=("$candidate")
    done < <(printf '%s\n' "$root/versions/$PYTHON_VERSION".*/bin/python"$PYTHON_VERSION" | sort -V -r)
    for candidate in "${candidates[@]}"; do
        if is_python39 "$candidate"; then
            echo "$candidate"
            return 0
        fi
    done
    return 1
}

requirement_list() {
    printf '%s\n' "${REQUIREMENTS[@]}"
}

venv_is_current() {
    is_python39 "$VENV/bin/python" && [[ -f "$STAMP" ]] && [[ "$(cat "$STAMP")" == "$(requirement_list)" ]]
}

# pip's own noise about this machine's optional local indexes is dropped; everything else is shown on failure.
pip_install() {
    local log
    log="$(mktemp)"
    if "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --timeout 60 --retries 2 \
        "${REQUIREMENTS[@]}" >"$log" 2>&1; then
        rm -f "$log"
        return 0
    fi
    grep -v "^WARNING: Location '.*' is ignored" "$log" >&2
    rm -f "$log"
    return 1
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
    if ! pip_install; then
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

imported = {"numpy": numpy.__version__, "pandas": pandas.__version__, "pyarrow": pyarrow.__version__}
print("legacy_env: python %s, numpy %s, pandas %s, pyarrow %s"
      % (sys.version.split()[0], imported["numpy"], imported["pandas"], imported["pyarrow"]))
pins = dict(requirement.split("==") for requirement in sys.argv[1:])
wrong = ["%s %s (pinned %s)" % (name, imported[name], pins[name]) for name in imported if imported[name] != pins[name]]
if wrong:
    sys.exit("legacy_env: imported versions differ from the pins: " + ", ".join(wrong))
EOF
}

run_tests() {
    build_venv
    check_versions || not_run "numpy, pandas or pyarrow do not import at the pinned versions in .venv-legacy"
    cd "$REPO_ROOT" || exit 1
    [[ -d "$TEST_PATH" ]] || not_run "$TEST_PATH does not exist"
    "$VENV/bin/python" -m pytest -q "$TEST_PATH" -p no:cacheprovider "$@"
}

main() {
    # Nothing from another interpreter's environment may leak into the legacy one.
    unset PYTHONPATH PYTHONHOME
    case "${1:-}" in
        build) build_venv ;;
        test) shift; run_tests "$@" ;;
        *) echo "usage: bash tools/legacy_env.sh {build|test [pytest args]}" >&2; exit 2 ;;
    esac
}

main "$@"
