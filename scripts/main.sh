#!/usr/bin/env bash
# The main job on the embedded defaults: set up .venv if needed, then
#  1. evaluate the rule agents on every task of the real NIFTY data under env versions 1.0.0, 2.0.0 and 3.0.0
#     (hold, buy-and-hold and random join every table; paired test-split episodes, overlap-aware intervals);
#  2. the lab's controls on synthetic markets (data/synthetic.py): on the martingale market nothing can beat
#     cash, on the edge market the rule that knows the planted edge (momentum) must win;
#  3. the LLM side: SmolLM2-135M zero-shot, decoding only the action grammar, on 16 edge-market episodes
#     beside the rule that knows the edge (about a minute on 2 idle cores);
#  4. the comparison table from MLflow.
# Extra arguments go to the first `evaluate` (e.g. --episodes 400, --split val).
set -euo pipefail
cd "$(dirname "$0")/.."
venv="$(bash scripts/setup.sh | tail -n 1)"
export PATH="$PWD/$venv/bin:$PATH"
evaluate --agent rsi momentum --task easy medium hard --env-version 1.0.0 2.0.0 3.0.0 \
  --run-name main-real --json eval_output/baselines.json "$@"
evaluate --agent rsi momentum --task easy --split val --data synthetic:martingale --run-name main-martingale \
  --json eval_output/control-martingale.json
evaluate --agent rsi momentum --task easy --split val --data synthetic:edge --run-name main-edge \
  --json eval_output/control-edge.json
evaluate --agent smollm2-135m+constrained momentum --task easy --split val --data synthetic:edge --episodes 16 \
  --max-new-tokens 12 --run-name main-llm --json eval_output/llm-edge.json
evaluate --compare
