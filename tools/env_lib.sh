# Shared by tools/legacy_env.sh, tools/labeling_env.sh and tools/sdk_env.sh, which source it after setting
# ENV_NAME (the prefix of their log lines, also their file name), VENV, and for the checks that may be skipped
# CHECK_NAME and REQUIRED_VAR. Each script defines build_venv and run_tests and ends with `dispatch "$@"`.

say() { echo "$ENV_NAME: $*"; }

# Prints "<CHECK_NAME> CHECK NOT RUN: <reason>", then exits 0, or 1 when $REQUIRED_VAR is 1: a machine that
# cannot build the environment still runs the rest of `make test`, CI does not let it pass.
not_run() {
    echo
    echo "$CHECK_NAME CHECK NOT RUN: $*"
    echo
    if [[ "${!REQUIRED_VAR:-0}" == "1" ]]; then
        exit 1
    fi
    exit 0
}

# True when $2 is an interpreter that runs and whose (major, minor) tuple `v` satisfies the Python condition $1.
# A pyenv shim exists even for a version that is not installed, so every candidate is run before it is trusted.
python_satisfies() {
    [[ -n "$2" ]] && "$2" -c "import sys; v = sys.version_info[:2]; sys.exit(not ($1))" >/dev/null 2>&1
}

# The first of the candidates ($2...) that satisfies the condition $1; status 1 when none does.
first_python() {
    local condition="$1" candidate
    shift
    for candidate in "$@"; do
        if python_satisfies "$condition" "$candidate"; then
            echo "$candidate"
            return 0
        fi
    done
    return 1
}

# pyenv's interpreters of version $1 (e.g. 3.9), newest first.
pyenv_pythons() {
    local root
    root="$(pyenv root 2>/dev/null)" || root="${PYENV_ROOT:-$HOME/.pyenv}"
    printf '%s\n' "$root/versions/$1".*/bin/python"$1" | sort -V -r
}

# pip install "$@" into $VENV. pip's noise about this machine's optional local indexes is dropped; everything
# else is shown on failure.
venv_pip_install() {
    local log status
    log="$(mktemp)"
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --timeout 60 --retries 2 "$@" >"$log" 2>&1
    status=$?
    if [[ $status -ne 0 ]]; then
        grep -v "^WARNING: Location '.*' is ignored" "$log" >&2
    fi
    rm -f "$log"
    return $status
}

# `build` or `test [pytest args]`. Nothing from another interpreter's environment may leak into this one.
dispatch() {
    unset PYTHONPATH PYTHONHOME
    case "${1:-}" in
        build) build_venv ;;
        test) shift; run_tests "$@" ;;
        *) echo "usage: bash tools/$ENV_NAME.sh {build|test [pytest args]}" >&2; exit 2 ;;
    esac
}
