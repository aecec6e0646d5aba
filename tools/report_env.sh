#!/usr/bin/env bash
# Opens selection_report.html in a real browser: Debian's headless Chromium, JavaScript disabled, on the reports of
# the demo and of a sharded run (tests/script/test_report_browser.py, run in the project's .venv).
#
#   bash tools/report_env.sh build        find chromium, or install Debian's package (apt-get, as root or via sudo)
#   bash tools/report_env.sh test [ARGS]  build if needed, run the browser test (ARGS passed on to pytest)
#
# A machine without chromium that cannot install it prints "REPORT CHECK NOT RUN: <reason>" and exits 0, so
# `make test` still works there; REPORT_REQUIRED=1 (CI) turns that into exit 1. REPORT_CHROMIUM=/path/to/chromium
# picks the browser explicitly.
set -uo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
readonly REPO_ROOT
readonly TEST_PYTHON="$REPO_ROOT/.venv/bin/python"
readonly TEST_PATH="tests/script/test_report_browser.py"
readonly PACKAGE="chromium"  # Debian's package; its command is chromium too

readonly ENV_NAME="report_env" CHECK_NAME="REPORT" REQUIRED_VAR="REPORT_REQUIRED"
# shellcheck source=tools/env_lib.sh
source "$REPO_ROOT/tools/env_lib.sh"

find_chromium() {
    local candidate
    for candidate in "${REPORT_CHROMIUM:-}" "$(command -v chromium 2>/dev/null)" \
        "$(command -v chromium-browser 2>/dev/null)"; do
        if [[ -n "$candidate" && -x "$candidate" ]] && "$candidate" --version >/dev/null 2>&1; then
            echo "$candidate"
            return 0
        fi
    done
    return 1
}

# apt-get as root, or through sudo when it needs no password; status 1 when neither is possible.
as_root() {
    if [[ "$(id -u)" == "0" ]]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
        sudo -n "$@"
    else
        return 1
    fi
}

build_venv() {
    local log started
    if find_chromium >/dev/null; then
        return 0
    fi
    command -v apt-get >/dev/null 2>&1 || not_run "no chromium on PATH and no apt-get to install Debian's $PACKAGE"
    as_root true || not_run "no chromium on PATH, and installing Debian's $PACKAGE needs root or password-less sudo"
    say "installing Debian's $PACKAGE with apt-get"
    started=$SECONDS
    log="$(mktemp)"
    if ! { as_root apt-get update && as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y "$PACKAGE"; } \
        >"$log" 2>&1; then
        tail -n 20 "$log" >&2
        rm -f "$log"
        not_run "apt-get could not install $PACKAGE (errors above)"
    fi
    rm -f "$log"
    find_chromium >/dev/null || not_run "$PACKAGE was installed but does not start (chromium --version fails)"
    say "installed in $((SECONDS - started)) s"
}

run_tests() {
    local browser
    build_venv
    cd "$REPO_ROOT" || exit 1
    [[ -x "$TEST_PYTHON" ]] || not_run "$TEST_PYTHON does not exist; run make venv first"
    browser="$(find_chromium)"
    say "$("$browser" --version 2>/dev/null | head -n 1)"
    CHROMIUM_BIN="$browser" "$TEST_PYTHON" -m pytest -q "$TEST_PATH" -p no:cacheprovider "$@"
}

dispatch "$@"
