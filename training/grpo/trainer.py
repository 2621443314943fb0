"""``train-grpo``: GRPO on the environment's score, with TRL's GRPOTrainer and a LoRA adapter.

train-grpo --adapter runs/sft-easy/adapter --task easy --max-steps 120 --output-dir runs/grpo-easy
train-grpo ... --resume                              # continue a stopped run (the step count continues)
train-grpo --model deepseek-7b --profile t4 --load-in-4bit --max-steps 300 --output-dir runs/grpo-7b

Prompts: states of train-split episodes (``training.grpo.prompts``). Reward: the completion's action
applied at its state, the episode finished by a fixed continuation, scored by the env's grader
(``training.grpo.rewards``). The policy is a LoRA adapter: a new one on the base model, or the SFT adapter
given by ``--adapter``, trained further (with ``--beta`` > 0 TRL keeps a frozen copy of it as the KL
reference; the default, 0, needs none).

Output directory: ``checkpoint-N`` every ``--save-steps`` (adapter, optimizer, scheduler, RNG: what
``--resume`` needs); ``best/``: the adapter with the best mean score on val episodes (evaluated every
``--eval-every`` steps and at the end; chosen by the environment score, never by loss) with ``meta.json``;
``final/``: the last adapter; ``reward_curve.png``, ``val_history.json``, ``meta.json``. Evaluate an adapter
with ``evaluate --agent llm:<base>@<output-dir>/best --task easy --split val --think``. Metrics go to MLflow,
experiment ``nifty-rl-grpo``. Design and trade-offs: ``docs/grpo.md``.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any

from market_env.tasks import TASK_NAMES
from market_env.versions import ENV_VERSION, ENV_VERSIONS
from training.distributed import VLLM_MODES, vllm_config_kwargs, world_size

# where a run's adapters and val history go: one module the trainer and its monitor both import
from training.grpo.outputs import BEST_DIR, FINAL_DIR, save_adapter
from training.grpo.outputs import VAL_HISTORY as VAL_HISTORY  # re-exported for callers of this module
from training.grpo.rewards import BASELINES, CONTINUATIONS, SCALE_REWARDS
from training.profiles import (
    PROFILES,
    TrainingProfile,
    cpu_evaluate_estimate,
    get_profile,
    quiet_checkpointing_alias,
    set_lm_head_tiles,
)

GRPO_EXPERIMENT = "nifty-rl-grpo"

logger = logging.getLogger(__name__)


VLLM_4BIT_REFUSAL = (
    "--use-vllm with --load-in-4bit is refused: TRL cannot sync the weights of a 4-bit PEFT model into vLLM "
    "(huggingface/trl#4973, open), so generation would use stale weights. Drop --use-vllm (generation with "
    "transformers) or drop --load-in-4bit (a model that fits in 16-bit)."
)


class GRPOConfigError(ValueError):
    """A run that cannot start as asked (GPU option without a GPU, output dir in the way, ...)."""


@dataclass(frozen=True)
class GRPOSizes:
    """GRPO-specific sizes per hardware profile (batch, LoRA and precision come from ``training.profiles``).

    Attributes:
        num_generations: completions per prompt (the group); more gives a better baseline, costs linearly.
        prompts_per_step: prompts (groups) per optimizer step.
        max_completion_length: generation budget per completion (a ``<think>`` line plus the actions).
        learning_rate: of the LoRA weights (constant after a short warm-up).
        eval_episodes: val episodes per evaluation (0: no evaluation and no ``best/``, for smoke runs).
    """

    num_generations: int
    prompts_per_step: int
    max_completion_length: int
    learning_rate: float
    eval_episodes: int


GRPO_SIZES = {
    "cpu": GRPOSizes(num_generations=4, prompts_per_step=2, max_completion_length=128, learning_rate=5e-5,
                     eval_episodes=16),
    "t4": GRPOSizes(num_generations=8, prompts_per_step=2, max_completion_length=384, learning_rate=1e-5,
                    eval_episodes=50),
    "a100": GRPOSizes(num_generations=8, prompts_per_step=8, max_completion_length=512, learning_rate=1e-5,
                      eval_episodes=50),
}  # fmt: skip


@dataclass(frozen=True)
class GRPORunConfig:
    """One ``train-grpo`` run (the CLI flags; ``None`` means: the profile's value). See ``make_parser``."""

    model: str = "smollm2-135m"
    adapter: str | None = None
    task: str = "easy"
    max_steps: int = 100
    output_dir: str = "runs/grpo"
    num_generations: int | None = None
    profile: str = "auto"
    env_version: str | None = None
    resume: bool = False
    save_steps: int = 25
    eval_every: int = 25
    eval_episodes: int | None = None
    eval_seed: int = 1000
    seed: int = 0
    use_vllm: bool = False
    vllm_gpu_memory_utilization: float = 0.35
    vllm_mode: str = "colocate"  # or "server": a separate `trl vllm-serve` (docs/scaling.md)
    vllm_server_host: str = "127.0.0.1"
    vllm_server_port: int = 8000
    load_in_4bit: bool = False
    prompt_episodes: int = 64
    prompt_stride: int = 1
    experts: tuple[str, ...] = ("rsi", "random")
    continuation: str = "hold"
    exit_days: int = 5
    center_actions: bool = False
    project_levels: bool = False
    reward_imitate: str = ""
    baseline: str = "none"
    policy_every: int = 0
    policy_episodes: int = 8
    data: str | None = None
    think: bool = True
    beta: float = 0.0
    scale_rewards: str = "batch"
    epsilon_high: float | None = None
    loss_type: str = "dapo"
    temperature: float = 1.0
    learning_rate: float | None = None
    max_completion_length: int | None = None
    prompts_per_step: int | None = None
    invalid_reward: float = -0.1
    flat_groups: str = "drop"
    share_prompts: bool | None = None  # None: on for the cpu profile (see shares_prompts)

    def shares_prompts(self, profile: TrainingProfile) -> bool:
        """Whether the training pass computes each prompt once (``training.grpo.shared_prompt``): by
        default on the CPU, where that pass is most of a step; GPU profiles keep TRL's tiled fused head
        (it never materialises the completions' logits) unless asked; never with gradient checkpointing,
        which fills no cache, nor under DDP (``accelerate launch``: the wrapped model would run two forward
        passes for one backward)."""
        wanted = profile.name == "cpu" if self.share_prompts is None else self.share_prompts
        return wanted and not profile.gradient_checkpointing and world_size() == 1

    def sizes(self, profile: TrainingProfile) -> GRPOSizes:
        base = GRPO_SIZES[profile.name]
        overrides = {
            "num_generations": self.num_generations,
            "prompts_per_step": self.prompts_per_step,
            "max_completion_length": self.max_completion_length,
            "learning_rate": self.learning_rate,
            "eval_episodes": self.eval_episodes,
        }
        return replace(base, **{k: v for k, v in overrides.items() if v is not None})


# ----------------------------------------------------------------------------------------------------- model
def load_policy(config: GRPORunConfig, profile: TrainingProfile) -> tuple[Any, Any, Any]:
    """(loaded model, trainable model, peft_config for the trainer): the SFT adapter or a new LoRA."""
    from llm_agent.models import detect_hardware, load_model, parse_model_spec
    from training.sft.trainer import trainable_model

    if config.use_vllm and profile.load_in_4bit:  # refused on any machine, before anything is loaded
        raise GRPOConfigError(VLLM_4BIT_REFUSAL)
    if config.use_vllm:  # the missing package first: on a GPU machine it is what is left to fix
        _require_vllm(config.vllm_mode)
    on_gpu = detect_hardware().device == "cuda"
    if not on_gpu and (profile.dtype != "float32" or config.use_vllm):
        raise GRPOConfigError(
            f"profile {profile.name!r}{' with --use-vllm' if config.use_vllm else ''} needs a CUDA GPU and "
            "none is visible; use --profile cpu (or auto) without --use-vllm"
        )
    spec = parse_model_spec(config.model)
    if config.adapter:
        spec = replace(spec, adapter_path=config.adapter)
    loaded = load_model(spec, for_training=True, load_in_4bit=profile.load_in_4bit, dtype=profile.dtype)
    model, peft_config = trainable_model(loaded, profile, config.seed)
    return loaded, model, peft_config


def share_prompt_prefix(model: Any) -> None:
    """Route TRL's ``model.generate`` through ``llm_agent.generation.generate_sharing_prefix``: TRL generates
    from one left-padded batch that repeats every prompt once per completion, and all of them start with the
    system turn and table header; that prefix is then computed once per step instead of once per row."""
    from llm_agent.generation import generate_sharing_prefix

    if not isinstance(model.generate, partial):  # once per model, whatever the rounds
        model.generate = partial(generate_sharing_prefix, model, generate=model.generate)


FLAT_GROUPS = ("drop", "keep")


def drop_flat_groups(output: dict[str, Any], group_size: int, gather: Any = None) -> float:
    """Leave the groups whose rewards were all equal out of the loss (DAPO's dynamic sampling, filter half).

    ``output`` is what TRL's ``_generate_and_score_completions`` returns for this process: rows in groups
    of ``group_size`` consecutive completions of one prompt. A flat group's completions share one advantage
    (equal rewards minus their own mean: 0, up to float rounding), so with ``beta=0`` they carry no gradient;
    but a token-normalised loss (``dapo``, ``bnpo``, ``cispo``) still counts their tokens, so the more groups
    go flat the smaller every step gets. Their completion masks are zeroed, their advantages set to exactly 0
    and ``num_items_in_batch`` (``gather``: the accelerator's, across processes) recounted from what is left,
    so a step's size follows the groups that carry a signal. Refilling flat groups with new prompts (the
    other half of dynamic sampling) is not done: the step trains on fewer groups instead. With ``beta`` > 0
    a flat group's KL term leaves with it, as in DAPO, which drops such groups whole. Returns the dropped
    share.
    """
    import torch

    advantages, mask = output["advantages"], output["completion_mask"]
    if advantages.numel() % group_size:
        raise ValueError(f"{advantages.numel()} completions do not split into groups of {group_size}")
    groups = advantages.view(-1, group_size)
    flat = (groups == groups[:, :1]).all(dim=1).repeat_interleave(group_size)
    output["advantages"] = torch.where(flat, torch.zeros_like(advantages), advantages)
    output["completion_mask"] = mask * (~flat).unsqueeze(1).to(mask.dtype)
    loss_mask = output["completion_mask"] * output.get("tool_mask", 1)
    count = loss_mask.sum()
    output["num_items_in_batch"] = gather(count).sum() if gather is not None else count
    return float(flat.float().mean())


def trainer_class(flat_groups: str, share_prompts: bool = False, project_levels: bool = False) -> type:
    """TRL's ``GRPOTrainer``, or a subclass: with ``drop``, applying ``drop_flat_groups`` to every batch;
    with ``share_prompts``, scoring the completions with each prompt computed once; with
    ``project_levels``, each update projected off the actions' level directions
    (``training.grpo.level_projection``)."""
    from trl import GRPOTrainer

    if flat_groups not in FLAT_GROUPS:
        raise GRPOConfigError(f"unknown flat_groups {flat_groups!r}; expected one of {FLAT_GROUPS}")
    trainer: type = GRPOTrainer
    if flat_groups == "drop":

        class FlatGroupsDroppedGRPOTrainer(trainer):  # type: ignore[valid-type,misc]
            def _generate_and_score_completions(self, inputs: Any) -> dict[str, Any]:
                output = super()._generate_and_score_completions(inputs)
                share = drop_flat_groups(output, self.num_generations, self.accelerator.gather)
                self._metrics["train" if self.model.training else "eval"]["flat_rows_dropped"].append(share)
                return output

        trainer = FlatGroupsDroppedGRPOTrainer
    if share_prompts:

        class SharedPromptGRPOTrainer(trainer):  # type: ignore[valid-type,misc]
            def _get_per_token_logps_and_entropies(  # TRL's signature; images and MoE go to TRL's forward
                self, model, input_ids, attention_mask, logits_to_keep, batch_size=None,
                compute_entropy=False, compute_aux_loss=False, **extras,
            ):  # fmt: skip
                from training.grpo.shared_prompt import shared_prompt_logps

                if not compute_aux_loss and all(value is None for value in extras.values()):
                    with self.accelerator.autocast():
                        scored = shared_prompt_logps(model, input_ids, attention_mask, logits_to_keep,
                                                     self.temperature, compute_entropy)  # fmt: skip
                    if scored is not None:
                        return (*scored, None)
                return super()._get_per_token_logps_and_entropies(
                    model, input_ids, attention_mask, logits_to_keep, batch_size, compute_entropy,
                    compute_aux_loss, **extras,
                )  # fmt: skip

        trainer = SharedPromptGRPOTrainer
    if project_levels:

        class LevelProjectedGRPOTrainer(trainer):  # type: ignore[valid-type,misc]
            def create_optimizer(self, *args: Any, **kwargs: Any) -> Any:
                from training.grpo.level_projection import UpdateProjector, first_word_token_ids

                optimizer = super().create_optimizer(*args, **kwargs)
                self.level_word_ids = first_word_token_ids(self.processing_class)
                trainable = [p for p in self.model.parameters() if p.requires_grad]
                metrics = self._metrics["train"]  # TRL clears it at every log: look the list up each time
                self.level_projector = UpdateProjector(
                    trainable, lambda share: metrics["level_share_removed"].append(share)
                )
                self.level_projector.attach(optimizer)
                return optimizer

            def compute_loss(self, model: Any, inputs: Any, *args: Any, **kwargs: Any) -> Any:
                from training.grpo.level_projection import level_directions

                if model.training:  # the directions of the states this micro-batch trains on
                    self.level_projector.add_directions(level_directions(
                        model, inputs["prompt_ids"], inputs["prompt_mask"], self.level_word_ids))  # fmt: skip
                return super().compute_loss(model, inputs, *args, **kwargs)

        trainer = LevelProjectedGRPOTrainer
    return trainer


def _require_vllm(mode: str) -> None:
    from llm_agent.models import MissingDependencyError
    from training.distributed import missing_vllm_message

    if message := missing_vllm_message(mode):
        raise MissingDependencyError(message)


def batch_layout(sizes: GRPOSizes, share_prompts: bool) -> dict[str, int]:
    """TRL's micro-batch and accumulation for one optimizer step of ``prompts_per_step`` groups.

    TRL's own forward: one group per forward/backward pass, the groups of a step accumulated, the same
    optimizer step as one big batch in the memory of one group (a T4 cannot fit 2 x 8 sequences of a 7B
    model at once). Each prompt computed once: the whole step in one pass, since TRL shuffles a step's rows
    before splitting it into passes and a pass of 8 rows from 8 groups would share almost nothing (the
    same gradient either way: the token-normalised loss divides by the step's count).
    """
    rows = sizes.num_generations * sizes.prompts_per_step
    if share_prompts:
        return {"per_device_train_batch_size": rows, "gradient_accumulation_steps": 1}
    return {"per_device_train_batch_size": sizes.num_generations,
            "gradient_accumulation_steps": sizes.prompts_per_step}  # fmt: skip


def grpo_config(config: GRPORunConfig, profile: TrainingProfile, sizes: GRPOSizes, on_gpu: bool) -> Any:
    """TRL's GRPOConfig: one group per prompt, logging every step, checkpoints for ``--resume``."""
    from trl import GRPOConfig

    return GRPOConfig(
        output_dir=config.output_dir,
        max_steps=config.max_steps,
        seed=config.seed,
        data_seed=config.seed,
        **batch_layout(sizes, config.shares_prompts(profile)),
        num_generations=sizes.num_generations,
        max_completion_length=sizes.max_completion_length,
        temperature=config.temperature,
        learning_rate=sizes.learning_rate,
        lr_scheduler_type="constant_with_warmup",
        warmup_steps=min(5, max(config.max_steps // 20, 0)),
        beta=config.beta,  # 0: no frozen reference model, no reference forward pass (18% of a CPU step)
        # keep the reward's magnitude: the group std would leave only the sign of BUY - HOLD (docs/grpo.md)
        scale_rewards=config.scale_rewards,
        loss_type=config.loss_type,
        **({"epsilon_high": config.epsilon_high} if config.epsilon_high is not None else {}),  # clip-higher
        bf16=profile.bf16_autocast(on_gpu),
        use_cpu=not on_gpu,  # transformers accepts bf16 without a GPU only when told it runs on the CPU
        fp16=profile.dtype == "float16",  # T4: no bf16
        # the old name: the Kaggle stack's transformers<=5.17 has no `activation_checkpointing` (sft.trainer)
        gradient_checkpointing=profile.gradient_checkpointing,  # TRL would default it on, also on CPU
        gradient_checkpointing_kwargs={"use_reentrant": False},
        **vllm_config_kwargs(
            config.use_vllm,
            config.vllm_mode,
            config.vllm_server_host,
            config.vllm_server_port,
            config.vllm_gpu_memory_utilization,
            profile.max_length + sizes.max_completion_length,
        ),
        logging_steps=1,
        save_strategy="steps",
        save_steps=config.save_steps,
        save_total_limit=2,
        report_to=["mlflow"],
        run_name=Path(config.output_dir).name,
        dataloader_pin_memory=on_gpu,
    )


def resume_checkpoint(output_dir: Path, resume: bool) -> str | None:
    """The newest complete checkpoint for ``--resume``; a fresh run refuses to overwrite one."""
    from training.sft.trainer import find_resume_checkpoint

    return find_resume_checkpoint(output_dir, resume, GRPOConfigError)


# ------------------------------------------------------------------------------------------------------ run
@dataclass(frozen=True)
class GRPOResult:
    """What a finished run produced."""

    output_dir: Path
    base_path: str
    global_step: int
    best: dict[str, Any] | None
    val_history: list[dict[str, Any]]
    reward_curve: Path
    seconds: float


def train(config: GRPORunConfig, callbacks: Sequence[Any] = ()) -> GRPOResult:
    """Run GRPO as ``config`` says; ``callbacks`` are extra ``transformers.TrainerCallback`` objects."""
    from llm_agent.models import import_unsloth_first

    import_unsloth_first()  # before TRL and transformers, so that its patches apply
    quiet_checkpointing_alias()
    from transformers import set_seed

    from llm_agent.prompts import fit_prompts
    from training.distributed import main_process_mlflow as mlflow  # accelerate: log from rank 0 only
    from training.distributed import main_process_run, write_meta
    from training.grpo.monitor import CollapseMonitor, ValSelector, plot_reward_curve
    from training.grpo.prompts import PromptSetConfig, build_prompt_dataset
    from training.grpo.rewards import EnvScoreReward, RewardConfig
    from training.sft.trainer import fp32_trainable_parameters, needs_fp32_adapter

    if config.policy_every > 0:  # every round ends on a checkpoint, which the next round resumes from
        config = replace(config, save_steps=math.gcd(config.save_steps, config.policy_every))
    profile = get_profile(config.profile).with_overrides(load_in_4bit=config.load_in_4bit or None)
    set_lm_head_tiles(profile)  # TRL's fused LM head in small tiles on the CPU: the same loss, less memory
    sizes, output_dir = config.sizes(profile), Path(config.output_dir)
    checkpoint = resume_checkpoint(output_dir, config.resume)
    prompts = PromptSetConfig(config.task, config.prompt_episodes, config.seed, config.experts,
                              config.prompt_stride, config.think, config.env_version,
                              data=config.data)  # fmt: skip
    dataset = build_prompt_dataset(prompts)
    reward = EnvScoreReward(RewardConfig(config.task, config.env_version, config.continuation,
                                         config.invalid_reward, sizes.num_generations, config.baseline,
                                         config.data, config.exit_days,
                                         config.center_actions, config.reward_imitate))  # fmt: skip
    set_seed(config.seed)  # before a new LoRA's weights are drawn
    loaded, model, peft_config = load_policy(config, profile)
    params = {
        "model": config.model, "adapter": config.adapter or "", "base_path": loaded.path, "task": config.task,
        "env_version": reward.version, "prompt_rows": len(dataset), "continuation": config.continuation,
        "exit_days": config.exit_days, "center_actions": config.center_actions,
        "project_levels": config.project_levels, "reward_imitate": config.reward_imitate,
        "baseline": config.baseline, "beta": config.beta, "scale_rewards": config.scale_rewards,
        "epsilon_high": config.epsilon_high, "loss_type": config.loss_type, "flat_groups": config.flat_groups,
        "share_prompts": config.shares_prompts(profile), "data": config.data or "nifty",
        "policy_every": config.policy_every, "policy_episodes": config.policy_episodes,
        "trl_version": _trl_version(),
        "resumed_from": checkpoint or "", **{f"grpo_{k}": v for k, v in asdict(sizes).items()},
        **profile.as_params(),
    }  # fmt: skip
    write_meta(output_dir, run_config=asdict(config), **params)
    selector = ValSelector(loaded, config, sizes, output_dir, params)
    started = time.perf_counter()
    with main_process_run(GRPO_EXPERIMENT, f"grpo {config.model} {output_dir.name}"):
        mlflow.log_params({k: str(v)[:500] for k, v in params.items()})
        monitors = [CollapseMonitor(), selector, *callbacks]
        on_gpu, start = loaded.device.startswith("cuda"), checkpoint_step(checkpoint)
        for end in round_ends(start, config.max_steps, config.policy_every):
            if config.policy_every > 0:  # states the policy being trained reaches now (seeded by the step)
                dataset = policy_dataset(config, sizes, replace(loaded, model=model), start)
                mlflow.log_metric("policy_prompt_rows", len(dataset), step=start)
            trainer = trainer_class(
                config.flat_groups, config.shares_prompts(profile), config.project_levels
            )(
                model=model,
                reward_funcs=[reward],
                args=grpo_config(replace(config, max_steps=end), profile, sizes, on_gpu),
                train_dataset=fit_prompts(dataset, loaded.tokenizer),  # the model family's format
                processing_class=loaded.tokenizer,
                peft_config=peft_config,
                callbacks=monitors,
            )
            if needs_fp32_adapter(profile):  # fp16 GradScaler: TRL cast the LoRA of a 4-bit base to bf16
                fp32_trainable_parameters(trainer.model)
            if loaded.backend == "transformers" and not config.use_vllm:
                share_prompt_prefix(trainer.model)
            trainer.train(resume_from_checkpoint=checkpoint)
            # the next round goes on from this one: same LoRA, optimizer and step count
            model, peft_config, start = trainer.model, None, end
            checkpoint = resume_checkpoint(output_dir, True) if end < config.max_steps else None
        selector.final(trainer.model, trainer.state.global_step)
        save_adapter(trainer.model, output_dir / FINAL_DIR, step=trainer.state.global_step, **params)
        curve = plot_reward_curve(
            trainer.state.log_history, selector.history, output_dir / "reward_curve.png"
        )
        mlflow.log_artifact(str(curve))
        seconds = time.perf_counter() - started
        mlflow.log_metric("train_seconds", round(seconds, 1))
    return GRPOResult(output_dir, loaded.path, trainer.state.global_step, selector.best, selector.history,
                      curve, seconds)  # fmt: skip


def _trl_version() -> str:
    import trl

    return trl.__version__


def checkpoint_step(checkpoint: str | None) -> int:
    """The global step a ``checkpoint-N`` directory was saved at (0 without one)."""
    return int(Path(checkpoint).name.rsplit("-", 1)[1]) if checkpoint else 0


def round_ends(start: int, max_steps: int, every: int) -> list[int]:
    """The steps at which training rounds end: one round without on-policy states, else every ``every``."""
    if every <= 0:
        return [max_steps]
    return [*range((start // every + 1) * every, max_steps, every), max_steps]


def policy_episode_seed(config: GRPORunConfig, step: int) -> int:
    """Seed of the first episode the policy plays at the refresh before ``step``; the refresh plays
    ``policy_episodes`` seeds from there, so refreshes never replay an episode (offset away from the prompt
    set's own seeds)."""
    return config.seed + 1_000_003 + step * config.policy_episodes


def policy_dataset(config: GRPORunConfig, sizes: GRPOSizes, loaded: Any, step: int) -> Any:
    """Prompt states reached by the policy being trained, sampling as GRPO does, seeded by ``step``.

    The episodes are new at every refresh (seeds from :func:`policy_episode_seed` onwards),
    and the same weights, seed and step give the same rows: generation is seeded per decision day.
    """
    from training.grpo.monitor import PolicyAgent
    from training.grpo.prompts import POLICY, PromptSetConfig, build_prompt_dataset

    first = policy_episode_seed(config, step)
    prompts = PromptSetConfig(config.task, config.policy_episodes, first, (POLICY,), config.prompt_stride,
                              config.think, config.env_version, data=config.data)  # fmt: skip
    agent = PolicyAgent(loaded, config.task, config.think, sizes.max_completion_length, config.env_version,
                        temperature=config.temperature, seed=first)  # fmt: skip
    was_training = loaded.model.training
    loaded.model.eval()
    try:
        return build_prompt_dataset(prompts, policy=agent)
    finally:
        loaded.model.train(was_training)


# ------------------------------------------------------------------------------------------------------ CLI
def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="train-grpo",
        description=__doc__.splitlines()[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Profiles: " + ", ".join(f"{name} {asdict(sizes)}" for name, sizes in GRPO_SIZES.items()),
    )
    add = parser.add_argument
    add("--model", default="smollm2-135m", help="base model name (alias or llm:<hf-id-or-path>)")
    add("--adapter", help="LoRA adapter to continue training (e.g. the SFT adapter); default: a new LoRA")
    add("--task", default="easy", choices=TASK_NAMES)
    add(
        "--max-steps",
        type=int,
        default=100,
        help="optimizer steps in total, those before a --resume included",
    )
    add("--output-dir", default="runs/grpo", help="checkpoints, best/, final/, reward curve, meta.json")
    add("--num-generations", type=int, help="completions per prompt (profile default: cpu 4, GPU 8)")
    add("--profile", default="auto", choices=["auto", *PROFILES], help="hardware profile (training.profiles)")
    add(
        "--env-version",
        choices=sorted(ENV_VERSIONS),
        help=f"env version of states and reward (default: {ENV_VERSION})",
    )
    add("--resume", action="store_true", help="continue from the newest checkpoint-* in --output-dir")
    add("--save-steps", type=int, default=25, help="checkpoint every N steps")
    add(
        "--eval-every",
        type=int,
        default=25,
        help="evaluate on val episodes every N steps (0: only at the end)",
    )
    add(
        "--eval-episodes",
        type=int,
        help="val episodes per evaluation (profile default: cpu 16, GPU 50; 0: none, no best/)",
    )
    add("--eval-seed", type=int, default=1000, help="val episode i is the one seeded eval-seed + i")
    add("--seed", type=int, default=0, help="seeds the prompt set, LoRA init, data order and sampling")
    add("--use-vllm", action="store_true", help="generate with vLLM (CUDA; off by default, also on T4)")
    add(
        "--vllm-gpu-memory-utilization",
        type=float,
        default=0.35,
        help="GPU memory share of vLLM beside the trainer in colocate mode (default %(default)s)",
    )
    add("--vllm-mode", default="colocate", choices=VLLM_MODES,
        help="colocate: vLLM inside the trainer (one GPU); server: a separate `trl vllm-serve` process "
        "(implies --use-vllm; docs/scaling.md)")  # fmt: skip
    add("--vllm-server-host", default="127.0.0.1", help="host of `trl vllm-serve` (default %(default)s)")
    add("--vllm-server-port", type=int, default=8000, help="port of `trl vllm-serve` (default %(default)s)")
    add("--load-in-4bit", action="store_true", help="QLoRA: 4-bit base weights (CUDA + bitsandbytes)")
    more = parser.add_argument_group("prompts and reward")
    more.add_argument(
        "--prompt-episodes", type=int, default=64, help="train episodes the prompt states come from"
    )
    more.add_argument("--prompt-stride", type=int, default=1, help="keep every N-th decision of an episode")
    more.add_argument(
        "--experts", nargs="+", default=["rsi", "random"], help="policies that reach the states"
    )
    more.add_argument(
        "--continuation",
        default="hold",
        choices=CONTINUATIONS,
        help="plays out the episode after the decision (exit: keep what it left --exit-days days, then sell "
        "all; recorded: the reaching policy's own actions)",
    )
    more.add_argument(
        "--exit-days", type=int, default=5, help="with --continuation exit: days before everything is sold"
    )
    more.add_argument(
        "--baseline",
        default="none",
        choices=BASELINES,
        help="hold: reward minus the same episode with the decision replaced by HOLD (with --continuation "
        "recorded: the counterfactual credit of the decision)",
    )
    more.add_argument(
        "--center-actions",
        action="store_true",
        help="subtract from each answer's reward the batch's mean reward of answers of its kind (HOLD, BUY, "
        "SELL): pay what an answer earned on its state beyond the step's other states (docs/grpo.md)",
    )
    more.add_argument(
        "--project-levels",
        action="store_true",
        help="project each update off the gradients of the mean log P(BUY / SELL / HOLD) over the step's "
        "states, so it moves how the actions differ between states and not their level (docs/grpo.md)",
    )
    more.add_argument(
        "--reward-imitate",
        default="",
        metavar="EXPERT",
        help="control, not a trading reward: 1 where an answer's orders are this rule expert's at the "
        "state (e.g. momentum), else 0; asks whether GRPO can teach the model a rule at all (docs/grpo.md)",
    )
    more.add_argument(
        "--policy-every",
        type=int,
        default=0,
        help="every N steps, replace the prompt states by states the policy being trained reaches (0: off)",
    )
    more.add_argument(
        "--policy-episodes", type=int, default=8, help="train episodes the policy plays at each refresh"
    )
    more.add_argument("--data", help="market data: NIFTY (default), synthetic:edge, ...")
    more.add_argument("--no-think", dest="think", action="store_false", help="prompts ask for actions only")
    more.add_argument(
        "--invalid-reward", type=float, default=-0.1, help="reward of an invalid completion (< 0)"
    )
    opt = parser.add_argument_group("optimisation")
    opt.add_argument(
        "--beta", type=float, default=0.0, help="KL coefficient towards the starting policy (0: no ref model)"
    )
    opt.add_argument(
        "--scale-rewards",
        default="batch",
        choices=SCALE_REWARDS,
        help="advantage = (reward - group mean) / std of: the batch, nothing, or the group (TRL default)",
    )
    opt.add_argument(
        "--epsilon-high", type=float, help="upper ratio clip (clip-higher; DAPO 0.28); default: epsilon"
    )
    opt.add_argument(
        "--flat-groups",
        default="drop",
        choices=FLAT_GROUPS,
        help="drop: groups whose rewards are all equal leave the loss and its token count (dynamic sampling "
        "without refill; token-normalised losses); keep: TRL's behaviour",
    )
    parser.add_argument(
        "--share-prompts",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="score a step's completions with each prompt computed once (the same gradient; default: on "
        "for --profile cpu, where it is most of a step's time; the completions' logits are materialised)",
    )
    opt.add_argument("--loss-type", default="dapo", help="TRL loss aggregation (dapo, grpo, dr_grpo, bnpo)")
    opt.add_argument("--temperature", type=float, default=1.0, help="sampling temperature of the completions")
    opt.add_argument("--learning-rate", type=float, help="profile default: cpu 5e-5, GPU 1e-5")
    opt.add_argument("--max-completion-length", type=int, help="profile default: cpu 128, t4 384, a100 512")
    opt.add_argument("--prompts-per-step", type=int, help="groups per optimizer step (profile default)")
    return parser


def config_from_args(args: argparse.Namespace) -> GRPORunConfig:
    fields = {k: v for k, v in vars(args).items() if k in GRPORunConfig.__dataclass_fields__}
    use_vllm = args.use_vllm or args.vllm_mode == "server"  # server mode is vLLM generation
    return GRPORunConfig(**fields | {"experts": tuple(args.experts), "use_vllm": use_vllm})


def main(argv: Sequence[str] | None = None) -> int:
    from llm_agent.models import ModelError

    args = make_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        result = train(config_from_args(args))
    except (GRPOConfigError, ModelError, ValueError, OSError) as err:
        print(f"train-grpo: error: {err}", file=sys.stderr)
        return 2
    best = result.best or {}
    summary = {"global_step": result.global_step, "best": best, "reward_curve": str(result.reward_curve),
               "seconds": round(result.seconds, 1)}  # fmt: skip
    print(json.dumps(summary, indent=2, default=str))
    print(next_command(config_from_args(args), result))
    return 0


def next_command(config: GRPORunConfig, result: GRPOResult) -> str:
    """The ``evaluate`` line for the trained adapter (``best/``, else ``final/``) and how long it takes."""
    adapter = result.output_dir / (BEST_DIR if result.best else FINAL_DIR)
    tokens = config.max_completion_length or GRPO_SIZES["cpu"].max_completion_length
    market = f"--data {config.data} " if config.data else ""  # the market it was trained on, not NIFTY's
    command = (
        f"evaluate --agent llm:{config.model}@{adapter} hold rsi {market}--task {config.task} --split val "
        f"--episodes 50 {'--think ' if config.think else ''}--max-new-tokens {tokens}"
    )
    estimate = cpu_evaluate_estimate(config.task, 50, zero_shot=0, adapters=1)
    return f"evaluate the trained policy on val episodes ({estimate}):\n  {command}"


if __name__ == "__main__":
    sys.exit(main())
