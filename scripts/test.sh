#!/usr/bin/env bash
# Set up everything the tests need, then run the whole suite (type check included).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --test
.venv/bin/python -m mypy server rooms media documents run.py
.venv/bin/ruff check .
exec .venv/bin/python -m pytest -q -p no:cacheprovider "$@"
