"""``train-ppo`` and the ``ppo:<path>`` agent: the classic-RL baseline on numeric observations.

Stable-Baselines3 PPO on the train split, many episodes stepping together in one ``BatchMarketEnv``, with the
permutation-equivariant per-stock policy of ``training.ppo.policy`` (one model serves any number of stocks).
Observations are normalised with per-feature statistics shared across stocks; rewards (the step change in
the episode's score-to-date, so undiscounted they add up to the final score) are scaled by SB3's
``VecNormalize``. Every ``eval_every`` steps the policy plays ``eval_episodes`` val-split episodes through
``eval.harness``; the best val score is kept in ``best/``.

Output directory::

    best/  last/          checkpoints: model.zip (SB3), normalization.json, config.json, meta.json
    learning_curve.png    val score (95% CI) vs timesteps, with hold / buy-and-hold / rsi on the same episodes
    learning_curve.csv    the same numbers; meta.json: the run record, task, env version, data sha256

Runs are never lost or overwritten by accident:

- ``last/`` is written at every val evaluation, so ``--resume`` continues from it: the step count, the
  observation and reward normalisers, the learning curve and the best score go on where they stopped (the
  train episodes are drawn afresh, seeded with seed + steps done, so a resumed run does not replay them).
- A checkpoint is written into a staging folder and swapped in by two renames, so a crash or ``kill -9`` in
  the middle of a save leaves the previous checkpoint whole (under its name, or as ``.<name>.retired`` for the
  instant between the renames, where loading and ``--resume`` find it).
- Rerunning into a directory that holds a run refuses unless ``--resume`` or ``--overwrite`` says which.
- The MLflow run ends FAILED when training raises and KILLED on SIGINT / SIGTERM (exit codes 130 / 143).

``ppo:<dir>`` loads ``<dir>`` when it is a checkpoint, else ``<dir>/best``, and acts deterministically (the
Gaussian's mean, clipped to [-1, 1]).

    train-ppo --task hard --output-dir runs/ppo-hard
    evaluate --agent ppo:runs/ppo-hard hold rsi buy-and-hold --task hard --split val

``--data`` trains and selects on another price set: an OHLCV CSV/parquet or ``synthetic:<kind>[:...]``
(``data.synthetic.resolve_data``), e.g. ``train-ppo --task easy --data synthetic:edge`` to check that PPO
finds a planted edge. The spec is kept in ``config.json``, ``meta.json`` and the MLflow params (with the
data's sha256), and the val evaluations that pick ``best/`` play on the same data.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import shutil
import signal
import sys
import threading
import time
import zipfile
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from eval.agents import register_prefix
from market_env.tasks import TASK_NAMES
from market_env.versions import ENV_VERSION, ENV_VERSIONS

EXPERIMENT = "nifty-rl-ppo"
MODEL_FILE, NORMALIZER_FILE, CONFIG_FILE = "model.zip", "normalization.json", "config.json"
META_FILE, REWARD_FILE = "meta.json", "reward_normalization.json"
RUN_OUTPUTS = ("best", "last", "learning_curve.csv", "learning_curve.png", META_FILE)
STAGING, RETIRED = ".staging", ".retired"  # suffixes of a checkpoint's hidden siblings during a save
BASELINES = ("hold", "buy-and-hold", "rsi")
DEFAULT_TIMESTEPS = 600_000  # about 10 minutes on 2 CPU cores (docs/results.md, "PPO baseline")


@dataclass
class PPOConfig:
    """Everything a PPO run depends on; written to ``config.json`` beside every checkpoint."""

    task: str = "hard"
    env_version: str = ENV_VERSION
    data: str = ""  # a price file or synthetic:<kind>[:name=value,...] (data.synthetic); "" = embedded set
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
    policy: Any  # training.ppo.policy.StockPolicy
    normalizer: Any  # training.ppo.policy.SharedNormalizer, frozen
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
    for candidate in (path, path / "best", _sibling(path, RETIRED), _sibling(path / "best", RETIRED)):
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

    from training.ppo.policy import SharedNormalizer, StockPolicy

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
    """model.zip, normalization.json, config.json, meta.json (run record, task, versions, data), atomically.

    The files go to ``.<name>.staging`` first; the old checkpoint is renamed to ``.<name>.retired``, the new
    one renamed into place, and the retired one deleted. An interruption at any point leaves one complete
    checkpoint: the old one (named or retired) or the new one.
    """
    staging, retired = _sibling(directory, STAGING), _sibling(directory, RETIRED)
    shutil.rmtree(staging, ignore_errors=True)  # left by a save that was interrupted
    staging.mkdir(parents=True)
    _write_checkpoint(staging, model, normalizer, config, meta)
    restore_checkpoint(directory)
    shutil.rmtree(retired, ignore_errors=True)  # half-deleted by a save that died after its renames
    if directory.exists():
        os.replace(directory, retired)
    os.replace(staging, directory)
    shutil.rmtree(retired, ignore_errors=True)
    return directory


def _write_checkpoint(directory: Path, model: Any, normalizer: Any, config: PPOConfig, meta: dict) -> None:
    from eval import tracking

    model.save(directory / MODEL_FILE)
    (directory / NORMALIZER_FILE).write_text(json.dumps(normalizer.to_dict(), indent=1))
    (directory / CONFIG_FILE).write_text(json.dumps(asdict(config), indent=1))
    reward_rms = getattr(model.get_env(), "ret_rms", None)  # VecNormalize's reward scale, for --resume
    if reward_rms is not None:
        stats = {"mean": float(reward_rms.mean), "var": float(reward_rms.var), "count": reward_rms.count}
        (directory / REWARD_FILE).write_text(json.dumps(stats))
    tracking.write_meta(directory, kind="ppo", **meta)  # last: its presence marks a complete checkpoint


def _sibling(directory: Path, suffix: str) -> Path:
    return directory.parent / f".{directory.name}{suffix}"


def restore_checkpoint(directory: Path) -> None:
    """Undo a save interrupted between its two renames: put the retired checkpoint back under its name."""
    retired = _sibling(directory, RETIRED)
    if not directory.exists() and (retired / META_FILE).is_file():
        os.replace(retired, directory)


def is_complete(directory: Path) -> bool:
    return all((directory / name).is_file() for name in (MODEL_FILE, NORMALIZER_FILE, CONFIG_FILE, META_FILE))


@dataclass
class ValSelection:
    """Val evaluation every ``eval_every`` steps (an SB3 callback, see :meth:`callback`): the best-scoring
    policy goes to ``best/``; ``last/`` gets the weights after the update that follows each evaluation (SB3
    updates once a rollout is collected, so that is at the next rollout's start), for ``--resume``."""

    model: Any
    normalizer: Any
    config: PPOConfig
    output_dir: Path
    meta: dict
    curve: list[dict] = field(default_factory=list)
    best: float = -np.inf
    next_eval: int = 0
    started: float = field(default_factory=time.perf_counter)
    pending: dict | None = None  # the latest evaluation, until last/ is saved after it

    def resume(self, last: Path) -> None:
        """Continue the curve, schedule and best score of the run whose last checkpoint is ``last``."""
        self.curve = list(json.loads((last / META_FILE).read_text())["curve"])
        self.next_eval = self.curve[-1]["timesteps"] + self.config.eval_every
        self.started = time.perf_counter() - self.curve[-1]["seconds"]
        best_meta = self.output_dir / "best" / META_FILE
        restore_checkpoint(best_meta.parent)
        if best_meta.is_file():
            self.best = float(json.loads(best_meta.read_text())["val_score"])

    def callback(self) -> Any:
        """The SB3 callback: evaluate at the step that reaches ``next_eval``; save last/ at rollout start."""
        from stable_baselines3.common.callbacks import BaseCallback

        selection = self

        class Hooks(BaseCallback):
            def _on_step(self) -> bool:
                return selection(self.locals, self.globals)

            def _on_rollout_start(self) -> None:
                selection.save_last()

        return Hooks()

    def save_last(self) -> None:
        """``last/``: weights, step count and normalisers now, and the curve so far. Written after best/: a
        resumed run reads the best score from best/, so an interruption never demotes a better policy."""
        if self.pending is None:
            return
        point = self.pending | {"timesteps": int(self.model.num_timesteps)}
        directory = self.output_dir / "last"
        save_checkpoint(
            directory, self.model, self.normalizer, self.config, **self.meta, **point, curve=self.curve
        )
        self.pending = None

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
        self.pending = point
        print(f"step {steps:>9,}  val score {estimate.mean:.3f} [{estimate.low:.3f}, {estimate.high:.3f}]"
              f"  best {self.best:.3f}  ({point['seconds']:.0f} s)", flush=True)  # fmt: skip
        return point


def val_config(config: PPOConfig) -> Any:
    from eval.harness import EvalConfig

    return EvalConfig(task=config.task, split="val", episodes=config.eval_episodes, seed=config.eval_seed,
                      env_version=config.env_version, data=training_panel(config.data),
                      data_name=config.data)  # fmt: skip


@functools.lru_cache(maxsize=4)
def training_panel(spec: str) -> Any:
    """The panel a ``--data`` spec names (None: the embedded set), built once per process: a synthetic
    table takes seconds to align, and training and every val evaluation use it."""
    if not spec:
        return None
    from data.panel import load_panel
    from data.synthetic import resolve_data

    return load_panel(resolve_data(spec))


def _log_metrics(metrics: dict[str, float], step: int) -> None:
    import mlflow

    if mlflow.active_run() is not None:
        mlflow.log_metrics(metrics, step=step)


def build_model(config: PPOConfig, resume_from: Path | None = None) -> tuple[Any, Any, Any]:
    """(PPO model, its train batch env, the shared normaliser), seeded from ``config.seed``.

    With ``resume_from`` (a checkpoint folder) the model, its step count and both normalisers continue from
    it; the train episodes are seeded with seed + the steps done, so the resumed run draws new ones.
    """
    import torch as th
    from stable_baselines3 import PPO
    from stable_baselines3.common.vec_env import VecNormalize

    import market_env
    from training.ppo.policy import MarketVecEnv, SharedNormalizer, StockPolicy

    th.set_num_threads(config.torch_threads)
    done = int(json.loads((resume_from / META_FILE).read_text())["timesteps"]) if resume_from else 0
    batch = market_env.make_batch(config.task, config.n_envs, split="train", obs_mode="numeric",
                                  version=config.env_version, seed=config.seed + done,
                                  data=training_panel(config.data))  # fmt: skip
    normalizer = SharedNormalizer()
    if resume_from is not None:
        normalizer = SharedNormalizer.from_dict(json.loads((resume_from / NORMALIZER_FILE).read_text()))
    venv: Any = MarketVecEnv(batch, normalizer)
    if config.normalize_reward:
        venv = VecNormalize(venv, norm_obs=False, norm_reward=True, gamma=config.gamma)
        _restore_reward_scale(venv, resume_from)
    if resume_from is not None:
        model = PPO.load(resume_from / MODEL_FILE, env=venv, device=config.device)
        model.set_random_seed(config.seed + done)
        return model, batch, normalizer
    model = PPO(
        StockPolicy, venv, learning_rate=config.learning_rate, n_steps=config.n_steps,
        batch_size=min(config.batch_size, config.n_steps * config.n_envs), n_epochs=config.n_epochs,
        gamma=config.gamma, gae_lambda=config.gae_lambda, clip_range=config.clip_range,
        ent_coef=config.ent_coef, vf_coef=config.vf_coef, max_grad_norm=config.max_grad_norm,
        seed=config.seed, device=config.device,
        policy_kwargs={"hidden": config.hidden, "log_std_init": config.log_std_init}, verbose=0,
    )  # fmt: skip
    return model, batch, normalizer


def _restore_reward_scale(venv: Any, checkpoint: Path | None) -> None:
    path = checkpoint / REWARD_FILE if checkpoint is not None else None
    if path is not None and path.is_file():
        stats = json.loads(path.read_text())
        venv.ret_rms.mean, venv.ret_rms.var = np.float64(stats["mean"]), np.float64(stats["var"])
        venv.ret_rms.count = stats["count"]


class RunDirectoryError(ValueError):
    """The output directory does not fit the request (a run is there, or nothing is there to resume)."""


def prepare_output_dir(output_dir: Path, resume: bool = False, overwrite: bool = False) -> Path | None:
    """Check ``output_dir`` against ``resume`` / ``overwrite``; returns the checkpoint to resume from, if any.

    A directory holding a run is never replaced silently: that once cost a 24,000-step best checkpoint.
    ``overwrite`` deletes only train-ppo's own outputs, never other files in the directory.
    """
    if resume and overwrite:
        raise RunDirectoryError("--resume and --overwrite exclude each other: continue the run or replace it")
    if resume:
        last = output_dir / "last"
        restore_checkpoint(last)
        if not is_complete(last):
            raise RunDirectoryError(
                f"nothing to resume in {output_dir}: {last} holds no complete checkpoint; "
                "start a new run without --resume"
            )
        return last
    held = [output_dir / name for name in RUN_OUTPUTS]
    held += [
        _sibling(output_dir / name, suffix) for name in ("best", "last") for suffix in (STAGING, RETIRED)
    ]
    held = [path for path in held if path.exists()]
    if held and not overwrite:
        raise RunDirectoryError(
            f"{output_dir} already holds a train-ppo run{_describe_run(output_dir)}; pass --resume to "
            "continue it from its last checkpoint or --overwrite to replace it (or pick another --output-dir)"
        )
    for path in held:
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink()
    output_dir.mkdir(parents=True, exist_ok=True)
    return None


def _describe_run(output_dir: Path) -> str:
    """ " (last checkpoint at 24,000 steps, best val score 0.583)", or "" when that is unreadable."""
    try:
        last = json.loads((output_dir / "last" / META_FILE).read_text())
        best = json.loads((output_dir / "best" / META_FILE).read_text())
        return f" (last checkpoint at {last['timesteps']:,} steps, best val score {best['val_score']:.3f})"
    except (OSError, ValueError, KeyError, TypeError):
        return ""


class TrainingInterrupted(KeyboardInterrupt):
    """SIGTERM while training: raised like Ctrl-C, so the run is closed as KILLED on the way out."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"stopped by {signal.Signals(signum).name}")
        self.signum = signum


@contextlib.contextmanager
def _sigterm_interrupts() -> Iterator[None]:
    """SIGTERM raises :class:`TrainingInterrupted` (once: a second SIGTERM gets the previous handling)."""
    if threading.current_thread() is not threading.main_thread():  # only the main thread may set handlers
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        signal.signal(signal.SIGTERM, previous)
        raise TrainingInterrupted(signum)

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def _tracked_run(name: str, run_id: str | None, enabled: bool) -> Iterator[Any]:
    """An MLflow run (the resumed one when ``run_id`` names a run of this store), ended FINISHED, FAILED
    (training raised) or KILLED (SIGINT / SIGTERM)."""
    if not enabled:
        yield None
        return
    import mlflow

    from eval import tracking

    mlflow.set_tracking_uri(tracking.tracking_uri())
    run = mlflow.start_run(run_id=run_id) if _run_exists(run_id) else tracking.start_run(EXPERIMENT, name)
    try:
        yield run
    except KeyboardInterrupt:
        mlflow.end_run("KILLED")
        raise
    except BaseException:
        mlflow.end_run("FAILED")
        raise
    mlflow.end_run("FINISHED")


def _run_exists(run_id: str | None) -> bool:
    import mlflow
    from mlflow.exceptions import MlflowException

    if run_id is None:
        return False
    try:
        mlflow.get_run(run_id)
    except MlflowException:  # another tracking store: the resumed run starts a new MLflow run
        return False
    return True


def train(
    config: PPOConfig,
    output_dir: Path,
    progress: bool = True,
    log_mlflow: bool = True,
    resume: bool = False,
    overwrite: bool = False,
) -> dict:
    """Train, select on val, write the output directory; returns a summary (best val score, seconds, ...).

    ``resume`` continues the run in ``output_dir`` from ``last/`` with its saved config, taking only
    ``config.timesteps`` (the new total) from ``config``; ``overwrite`` replaces a run there. With neither, a
    directory that holds a run raises :class:`RunDirectoryError`.
    """
    from dataclasses import replace

    last = prepare_output_dir(output_dir, resume, overwrite)
    if last is not None:
        saved = PPOConfig(**json.loads((last / CONFIG_FILE).read_text()))
        config = replace(saved, timesteps=config.timesteps)
    run_id = json.loads((last / META_FILE).read_text()).get("mlflow_run_id") if last else None
    name = f"ppo {config.task} seed {config.seed}"
    with _sigterm_interrupts(), _tracked_run(name, run_id, log_mlflow) as run:
        return _train(config, output_dir, progress, run, last)


def _train(config: PPOConfig, output_dir: Path, progress: bool, run: Any, last: Path | None) -> dict:
    from stable_baselines3.common.logger import Logger

    from eval import tracking
    from training.ppo.policy import MLflowWriter

    model, batch, normalizer = build_model(config, resume_from=last)
    market = batch.market
    meta = {"task": config.task, "task_version": market.task.version, "env_version": market.version.version,
            "data": config.data or "embedded", "data_sha256": market.panel.sha256,
            "n_stocks": market.task.n_stocks, "mlflow_run_id": run.info.run_id if run else None}  # fmt: skip
    if run is not None:
        import mlflow

        if last is None:
            mlflow.log_params(asdict(config) | meta | {"output_dir": str(output_dir)})
        else:  # a run's params cannot change: the resume point and the new total are tags
            mlflow.set_tags({"resumed_at": model.num_timesteps, "resumed_timesteps": config.timesteps})
        mlflow.set_tags(tracking.run_record())
        model.set_logger(Logger(folder=None, output_formats=[MLflowWriter()]))
    baselines = baseline_scores(config)
    selection = ValSelection(model, normalizer, config, output_dir, meta)
    if last is None:
        selection.evaluate()  # step 0: the initial policy, which holds
    else:
        selection.resume(last)
    start = time.perf_counter()
    remaining = config.timesteps - model.num_timesteps
    if remaining > 0:
        learn = {"progress_bar": progress, "reset_num_timesteps": last is None}
        model.learn(remaining, callback=selection.callback(), **learn)
    seconds = time.perf_counter() - start
    if selection.curve[-1]["timesteps"] != model.num_timesteps:
        selection.evaluate()
    selection.save_last()
    best_point = max(selection.curve, key=lambda p: p["val_score"])
    summary = meta | {"train_seconds": seconds, "timesteps": int(model.num_timesteps), "best": best_point,
                      "last": selection.curve[-1], "baselines_val": baselines}  # fmt: skip
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
        "--timesteps",
        type=int,
        help=f"env steps, all slots together (default: {defaults.timesteps:,}; "
        "with --resume: the resumed run's total)",
    )
    parser.add_argument("--output-dir", type=Path, help="default: runs/ppo-<task>")
    existing = parser.add_mutually_exclusive_group()
    existing.add_argument(
        "--resume",
        action="store_true",
        help="continue the run in --output-dir from its last checkpoint "
        "(its saved settings; --timesteps may raise the total)",
    )
    existing.add_argument(
        "--overwrite",
        action="store_true",
        help="replace the run in --output-dir (without it, or --resume, "
        "a directory that holds a run is refused)",
    )
    parser.add_argument("--n-envs", type=int, default=defaults.n_envs, help="episodes stepping together")
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument(
        "--eval-every", type=int, default=defaults.eval_every, help="timesteps between val evals"
    )
    parser.add_argument("--eval-episodes", type=int, default=defaults.eval_episodes)
    parser.add_argument("--env-version", default=defaults.env_version, choices=sorted(ENV_VERSIONS))
    parser.add_argument(
        "--data",
        default=defaults.data,
        help="train and select on this OHLCV CSV/parquet, or synthetic:martingale / synthetic:edge[:edge=..,"
        "seed=..] (default: the embedded NIFTY set)",
    )
    parser.add_argument("--n-steps", type=int, default=defaults.n_steps, help="rollout steps per slot")
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size)
    parser.add_argument("--learning-rate", type=float, default=defaults.learning_rate)
    parser.add_argument("--hidden", type=int, default=defaults.hidden)
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--no-mlflow", action="store_true", help="do not log an MLflow run")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = make_parser().parse_args(argv)
    output_dir = args.output_dir or Path("runs") / f"ppo-{args.task}"
    try:
        config = PPOConfig(
            task=args.task, env_version=args.env_version, data=args.data, n_envs=args.n_envs,
            timesteps=_saved_timesteps(output_dir, args.resume) if args.timesteps is None else args.timesteps,
            seed=args.seed, n_steps=args.n_steps, batch_size=args.batch_size,
            learning_rate=args.learning_rate, hidden=args.hidden, eval_every=args.eval_every,
            eval_episodes=args.eval_episodes,
        )  # fmt: skip
        training_panel(config.data)  # a bad --data fails here, before a run directory or MLflow run exists
    except (ValueError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    try:
        summary = train(config, output_dir, progress=not args.no_progress, log_mlflow=not args.no_mlflow,
                        resume=args.resume, overwrite=args.overwrite)  # fmt: skip
    except RunDirectoryError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as error:  # Ctrl-C, or SIGTERM as TrainingInterrupted
        signum = getattr(error, "signum", signal.SIGINT)
        print(f"\ninterrupted by {signal.Signals(signum).name}: the MLflow run ended KILLED; the last "
              f"checkpoint is intact, continue with: train-ppo --resume --output-dir {output_dir}",
              file=sys.stderr)  # fmt: skip
        return 128 + signum
    best = summary["best"]
    low, high = best["val_score_ci_low"], best["val_score_ci_high"]
    print(f"trained {summary['timesteps']:,} steps in {summary['train_seconds']:.0f} s; best val score "
          f"{best['val_score']:.3f} [{low:.3f}, {high:.3f}] at step {best['timesteps']:,} "
          f"-> {output_dir / 'best'}\nnext: evaluate --agent ppo:{output_dir} hold rsi buy-and-hold "
          f"--task {config.task} --split test{f' --data {config.data}' if config.data else ''}")  # fmt: skip
    return 0


def _saved_timesteps(output_dir: Path, resume: bool) -> int:
    """The total of the run being resumed (its last config), else the default."""
    saved = output_dir / "last" / CONFIG_FILE
    if resume and saved.is_file():
        return int(json.loads(saved.read_text())["timesteps"])
    return PPOConfig.timesteps


if __name__ == "__main__":
    sys.exit(main())
