#!/usr/bin/env bash
# Refresh the Python lock files from pyproject.toml (docs/operations.md, "Reproducible installs"):
#   requirements/lock.txt       the server: every package, pinned, with the hashes of its files
#   requirements/lock-test.txt  the same plus the [test] extra (what CI and developers install)
# Both also pin pip and the build requirements (requirements/tools.in), so that setup.sh can install
# with --require-hashes and build the project itself without fetching anything unlocked.
#
#   bash scripts/lock.sh                          follow pyproject.toml, keep every other pin
#   bash scripts/lock.sh --upgrade                every package to its newest allowed release
#   bash scripts/lock.sh --upgrade-package NAME   just that one (repeatable)
#
# pip-compile (pip-tools) resolves through this machine's pip configuration (pip.conf, PIP_*):
# the same indexes that scripts/setup.sh installs from. Commit the changed lock files, run the
# tests (CI installs from the lock only).
set -euo pipefail
cd "$(dirname "$0")/.."
tools="${XDG_CACHE_HOME:-$HOME/.cache}/hopso-lock-tools"
pip_tools_version=7.6.2
if ! "$tools/bin/pip-compile" --version 2>/dev/null | grep -q "$pip_tools_version"; then
  python3.11 -m venv "$tools"
  "$tools/bin/python" -m pip install -q "pip-tools==$pip_tools_version"
fi
export CUSTOM_COMPILE_COMMAND="bash scripts/lock.sh"
compile() {
  local output=$1; shift
  "$tools/bin/pip-compile" --quiet --no-emit-index-url --no-emit-find-links --generate-hashes \
    --allow-unsafe --strip-extras --resolver=backtracking \
    --output-file "$output" "$@" pyproject.toml requirements/tools.in
}
compile requirements/lock.txt "$@"
# The test lock starts from the server's pins, so both agree on every shared package.
[ -f requirements/lock-test.txt ] || cp requirements/lock.txt requirements/lock-test.txt
compile requirements/lock-test.txt --extra test "$@"
echo "lock: requirements/lock.txt and requirements/lock-test.txt written"
