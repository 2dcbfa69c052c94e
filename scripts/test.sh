#!/usr/bin/env bash
# Set up everything the tests need, then run the whole suite (type check included).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --test
.venv/bin/python -m mypy server rooms media documents run.py
.venv/bin/ruff check .
.venv/bin/lint-imports  # the layers of docs/architecture.md (contracts: pyproject.toml)
# The browser code: tsc --checkJs, eslint and node's unit tests (web_client/package.json).
(cd web_client && npm run --silent check)
exec .venv/bin/python -m pytest -q -p no:cacheprovider "$@"
