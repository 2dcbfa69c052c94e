#!/usr/bin/env bash
# Set up everything the tests need, then run the whole suite (type check included).
set -euo pipefail
cd "$(dirname "$0")/.."
# The Debian packages only the tests need (chromium, LibreOffice, ffmpeg...: minutes on a fresh
# CI machine) install in the background while pip, npm ci and the checks below run; pytest
# waits for them (scripts/setup.sh, HOPSO_SETUP_APT_STATUS).
apt_status=$(mktemp -u /tmp/hopso-apt-status.XXXXXX)
HOPSO_SETUP_APT_STATUS=$apt_status bash scripts/setup.sh --test
# Python writes its bytecode caches from here on (this machine's shells set
# PYTHONDONTWRITEBYTECODE=1): without them every interpreter the suite starts (each run.py
# server, document worker and xdist worker) compiled the same ~240 modules again (~0.4 s of
# CPU a server start), and every pytest session rewrote every test module's asserts (~6 s).
unset PYTHONDONTWRITEBYTECODE
# mypy, the longest check (~17 s of CPU), runs beside the others on the second core: the
# packages, then the browser tests (pyproject's mypy excludes tests/, so they are named as
# files; --follow-imports=silent leaves testkit's untyped video helpers out of the report).
mypy_log=$(mktemp)
{ .venv/bin/python -m mypy server rooms media documents run.py \
    && .venv/bin/python -m mypy --follow-imports=silent tests/e2e/*.py; } >"$mypy_log" 2>&1 &
mypy_pid=$!
.venv/bin/ruff check .
.venv/bin/lint-imports  # the layers of docs/architecture.md (contracts: pyproject.toml)
# The browser code: tsc --checkJs, eslint and node's unit tests (web_client/package.json).
(cd web_client && npm run --silent check)
# The bytecode, written before the two workers start (or both compile the same modules).
.venv/bin/python -m compileall -q -j 0 server rooms media documents testkit tests bench run.py >/dev/null
mypy_status=0
wait "$mypy_pid" || mypy_status=$?
cat "$mypy_log"
rm -f "$mypy_log"
[ "$mypy_status" = 0 ] || exit "$mypy_status"
waited=0
until [ -e "$apt_status" ]; do
  [ "$waited" -lt 1800 ] || { echo "setup: apt-get still running after 30 min" >&2; exit 1; }
  [ "$waited" != 0 ] || echo "setup: waiting for apt-get"
  sleep 1; waited=$((waited + 1))
done
apt_exit=$(cat "$apt_status"); rm -f "$apt_status"
[ "$apt_exit" = 0 ] || { echo "setup: apt-get failed (exit $apt_exit)" >&2; exit "$apt_exit"; }
# pytest in two passes: two workers (one takes the browser tests one after another, the other
# the one-at-a-time tests, and both share the rest: tests/conftest.py, tests/scheduling.py),
# then the tests marked `serial` (they measure latency under load) alone. HOPSO_TEST_WORKERS
# sets the count (3 was tried once: 19.5 min for the first pass on a loaded box, against
# 17.6 with 2, and a time-bound test ran out). Status 5 is "no test selected" (a narrower "$@").
outcome=0
# Each pass's output is kept too, so the names of what failed come again at the very end
# (CI shows a log's tail; a long assertion diff had pushed them out of it).
log=$(mktemp)
.venv/bin/python -m pytest -q -p no:cacheprovider -n "${HOPSO_TEST_WORKERS:-2}" --dist loadgroup -m "not serial" --durations=30 "$@" \
  | tee "$log" || { status=$?; [ "$status" = 5 ] || outcome=$status; }
# The second pass collects only the files SERIAL (tests/conftest.py) names, not the whole
# suite again (~8 s of CPU); `-m serial` still picks the tests. Were SERIAL not a literal
# tuple any more, the list comes out empty and the whole suite is collected, as before.
serial=("$@")
if [ $# -eq 0 ]; then
  mapfile -t serial < <(.venv/bin/python - <<'PY'
import ast

tree = ast.parse(open("tests/conftest.py", encoding="utf-8").read())
(listed,) = [ast.literal_eval(node.value) for node in tree.body if isinstance(node, ast.Assign)
             and any(getattr(target, "id", None) == "SERIAL" for target in node.targets)]
print("\n".join(dict.fromkeys(entry.split("::")[0] for entry in listed)))
PY
  )
fi
# A serial test that fails runs once more (pytest-rerunfailures), alone as before: these
# measure real-time media and latency on a 2-core machine, where one scheduling hiccup can
# cost a bound; a second failure fails the suite. Every re-run is named at the end.
.venv/bin/python -m pytest -q -p no:cacheprovider -m serial --reruns 1 --reruns-delay 2 -rfER \
  "${serial[@]}" | tee -a "$log" || { status=$?; [ "$status" = 5 ] || outcome=$status; }
if grep -qE '^RERUN ' "$log"; then
  echo "what was re-run (failed once, then passed or failed again):"
  grep -E '^RERUN ' "$log" | cut -c1-200
fi
if [ "$outcome" != 0 ]; then
  echo "what failed:"
  grep -E '^(FAILED|ERROR) ' "$log" | cut -c1-200 || true
fi
rm -f "$log"
exit "$outcome"
