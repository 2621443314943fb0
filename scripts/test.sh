#!/usr/bin/env bash
# The test command: set up .venv if needed, then lint and run the whole suite with the coverage gate.
set -euo pipefail
cd "$(dirname "$0")/.."
venv="$(bash scripts/setup.sh | tail -n 1)"
export PATH="$PWD/$venv/bin:$PATH"
ruff check .
ruff format --check .
python -m pytest -q \
  --cov=data --cov=market_env --cov=llm_agent --cov=training --cov=eval \
  --cov-report=term-missing:skip-covered --cov-fail-under=90 --durations=20 "$@"
