"""train-sft end to end with the real SmolLM2-135M on a handful of real SFT examples.

The examples are real: the RSI rule agent plays a few days of real episodes, prompts come from the one prompt
builder, and each answer is a short ``<think>`` with the day's RSI and trend followed by the rule's action.
Runtime budget: about a minute on 2 CPU cores (four tiny trainings of 2-4 steps, one 3-token generation).
"""

from __future__ import annotations

import dataclasses
import json
import math
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import mlflow
import pytest
import torch
from transformers import TrainerCallback

import market_env
from eval.agents import RSIAgent, feature
from eval.harness import numeric_to_text
from llm_agent.generation import GenerationConfig, generate
from llm_agent.models import Hardware, load_model, parse_model_spec
from llm_agent.prompts import build_messages
from training.profiles import PROFILES, cpu_has_fast_bf16, get_profile, profile_for
from training.sft import trainer as sft

REPO = Path(__file__).resolve().parents[3]


# ---------------------------------------------------------------------------------------------- real data
def rollout_examples(task: str, split: str, n_envs: int, n_days: int, seed: int) -> list[dict]:
    """Chat examples from the RSI rule playing real episodes: observation -> <think> + the rule's action."""
    env = market_env.make_batch(task, n_envs=n_envs, split=split, obs_mode="text", seed=seed)
    observations, _ = env.reset(seed=seed)
    agent = RSIAgent()
    agent.reset(n_envs, seed)
    examples = []
    for _ in range(n_days):
        snapshot = env.market.snapshot()
        actions = numeric_to_text(agent.act(observations, snapshot), env.names)
        rsi, trend = feature(snapshot, "rsi"), feature(snapshot, "trend")
        for i, action in enumerate(actions):
            think = f"<think>{env.names[i][0]} RSI {rsi[i, 0]:.0f}, trend {100 * trend[i, 0]:+.1f}%.</think>"
            messages = build_messages(observations[i], task, think=True)
            messages.append({"role": "assistant", "content": f"{think}\n{action}"})
            examples.append({"messages": messages, "meta": {"task": task, "split": split}})
        observations, *_ = env.step(actions)
    return examples


def write_jsonl(path: Path, rows: list[dict]) -> None:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))


@pytest.fixture(scope="module")
def sft_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """12 easy + 4 medium train examples, 4 easy val examples, and a data card."""
    data = tmp_path_factory.mktemp("sft-data")
    train = rollout_examples("easy", "train", 4, 3, seed=0) + rollout_examples(
        "medium", "train", 2, 2, seed=0
    )
    write_jsonl(data / "train.jsonl", train)
    write_jsonl(data / "val.jsonl", rollout_examples("easy", "val", 4, 1, seed=0))
    (data / "meta.json").write_text(json.dumps({"env_version": "2.0.0", "data_sha256": "abc123", "seed": 0}))
    return data


def tiny_config(data: Path, output_dir: Path, **overrides) -> sft.SFTRunConfig:
    """A 3-step run that still goes through every part of a real one (checkpoint, val loss, MLflow)."""
    fields = dict(
        data=str(data),
        output_dir=str(output_dir),
        max_steps=3,
        profile="cpu",
        task="easy",
        save_steps=2,
        eval_examples=1,
        logging_steps=1,
        batch_size=1,
        gradient_accumulation_steps=1,
        lora_r=8,
        lora_alpha=16,
        learning_rate=2e-3,
    )
    return sft.SFTRunConfig(**(fields | overrides))


class Recorder(TrainerCallback):
    """Keeps what the trainer really trained on: the prepared dataset and the LoRA-B weights before/after."""

    def on_train_begin(self, args, state, control, model=None, train_dataloader=None, **kwargs):
        self.dataset = train_dataloader.dataset
        self.before = {n: p.detach().clone() for n, p in model.named_parameters() if "lora_B" in n}

    def on_train_end(self, args, state, control, model=None, **kwargs):
        self.after = {n: p.detach().clone() for n, p in model.named_parameters() if "lora_B" in n}

    def on_evaluate(self, args, state, control, **kwargs):
        self.evaluations = [*getattr(self, "evaluations", []), state.global_step]


class StopAfter(TrainerCallback):
    """Interrupts training after ``step`` optimizer steps, like a killed job (the checkpoint stays)."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_step_end(self, args, state, control, **kwargs):
        control.should_training_stop = state.global_step >= self.step
        return control


@pytest.fixture(scope="module")
def tiny_run(sft_data: Path, tmp_path_factory: pytest.TempPathFactory):
    """One real tiny SFT run (its own MLflow SQLite file), shared by the tests that inspect its results."""
    out = tmp_path_factory.mktemp("sft-run")
    recorder = Recorder()
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{out / 'mlruns.db'}")
        result = sft.train(tiny_config(sft_data, out / "run"), callbacks=[recorder])
        runs = mlflow.search_runs(experiment_names=[sft.SFT_EXPERIMENT])
    return result, recorder, runs


# ------------------------------------------------------------------------------------------------- training
@pytest.mark.slow
def test_tiny_sft_has_finite_loss_and_moves_the_lora_weights(tiny_run):
    result, recorder, _ = tiny_run
    assert result.global_step == 3
    assert [step for step, _ in result.losses] == [1, 2, 3]
    assert all(math.isfinite(loss) for _, loss in result.losses)
    assert result.eval_loss is not None and math.isfinite(result.eval_loss)
    # the val loss at the save step and once at the end, not a second time after training (issue 20)
    assert recorder.evaluations == [2, 3]
    assert recorder.before and all(torch.count_nonzero(b) == 0 for b in recorder.before.values())  # LoRA init
    changed = [n for n in recorder.before if not torch.equal(recorder.before[n], recorder.after[n])]
    assert len(changed) == len(recorder.before) == 30 * 7  # every projection of every SmolLM2 layer


@pytest.mark.slow
def test_only_assistant_tokens_carry_loss(tiny_run, sft_data):
    _, recorder, _ = tiny_run
    tokenizer = load_model("smollm2-135m", for_training=True).tokenizer
    answers = {ex["messages"][-1]["content"] for ex in sft.read_jsonl(sft_data / "train.jsonl")}
    assert len(recorder.dataset) == 12  # the easy examples only (--task easy)
    for row in recorder.dataset:
        labels, ids = row["labels"], row["input_ids"]
        start = next(k for k, label in enumerate(labels) if label != -100)
        assert all(label != -100 for label in labels[start:])  # one contiguous trained span: the answer
        assert labels[start:] == ids[start:]
        assert tokenizer.decode(ids[:start]).endswith("<|im_start|>assistant\n")  # the prompt: no loss
        answer = tokenizer.decode(ids[start:])
        assert answer.endswith("<|im_end|>") and answer.removesuffix("<|im_end|>") in answers


@pytest.mark.slow
def test_run_is_logged_to_mlflow_and_meta_json(tiny_run, sft_data):
    result, _, runs = tiny_run
    assert len(runs) == 1
    run = runs.iloc[0]
    assert run["params.model"] == "smollm2-135m" and run["params.task"] == "easy"
    assert run["params.data_env_version"] == "2.0.0" and run["params.data_sha256"] == "abc123"
    assert run["params.profile_lora_r"] == "8" and run["params.train_examples"] == "12"
    assert run["metrics.global_step"] == 3 and math.isfinite(run["metrics.loss"])  # TRL's per-step loss too
    meta = json.loads((result.adapter_dir / "meta.json").read_text())
    assert meta["global_step"] == 3 and meta["git_commit"] and meta["run_config"]["task"] == "easy"
    assert (result.adapter_dir.parent / "loss_curve.png").stat().st_size > 0


@pytest.mark.slow
def test_saved_adapter_loads_as_an_llm_agent_model_and_generates(tiny_run):
    result, recorder, _ = tiny_run
    assert (result.adapter_dir / "adapter_config.json").is_file()
    assert (result.adapter_dir / "adapter_model.safetensors").is_file()
    name = f"llm:smollm2-135m@{result.adapter_dir}"  # the alias as the base: portable across machines
    assert f"--agent smollm2-135m {name} " in result.evaluate_command
    assert parse_model_spec(name).adapter_path == str(result.adapter_dir)
    loaded = load_model(name)
    weights = dict(loaded.model.named_parameters())
    some_b = next(iter(recorder.after))
    assert torch.equal(weights[some_b], recorder.after[some_b])  # the trained weights, not a fresh adapter
    chat = build_messages("Day 1 of 20. Reply HOLD.", "easy", think=True)
    [completion] = generate(loaded, [chat], GenerationConfig(max_new_tokens=3))
    assert completion.completion_tokens >= 1 and completion.text


@pytest.mark.slow
def test_training_continues_from_a_saved_adapter(tiny_run, sft_data, tmp_path):
    result, recorder, _ = tiny_run
    name = f"llm:{result.base_path}@{result.adapter_dir}"
    again = Recorder()
    sft.train(tiny_config(sft_data, tmp_path / "more", model=name, max_steps=2, eval_examples=0), [again])
    some_b = next(iter(recorder.after))
    assert torch.equal(again.before[some_b], recorder.after[some_b])  # started from the adapter
    assert not torch.equal(again.after[some_b], recorder.after[some_b])  # and trained it further


@pytest.mark.slow
def test_resumed_run_matches_an_uninterrupted_one(tiny_run, sft_data, tmp_path):
    whole, _, _ = tiny_run  # 3 steps in one go, checkpoint at step 2
    interrupted = tiny_config(sft_data, tmp_path / "cut")
    first = sft.train(interrupted, callbacks=[StopAfter(2)])
    assert first.global_step == 2 and (tmp_path / "cut" / "checkpoint-2").is_dir()
    # a save killed midway: checkpoint-3 has the adapter weights but no trainer_state.json
    broken = tmp_path / "cut" / "checkpoint-3"
    broken.mkdir()
    (broken / "adapter_model.safetensors").write_bytes(
        (tmp_path / "cut" / "checkpoint-2" / "adapter_model.safetensors").read_bytes()
    )
    with pytest.raises(sft.SFTConfigError, match="--resume"):  # a plain rerun would overwrite the checkpoint
        sft.train(interrupted)
    resumed = sft.train(dataclasses.replace(interrupted, resume=True))
    assert resumed.global_step == whole.global_step == 3
    assert all(math.isfinite(loss) for _, loss in resumed.losses)
    # same data order, LoRA weights and optimizer state: step 3 after the resume repeats the uninterrupted one
    assert [step for step, _ in resumed.losses] == [1, 2, 3]  # steps 1-2 come from the checkpoint's history
    assert [loss for _, loss in resumed.losses] == pytest.approx([loss for _, loss in whole.losses], rel=1e-4)


@pytest.mark.slow
def test_no_final_eval_skips_the_val_pass_off_the_save_grid(sft_data, tmp_path):
    recorder = Recorder()
    config = tiny_config(sft_data, tmp_path / "run", max_steps=1, save_steps=5, final_eval=False)
    result = sft.train(config, callbacks=[recorder])
    assert result.eval_loss is None and getattr(recorder, "evaluations", []) == []


# ------------------------------------------------------------------------------------------ fp16 and resume
def tiny_lora_model(base_dtype: torch.dtype):
    """A 2-layer Llama (SmolLM2's architecture) with LoRA on q/v, base weights in ``base_dtype``."""
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=1)  # fmt: skip
    base = LlamaForCausalLM(config).to(base_dtype)
    return get_peft_model(base, LoraConfig(r=4, target_modules=["q_proj", "v_proj"]))


def test_fp32_trainable_parameters_undoes_trls_bf16_cast_of_the_adapter():
    model = tiny_lora_model(torch.float16)  # the frozen base in fp16, as on a T4
    for param in model.parameters():  # what TRL does to the LoRA of a quantized base
        if param.requires_grad:
            param.data = param.data.to(torch.bfloat16)
    trainable = [p for p in model.parameters() if p.requires_grad]
    assert len(trainable) == 8 and all(p.dtype == torch.bfloat16 for p in trainable)
    assert sft.fp32_trainable_parameters(model) == 8
    assert [p for p in model.parameters() if p.requires_grad] == trainable  # the same Parameter objects
    assert all(p.dtype == torch.float32 for p in trainable)
    assert all(p.dtype == torch.float16 for p in model.parameters() if not p.requires_grad)  # base untouched
    assert sft.fp32_trainable_parameters(model) == 0  # nothing left to cast


def test_only_fp16_profiles_need_the_fp32_adapter():
    assert [name for name, p in PROFILES.items() if sft.needs_fp32_adapter(p)] == ["t4"]


def _checkpoint(path: Path, *files: str) -> None:
    path.mkdir(parents=True)
    for name in files:
        (path / name).write_text("{}")


def test_resume_takes_the_newest_complete_checkpoint(tmp_path, capsys):
    _checkpoint(tmp_path / "checkpoint-2", "trainer_state.json", "adapter_model.safetensors")
    _checkpoint(tmp_path / "checkpoint-10", "trainer_state.json", "adapter_model.bin")
    _checkpoint(tmp_path / "checkpoint-12", "adapter_model.safetensors")  # killed before trainer_state.json
    _checkpoint(tmp_path / "checkpoint-14", "trainer_state.json")  # killed before the weights
    (tmp_path / "checkpoint-16").write_text("")  # a file, not a checkpoint
    assert sft.resume_checkpoint(tmp_path, resume=True) == str(tmp_path / "checkpoint-10")
    assert "checkpoint-14 is incomplete" in capsys.readouterr().err
    with pytest.raises(sft.SFTConfigError, match="already holds checkpoint-14"):
        sft.resume_checkpoint(tmp_path, resume=False)


def test_resume_with_only_incomplete_checkpoints_says_so(tmp_path):
    _checkpoint(tmp_path / "checkpoint-3", "adapter_model.safetensors")
    with pytest.raises(sft.SFTConfigError, match=r"no complete checkpoint.*incomplete: checkpoint-3"):
        sft.resume_checkpoint(tmp_path, resume=True)


# ---------------------------------------------------------------------------------------------- bad input
def test_help_lists_every_flag_without_loading_torch():
    out = subprocess.run(
        [sys.executable, "-m", "training.sft", "--help"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONPATH": str(REPO), "PATH": ""},
    ).stdout
    for flag in (
        "--model",
        "--data",
        "--max-steps",
        "--output-dir",
        "--profile",
        "--resume",
        "--save-steps",
        "--lora-r",
        "--lora-alpha",
        "--learning-rate",
        "--seed",
        "--load-in-4bit",
        "--task",
    ):
        assert flag in out
    assert "cpu: batch" in out and "t4: batch" in out


def test_missing_data_dir_is_a_clear_error(tmp_path, capsys):
    assert sft.main(["--data", str(tmp_path / "nope"), "--output-dir", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "nope" in err and "make-sft-data --out" in err


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ('{"messages": [', "not valid JSON"),  # a truncated write
        ('{"prompt": "x", "completion": "y"}', "no 'messages' list"),  # another dataset format
        (
            '{"messages": [{"role": "user", "content": "x"}]}',
            "last message must be the assistant",
        ),  # no answer
        ('{"messages": [{"role": "bot", "content": "x"}]}', "without a role"),  # unknown role name
        (
            '{"messages": [{"role": "user", "content": null}, {"role": "assistant", "content": "HOLD"}]}',
            "without text content",
        ),  # a null field
    ],
)
def test_malformed_jsonl_names_the_file_and_line(tmp_path, sft_data, line, problem):
    data = tmp_path / "data"
    data.mkdir()
    good = (sft_data / "train.jsonl").read_text().splitlines()[:2]
    (data / "train.jsonl").write_text("\n".join([*good, line]) + "\n")
    with pytest.raises(sft.SFTDataError, match=rf"train\.jsonl:3: .*{problem}"):
        sft.load_examples(data, "train", None)


def test_task_filter_and_data_record(sft_data):
    assert len(sft.load_examples(sft_data, "train", None)) == 16
    assert {e["meta"]["task"] for e in sft.load_examples(sft_data, "train", "medium")} == {"medium"}
    with pytest.raises(sft.SFTDataError, match="no example of task 'hard'; tasks present: easy, medium"):
        sft.load_examples(sft_data, "train", "hard")
    with pytest.raises(sft.SFTDataError, match=r"test\.jsonl is missing"):
        sft.load_examples(sft_data, "test", None)
    record = sft.data_record(sft_data)
    assert record["data_env_version"] == "2.0.0" and len(record["train_jsonl_sha256"]) == 64
    assert record["market_data"] == "nifty"  # the card's --data: the market to evaluate the adapter on
    assert record["think"] is True  # the card's answers open with <think>: evaluate with --think


def test_the_evaluate_line_uses_the_prompt_and_market_the_adapter_was_trained_on():
    loaded = SimpleNamespace(spec=SimpleNamespace(alias="smollm2-135m"), path="/models/smollm2")
    line = sft.evaluate_command(loaded, Path("runs/a"), "easy", 16, "synthetic:edge", think=False)
    assert "--think" not in line and line.endswith("--max-new-tokens 16 --data synthetic:edge")
    assert "--think --max-new-tokens 64" in sft.evaluate_command(loaded, Path("runs/a"), None, 64)


def test_examples_longer_than_max_length_are_dropped_not_truncated(sft_data):
    tokenizer = load_model("smollm2-135m", for_training=True).tokenizer
    examples = sft.load_examples(sft_data, "train", None)  # easy prompts ~450 tokens, medium ~900
    kept, dropped = sft.build_dataset(examples, tokenizer, max_length=600)
    assert (len(kept), dropped) == (12, 4)
    assert all(len(row) <= 600 for row in kept["input_ids"])


def test_gpu_profile_on_cpu_and_resume_without_checkpoint_are_clear_errors(sft_data, tmp_path, capsys):
    args = ["--data", str(sft_data), "--output-dir", str(tmp_path / "out"), "--task", "easy"]
    assert sft.main([*args, "--profile", "t4"]) == 2
    assert "profile 't4' trains in float16 on a CUDA GPU" in capsys.readouterr().err
    assert sft.main([*args, "--resume"]) == 2
    assert "no complete checkpoint-* in" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------------- profiles
def test_profiles_follow_the_hardware():
    assert get_profile("auto").name == "cpu"  # this machine (and CI) has no GPU
    assert profile_for(Hardware("cuda", "Tesla T4", (7, 5), bf16_supported=False)).dtype == "float16"
    assert profile_for(Hardware("cuda", "A100", (8, 0), bf16_supported=True)).name == "a100"
    assert PROFILES["t4"].lora_r == 64 and PROFILES["t4"].lora_alpha == 128  # the GPU default of issue 5
    assert PROFILES["cpu"].with_overrides(lora_r=4, lora_alpha=None).lora_r == 4
    assert PROFILES["cpu"].effective_batch_size == 8
    with pytest.raises(ValueError, match="valid profiles: auto, cpu, t4, a100"):
        get_profile("tpu")


def test_bf16_autocast_only_where_it_is_fast():
    # GPU profiles: bf16 exactly when the profile computes in bf16 (a T4 has none)
    assert PROFILES["a100"].bf16_autocast(on_gpu=True) and not PROFILES["t4"].bf16_autocast(on_gpu=True)
    # the cpu profile: autocast on a CPU with native bf16 matrix units, float32 elsewhere and on a GPU
    assert PROFILES["cpu"].bf16_autocast(on_gpu=False) is cpu_has_fast_bf16()
    assert not PROFILES["cpu"].bf16_autocast(on_gpu=True)
    assert not PROFILES["cpu"].with_overrides(cpu_bf16_autocast=False).bf16_autocast(on_gpu=False)
    config = sft.sft_config(sft.SFTRunConfig(max_steps=1), PROFILES["cpu"], on_gpu=False, has_eval=False)
    assert config.bf16 is cpu_has_fast_bf16() and config.use_cpu and not config.fp16


# ------------------------------------------------------------------------------------------ memory (issue 20)
def _fused_loss_and_grads(token_chunk: int | None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Completion-only loss of TRL's fused LM head on a tiny Llama, and the LoRA gradients, with the tiles
    of a profile whose ``lm_head_token_chunk`` is ``token_chunk``."""
    from trl.trainer.utils import add_fused_lm_head

    from training.profiles import set_lm_head_tiles

    set_lm_head_tiles(dataclasses.replace(PROFILES["cpu"], lm_head_token_chunk=token_chunk))
    torch.manual_seed(0)
    model = tiny_lora_model(torch.float32)
    add_fused_lm_head(model.get_base_model(), outputs=("log_probs", "entropy", "is_top1"))
    ids = torch.randint(0, 64, (3, 11))
    labels = ids.masked_fill(torch.arange(11) < 6, -100)  # a prompt of 6 tokens, then the completion
    loss = model(input_ids=ids, attention_mask=torch.ones_like(ids), labels=labels, fused_lm_head=True).loss
    loss.backward()
    return loss.detach(), {n: p.grad for n, p in model.named_parameters() if p.requires_grad}


def test_small_lm_head_tiles_leave_the_loss_and_gradients_as_they_were(monkeypatch):
    from trl.kernels import chunked_logprob

    # TRL's default tile (all 30 scored positions in one); the test's end restores whatever was set before
    monkeypatch.setattr(chunked_logprob, "TOKEN_CHUNK_SIZE", 4096)
    loss, grads = _fused_loss_and_grads(None)  # None: TRL's tiles stay
    assert chunked_logprob.TOKEN_CHUNK_SIZE == 4096
    small_loss, small_grads = _fused_loss_and_grads(4)  # 8 tiles, the last one partial
    assert chunked_logprob.TOKEN_CHUNK_SIZE == 4
    torch.testing.assert_close(small_loss, loss, rtol=0, atol=0)
    for name, grad in grads.items():
        torch.testing.assert_close(small_grads[name], grad, rtol=1e-6, atol=1e-7)


def test_cpu_profile_keeps_8_sequences_a_step_in_small_tiles():
    cpu = PROFILES["cpu"]
    assert (cpu.batch_size, cpu.gradient_accumulation_steps, cpu.lm_head_token_chunk) == (2, 4, 256)
    assert all(PROFILES[name].lm_head_token_chunk is None for name in ("t4", "a100"))  # GPUs: TRL's Triton
    config = sft.sft_config(sft.SFTRunConfig(max_steps=1), cpu, on_gpu=False, has_eval=True)
    assert config.per_device_eval_batch_size == config.per_device_train_batch_size == 2


@pytest.mark.slow
def test_splitting_a_step_into_more_micro_batches_keeps_its_loss(sft_data, tmp_path):
    # the cpu profile went from 4 x 2 to 2 x 4 sequences a step: the real SmolLM2 must see the same loss
    losses = []
    for batch, accumulation in ((2, 1), (1, 2)):
        sizes = {"batch_size": batch, "gradient_accumulation_steps": accumulation}
        out = tmp_path / f"run-{batch}x{accumulation}"
        config = tiny_config(sft_data, out, max_steps=1, save_steps=5, final_eval=False, **sizes)
        losses.append(sft.train(config).losses[0][1])
    assert losses[0] == pytest.approx(losses[1], rel=1e-3)
