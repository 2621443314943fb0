"""``train-grpo``: a real 2-step GRPO run on SmolLM2 (resumed after step 1), the collapse monitor, the CLI.

Budget: the slow test takes about 60-90 s on 2 cores (a 15 s warm-up adapter, two one-step runs, each with
its end-of-run val evaluation of one 20-day episode).
"""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import pytest

from training.grpo import GRPOConfigError, main, resume_checkpoint
from training.grpo_monitor import CollapseMonitor, plot_reward_curve
from training.grpo_prompts import PromptSetConfig, collect_rows

# One prompt: decision 0 of train episode 0 (seed 0), reached by the RSI agent.
PROMPT_ARGS = ["--prompt-episodes", "1", "--prompt-stride", "20", "--experts", "rsi", "--task", "easy"]


def warm_up_adapter(directory: Path, steps: int = 12) -> Path:
    """A LoRA adapter that answers the test prompt with HOLD or ``BUY <symbol> ...``, often garbled.

    Zero-shot SmolLM2 never writes a valid action to this prompt, so every completion of a group is invalid,
    every group has zero advantage and GRPO cannot move the weights (that is the collapse the monitor warns
    about, and why GRPO starts from SFT). A few steps of imitation on three answers give the mix of valid
    and invalid completions that GRPO learns from. To stay cheap, the prompt's keys and values are computed
    without gradient each step and only the answer tokens are trained.
    """
    import torch
    from peft import LoraConfig, get_peft_model

    from llm_agent.generation import format_chat
    from llm_agent.models import load_model

    row = collect_rows(PromptSetConfig(task="easy", episodes=1, stride=20, experts=("rsi",)))[0]
    loaded = load_model("smollm2-135m", for_training=True)
    torch.manual_seed(0)
    lora = LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM")
    model = get_peft_model(loaded.model, lora)
    tokenizer = loaded.tokenizer
    prompt = tokenizer(format_chat(tokenizer, row["prompt"]), add_special_tokens=False)["input_ids"]
    symbol = row["symbols"][0]
    answers = [
        tokenizer(text + tokenizer.eos_token, add_special_tokens=False)["input_ids"]
        for text in ("HOLD", f"BUY {symbol} 0.5", f"BUY {symbol} 1")
    ]
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    for _ in range(steps):
        optimizer.zero_grad()
        with torch.no_grad():
            cache = model(input_ids=torch.tensor([prompt[:-1]]), use_cache=True).past_key_values
        for answer in answers:
            step_cache = copy.deepcopy(cache)  # a forward pass appends to the cache it is given
            logits = model(
                input_ids=torch.tensor([[prompt[-1], *answer[:-1]]]),
                past_key_values=step_cache,
                use_cache=True,
            ).logits[0]
            torch.nn.functional.cross_entropy(logits, torch.tensor(answer)).backward()
        optimizer.step()
    model.save_pretrained(str(directory))
    return directory


@pytest.fixture(scope="module")
def adapter(tmp_path_factory) -> Path:
    return warm_up_adapter(tmp_path_factory.mktemp("warm") / "adapter")


def lora_tensors(directory: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(directory / "adapter_model.safetensors"))


@pytest.mark.slow
def test_two_grpo_steps_train_the_lora_and_resume_continues_the_step_count(adapter, tmp_path):
    import mlflow

    from eval.tracking import tracking_uri

    out = tmp_path / "grpo"
    args = [*PROMPT_ARGS, "--adapter", str(adapter), "--output-dir", str(out), "--num-generations", "4"]
    args += ["--prompts-per-step", "1", "--max-completion-length", "8", "--learning-rate", "1e-3"]
    args += ["--eval-every", "0", "--save-steps", "1", "--profile", "cpu"]
    assert main([*args, "--max-steps", "1", "--eval-episodes", "0"]) == 0  # no evaluation: a smoke run
    assert (out / "checkpoint-1").is_dir() and not (out / "best").exists()
    assert main([*args, "--max-steps", "2", "--resume", "--eval-episodes", "1"]) == 0

    state = json.loads((out / "checkpoint-2" / "trainer_state.json").read_text())
    steps = [entry for entry in state["log_history"] if "loss" in entry]
    assert state["global_step"] == 2 and [entry["step"] for entry in steps] == [1, 2]
    assert all(math.isfinite(entry["loss"]) for entry in steps)
    assert min(entry["frac_reward_zero_std"] for entry in steps) < 1.0, "a group with a learning signal"
    assert all(entry["env/failed_share"] == 0.0 for entry in steps), "every group shared one state"

    before, after = lora_tensors(adapter), lora_tensors(out / "final")
    assert before.keys() == after.keys()
    assert any(not (before[k] == after[k]).all() for k in before), "GRPO changed the LoRA weights"
    assert not any(".ref." in k for k in after), "the saved adapter is the trained one, not TRL's reference"

    history = json.loads((out / "val_history.json").read_text())
    assert [(h["step"], h["episodes"]) for h in history] == [(2, 1)]
    best = json.loads((out / "best" / "meta.json").read_text())
    assert best["best"] == history[0]
    assert best["adapter"] == str(adapter) and "git_commit" in best
    assert (out / "reward_curve.png").stat().st_size > 0

    mlflow.set_tracking_uri(tracking_uri())
    runs = mlflow.search_runs(experiment_names=["nifty-rl-grpo"])
    assert len(runs) == 2
    logged = {c.removeprefix("metrics.") for c in runs.columns if c.startswith("metrics.")}
    wanted = {"reward", "reward_std", "frac_reward_zero_std", "env/hold_share", "env/invalid_share", "kl"}
    assert wanted | {"completions/mean_length", "val_score", "collapse_streak"} <= logged


def test_collapse_monitor_warns_after_several_collapsed_steps(caplog):
    monitor = CollapseMonitor(share=0.5, patience=3)

    class State:
        global_step = 0

    for step, frac in enumerate([1.0, 1.0, 0.0, 0.75, 1.0, 0.5, 1.0, 1.0], start=1):
        State.global_step = step
        monitor.on_log(None, State, None, logs={"frac_reward_zero_std": frac, "reward": 0.1})
    assert monitor.warnings == [6]  # the streak of steps 4-6, not 1-2 (broken at step 3); warned once
    assert monitor.streak == 5
    assert "collapsed" in caplog.text
    monitor.on_log(None, State, None, logs={"loss": 0.0})  # a log without rewards changes nothing
    assert monitor.streak == 5


def test_reward_curve_plot_is_written(tmp_path):
    log = [{"step": s, "reward": 0.1 * s, "reward_std": 0.05} for s in range(1, 8)] + [{"train_loss": 0.0}]
    val = [{"step": 4, "score": 0.5, "ci_low": 0.4, "ci_high": 0.6}]
    path = plot_reward_curve(log, val, tmp_path / "curve.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_resume_needs_a_checkpoint_and_a_fresh_run_never_overwrites_one(tmp_path):
    with pytest.raises(GRPOConfigError, match="no checkpoint"):
        resume_checkpoint(tmp_path, resume=True)
    assert resume_checkpoint(tmp_path, resume=False) is None
    (tmp_path / "checkpoint-3").mkdir()
    with pytest.raises(GRPOConfigError, match="pass --resume"):
        resume_checkpoint(tmp_path, resume=False)
    assert resume_checkpoint(tmp_path, resume=True).endswith("checkpoint-3")


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--resume"], "no checkpoint"),  # nothing to resume in a new directory
        (["--profile", "t4"], "needs a CUDA GPU"),  # fp16 T4 settings on a CPU-only machine
        (["--load-in-4bit"], "load_in_4bit"),  # QLoRA needs bitsandbytes and a GPU
        (["--adapter", "/no/such/adapter"], "does not exist"),  # a typo in the SFT adapter path
        (["--continuation", "ppo"], "invalid choice"),  # only documented continuation policies
    ],
)
def test_cli_refuses_runs_it_cannot_do_with_a_clear_message(tmp_path, capsys, extra, message):
    argv = [*PROMPT_ARGS, "--output-dir", str(tmp_path / "out"), "--max-steps", "1", *extra]
    try:
        code = main(argv)
    except SystemExit as exit_:  # argparse rejects bad choices itself
        code = exit_.code
    assert code == 2
    assert message in capsys.readouterr().err


def test_help_lists_the_options(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--help"])
    assert exit_.value.code == 0
    text = capsys.readouterr().out
    assert all(
        flag in text for flag in ("--adapter", "--resume", "--eval-every", "--use-vllm", "--load-in-4bit")
    )


def test_a_resumed_run_remembers_the_best_val_score(tmp_path):
    from training.grpo import GRPO_SIZES, VAL_HISTORY, GRPORunConfig
    from training.grpo_monitor import ValSelector

    history = [{"step": 10, "score": 0.52}, {"step": 20, "score": 0.55}, {"step": 30, "score": 0.51}]
    (tmp_path / VAL_HISTORY).write_text(json.dumps(history))
    resumed = ValSelector(None, GRPORunConfig(resume=True), GRPO_SIZES["cpu"], tmp_path, {})
    assert resumed.best == history[1] and resumed.history == history
    fresh = ValSelector(None, GRPORunConfig(resume=False), GRPO_SIZES["cpu"], tmp_path, {})
    assert fresh.best is None and fresh.history == []
