"""``train-sft``: fine-tune the LLM trading agent with TRL's SFTTrainer and a PEFT LoRA adapter.

train-sft --data runs/sft-data --task easy --max-steps 300 --output-dir runs/sft-easy
train-sft --data runs/sft-data --max-steps 300 --output-dir runs/sft-easy --resume   # continue a stopped run

Data: a directory with ``train.jsonl`` (and optionally ``val.jsonl``) from ``make-sft-data``, one chat per
line: ``{"messages": [system, user, assistant], "meta": {"task": ...}}``. Each chat is a prompt-completion
pair tokenised exactly as the agent sees it at inference (``llm_agent.generation.format_chat`` of system +
user, no extra special tokens); the completion is the assistant text plus the end-of-turn token. TRL's
completion-only loss then trains on the assistant tokens alone. Examples longer than the profile's
``max_length`` are dropped (with a count), never truncated: a cut answer would teach answers that never end.

Output: ``checkpoint-N`` every ``--save-steps`` (LoRA weights, optimizer, scheduler, RNG: what ``--resume``
needs), and ``adapter/`` with the final PEFT adapter, the tokenizer and ``meta.json``, loadable as
``llm:<base-model>@<output-dir>/adapter``; ``loss_curve.png``. Metrics and params go to MLflow, experiment
``nifty-rl-sft``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from training.profiles import (
    PROFILES,
    TrainingProfile,
    cpu_evaluate_estimate,
    get_profile,
    quiet_checkpointing_alias,
    set_lm_head_tiles,
)

SFT_EXPERIMENT = "nifty-rl-sft"
DEFAULT_MODEL = "smollm2-135m"
ADAPTER_DIR = "adapter"
ROLES = ("system", "user", "assistant")


class SFTDataError(ValueError):
    """The SFT data directory or one of its lines is not what ``make-sft-data`` writes."""


@dataclass(frozen=True)
class SFTRunConfig:
    """One ``train-sft`` run (the CLI flags; ``None`` means: the profile's value).

    Attributes:
        model: model name for :func:`llm_agent.models.load_model`; an ``llm:<base>@<adapter>`` name continues
            training that adapter instead of starting a new one.
        data: directory with ``train.jsonl`` and optionally ``val.jsonl``.
        output_dir: where checkpoints, the final ``adapter/`` and ``meta.json`` go.
        max_steps: optimizer steps in total (a resumed run counts the steps it already did).
        profile: ``auto``, ``cpu``, ``t4`` or ``a100`` (see :mod:`training.profiles`).
        task: train only on examples whose ``meta.task`` is this (e.g. ``easy``); None: every example.
        resume: continue from the newest ``checkpoint-*`` in ``output_dir``.
        save_steps: save a checkpoint (and compute the val loss) every this many steps.
        eval_examples: val examples for the val loss (0: none); taken from the start of ``val.jsonl``.
        final_eval: compute the val loss at the end when the last step did not (``--no-final-eval``: skip).
        logging_steps: log the training loss every this many steps.
        seed: seeds model init of the LoRA weights, data order and dropout.
    """

    model: str = DEFAULT_MODEL
    data: str = "runs/sft-data"
    output_dir: str = "runs/sft"
    max_steps: int = 100
    profile: str = "auto"
    task: str | None = None
    resume: bool = False
    save_steps: int = 50
    eval_examples: int = 64
    final_eval: bool = True
    logging_steps: int = 5
    seed: int = 0
    lora_r: int | None = None
    lora_alpha: int | None = None
    learning_rate: float | None = None
    max_length: int | None = None
    batch_size: int | None = None
    gradient_accumulation_steps: int | None = None
    load_in_4bit: bool | None = None

    def resolve_profile(self) -> TrainingProfile:
        """The hardware profile with this run's overrides applied."""
        names = (
            "lora_r",
            "lora_alpha",
            "learning_rate",
            "max_length",
            "batch_size",
            "gradient_accumulation_steps",
            "load_in_4bit",
        )
        return get_profile(self.profile).with_overrides(**{n: getattr(self, n) for n in names})


@dataclass(frozen=True)
class SFTResult:
    """What a finished run produced."""

    adapter_dir: Path
    base_path: str
    global_step: int
    train_loss: float
    losses: list[tuple[int, float]]
    eval_loss: float | None
    seconds: float
    evaluate_command: str


# ------------------------------------------------------------------------------------------------------ data
def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """Read and check an SFT jsonl file; a bad line raises :class:`SFTDataError` naming the file and line."""
    rows = []
    with path.open(encoding="utf-8") as handle:
        for lineno, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                raise SFTDataError(
                    f"{path}:{lineno}: not valid JSON ({err.msg}); regenerate it with make-sft-data"
                ) from err
            problem = _example_problem(row)
            if problem:
                raise SFTDataError(
                    f'{path}:{lineno}: {problem}; expected {{"messages": [system, user, '
                    'assistant], "meta": {...}}, as make-sft-data writes'
                )
            rows.append(row)
    return rows


def _example_problem(row: Any) -> str | None:
    """Why a parsed line is not a chat example, or None when it is one."""
    if not isinstance(row, dict) or not isinstance(row.get("messages"), list) or not row["messages"]:
        return "no 'messages' list"
    messages = row["messages"]
    for message in messages:
        if not isinstance(message, dict) or message.get("role") not in ROLES:
            return f"a message without a role in {ROLES}: {str(message)[:80]!r}"
        if not isinstance(message.get("content"), str):
            return f"a {message['role']} message without text content"
    if messages[-1]["role"] != "assistant" or len(messages) < 2:
        return "the last message must be the assistant's answer, after at least one prompt message"
    if not isinstance(row.get("meta", {}), dict):
        return "'meta' is not an object"
    return None


def load_examples(data_dir: Path, split: str, task: str | None) -> list[dict[str, Any]]:
    """The examples of ``<data_dir>/<split>.jsonl``, only those of ``task`` when given."""
    path = data_dir / f"{split}.jsonl"
    if not data_dir.is_dir():
        raise SFTDataError(
            f"data directory {str(data_dir)!r} does not exist; create it with make-sft-data --out {data_dir}"
        )
    if not path.is_file():
        raise SFTDataError(f"{path} is missing; make-sft-data writes train.jsonl and val.jsonl")
    rows = read_jsonl(path)
    if task is None:
        return rows
    kept = [row for row in rows if row.get("meta", {}).get("task") == task]
    if not kept:
        tasks = sorted({str(row.get("meta", {}).get("task")) for row in rows})
        raise SFTDataError(f"{path} has no example of task {task!r}; tasks present: {', '.join(tasks)}")
    return kept


def data_record(data_dir: Path) -> dict[str, Any]:
    """Where the data came from: the sha256 of train.jsonl, plus the data card's ``meta.json`` fields."""
    record = {
        "data_dir": str(data_dir),
        "train_jsonl_sha256": hashlib.sha256((data_dir / "train.jsonl").read_bytes()).hexdigest(),
    }
    card = data_dir / "meta.json"
    if card.is_file():
        meta = json.loads(card.read_text())
        keys = ("env_version", "data_sha256", "seed", "git_commit")
        record |= {f"data_{k.removeprefix('data_')}": meta[k] for k in keys if k in meta}
        # the market the examples were played on (make-sft-data --data): evaluate the adapter on the same one
        record["market_data"] = meta.get("data") or "nifty"
        # whether the answers open with <think> (make-sft-data --no-think): evaluate with the same prompt
        record["think"] = bool(meta.get("config", {}).get("think", True))
    return record


def tokenize_chat(messages: list[dict[str, str]], tokenizer: Any) -> dict[str, list[int]]:
    """Prompt-completion tokens of one chat, with ``completion_mask`` 1 on the assistant's tokens.

    The prompt is rendered by the same function generation uses, and neither part gets extra special tokens,
    so training sees exactly the token sequence the agent produces at inference.
    """
    from llm_agent.generation import format_chat
    from llm_agent.prompts import fit_completion

    text = format_chat(tokenizer, messages[:-1])
    prompt = tokenizer(text, add_special_tokens=False)["input_ids"]
    completion = fit_completion(messages[-1]["content"], text) + tokenizer.eos_token
    answer = tokenizer(completion, add_special_tokens=False)["input_ids"]
    return {"input_ids": prompt + answer, "completion_mask": [0] * len(prompt) + [1] * len(answer)}


def build_dataset(examples: list[dict[str, Any]], tokenizer: Any, max_length: int) -> tuple[Any, int]:
    """A tokenised ``datasets.Dataset``, and how many examples were dropped as longer than max_length."""
    from datasets import Dataset

    rows = [tokenize_chat(example["messages"], tokenizer) for example in examples]
    kept = [row for row in rows if len(row["input_ids"]) <= max_length]
    return Dataset.from_list(kept), len(rows) - len(kept)


# ----------------------------------------------------------------------------------------------------- model
class SFTConfigError(ValueError):
    """A run that cannot start as asked (wrong profile for the hardware, output dir in the way, ...)."""


def load_for_training(config: SFTRunConfig, profile: TrainingProfile) -> Any:
    """Load the model for training in the profile's precision (a :class:`~llm_agent.models.LoadedModel`)."""
    from llm_agent.models import detect_hardware, load_model

    if profile.dtype != "float32" and detect_hardware().device == "cpu":
        raise SFTConfigError(
            f"profile {profile.name!r} trains in {profile.dtype} on a CUDA GPU, and none is "
            "visible; use --profile cpu (or auto)"
        )
    return load_model(config.model, for_training=True, load_in_4bit=profile.load_in_4bit, dtype=profile.dtype)


def lora_config(profile: TrainingProfile) -> Any:
    """The PEFT LoRA config of a profile: adapters on every attention and MLP projection."""
    from peft import LoraConfig

    return LoraConfig(
        r=profile.lora_r,
        lora_alpha=profile.lora_alpha,
        lora_dropout=profile.lora_dropout,
        target_modules=list(profile.target_modules),
        bias="none",
        task_type="CAUSAL_LM",
    )


def trainable_model(loaded: Any, profile: TrainingProfile, seed: int) -> tuple[Any, Any]:
    """(model, peft_config for SFTTrainer): a new LoRA adapter, or the one ``llm:<base>@<adapter>`` named."""
    if loaded.spec.adapter_path:  # load_model loaded it trainable: continue training it
        return loaded.model, None
    if loaded.backend == "unsloth":  # pragma: no cover - Unsloth needs a CUDA GPU, which CI does not have
        from unsloth import FastLanguageModel

        model = FastLanguageModel.get_peft_model(
            loaded.model,
            r=profile.lora_r,
            lora_alpha=profile.lora_alpha,
            lora_dropout=profile.lora_dropout,
            target_modules=list(profile.target_modules),
            random_state=seed,
            use_gradient_checkpointing="unsloth" if profile.gradient_checkpointing else False,
        )
        return model, None
    if profile.load_in_4bit:  # pragma: no cover - bitsandbytes 4-bit needs a CUDA GPU, which CI does not have
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(loaded.model, profile.gradient_checkpointing)
        return model, lora_config(profile)
    return loaded.model, lora_config(profile)


def sft_config(config: SFTRunConfig, profile: TrainingProfile, on_gpu: bool, has_eval: bool) -> Any:
    """TRL's SFTConfig for this run: completion-only loss, the profile's sizes and precision."""
    from trl import SFTConfig

    return SFTConfig(
        output_dir=config.output_dir,
        max_steps=config.max_steps,
        seed=config.seed,
        data_seed=config.seed,
        per_device_train_batch_size=profile.batch_size,
        per_device_eval_batch_size=profile.batch_size,
        gradient_accumulation_steps=profile.gradient_accumulation_steps,
        learning_rate=profile.learning_rate,
        lr_scheduler_type="cosine",
        warmup_steps=profile.warmup_ratio,
        max_length=profile.max_length,
        completion_only_loss=True,
        packing=False,
        bf16=profile.bf16_autocast(on_gpu),
        use_cpu=not on_gpu,  # transformers accepts bf16 without a GPU only when told it runs on the CPU
        fp16=profile.dtype == "float16",  # TRL defaults bf16 on: say it
        # `gradient_checkpointing`, not transformers 5.2x's newer `activation_checkpointing`: the Kaggle stack
        # (transformers<=5.17, which unsloth pins) only knows the old name; the new ones still accept it
        gradient_checkpointing=profile.gradient_checkpointing,  # TRL's default is on: say it
        gradient_checkpointing_kwargs={"use_reentrant": False},  # works with frozen embeddings (LoRA)
        logging_steps=config.logging_steps,
        logging_first_step=True,
        save_strategy="steps",
        save_steps=config.save_steps,
        save_total_limit=2,
        eval_strategy="steps" if has_eval else "no",
        eval_steps=config.save_steps,
        # the val loss only: the evaluation loop then never gathers per-example logits or labels
        prediction_loss_only=True,
        report_to=["mlflow"],
        run_name=Path(config.output_dir).name,
        dataloader_pin_memory=on_gpu,
    )


CHECKPOINT_FILES = ("trainer_state.json",)  # plus the adapter weights, in either format
ADAPTER_WEIGHTS = ("adapter_model.safetensors", "adapter_model.bin")


def checkpoint_dirs(output_dir: Path) -> list[Path]:
    """The ``checkpoint-N`` directories of a run, oldest (smallest N) first."""
    if not output_dir.is_dir():
        return []
    found = [p for p in output_dir.glob("checkpoint-*") if p.is_dir() and p.name[11:].isdigit()]
    return sorted(found, key=lambda p: int(p.name[11:]))


def is_complete_checkpoint(path: Path) -> bool:
    """Whether a checkpoint has what resuming reads: the trainer state and the adapter weights.

    A run killed while saving leaves the newest ``checkpoint-N`` without some of its files; the Trainer
    writes the weights first and ``trainer_state.json`` last, so both present means the save finished.
    """
    has_state = all((path / name).is_file() for name in CHECKPOINT_FILES)
    return has_state and any((path / name).is_file() for name in ADAPTER_WEIGHTS)


def newest_complete_checkpoint(output_dir: Path) -> tuple[Path | None, list[Path]]:
    """(the newest complete checkpoint or None, the newer incomplete ones skipped to reach it)."""
    skipped: list[Path] = []
    for path in reversed(checkpoint_dirs(output_dir)):
        if is_complete_checkpoint(path):
            return path, skipped
        skipped.append(path)
    return None, skipped


def find_resume_checkpoint(output_dir: Path, resume: bool, error: type[ValueError]) -> str | None:
    """The checkpoint ``--resume`` continues (the newest complete one); a fresh run refuses to overwrite one.

    Shared by ``train-sft`` and ``train-grpo``; ``error`` is the command's own exception class.
    """
    existing = checkpoint_dirs(output_dir)
    if not resume:
        if existing:
            raise error(
                f"{output_dir} already holds {existing[-1].name}; pass --resume to continue it or "
                "choose another --output-dir"
            )
        return None
    last, skipped = newest_complete_checkpoint(output_dir)
    if last is None:
        found = f" (incomplete: {', '.join(p.name for p in skipped)})" if skipped else ""
        raise error(
            f"--resume: no complete checkpoint-* in {output_dir}{found}; start the run without --resume"
        )
    for path in skipped:
        print(
            f"warning: {path.name} is incomplete (an interrupted save: no trainer_state.json or adapter "
            f"weights); resuming from {last.name}",
            file=sys.stderr,
        )
    return str(last)


def resume_checkpoint(output_dir: Path, resume: bool) -> str | None:
    """The checkpoint ``--resume`` continues, checking that a fresh run would not overwrite one."""
    return find_resume_checkpoint(output_dir, resume, SFTConfigError)


def fp32_trainable_parameters(model: Any) -> int:
    """Cast every trainable parameter held in fp16 or bf16 to fp32; returns how many were cast.

    Why: fp16 mixed precision (the T4 path) unscales gradients with a GradScaler, which needs fp32 parameters
    (it raises ``"_amp_foreach_non_finite_check_and_unscale_cuda" not implemented for 'BFloat16'``). For a
    quantized base, TRL's SFTTrainer and GRPOTrainer cast the LoRA weights to bf16 after PEFT wrapping
    (TRL #4901; Unsloth PR #4005 does the same fix). Call it after the trainer is built and before
    ``train()``: the optimizer is created inside ``train()``, and assigning ``param.data`` keeps each
    Parameter object, so the optimizer and the trainer see the fp32 weights. The frozen base is untouched.
    """
    import torch

    cast = 0
    for param in model.parameters():
        if param.requires_grad and param.dtype in (torch.float16, torch.bfloat16):
            param.data = param.data.to(torch.float32)
            cast += 1
    return cast


def needs_fp32_adapter(profile: TrainingProfile) -> bool:
    """fp16 training (the T4 profile) needs fp32 trainable weights (see :func:`fp32_trainable_parameters`)."""
    return profile.dtype == "float16"


# ----------------------------------------------------------------------------------------------------- train
def evaluate_command(
    loaded: Any,
    adapter_dir: Path,
    task: str | None,
    max_new_tokens: int,
    market: str = "nifty",
    think: bool = True,
) -> str:
    """The ``evaluate`` line that compares the base model (zero-shot) with the trained adapter, on the
    market the SFT data came from (``market``: the data card's ``--data``; ``nifty`` is the default) and
    with the prompt it was trained on (``think``: the data card's answers open with ``<think>``)."""
    base = loaded.spec.alias or loaded.path  # an alias stays valid on machines whose cache lives elsewhere
    base_agent = loaded.spec.alias or f"llm:{loaded.path}"
    return (
        f"evaluate --agent {base_agent} llm:{base}@{adapter_dir} --task {task or 'easy'} "
        f"--split val --episodes 50 {'--think ' if think else ''}--max-new-tokens {max_new_tokens}"
        + (f" --data {market}" if market != "nifty" else "")
    )


def completion_budget(dataset: Any) -> int:
    """A generation budget that fits the longest trained answer with a margin, in multiples of 32 tokens."""
    longest = max(sum(row) for row in dataset["completion_mask"])
    return 32 * -(-int(1.25 * longest) // 32)


def train(config: SFTRunConfig, callbacks: Sequence[Any] = ()) -> SFTResult:
    """Run SFT as ``config`` says; ``callbacks`` are extra ``transformers.TrainerCallback`` objects."""
    from llm_agent.models import import_unsloth_first

    import_unsloth_first()  # before TRL and transformers, so that its patches apply
    from transformers import set_seed
    from trl import SFTTrainer

    from training.distributed import main_process_mlflow as mlflow  # accelerate: log from rank 0 only
    from training.distributed import main_process_run, write_meta

    profile, data_dir, output_dir = config.resolve_profile(), Path(config.data), Path(config.output_dir)
    quiet_checkpointing_alias()
    set_lm_head_tiles(profile)  # the cpu profile's small tiles: 2 GB less at the peak, the same loss
    train_rows = load_examples(data_dir, "train", config.task)
    checkpoint = resume_checkpoint(output_dir, config.resume)
    set_seed(config.seed)  # before the LoRA weights are drawn
    loaded = load_for_training(config, profile)
    train_set, dropped = build_dataset(train_rows, loaded.tokenizer, profile.max_length)
    if len(train_set) == 0:
        raise SFTDataError(
            f"all {dropped} training examples are longer than max_length={profile.max_length} "
            "tokens; raise --max-length, use a GPU profile or pick --task easy"
        )
    eval_set = _eval_set(data_dir, config, loaded.tokenizer, profile.max_length)
    model, peft_config = trainable_model(loaded, profile, config.seed)
    params = {
        "model": config.model,
        "base_path": loaded.path,
        "task": config.task or "all",
        "train_examples": len(train_set),
        "dropped_too_long": dropped,
        "val_examples": len(eval_set) if eval_set is not None else 0,
        "resumed_from": checkpoint or "",
        **data_record(data_dir),
        **profile.as_params(),
    }
    write_meta(output_dir, run_config=asdict(config), **params)
    started = time.perf_counter()
    with main_process_run(SFT_EXPERIMENT, f"sft {config.model} {output_dir.name}"):
        mlflow.log_params(params)
        trainer = SFTTrainer(
            model=model,
            args=sft_config(config, profile, loaded.device.startswith("cuda"), eval_set is not None),
            train_dataset=train_set,
            eval_dataset=eval_set,
            processing_class=loaded.tokenizer,
            peft_config=peft_config,
            callbacks=[*callbacks] if config.final_eval else [no_eval_at_end(), *callbacks],
        )
        if needs_fp32_adapter(profile):
            fp32_trainable_parameters(trainer.model)
        output = trainer.train(resume_from_checkpoint=checkpoint)
        eval_loss = final_eval_loss(trainer, eval_set is not None and config.final_eval)
        adapter_dir = output_dir / ADAPTER_DIR
        trainer.save_model(str(adapter_dir))
        seconds = time.perf_counter() - started
        losses = [(int(e["step"]), float(e["loss"])) for e in trainer.state.log_history if "loss" in e]
        result = SFTResult(
            adapter_dir,
            loaded.path,
            trainer.state.global_step,
            float(output.training_loss),
            losses,
            eval_loss,
            seconds,
            evaluate_command(
                loaded,
                adapter_dir,
                config.task,
                completion_budget(train_set),
                params.get("market_data", "nifty"),
                bool(params.get("think", True)),
            ),
        )
        mlflow.log_artifact(str(plot_loss_curve(trainer.state.log_history, output_dir / "loss_curve.png")))
        summary = {
            "global_step": result.global_step,
            "final_train_loss": losses[-1][1] if losses else None,
            "final_eval_loss": eval_loss,
            "train_seconds": round(seconds, 1),
        }
        mlflow.log_metrics({k: v for k, v in summary.items() if v is not None})
        write_meta(
            adapter_dir,
            run_config=asdict(config),
            **params,
            **summary,
            losses=losses,
            evaluate_command=result.evaluate_command,
        )
    return result


def no_eval_at_end() -> Any:
    """A callback that stops newer Trainers (transformers >= 5.2x) evaluating after the last step off the
    ``eval_steps`` grid: what ``--no-final-eval`` asks for."""
    from transformers import TrainerCallback

    class NoEvalAtEnd(TrainerCallback):
        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            if state.global_step >= state.max_steps and state.global_step % args.eval_steps != 0:
                control.should_evaluate = False

    return NoEvalAtEnd()


def final_eval_loss(trainer: Any, wanted: bool) -> float | None:
    """The val loss of the trained adapter, computed once.

    The Trainer already evaluates every ``save_steps``; when the last step was one of those, its val loss is
    reused instead of running the val set a second time (that second pass took 63 s of a 10-minute 3-step
    CPU run). ``--no-final-eval`` skips it when the last step was not evaluated.
    """
    step = trainer.state.global_step
    logged = [e["eval_loss"] for e in trainer.state.log_history if "eval_loss" in e and e.get("step") == step]
    if logged:
        return float(logged[-1])
    return float(trainer.evaluate()["eval_loss"]) if wanted else None


def plot_loss_curve(log_history: list[dict[str, Any]], path: Path) -> Path:
    """Training loss per logged step and the val loss at each evaluation (Trainer's ``log_history``)."""
    from eval.plots import plt, save_figure

    figure, axis = plt.subplots(figsize=(6.4, 3.6))
    for key, style, label in (("loss", "-", "train loss"), ("eval_loss", "o--", "val loss")):
        points = [(entry["step"], entry[key]) for entry in log_history if key in entry]
        if points:
            axis.plot(*zip(*points), style, label=label)
    axis.set_xlabel("optimizer step")
    axis.set_ylabel("loss on the assistant tokens")
    axis.set_title("SFT: completion-only loss", fontsize=10)
    axis.legend(fontsize=8)
    return save_figure(figure, path)


def _eval_set(data_dir: Path, config: SFTRunConfig, tokenizer: Any, max_length: int) -> Any:
    """The first ``eval_examples`` val examples (of the task), or None without val.jsonl or with 0 asked."""
    if config.eval_examples <= 0 or not (data_dir / "val.jsonl").is_file():
        return None
    rows = load_examples(data_dir, "val", config.task)[: config.eval_examples]
    dataset, _ = build_dataset(rows, tokenizer, max_length)
    return dataset if len(dataset) else None


# ------------------------------------------------------------------------------------------------------- CLI
def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="train-sft",
        description=__doc__.splitlines()[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="profiles: "
        + "; ".join(
            f"{p.name}: batch {p.batch_size}x{p.gradient_accumulation_steps}, max length {p.max_length}, "
            f"lr {p.learning_rate:g}, LoRA r={p.lora_r} alpha={p.lora_alpha}, {p.dtype}"
            for p in PROFILES.values()
        ),
    )
    defaults = SFTRunConfig()
    add = parser.add_argument
    add(
        "--model",
        default=defaults.model,
        help=f"model name, llm:<path>[@<adapter>] (default {DEFAULT_MODEL})",
    )
    add("--data", default=defaults.data, help="directory with train.jsonl [val.jsonl] (default %(default)s)")
    add("--max-steps", type=int, default=defaults.max_steps, help="optimizer steps in total (%(default)s)")
    add("--output-dir", default=defaults.output_dir, help="checkpoints and adapter/ (default %(default)s)")
    add("--profile", default="auto", choices=["auto", *PROFILES], help="hardware profile (default: detect)")
    add("--task", help="train only on examples of this task, e.g. easy (default: every example)")
    add("--resume", action="store_true", help="continue from the newest checkpoint in --output-dir")
    add("--save-steps", type=int, default=defaults.save_steps, help="checkpoint every N steps (%(default)s)")
    add("--eval-examples", type=int, default=defaults.eval_examples, help="val examples for the val loss")
    add(
        "--no-final-eval",
        dest="final_eval",
        action="store_false",
        help="no val loss at the end unless the last step was a --save-steps evaluation",
    )
    add("--logging-steps", type=int, default=defaults.logging_steps, help="log the loss every N steps")
    add(
        "--seed", type=int, default=defaults.seed, help="seed of LoRA init, data order, dropout (%(default)s)"
    )
    group = parser.add_argument_group("overrides of the profile")
    group.add_argument("--lora-r", type=int, help="LoRA rank")
    group.add_argument("--lora-alpha", type=int, help="LoRA alpha (scale = alpha / r)")
    group.add_argument("--learning-rate", type=float, help="peak learning rate")
    group.add_argument("--max-length", type=int, help="longest example in tokens (longer ones are dropped)")
    group.add_argument("--batch-size", type=int, help="sequences per forward pass")
    group.add_argument("--gradient-accumulation-steps", type=int, help="forward passes per optimizer step")
    group.add_argument(
        "--load-in-4bit", action="store_true", default=None, help="QLoRA (CUDA + bitsandbytes)"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = make_parser().parse_args(argv)
    config = SFTRunConfig(**vars(args))
    from llm_agent.models import ModelError

    try:
        result = train(config)
    except (SFTDataError, SFTConfigError, ModelError) as err:
        print(f"train-sft: error: {err}", file=sys.stderr)
        return 2
    print(
        f"trained {result.global_step} steps in {result.seconds:.0f} s; final loss "
        f"{result.losses[-1][1] if result.losses else float('nan'):.4f}; adapter in {result.adapter_dir}"
    )
    estimate = cpu_evaluate_estimate(config.task or "easy", 50, zero_shot=1, adapters=1)
    print(f"compare zero-shot and SFT on val episodes ({estimate}):\n  {result.evaluate_command}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
