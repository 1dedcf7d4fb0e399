#!/usr/bin/env bash
# Every check CI runs, in order: lint, format, types, tests (extra arguments go to pytest).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
"$PY" -m ruff check src tests benchmarks docs/images
"$PY" -m ruff format --check src tests benchmarks docs/images
"$PY" -m mypy
"$PY" -m pytest -q "$@"
