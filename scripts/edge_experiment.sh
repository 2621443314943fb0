#!/usr/bin/env bash
# The edge-market learning experiment of docs/grpo.md, from nothing: does GRPO improve on SFT where there is
# something to learn? SFT data from the trend expert (answers are the action lines alone) -> SFT of
# smollm2-135m -> two GRPO designs from the SFT adapter (the fork reward, and on-policy counterfactual credit)
# -> SFT, both GRPO adapters, momentum, PPO and the baselines on the same 200 val episodes, paired.
# About 2 hours on an idle 2-core machine (the two GRPO runs share it, one thread each). Arguments: the
# output folder (default runs/edge) and the PPO run to show beside them (default runs/ppo-edge-easy; train it
# with `train-ppo --task easy --data synthetic:edge --output-dir runs/ppo-edge-easy`; skipped when absent).
set -euo pipefail
cd "$(dirname "$0")/.."
venv="$(bash scripts/setup.sh | tail -n 1)"
export PATH="$PWD/$venv/bin:$PATH"
out="${1:-runs/edge}"
ppo="${2:-runs/ppo-edge-easy}"
edge=(--data synthetic:edge --task easy)

make-sft-data --out "$out/sft-data" --data synthetic:edge --easy 1600 --portfolio 0 --val-examples 100 \
  --experts trend --report-episodes 400 --no-think --no-progress
OMP_NUM_THREADS=2 train-sft --data "$out/sft-data" --task easy --max-steps 80 --save-steps 20 \
  --eval-examples 0 --logging-steps 5 --profile cpu --output-dir "$out/sft-edge"

# Both designs: 16 completions a step (2 states x 8), answers of at most 16 tokens, the run's defaults for
# the advantage (batch-scaled, beta 0, dapo), the final adapter (no selection on val episodes).
grpo=(train-grpo --adapter "$out/sft-edge/adapter" "${edge[@]}" --profile cpu --no-think --num-generations 8
  --prompts-per-step 2 --max-completion-length 16 --learning-rate 2e-4 --max-steps 60 --save-steps 10
  --eval-episodes 0)
OMP_NUM_THREADS=1 "${grpo[@]}" --output-dir "$out/grpo-fork" > "$out/grpo-fork.log" 2>&1 &
fork=$!
OMP_NUM_THREADS=1 "${grpo[@]}" --continuation recorded --baseline hold --policy-every 10 --policy-episodes 8 \
  --output-dir "$out/grpo-credit" > "$out/grpo-credit.log" 2>&1
wait "$fork"

# The same 200 val episodes (seed 0) for every agent; separate runs pair row by row (checked by the table).
rules=(momentum)
[ -d "$ppo" ] && rules+=("ppo:$ppo")
evaluate --agent "${rules[@]}" rsi "${edge[@]}" --split val --episodes 200 --seed 0 \
  --json "$out/rules-val.json" --out-dir "$out/eval" --run-name rules-val
for name in sft-edge/adapter grpo-fork/final grpo-credit/final; do
  tag="${name%%/*}"
  evaluate --agent "llm:smollm2-135m@$out/$name" "${edge[@]}" --split val --episodes 200 --seed 0 \
    --max-new-tokens 16 --batch-size 100 --workers 2 --json "$out/$tag-val.json" --out-dir "$out/eval" \
    --run-name "$tag-val"
done
python scripts/results_table.py "$out"/rules-val.json "$out"/{sft-edge,grpo-fork,grpo-credit}-val.json \
  --vs "llm:smollm2-135m@$out/sft-edge/adapter" --vs momentum
python bench/grpo_curves.py "$out/grpo-fork" "$out/grpo-credit" --out "$out/grpo_curves.png"
