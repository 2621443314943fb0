#!/usr/bin/env bash
# Reproduces the LLM rows of docs/results.md on CPU, from nothing: SFT data -> SFT of smollm2-135m on the
# easy task -> GRPO from the SFT adapter -> zero-shot, SFT, GRPO, hold and rsi on the same 50 val episodes.
# About 3 hours on an idle 2-core machine. Argument: the output folder (default runs/llm); it must not hold
# an earlier run (train-sft and train-grpo refuse to overwrite checkpoints; pass --resume to them instead).
set -euo pipefail
cd "$(dirname "$0")/.."
venv="$(bash scripts/setup.sh | tail -n 1)"
export PATH="$PWD/$venv/bin:$PATH"
out="${1:-runs/llm}"
make-sft-data --out "$out/sft-data" --no-progress
train-sft --data "$out/sft-data" --task easy --max-steps 100 --save-steps 25 --output-dir "$out/sft-easy"
train-grpo --model smollm2-135m --adapter "$out/sft-easy/adapter" --task easy --max-steps 60 \
  --output-dir "$out/grpo-easy"
evaluate --agent smollm2-135m "llm:smollm2-135m@$out/sft-easy/adapter" "llm:smollm2-135m@$out/grpo-easy/best" \
  hold rsi --task easy --split val --episodes 50 --think --max-new-tokens 128 \
  --json "$out/easy-val.json" --out-dir "$out/easy-val"
