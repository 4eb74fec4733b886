#!/usr/bin/env bash
# Prepare this checkout to run FiscoBridge and its tests: on a fresh Debian 12 machine,
# or again on a prepared one (idempotent; then it takes a second or two and changes nothing).
#
#   1. system packages listed in .ci/apt-packages.txt (one per line, real package names;
#      apt is skipped entirely when all are installed; installing needs root)
#   2. Java 17+ and Maven present (the local Kafka broker runs on Java; Maven fetches it)
#   3. .venv with the project installed: pip install -c constraints.txt -e '.[dev]'
#      (skipped while pyproject.toml and constraints.txt are unchanged)
#   4. the pinned Kafka jars cached (`fiscobridge kafka fetch`)
#   5. every scripts/setup.d/*.sh, sourced in name order in this same shell
#
# Run it (`bash scripts/setup.sh`), or source it from a script running under
# `set -euo pipefail` (`.ci/run` does) so that variables exported by scripts/setup.d/*.sh
# reach the commands that follow. Do not source it from an interactive shell: a failing
# step exits the shell that sourced it.
#
# scripts/setup.d/NN-<name>.sh: bash, runs as root, idempotent, must work under
# `set -euo pipefail`, must not `exit` on success, may `export` variables.

if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
    set -euo pipefail
fi

_fb_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$_fb_root"

_fb_die() {
    echo "setup: $*" >&2
    exit 1
}

# -- 1. system packages ------------------------------------------------------------
_fb_missing=()
if [[ -f .ci/apt-packages.txt ]]; then
    while IFS= read -r _fb_line || [[ -n "$_fb_line" ]]; do
        _fb_line="${_fb_line%%#*}"
        _fb_line="${_fb_line//[[:space:]]/}"
        [[ -z "$_fb_line" ]] && continue
        if ! dpkg-query -W -f='${Status}' "$_fb_line" 2>/dev/null | grep -q " installed$"; then
            _fb_missing+=("$_fb_line")
        fi
    done < .ci/apt-packages.txt
fi
if (( ${#_fb_missing[@]} )); then
    command -v apt-get >/dev/null || _fb_die "missing system packages ${_fb_missing[*]} and no apt-get to install them"
    _fb_sudo=()
    if [[ "$(id -u)" != 0 ]]; then
        command -v sudo >/dev/null || _fb_die "installing ${_fb_missing[*]} needs root (run as root or install sudo)"
        _fb_sudo=(sudo)
    fi
    echo "setup: installing ${_fb_missing[*]}"
    "${_fb_sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    "${_fb_sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -qq --no-install-recommends "${_fb_missing[@]}" >/dev/null
fi

# -- 2. Java 17+ and Maven -----------------------------------------------------------
_fb_java="${JAVA_HOME:+$JAVA_HOME/bin/}java"
command -v "$_fb_java" >/dev/null \
    || _fb_die "Java 17+ is needed for the local Kafka broker and was not found (Debian: apt-get install openjdk-17-jre-headless, or set JAVA_HOME)"
_fb_java_version="$("$_fb_java" -version 2>&1 | sed -n 's/.*version "\([0-9][0-9.]*\).*/\1/p' | head -n 1)"
_fb_java_major="${_fb_java_version%%.*}"
[[ "$_fb_java_major" == 1 ]] && _fb_java_major="$(echo "$_fb_java_version" | cut -d. -f2)"
[[ -n "$_fb_java_major" && "$_fb_java_major" -ge 17 ]] \
    || _fb_die "Java 17+ is needed for the local Kafka broker; $(command -v "$_fb_java") is version ${_fb_java_version:-unknown}"
command -v mvn >/dev/null \
    || _fb_die "Maven is needed to fetch the Kafka jars from Maven Central (Debian: apt-get install maven)"

# -- 3. virtualenv with the project ----------------------------------------------------
_fb_python="${PYTHON:-python3}"
if ! .venv/bin/python -c 'import sys' >/dev/null 2>&1; then
    command -v "$_fb_python" >/dev/null || _fb_die "python3 (3.11+) not found"
    "$_fb_python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
        || _fb_die "Python 3.11+ is needed; $_fb_python is $("$_fb_python" --version 2>&1)"
    echo "setup: creating .venv with $("$_fb_python" --version 2>&1)"
    rm -rf .venv
    "$_fb_python" -m venv .venv || _fb_die "python3 -m venv failed (Debian: apt-get install python3-venv)"
fi
_fb_stamp="$(cat pyproject.toml constraints.txt | sha256sum | cut -d' ' -f1)"
if [[ "$(cat .venv/.setup-stamp 2>/dev/null)" != "$_fb_stamp" || ! -x .venv/bin/fiscobridge ]]; then
    echo "setup: installing the project into .venv"
    .venv/bin/python -m pip install -q --disable-pip-version-check -c constraints.txt -e '.[dev]'
    echo "$_fb_stamp" > .venv/.setup-stamp
fi
export VIRTUAL_ENV="$_fb_root/.venv"
case ":$PATH:" in
    *":$VIRTUAL_ENV/bin:"*) ;;
    *) export PATH="$VIRTUAL_ENV/bin:$PATH" ;;
esac

# -- 4. Kafka jars -----------------------------------------------------------------------
.venv/bin/fiscobridge kafka fetch

# -- 5. everyone else's steps --------------------------------------------------------------
for _fb_step in scripts/setup.d/*.sh; do
    [[ -e "$_fb_step" ]] || continue
    echo "setup: $_fb_step"
    # shellcheck source=/dev/null
    source "$_fb_step"
    cd "$_fb_root"
done
echo "setup: ready"
