"""What watches a GRPO run: collapse warnings, val evaluation and best-checkpoint selection, the reward curve.

- :class:`CollapseMonitor`: TRL logs ``frac_reward_zero_std``, the share of groups whose completions all got
  the same reward. Such a group has zero advantage and teaches nothing; when most groups are like that for
  several steps in a row, the run has collapsed (every answer invalid, or every answer the same HOLD) and
  we warn on the console, in the log and in MLflow.
- :class:`ValSelector`: every ``eval_every`` steps and at the end, the policy being trained plays val-split
  episodes greedily through the evaluation harness; the adapter with the best mean score is saved as
  ``best/`` (the environment score chooses, never the loss).
- :func:`plot_reward_curve`: mean reward per step with its spread, and the val scores with 95% intervals.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from training.grpo.outputs import BEST_DIR, VAL_HISTORY, save_adapter

logger = logging.getLogger(__name__)


def _mlflow_log(metrics: dict[str, float], step: int) -> None:
    import mlflow

    if mlflow.active_run() is not None:
        mlflow.log_metrics(metrics, step=step)


class CollapseMonitor(TrainerCallback):
    """Warn when at least ``share`` of the groups had all-equal rewards for ``patience`` steps in a row."""

    def __init__(self, share: float = 0.5, patience: int = 3) -> None:
        self.share, self.patience = share, patience
        self.streak, self.logged = 0, 0
        self.warnings: list[int] = []  # steps at which a warning was given

    def on_log(self, args: Any, state: Any, control: Any, logs: dict | None = None, **kwargs: Any) -> None:
        logs = logs or {}
        # ours is per group; TRL's is the whole batch's under scale_rewards="batch" (0 if any groups differ)
        frac = logs.get("env/zero_std_groups_share", logs.get("frac_reward_zero_std"))
        if frac is None:
            return
        self.logged += 1
        self.streak = self.streak + 1 if frac >= self.share else 0
        _mlflow_log({"collapse_streak": float(self.streak)}, state.global_step)
        if self.streak == self.patience:
            self._warn(state.global_step, f"for {self.patience} steps in a row (step {state.global_step})")

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        """A run shorter than ``patience`` steps whose every step had no signal is warned about at its end."""
        if not self.warnings and 0 < self.logged == self.streak < self.patience:
            self._warn(state.global_step, f"in every step of this {self.logged}-step run")

    def _warn(self, step: int, when: str) -> None:
        self.warnings.append(step)
        message = (
            f"GRPO groups have collapsed: at least {self.share:.0%} of groups had all-equal rewards "
            f"{when}, so they carry no learning signal. If every completion is invalid, start from an SFT "
            "adapter (--adapter); if every completion is the same, raise --temperature or --num-generations."
        )
        logger.warning(message)
        from rich.console import Console

        Console(stderr=True).print(f"[bold yellow]warning:[/] {message}")


@dataclass
class PolicyAgent:
    """The model being trained as an ``eval.agents`` agent: greedy text actions for a batch of episodes."""

    loaded: Any  # llm_agent.models.LoadedModel whose ``model`` is the policy being trained
    task: str
    think: bool
    max_new_tokens: int
    env_version: str | None = None
    temperature: float | None = None  # None: greedy (evaluation); else sampled, seeded (on-policy states)
    seed: int = 0  # the k-th act() of an episode batch samples with seed + k, so a rollout is reproducible
    name: str = "grpo-policy"
    obs_mode: str = "text"
    transcripts: list[dict[str, Any]] = field(default_factory=list)
    calls: int = 0

    def reset(self, n_envs: int, seed: int) -> None:
        self.transcripts, self.calls = [], 0

    def act(self, observations: list[str], snapshot: Any) -> list[str]:
        from llm_agent.generation import GenerationConfig, generate
        from llm_agent.policy import action_text
        from llm_agent.prompts import build_messages, template_opens_think

        chats = [
            build_messages(o, self.task, think=self.think, env_version=self.env_version) for o in observations
        ]
        sampling = {"do_sample": True, "temperature": self.temperature, "seed": self.seed + self.calls}
        config = GenerationConfig(max_new_tokens=self.max_new_tokens, batch_size=16, show_progress=False,
                                  **(sampling if self.temperature is not None else {}))  # fmt: skip
        self.calls += 1
        # what evaluation hands the env: the answer after </think> (llm_agent.policy.action_text)
        opened = template_opens_think(self.loaded.tokenizer)
        return [action_text(completion.text, opened) for completion in generate(self.loaded, chats, config)]

    def describe(self) -> dict[str, str]:
        return {"model": self.loaded.path, "adapter": "(in training)"}


class ValSelector(TrainerCallback):
    """Evaluate on val episodes every ``eval_every`` steps and at the end; best adapter: ``best/``."""

    def __init__(
        self, loaded: Any, config: Any, sizes: Any, output_dir: Path, params: dict[str, Any]
    ) -> None:
        self.loaded, self.config, self.sizes = loaded, config, sizes
        self.output_dir, self.params = output_dir, params
        self.history: list[dict[str, Any]] = self._load_history()
        usable = [h for h in self.history if not all_invalid(h)]
        self.best: dict[str, Any] | None = max(usable, key=lambda h: h["score"], default=None)

    def _load_history(self) -> list[dict[str, Any]]:
        """On ``--resume`` the scores of earlier evaluations still count for choosing the best."""

        path = self.output_dir / VAL_HISTORY
        return json.loads(path.read_text()) if self.config.resume and path.is_file() else []

    def on_step_end(self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any) -> None:
        every = self.config.eval_every
        if self.enabled and every > 0 and state.global_step % every == 0 and model is not None:
            self.evaluate(model, state.global_step)

    @property
    def enabled(self) -> bool:
        """``--eval-episodes 0`` turns evaluation (and with it ``best/``) off, for quick smoke runs."""
        return self.sizes.eval_episodes > 0

    def final(self, model: Any, step: int) -> None:
        """The end-of-training evaluation (skipped when this step was just evaluated)."""
        if self.enabled and (not self.history or self.history[-1]["step"] != step):
            self.evaluate(model, step)

    def evaluate(self, model: Any, step: int) -> dict[str, Any]:
        from eval.harness import run_evaluation
        from eval.stats import bootstrap_mean

        agent = PolicyAgent(replace(self.loaded, model=model), self.config.task, self.config.think,
                            self.sizes.max_completion_length, self.config.env_version)  # fmt: skip
        episodes = val_episodes(self.config, self.sizes.eval_episodes)
        was_training = model.training
        model.eval()
        try:
            result = run_evaluation(agent, episodes, progress=False)
        finally:
            model.train(was_training)
        score = bootstrap_mean(result.values("score"))
        entry = {"step": step, "score": score.mean, "ci_low": score.low, "ci_high": score.high,
                 "invalid_rate": float(result.values("invalid_rate").mean()),
                 "total_return": float(result.values("total_return").mean()),
                 "episodes": episodes.episodes, "eval_seed": episodes.seed,
                 "seconds": round(result.seconds, 1)}  # fmt: skip
        self.history.append(entry)
        self._record(model, entry)
        return entry

    def _record(self, model: Any, entry: dict[str, Any]) -> None:

        (self.output_dir / VAL_HISTORY).write_text(json.dumps(self.history, indent=2))
        metrics = {
            f"val_{k}": float(entry[k])
            for k in ("score", "ci_low", "ci_high", "invalid_rate", "total_return")
        }
        _mlflow_log(metrics, entry["step"])
        logger.info("val score at step %d: %.4f [%.4f, %.4f]", entry["step"], entry["score"], entry["ci_low"],
                    entry["ci_high"])  # fmt: skip
        if all_invalid(entry):
            logger.warning("step %d not saved as best/: every val answer was invalid", entry["step"])
        elif self.best is None or entry["score"] > self.best["score"]:
            self.best = entry
            save_adapter(model, self.output_dir / BEST_DIR, best=entry, **self.params)
            _mlflow_log({"best_val_score": entry["score"]}, entry["step"])


def val_episodes(config: Any, episodes: int) -> Any:
    """The val episodes that choose ``best/``: on the market the run trains on (``--data``), seeds from
    ``--eval-seed``. Before this took ``config.data``, a ``--data synthetic:edge`` run was selected on real
    NIFTY val episodes, where its synthetic symbols are unknown (docs/grpo.md, design 4)."""
    from data.synthetic import resolve_data
    from eval.harness import EvalConfig

    return EvalConfig(config.task, "val", episodes, config.eval_seed, config.env_version,
                      data=resolve_data(config.data), data_name=config.data or "")  # fmt: skip


def all_invalid(entry: dict[str, Any]) -> bool:
    """A val evaluation in which every answer was invalid: its score is hold's, earned by a policy that
    never wrote an action, so it must not become ``best/``."""
    return entry["invalid_rate"] >= 1.0


def plot_reward_curve(log_history: list[dict], val_history: list[dict], path: Path) -> Path:
    """Mean training reward per step (with +- one std of the completions) and the val scores."""
    import numpy as np

    from eval.plots import plt, save_figure

    rows = [entry for entry in log_history if "reward" in entry]
    steps = np.array([entry["step"] for entry in rows])
    mean = np.array([entry["reward"] for entry in rows])
    std = np.array([entry.get("reward_std", 0.0) for entry in rows])
    figure, axis = plt.subplots(figsize=(7.5, 4.0))
    axis.plot(steps, mean, label="train reward (mean of completions)", linewidth=1.2)
    axis.fill_between(steps, mean - std, mean + std, alpha=0.2, label="+- 1 std")
    if len(mean) >= 5:
        window = max(len(mean) // 10, 3)
        smooth = np.convolve(mean, np.ones(window) / window, mode="valid")
        axis.plot(steps[window - 1 :], smooth, linewidth=2.0, label=f"moving mean ({window} steps)")
    if val_history:
        val_steps = [h["step"] for h in val_history]
        scores = np.array([h["score"] for h in val_history])
        errors = [scores - [h["ci_low"] for h in val_history], [h["ci_high"] for h in val_history] - scores]
        axis.errorbar(val_steps, scores, yerr=errors, fmt="o-", color="black", capsize=3,
                      label="val score, 95% CI")  # fmt: skip
    axis.set_xlabel("optimizer step")
    axis.set_ylabel("env score (invalid: reward floor)")
    axis.set_title("GRPO: reward per step and val score", fontsize=10)
    axis.legend(fontsize=8)
    return save_figure(figure, path)
