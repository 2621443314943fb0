"""``train-ppo`` and the ``ppo:<path>`` agent: the classic-RL baseline on numeric observations.

Stable-Baselines3 PPO on the train split, many episodes stepping together in one ``BatchMarketEnv``, with the
permutation-equivariant per-stock policy of ``training.ppo_policy`` (one model serves any number of stocks).
Observations are normalised with per-feature statistics shared across stocks; rewards (the step change in
the episode's score-to-date, so undiscounted they add up to the final score) are scaled by SB3's
``VecNormalize``. Every ``eval_every`` steps the policy plays ``eval_episodes`` val-split episodes through
``eval.harness``; the best val score is kept in ``best/``.

Output directory::

    best/  last/          checkpoints: model.zip (SB3), normalization.json, config.json, meta.json
    learning_curve.png    val score (95% CI) vs timesteps, with hold / buy-and-hold / rsi on the same episodes
    learning_curve.csv    the same numbers; meta.json: the run record, task, env version, data sha256

``ppo:<dir>`` loads ``<dir>`` when it is a checkpoint, else ``<dir>/best``, and acts deterministically (the
Gaussian's mean, clipped to [-1, 1]).

    train-ppo --task hard --output-dir runs/ppo-hard
    evaluate --agent ppo:runs/ppo-hard hold rsi buy-and-hold --task hard --split val
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
import zipfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from eval.agents import register_prefix
from market_env.tasks import TASK_NAMES
from market_env.versions import ENV_VERSION, ENV_VERSIONS

EXPERIMENT = "nifty-rl-ppo"
MODEL_FILE, NORMALIZER_FILE, CONFIG_FILE = "model.zip", "normalization.json", "config.json"
BASELINES = ("hold", "buy-and-hold", "rsi")
DEFAULT_TIMESTEPS = 600_000  # about 10 minutes on 2 CPU cores (docs/results.md, "PPO baseline")


@dataclass
class PPOConfig:
    """Everything a PPO run depends on; written to ``config.json`` beside every checkpoint."""

    task: str = "hard"
    env_version: str = ENV_VERSION
    timesteps: int = DEFAULT_TIMESTEPS  # env steps summed over the parallel episodes
    n_envs: int = 32  # episodes stepping together (the batch env's slots)
    seed: int = 0  # slot i of the train batch plays the episode seeded seed + i; also torch's seed
    n_steps: int = 120  # steps per slot per rollout: whole episodes of every task (20, 30, 40 days)
    batch_size: int = 480
    n_epochs: int = 10
    learning_rate: float = 3e-4
    gamma: float = 1.0  # rewards are score increments: undiscounted they telescope to the final score
    gae_lambda: float = 0.95
    clip_range: float = 0.2
    ent_coef: float = 0.0
    vf_coef: float = 0.5
    max_grad_norm: float = 0.5
    hidden: int = 64  # width of the per-stock encoder and heads
    log_std_init: float = -1.0  # exploration std 0.37 at the start, on actions in [-1, 1]
    normalize_reward: bool = True
    eval_every: int = 25_000  # timesteps between val evaluations (checkpoint selection)
    eval_episodes: int = 50
    eval_seed: int = 1000  # val episodes seeded eval_seed + i: not the seed-0 episodes `evaluate` reports
    torch_threads: int = 1  # a 25-stock batch is too small for a second thread to pay off
    device: str = "cpu"

    def __post_init__(self) -> None:
        for name in (
            "timesteps",
            "n_envs",
            "n_steps",
            "batch_size",
            "n_epochs",
            "eval_every",
            "eval_episodes",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")


# ------------------------------------------------------------------------------------------- the agent
@dataclass
class PPOAgent:
    """The eval Agent protocol over a ``StockPolicy``: deterministic actions for any number of stocks."""

    name: str
    policy: Any  # training.ppo_policy.StockPolicy
    normalizer: Any  # training.ppo_policy.SharedNormalizer, frozen
    path: str = ""
    obs_mode: str = "numeric"
    meta: dict = field(default_factory=dict, repr=False)

    def reset(self, n_envs: int, seed: int) -> None:
        """Nothing to reset: the agent is deterministic and keeps no state between steps."""

    def act(self, observations: np.ndarray, snapshot: Any = None) -> np.ndarray:
        import torch as th

        normalised = self.normalizer(np.asarray(observations, dtype=np.float32))
        with th.no_grad():
            means = self.policy.action_means(th.as_tensor(normalised, device=self.policy.device))
        return np.clip(means.cpu().numpy(), -1.0, 1.0).astype(np.float32)

    def describe(self) -> dict[str, str]:
        return {"model": self.path, "adapter": ""}


def checkpoint_dir(path: str | Path) -> Path:
    """The checkpoint ``path`` names: itself, its ``best/``, or the folder of a ``model.zip``."""
    if not str(path):
        raise ValueError("ppo: needs a path, e.g. ppo:runs/ppo-hard (a train-ppo output dir)")
    path = Path(path).expanduser()
    if path.name == MODEL_FILE and path.is_file():
        path = path.parent
    for candidate in (path, path / "best"):
        if (candidate / MODEL_FILE).is_file():
            if not (candidate / NORMALIZER_FILE).is_file():
                raise FileNotFoundError(
                    f"{candidate} has {MODEL_FILE} but no {NORMALIZER_FILE}: copy the whole checkpoint folder"
                )
            return candidate
    raise FileNotFoundError(
        f"no PPO checkpoint at {path}: expected {MODEL_FILE} and {NORMALIZER_FILE} there or in "
        f"{path / 'best'}; train one with `train-ppo --output-dir {path}`"
    )


def load_agent(path: str | Path, name: str | None = None) -> PPOAgent:
    """A ``PPOAgent`` from a train-ppo checkpoint (see :func:`checkpoint_dir`)."""
    from stable_baselines3 import PPO

    from training.ppo_policy import SharedNormalizer, StockPolicy

    directory = checkpoint_dir(path)
    try:
        model = PPO.load(directory / MODEL_FILE, device="cpu")
    except (zipfile.BadZipFile, KeyError, ValueError, RuntimeError) as error:
        raise ValueError(f"{directory / MODEL_FILE} is not a train-ppo model: {error}") from error
    if not isinstance(model.policy, StockPolicy):
        raise ValueError(
            f"{directory / MODEL_FILE} holds a {type(model.policy).__name__}, not a train-ppo StockPolicy"
        )
    try:
        normalizer = SharedNormalizer.from_dict(json.loads((directory / NORMALIZER_FILE).read_text()))
    except (json.JSONDecodeError, KeyError, TypeError) as error:
        raise ValueError(
            f"{directory / NORMALIZER_FILE} is not train-ppo normalisation statistics: {error}"
        ) from error
    meta_file = directory / "meta.json"
    meta = json.loads(meta_file.read_text()) if meta_file.is_file() else {}
    model.policy.set_training_mode(False)
    return PPOAgent(name or f"ppo:{path}", model.policy, normalizer, str(directory), meta=meta)


def _resolve(name: str, options: dict) -> PPOAgent:
    """Registry hook for ``ppo:<path>`` (LLM generation options do not apply and are ignored)."""
    return load_agent(name.removeprefix("ppo:"), name=name)


register_prefix("ppo:", _resolve)


# ------------------------------------------------------------------------------------------- training
def save_checkpoint(directory: Path, model: Any, normalizer: Any, config: PPOConfig, **meta: Any) -> Path:
    """model.zip + normalization.json + config.json + meta.json (run record, task, versions, data)."""
    from eval import tracking

    directory.mkdir(parents=True, exist_ok=True)
    model.save(directory / MODEL_FILE)
    (directory / NORMALIZER_FILE).write_text(json.dumps(normalizer.to_dict(), indent=1))
    (directory / CONFIG_FILE).write_text(json.dumps(asdict(config), indent=1))
    tracking.write_meta(directory, kind="ppo", **meta)
    return directory


@dataclass
class ValSelection:
    """SB3 callback (a plain callable): val evaluation every ``eval_every`` steps, best score to ``best/``."""

    model: Any
    normalizer: Any
    config: PPOConfig
    output_dir: Path
    meta: dict
    curve: list[dict] = field(default_factory=list)
    best: float = -np.inf
    next_eval: int = 0
    started: float = field(default_factory=time.perf_counter)

    def __call__(self, locals_: dict, globals_: dict) -> bool:
        if self.model.num_timesteps >= self.next_eval:
            self.evaluate()
        return True

    def evaluate(self) -> dict:
        import copy

        from eval import harness, stats

        steps = int(self.model.num_timesteps)
        frozen = copy.deepcopy(self.normalizer)
        agent = PPOAgent("ppo", self.model.policy, frozen)
        result = harness.run_evaluation(agent, val_config(self.config), progress=False)
        estimate = stats.bootstrap_mean(result.values("score"), self.config.seed)
        point = {"timesteps": steps, "val_score": estimate.mean, "val_score_ci_low": estimate.low,
                 "val_score_ci_high": estimate.high,
                 "val_return": float(result.values("total_return").mean()),
                 "val_activity": float(result.values("activity").mean()),
                 "seconds": time.perf_counter() - self.started}  # fmt: skip
        self.curve.append(point)
        self.next_eval = steps + self.config.eval_every
        _log_metrics({k: v for k, v in point.items() if k != "timesteps"}, steps)
        if estimate.mean > self.best:
            self.best = estimate.mean
            save_checkpoint(self.output_dir / "best", self.model, frozen, self.config, **self.meta, **point)
        print(f"step {steps:>9,}  val score {estimate.mean:.3f} [{estimate.low:.3f}, {estimate.high:.3f}]"
              f"  best {self.best:.3f}  ({point['seconds']:.0f} s)", flush=True)  # fmt: skip
        return point


def val_config(config: PPOConfig) -> Any:
    from eval.harness import EvalConfig

    return EvalConfig(task=config.task, split="val", episodes=config.eval_episodes, seed=config.eval_seed,
                      env_version=config.env_version)  # fmt: skip


def _log_metrics(metrics: dict[str, float], step: int) -> None:
    import mlflow

    if mlflow.active_run() is not None:
        mlflow.log_metrics(metrics, step=step)


def build_model(config: PPOConfig) -> tuple[Any, Any, Any]:
    """(PPO model, its train batch env, the shared normaliser), seeded from ``config.seed``."""
    import torch as th
    from stable_baselines3 import PPO
    from stable_baselines3.common.vec_env import VecNormalize

    import market_env
    from training.ppo_policy import MarketVecEnv, SharedNormalizer, StockPolicy

    th.set_num_threads(config.torch_threads)
    batch = market_env.make_batch(config.task, config.n_envs, split="train", obs_mode="numeric",
                                  version=config.env_version, seed=config.seed)  # fmt: skip
    normalizer = SharedNormalizer()
    venv: Any = MarketVecEnv(batch, normalizer)
    if config.normalize_reward:
        venv = VecNormalize(venv, norm_obs=False, norm_reward=True, gamma=config.gamma)
    model = PPO(
        StockPolicy, venv, learning_rate=config.learning_rate, n_steps=config.n_steps,
        batch_size=min(config.batch_size, config.n_steps * config.n_envs), n_epochs=config.n_epochs,
        gamma=config.gamma, gae_lambda=config.gae_lambda, clip_range=config.clip_range,
        ent_coef=config.ent_coef, vf_coef=config.vf_coef, max_grad_norm=config.max_grad_norm,
        seed=config.seed, device=config.device,
        policy_kwargs={"hidden": config.hidden, "log_std_init": config.log_std_init}, verbose=0,
    )  # fmt: skip
    return model, batch, normalizer


def train(config: PPOConfig, output_dir: Path, progress: bool = True, log_mlflow: bool = True) -> dict:
    """Train, select on val, write the output directory; returns a summary (best val score, seconds, ...)."""
    from stable_baselines3.common.logger import Logger

    from eval import tracking
    from training.ppo_policy import MLflowWriter

    output_dir.mkdir(parents=True, exist_ok=True)
    model, batch, normalizer = build_model(config)
    market = batch.market
    meta = {"task": config.task, "task_version": market.task.version, "env_version": market.version.version,
            "data_sha256": market.panel.sha256, "n_stocks": market.task.n_stocks}  # fmt: skip
    run = tracking.start_run(EXPERIMENT, f"ppo {config.task} seed {config.seed}") if log_mlflow else None
    with run or contextlib.nullcontext():
        if run is not None:
            import mlflow

            mlflow.log_params(asdict(config) | meta | {"output_dir": str(output_dir)})
            mlflow.set_tags(tracking.run_record())
            model.set_logger(Logger(folder=None, output_formats=[MLflowWriter()]))
        baselines = baseline_scores(config)
        selection = ValSelection(model, normalizer, config, output_dir, meta)
        selection.evaluate()  # step 0: the initial policy, which holds
        start = time.perf_counter()
        model.learn(config.timesteps, callback=selection, progress_bar=progress)
        seconds = time.perf_counter() - start
        if selection.curve[-1]["timesteps"] != model.num_timesteps:
            selection.evaluate()
        best_point = max(selection.curve, key=lambda p: p["val_score"])
        save_checkpoint(output_dir / "last", model, normalizer, config, **meta, **selection.curve[-1])
        summary = meta | {"train_seconds": seconds, "timesteps": int(model.num_timesteps),
                          "best": best_point, "last": selection.curve[-1], "baselines_val": baselines,
                          "mlflow_run_id": run.info.run_id if run else None}  # fmt: skip
        tracking.write_meta(output_dir, kind="ppo", config=asdict(config), **summary)
        artifacts = write_curve(selection.curve, baselines, config, output_dir)
        if run is not None:
            mlflow.log_metrics({"train_seconds": seconds, "best_val_score": best_point["val_score"]})
            for path in [*artifacts, output_dir / "meta.json"]:
                mlflow.log_artifact(str(path))
            mlflow.log_artifacts(str(output_dir / "best"), "best")
    return summary


def baseline_scores(config: PPOConfig) -> dict[str, float]:
    """Rule agents on the selection episodes: the reference lines of the learning curve."""
    from eval import harness
    from eval.agents import make_agent

    cfg = val_config(config)
    return {name: float(harness.run_evaluation(make_agent(name), cfg, False).values("score").mean())
            for name in BASELINES}  # fmt: skip


def write_curve(curve: list[dict], baselines: dict[str, float], config: PPOConfig, out: Path) -> list[Path]:
    """learning_curve.csv and learning_curve.png (val score with its 95% CI vs timesteps)."""
    import pandas as pd

    from eval.plots import plt, save_figure

    pd.DataFrame(curve).to_csv(out / "learning_curve.csv", index=False)
    steps = np.array([p["timesteps"] for p in curve])
    score = np.array([p["val_score"] for p in curve])
    figure, axis = plt.subplots(figsize=(6.4, 3.8))
    axis.plot(steps, score, marker="o", markersize=3, label="ppo")
    axis.fill_between(steps, [p["val_score_ci_low"] for p in curve], [p["val_score_ci_high"] for p in curve],
                      alpha=0.25, label="ppo 95% CI")  # fmt: skip
    for (name, value), style in zip(baselines.items(), (":", "--", "-.")):
        axis.axhline(value, color="grey", linestyle=style, linewidth=1, label=name)
    axis.set_xlabel("timesteps")
    axis.set_ylabel(f"val score ({config.eval_episodes} episodes)")
    axis.set_title(f"PPO {config.task}, env {config.env_version}: val score vs training", fontsize=10)
    axis.legend(fontsize=8)
    return [out / "learning_curve.csv", save_figure(figure, out / "learning_curve.png")]


# ------------------------------------------------------------------------------------------------- CLI
def make_parser() -> argparse.ArgumentParser:
    defaults = PPOConfig()
    parser = argparse.ArgumentParser(
        prog="train-ppo",
        description=__doc__.splitlines()[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--task", default=defaults.task, choices=TASK_NAMES)
    parser.add_argument(
        "--timesteps", type=int, default=defaults.timesteps, help="env steps, all slots together"
    )
    parser.add_argument("--output-dir", type=Path, help="default: runs/ppo-<task>")
    parser.add_argument("--n-envs", type=int, default=defaults.n_envs, help="episodes stepping together")
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument(
        "--eval-every", type=int, default=defaults.eval_every, help="timesteps between val evals"
    )
    parser.add_argument("--eval-episodes", type=int, default=defaults.eval_episodes)
    parser.add_argument("--env-version", default=defaults.env_version, choices=sorted(ENV_VERSIONS))
    parser.add_argument("--n-steps", type=int, default=defaults.n_steps, help="rollout steps per slot")
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size)
    parser.add_argument("--learning-rate", type=float, default=defaults.learning_rate)
    parser.add_argument("--hidden", type=int, default=defaults.hidden)
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--no-mlflow", action="store_true", help="do not log an MLflow run")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = make_parser().parse_args(argv)
    try:
        config = PPOConfig(
            task=args.task, env_version=args.env_version, timesteps=args.timesteps, n_envs=args.n_envs,
            seed=args.seed, n_steps=args.n_steps, batch_size=args.batch_size,
            learning_rate=args.learning_rate, hidden=args.hidden, eval_every=args.eval_every,
            eval_episodes=args.eval_episodes,
        )  # fmt: skip
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    output_dir = args.output_dir or Path("runs") / f"ppo-{config.task}"
    summary = train(config, output_dir, progress=not args.no_progress, log_mlflow=not args.no_mlflow)
    best = summary["best"]
    low, high = best["val_score_ci_low"], best["val_score_ci_high"]
    print(f"trained {summary['timesteps']:,} steps in {summary['train_seconds']:.0f} s; best val score "
          f"{best['val_score']:.3f} [{low:.3f}, {high:.3f}] at step {best['timesteps']:,} "
          f"-> {output_dir / 'best'}\nnext: evaluate --agent ppo:{output_dir} hold rsi buy-and-hold "
          f"--task {config.task} --split test")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
