#!/usr/bin/env bash
# The real-NIFTY LLM rows of docs/results.md (easy task, env 3.0.0), from nothing: SFT data from each
# textbook expert (the card ranks them on val) -> SFT of smollm2-135m on the best one's data (bollinger) ->
# the adapter shipped as fp16 -> PPO on the same task (the classic-RL reference) -> SFT, PPO, the expert,
# rsi, momentum and the baselines on the same 200 val and 200 test episodes (seed 0), paired row by row ->
# GRPO from the SFT adapter, on the same episodes.
# Zero-shot rows: docs/results.md ("Zero-shot SmolLM2 on real NIFTY"). About 2.5 hours on an idle 2-core
# machine. Argument: the output folder (default runs/nifty).
set -euo pipefail
cd "$(dirname "$0")/.."
venv="$(bash scripts/setup.sh | tail -n 1)"
export PATH="$PWD/$venv/bin:$PATH"
out="${1:-runs/nifty}"
easy=(--task easy --episodes 200 --seed 0 --out-dir "$out/eval" --no-plots)

make-sft-data --out "$out/sft-data" --easy 1600 --portfolio 0 --val-examples 100 \
  --experts rsi trend bollinger --report-episodes 400 --no-think --no-progress
# Each card's last table: bollinger +0.002 over hold on 400 val episodes, rsi +0.000, trend -0.002; none
# beats buy-and-hold. The SFT run imitates the best of them on val (chosen before any test episode is seen).
OMP_NUM_THREADS=2 train-sft --data "$out/sft-data/bollinger" --task easy --max-steps 80 --save-steps 20 \
  --eval-examples 0 --logging-steps 5 --profile cpu --output-dir "$out/sft-bollinger"
python -m training.export "$out/sft-bollinger/adapter" "$out/ship/nifty-sft"
OMP_NUM_THREADS=2 train-ppo --task easy --output-dir "$out/ppo-easy"

for split in val test; do
  evaluate --agent "ppo:$out/ppo-easy" rsi momentum expert:bollinger --split "$split" "${easy[@]}" \
    --json "$out/rules-easy-$split.json" --run-name "rules-easy-$split"
  OMP_NUM_THREADS=1 evaluate --agent "llm:smollm2-135m@$out/ship/nifty-sft" --split "$split" "${easy[@]}" \
    --max-new-tokens 16 --batch-size 100 --no-baselines --json "$out/sft-easy-$split.json" \
    --run-name "sft-easy-$split" > "$out/sft-easy-$split.log" 2>&1 &
done
wait
# GRPO from the SFT adapter with design 4's settings of docs/grpo.md (8 states x 8 answers a step, 3-day exit
# credit against HOLD, clip-higher, lr 6e-5), 20 steps, the adapter picked on 16 val episodes of seeds 1000+
# (not the 200 of seed 0 below); about 25 minutes, then its two evaluations side by side.
OMP_NUM_THREADS=2 train-grpo --adapter "$out/ship/nifty-sft" --task easy --profile cpu --no-think \
  --max-completion-length 16 --num-generations 8 --prompts-per-step 8 --learning-rate 6e-5 --epsilon-high 0.28 \
  --max-steps 20 --save-steps 5 --eval-every 10 --eval-episodes 16 --continuation exit --exit-days 3 \
  --baseline hold --output-dir "$out/grpo-nifty"
python -m training.export "$out/grpo-nifty/best" "$out/ship/nifty-grpo"
for split in val test; do
  OMP_NUM_THREADS=1 evaluate --agent "llm:smollm2-135m@$out/ship/nifty-grpo" --split "$split" "${easy[@]}" \
    --max-new-tokens 16 --batch-size 100 --no-baselines --json "$out/grpo-easy-$split.json" \
    --run-name "grpo-easy-$split" > "$out/grpo-easy-$split.log" 2>&1 &
done
wait
python scripts/results_table.py "$out"/{rules,sft,grpo}-easy-{val,test}.json --vs rsi \
  --vs "llm:smollm2-135m@$out/ship/nifty-sft"
