#!/usr/bin/env bash
# The main job on the embedded defaults: set up .venv if needed, then evaluate every rule agent on every task
# (50 paired test-split episodes each) under both env versions, with plots, JSON and MLflow runs.
# Extra arguments go to `evaluate` (e.g. --episodes 200, --split val).
set -euo pipefail
cd "$(dirname "$0")/.."
venv="$(bash scripts/setup.sh | tail -n 1)"
export PATH="$PWD/$venv/bin:$PATH"
evaluate --agent hold buy-and-hold random rsi --task easy medium hard --env-version 1.0.0 2.0.0 \
  --json eval_output/baselines.json "$@"
evaluate --compare
