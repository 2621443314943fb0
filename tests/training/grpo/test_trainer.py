"""``train-grpo``: a real 2-step GRPO run on SmolLM2 (resumed after step 1), the collapse monitor, the CLI.

Budget: the slow test takes about 60-90 s on 2 idle cores (a 15 s warm-up adapter, two one-step runs, each
with its end-of-run val evaluation of one 20-day episode); 300 s measured with a load average of 6.
"""

from __future__ import annotations

import copy
import json
import math
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from training.grpo.monitor import CollapseMonitor, plot_reward_curve
from training.grpo.prompts import PromptSetConfig, collect_rows
from training.grpo.trainer import (
    GRPOConfigError,
    drop_flat_groups,
    main,
    resume_checkpoint,
    share_prompt_prefix,
)

# One prompt: decision 0 of train episode 0 (seed 0), reached by the RSI agent.
PROMPT_ARGS = ["--prompt-episodes", "1", "--prompt-stride", "20", "--experts", "rsi", "--task", "easy"]


def warm_up_adapter(directory: Path, steps: int = 12) -> Path:
    """A LoRA adapter that answers the test prompt with HOLD or ``BUY <symbol> ...``, often garbled.

    Zero-shot SmolLM2 never writes a valid action to this prompt, so every completion of a group is invalid,
    every group has zero advantage and GRPO cannot move the weights (that is the collapse the monitor warns
    about, and why GRPO starts from SFT). A few steps of imitation on three answers give the mix of valid
    and invalid completions that GRPO learns from. To stay cheap, the prompt's keys and values are computed
    without gradient each step and only the answer tokens are trained.

    The loss is the token-mean over the three answers together (not each answer's own mean, which weighs the
    first token of the 3-token HOLD answer three times as much as that of a BUY) and the learning rate is
    small enough not to swing: at 1e-2 the first-token probability of HOLD jumped between 0.1 and 0.99 from
    one step to the next and landed on 0.96 at step 12, so every sampled group was all HOLD, had zero
    advantage and GRPO had nothing to learn from. The adapter is checked to open with HOLD and with BUY.
    """
    import torch
    from peft import LoraConfig, get_peft_model

    from llm_agent.generation import format_chat
    from llm_agent.models import load_model

    rows = collect_rows(PromptSetConfig(task="easy", episodes=1, stride=10, experts=("rsi",)))  # days 1, 11
    loaded = load_model("smollm2-135m", for_training=True)
    torch.manual_seed(0)
    lora = LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM")
    model = get_peft_model(loaded.model, lora)
    tokenizer = loaded.tokenizer
    prompts = [
        tokenizer(format_chat(tokenizer, row["prompt"]), add_special_tokens=False)["input_ids"]
        for row in rows
    ]
    symbol = rows[0]["symbols"][0]
    answers = [
        tokenizer(text + tokenizer.eos_token, add_special_tokens=False)["input_ids"]
        for text in ("HOLD", f"BUY {symbol} 0.5")  # one of each: the first token's target is 50/50
    ]
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=3e-3)
    tokens = len(prompts) * sum(len(answer) for answer in answers)
    for _ in range(steps):
        optimizer.zero_grad()
        for prompt in prompts:  # two days: the answer format, not one day's text, is what sticks
            with torch.no_grad():
                cache = model(input_ids=torch.tensor([prompt[:-1]]), use_cache=True).past_key_values
            for answer in answers:
                step_cache = copy.deepcopy(cache)  # a forward pass appends to the cache it is given
                logits = model(
                    input_ids=torch.tensor([[prompt[-1], *answer[:-1]]]),
                    past_key_values=step_cache,
                    use_cache=True,
                ).logits[0]
                loss = (
                    torch.nn.functional.cross_entropy(logits, torch.tensor(answer), reduction="sum") / tokens
                )
                loss.backward()
        optimizer.step()
    prompt = prompts[0]
    with torch.no_grad():
        first = model(input_ids=torch.tensor([prompt])).logits[0, -1].softmax(-1)
    opens = {text: float(first[answers[i][0]]) for i, text in ((0, "HOLD"), (1, "BUY"))}
    assert min(opens.values()) > 0.05, f"the warm-up adapter must sample both HOLD and BUY: {opens}"
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
    args += ["--prompts-per-step", "1", "--max-completion-length", "12", "--learning-rate", "1e-5"]
    args += ["--eval-every", "0", "--save-steps", "1", "--profile", "cpu"]
    assert main([*args, "--max-steps", "1", "--eval-episodes", "0"]) == 0  # no evaluation: a smoke run
    assert (out / "checkpoint-1").is_dir() and not (out / "best").exists()
    assert main([*args, "--max-steps", "2", "--resume", "--eval-episodes", "1"]) == 0

    state = json.loads((out / "checkpoint-2" / "trainer_state.json").read_text())
    steps = [entry for entry in state["log_history"] if "loss" in entry]
    assert state["global_step"] == 2 and [entry["step"] for entry in steps] == [1, 2]
    assert all(math.isfinite(entry["loss"]) for entry in steps)
    # TRL's frac_reward_zero_std is the whole batch's under scale_rewards=batch; ours is per group
    assert min(entry["env/zero_std_groups_share"] for entry in steps) < 1.0, "a group with a learning signal"
    assert min(entry["frac_reward_zero_std"] for entry in steps) < 1.0
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
    wanted = {"reward", "reward_std", "frac_reward_zero_std", "env/hold_share", "env/invalid_share",
              "flat_rows_dropped"}  # fmt: skip
    assert wanted | {"completions/mean_length", "val_score", "collapse_streak"} <= logged
    assert "kl" not in logged, "beta=0 by default: no reference model, no KL"
    params = runs.iloc[0]
    assert (params["params.scale_rewards"], params["params.beta"]) == ("batch", "0.0")
    assert (params["params.flat_groups"], params["params.share_prompts"]) == ("drop", "True")  # CPU default
    assert params["params.center_actions"] == "False"


@pytest.mark.slow
def test_on_policy_rounds_refresh_the_states_and_score_counterfactual_credit(adapter, tmp_path):
    """Two rounds of one step: each starts from states the policy itself reached, and resumes the last."""
    out = tmp_path / "grpo"
    args = [*PROMPT_ARGS, "--adapter", str(adapter), "--output-dir", str(out), "--num-generations", "4"]
    args += ["--prompts-per-step", "1", "--max-completion-length", "8", "--eval-episodes", "0"]
    args += ["--policy-every", "1", "--policy-episodes", "1", "--max-steps", "2", "--profile", "cpu"]
    args += ["--continuation", "recorded", "--baseline", "hold", "--prompt-stride", "5", "--project-levels"]
    assert main(args) == 0
    state = json.loads((out / "checkpoint-2" / "trainer_state.json").read_text())
    steps = [entry for entry in state["log_history"] if "loss" in entry]
    assert [entry["step"] for entry in steps] == [1, 2]
    assert all(entry["env/failed_share"] == 0.0 for entry in steps)
    # each round's optimizer (round 2's restored from round 1's checkpoint) projects its update
    assert all(0.0 <= entry["level_share_removed"] <= 1.0 for entry in steps)
    meta = json.loads((out / "meta.json").read_text())
    assert (meta["baseline"], meta["project_levels"]) == ("hold", True)


@pytest.mark.slow
def test_policy_reached_states_are_reproducible_from_the_seed(adapter):
    from dataclasses import replace

    from llm_agent.models import load_model
    from training.grpo.trainer import GRPO_SIZES, GRPORunConfig, policy_dataset, policy_episode_seed

    loaded = load_model(f"llm:smollm2-135m@{adapter}")
    config = GRPORunConfig(policy_episodes=1, prompt_stride=10)
    sizes = replace(GRPO_SIZES["cpu"], max_completion_length=8)
    first = policy_dataset(config, sizes, loaded, step=3)
    assert first.to_list() == policy_dataset(config, sizes, loaded, step=3).to_list()
    assert {row["expert"] for row in first} == {"policy"} and len(first) == 2
    assert {row["episode"] for row in first} == {policy_episode_seed(config, 3)}


@given(seed=st.integers(0, 1000), episodes=st.integers(1, 64), step=st.integers(0, 10_000))
def test_each_refresh_plays_new_episodes(seed, episodes, step):
    from training.grpo.trainer import GRPORunConfig, policy_episode_seed

    config = GRPORunConfig(seed=seed, policy_episodes=episodes)
    this, following = policy_episode_seed(config, step), policy_episode_seed(config, step + 1)
    assert following == this + episodes, "the next refresh starts where this one's episodes end"


def test_the_policy_generates_the_same_answers_after_grpo_routed_its_generate_through_the_prefix():
    """Round 2 of an on-policy run refreshes its states with the model whose ``generate`` TRL's path already
    shares the prefix of: the policy's own batched generation must still work and answer the same."""
    from llm_agent.generation import GenerationConfig, generate
    from llm_agent.models import load_model

    loaded = load_model("smollm2-135m")
    rows = collect_rows(PromptSetConfig(task="easy", episodes=3, stride=10, experts=("rsi",)))[:3]
    chats = [r["prompt"] for r in rows]  # the chat messages of each state
    config = GenerationConfig(max_new_tokens=8)
    before = [c.text for c in generate(loaded, chats, config)]
    share_prompt_prefix(loaded.model)
    assert [c.text for c in generate(loaded, chats, config)] == before


def test_trls_generate_shares_the_prompt_prefix_with_the_same_completion_columns(adapter):
    """TRL left-pads prompts (beyond the longest with ``pad_to_multiple_of``), repeats each once per
    completion and reads completions from the padded width on: the shared-prefix route must give it the same
    greedy tokens in the same columns, on the PEFT model TRL trains."""
    import torch
    from peft import PeftModel
    from transformers import GenerationConfig

    from llm_agent.generation import format_chat
    from llm_agent.models import load_model

    loaded = load_model("smollm2-135m")
    model, tokenizer = PeftModel.from_pretrained(loaded.model, str(adapter)), loaded.tokenizer
    rows = collect_rows(PromptSetConfig(task="easy", episodes=2, stride=10, experts=("rsi",)))[:2]
    prompts = [
        tokenizer(format_chat(tokenizer, r["prompt"]), add_special_tokens=False)["input_ids"] for r in rows
    ]
    prompts = [p for p in prompts for _ in range(2)]  # 2 prompts x 2 completions, as TRL lays out a step
    width = 8 * math.ceil(max(map(len, prompts)) / 8) + 8
    input_ids = torch.full((len(prompts), width), tokenizer.pad_token_id)
    attention_mask = torch.zeros_like(input_ids)
    for r, ids in enumerate(prompts):
        input_ids[r, width - len(ids) :], attention_mask[r, width - len(ids) :] = torch.tensor(ids), 1
    options = {
        "input_ids": input_ids,
        "attention_mask": attention_mask,
        "generation_config": GenerationConfig(
            max_new_tokens=5,
            do_sample=False,
            pad_token_id=tokenizer.pad_token_id,
            eos_token_id=tokenizer.eos_token_id,
        ),
    }
    with torch.no_grad():
        plain = model.generate(**options)
        share_prompt_prefix(model)
        share_prompt_prefix(model)  # a later round's trainer: still one wrapper
        shared = model.generate(**options)
    assert model.generate.keywords["generate"].__func__ is type(model).generate
    assert shared.shape == plain.shape and torch.equal(shared[:, width:], plain[:, width:])


@pytest.mark.parametrize("data", ["synthetic:edge", None])
def test_the_val_selection_plays_the_market_the_run_trains_on(data):
    from eval.agents import make_agent
    from eval.harness import run_evaluation
    from training.grpo.monitor import val_episodes
    from training.grpo.trainer import GRPORunConfig

    config = GRPORunConfig(data=data, eval_seed=1000)
    result = run_evaluation(make_agent("buy-and-hold"), val_episodes(config, 2), progress=False)
    symbols = {symbol for episode in result.episodes for symbol in episode["symbols"]}
    assert len(result.episodes) == 2 and symbols
    assert all(symbol.startswith("SYN") for symbol in symbols) == (data is not None)


def test_the_trl_config_keeps_reward_magnitude_and_skips_the_reference_pass():
    from training.grpo.trainer import GRPO_SIZES, GRPORunConfig, grpo_config
    from training.profiles import get_profile

    profile = get_profile("cpu")
    args = grpo_config(GRPORunConfig(), profile, GRPO_SIZES["cpu"], on_gpu=False)
    assert (args.scale_rewards, args.beta, args.loss_type) == ("batch", 0.0, "dapo")
    assert args.epsilon_high in (None, args.epsilon)  # clip-higher is off unless asked for (None: = epsilon)
    higher = grpo_config(GRPORunConfig(epsilon_high=0.28, scale_rewards="none"), profile, GRPO_SIZES["cpu"],
                         on_gpu=False)  # fmt: skip
    assert (higher.epsilon_high, higher.scale_rewards) == (0.28, "none")


def test_center_actions_project_levels_and_imitate_are_off_by_default_and_flags_turn_them_on():
    from training.grpo.trainer import config_from_args, make_parser

    assert config_from_args(make_parser().parse_args([])).reward_imitate == ""
    imitate = make_parser().parse_args(["--reward-imitate", "momentum"])
    assert config_from_args(imitate).reward_imitate == "momentum"

    assert config_from_args(make_parser().parse_args([])).center_actions is False
    assert config_from_args(make_parser().parse_args(["--center-actions"])).center_actions is True
    assert config_from_args(make_parser().parse_args([])).project_levels is False
    assert config_from_args(make_parser().parse_args(["--project-levels"])).project_levels is True


@settings(max_examples=50, deadline=None)
@given(
    level=st.integers(-100, 100),
    other=st.lists(st.integers(-100, 100), min_size=4, max_size=4, unique=True),
    scale=st.sampled_from(["batch", "none", "group"]),
)
def test_flat_groups_leave_the_loss_and_its_token_count(level, other, scale):
    import torch

    # TRL's arithmetic in float32: a flat group's advantage is its reward minus its own mean, not always 0.0
    rewards = torch.tensor([level / 100] * 4 + [o / 100 for o in other], dtype=torch.float32)
    centred = rewards - rewards.view(-1, 4).mean(dim=1).repeat_interleave(4)
    std = {"none": None, "batch": rewards.std(), "group": rewards.view(-1, 4).std(dim=1).repeat_interleave(4)}
    advantages = centred if scale == "none" else centred / (std[scale] + 1e-4)
    mask = torch.ones(8, 5, dtype=torch.int64)
    mask[5, 3:] = 0  # a shorter completion in the informative group
    output = {"advantages": advantages, "completion_mask": mask, "num_items_in_batch": mask.sum()}

    assert drop_flat_groups(output, 4) == 0.5
    assert (output["advantages"][:4] == 0.0).all(), "exactly no gradient from the flat group"
    assert torch.equal(output["advantages"][4:], advantages[4:])
    assert output["completion_mask"][:4].sum() == 0 and torch.equal(output["completion_mask"][4:], mask[4:])
    # the token-normalised loss now divides by the informative group's 18 tokens, not by all 38
    assert int(output["num_items_in_batch"]) == 18


def test_flat_groups_choose_trls_trainer_or_the_dropping_subclass():
    import torch
    from trl import GRPOTrainer

    from training.grpo.trainer import trainer_class

    assert trainer_class("keep") is GRPOTrainer
    assert issubclass(trainer_class("drop"), GRPOTrainer) and trainer_class("drop") is not GRPOTrainer
    with pytest.raises(GRPOConfigError, match="flat_groups"):
        trainer_class("refill")
    with pytest.raises(ValueError, match="groups of 4"):
        drop_flat_groups({"advantages": torch.zeros(6), "completion_mask": None}, 4)


def test_the_cpu_profile_computes_each_prompt_once_in_one_pass_per_step(monkeypatch):
    """On the CPU a step's 8 x 8 rows go through one training pass that computes each prompt once (TRL
    shuffles a step's rows before splitting them into passes, so a pass of 8 would share almost nothing);
    GPU profiles and ``--no-share-prompts`` keep TRL's one group per pass."""
    from trl import GRPOTrainer

    from training.grpo.trainer import GRPO_SIZES, GRPORunConfig, grpo_config, trainer_class
    from training.profiles import get_profile

    cpu, t4 = get_profile("cpu"), get_profile("t4")
    sizes = replace(GRPO_SIZES["cpu"], num_generations=8, prompts_per_step=8)
    shared = grpo_config(GRPORunConfig(), cpu, sizes, on_gpu=False)
    assert (shared.per_device_train_batch_size, shared.gradient_accumulation_steps) == (64, 1)
    own = grpo_config(GRPORunConfig(share_prompts=False), cpu, sizes, on_gpu=False)
    assert (own.per_device_train_batch_size, own.gradient_accumulation_steps) == (8, 8)
    assert shared.generation_batch_size == own.generation_batch_size == 64  # the same step
    assert not GRPORunConfig().shares_prompts(t4)  # its default, and gradient checkpointing fills no cache
    assert not GRPORunConfig(share_prompts=True).shares_prompts(t4)
    monkeypatch.setenv("WORLD_SIZE", "2")  # under DDP: TRL's own pass (the wrapped model, one forward)
    assert not GRPORunConfig().shares_prompts(cpu)
    for flat_groups in ("keep", "drop"):
        trainer = trainer_class(flat_groups, share_prompts=True)
        assert trainer.__mro__[1].__name__ == trainer_class(flat_groups).__name__  # atop the flat groups
        own_forward = GRPOTrainer._get_per_token_logps_and_entropies
        assert trainer._get_per_token_logps_and_entropies is not own_forward


@pytest.mark.parametrize(
    ("start", "max_steps", "every", "ends"),
    [
        (0, 10, 0, [10]),  # fixed prompt set: one round
        (0, 10, 4, [4, 8, 10]),  # refresh every 4 steps, a short last round
        (4, 10, 4, [8, 10]),  # resumed at a round's end
        (5, 10, 4, [8, 10]),  # resumed inside a round: it is finished first
        (8, 8, 4, [8]),  # nothing left: one empty round, the trainer stops at once
    ],
)
def test_round_ends(start, max_steps, every, ends):
    from training.grpo.trainer import round_ends

    assert round_ends(start, max_steps, every) == ends


def test_checkpoint_step():
    from training.grpo.trainer import checkpoint_step

    assert (checkpoint_step(None), checkpoint_step("runs/x/checkpoint-25")) == (0, 25)


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


def test_collapse_monitor_reads_the_per_group_share_not_trls_batch_one():
    monitor = CollapseMonitor(share=0.5, patience=3)

    class State:
        global_step = 0

    for step in (1, 2, 3):  # under scale_rewards=batch TRL reads 0 while every group is flat
        State.global_step = step
        logs = {"frac_reward_zero_std": 0.0, "env/zero_std_groups_share": 1.0}
        monitor.on_log(None, State, None, logs=logs)
    assert monitor.warnings == [3]


def test_reward_curve_plot_is_written(tmp_path):
    log = [{"step": s, "reward": 0.1 * s, "reward_std": 0.05} for s in range(1, 8)] + [{"train_loss": 0.0}]
    val = [{"step": 4, "score": 0.5, "ci_low": 0.4, "ci_high": 0.6}]
    path = plot_reward_curve(log, val, tmp_path / "curve.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_resume_needs_a_checkpoint_and_a_fresh_run_never_overwrites_one(tmp_path):
    with pytest.raises(GRPOConfigError, match=r"no (complete )?checkpoint"):
        resume_checkpoint(tmp_path, resume=True)
    assert resume_checkpoint(tmp_path, resume=False) is None
    from training.sft.trainer import ADAPTER_WEIGHTS, CHECKPOINT_FILES

    (tmp_path / "checkpoint-3").mkdir()
    for name in (*CHECKPOINT_FILES, ADAPTER_WEIGHTS[0]):  # what a finished save leaves
        (tmp_path / "checkpoint-3" / name).write_text("{}")
    with pytest.raises(GRPOConfigError, match="pass --resume"):
        resume_checkpoint(tmp_path, resume=False)
    assert resume_checkpoint(tmp_path, resume=True).endswith("checkpoint-3")


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--resume"], "checkpoint-*"),  # nothing to resume in a new directory
        (["--profile", "t4"], "needs a CUDA GPU"),  # fp16 T4 settings on a CPU-only machine
        (["--load-in-4bit"], "load_in_4bit"),  # QLoRA needs bitsandbytes and a GPU
        (["--adapter", "/no/such/adapter"], "does not exist"),  # a typo in the SFT adapter path
        (["--continuation", "ppo"], "invalid choice"),  # only documented continuation policies
        (["--continuation", "exit", "--exit-days", "0"], "exit_days"),  # a horizon of at least one day
        (["--scale-rewards", "std"], "invalid choice"),  # TRL's three scalings only
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
    from training.grpo.monitor import ValSelector
    from training.grpo.trainer import GRPO_SIZES, VAL_HISTORY, GRPORunConfig

    history = [{"step": s, "score": v, "invalid_rate": 0.1} for s, v in ((10, 0.52), (20, 0.55), (30, 0.51))]
    (tmp_path / VAL_HISTORY).write_text(json.dumps(history))
    resumed = ValSelector(None, GRPORunConfig(resume=True), GRPO_SIZES["cpu"], tmp_path, {})
    assert resumed.best == history[1] and resumed.history == history
    fresh = ValSelector(None, GRPORunConfig(resume=False), GRPO_SIZES["cpu"], tmp_path, {})
    assert fresh.best is None and fresh.history == []


def test_the_trainer_and_its_monitor_do_not_import_each_other():
    import ast
    from pathlib import Path

    def imported(module: str) -> set[str]:
        tree = ast.parse(Path(f"training/grpo/{module}.py").read_text())
        names = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module:  # `from training.grpo import trainer` too
                names |= {node.module, *(f"{node.module}.{alias.name}" for alias in node.names)}
            elif isinstance(node, ast.Import):
                names |= {alias.name for alias in node.names}
        return names

    assert "training.grpo.trainer" not in imported("monitor")
    assert not {"training.grpo.trainer", "training.grpo.monitor"} & imported("outputs")
