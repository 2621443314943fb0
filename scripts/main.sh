#!/usr/bin/env bash
# The main job on the embedded defaults: set up .venv if needed, then play a demo episode per task.
set -euo pipefail
cd "$(dirname "$0")/.."
venv="$(bash scripts/setup.sh | tail -n 1)"
export PATH="$PWD/$venv/bin:$PATH"
nifty-demo "$@"
