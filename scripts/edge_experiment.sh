#!/usr/bin/env bash
# The edge-market learning experiment of docs/grpo.md, from nothing: does GRPO improve on SFT where there is
# something to learn? SFT data from the trend expert (answers are the action lines alone) -> SFT of
# smollm2-135m -> two GRPO designs from the SFT adapter (the fork reward, and on-policy counterfactual credit)
# -> each adapter shipped as fp16 (python -m training.export; the rows are measured on the shipped files) ->
# SFT, both GRPO adapters, the trend expert, momentum, PPO and the baselines on the same 200 val episodes,
# paired. About 2 hours on an idle 2-core machine (two jobs at a time, one thread each). Arguments: the
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

python -m training.export "$out/sft-edge/adapter" "$out/ship/edge-sft"

# Both designs: 16 completions a step (2 states x 8), answers of at most 16 tokens, the run's defaults for
# the advantage (batch-scaled, beta 0, dapo), 40 steps, the final adapter (no selection on val episodes).
grpo=(train-grpo --adapter "$out/sft-edge/adapter" "${edge[@]}" --profile cpu --no-think --num-generations 8
  --prompts-per-step 2 --max-completion-length 16 --learning-rate 2e-4 --max-steps 40 --save-steps 10
  --eval-episodes 0)
# The same 200 val episodes (seed 0) for every agent; separate runs pair row by row (checked by the table).
llm() {
  OMP_NUM_THREADS="$3" evaluate --agent "llm:smollm2-135m@$1" "${edge[@]}" --split val --episodes 200 \
    --seed 0 --max-new-tokens 16 --batch-size 100 --json "$out/$2-val.json" --out-dir "$out/eval" \
    --run-name "$2-val" --no-plots
}
OMP_NUM_THREADS=1 "${grpo[@]}" --continuation recorded --baseline hold --policy-every 10 --policy-episodes 8 \
  --output-dir "$out/grpo-credit" > "$out/grpo-credit.log" 2>&1 &
llm "$out/ship/edge-sft" sft 1
wait $!
python -m training.export "$out/grpo-credit/final" "$out/ship/edge-grpo-credit"
OMP_NUM_THREADS=1 "${grpo[@]}" --output-dir "$out/grpo-fork" > "$out/grpo-fork.log" 2>&1 &
llm "$out/ship/edge-grpo-credit" grpo-credit 1
wait $!
python -m training.export "$out/grpo-fork/final" "$out/ship/edge-grpo-fork"
llm "$out/ship/edge-grpo-fork" grpo-fork 2

rules=(momentum expert:trend)
[ -d "$ppo" ] && rules+=("ppo:$ppo")
evaluate --agent "${rules[@]}" rsi "${edge[@]}" --split val --episodes 200 --seed 0 \
  --json "$out/rules-val.json" --out-dir "$out/eval" --run-name rules-val
sft="llm:smollm2-135m@$out/ship/edge-sft"
python scripts/results_table.py "$out"/{rules,sft,grpo-credit,grpo-fork}-val.json --vs "$sft" --vs momentum
python bench/grpo_curves.py "$out/grpo-fork" "$out/grpo-credit" --out "$out/grpo_curves.png"
