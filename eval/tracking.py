"""MLflow tracking (SQLite backend) and the reproducibility record every run carries.

Tracking URI: ``$MLFLOW_TRACKING_URI`` or ``sqlite:///mlruns.db`` in the working directory. Every evaluation
run logs the params of DESIGN.md (agent, model, adapter, task, split, episodes, seed, env_version,
task_version, data sha256), a metric per grade component and raw metric (mean and 95% CI), and artifacts
(per-episode CSV, equity-curve plot, sample transcripts for LLM agents).
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import platform
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Any

try:
    import fcntl
except ImportError:  # Windows: no flock; SQLite's own locking and the retry remain
    fcntl = None

DEFAULT_TRACKING_URI = "sqlite:///mlruns.db"
EVAL_EXPERIMENT = "nifty-rl-eval"
RECORDED_PACKAGES = (
    "numpy",
    "pandas",
    "gymnasium",
    "torch",
    "transformers",
    "trl",
    "peft",
    "stable-baselines3",
)


def tracking_uri() -> str:
    return os.environ.get("MLFLOW_TRACKING_URI", DEFAULT_TRACKING_URI)


@functools.cache
def git_commit() -> str:
    """The commit this process runs. Read once, so the checkpoints of a long run keep naming the code that
    made them even when commits land while it trains."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
            cwd=Path(__file__).resolve().parent,
        )  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return out.stdout.strip() if out.returncode == 0 else "unknown"


def run_record() -> dict[str, str]:
    """Command line, git commit and library versions: what it takes to reproduce a result."""
    record = {"command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]), "git_commit": git_commit(),
              "python": platform.python_version()}  # fmt: skip
    for package in RECORDED_PACKAGES:
        try:
            record[f"version_{package}"] = metadata.version(package)
        except metadata.PackageNotFoundError:
            continue
    return record


def write_meta(directory: str | Path, **fields: Any) -> Path:
    """``meta.json`` beside a checkpoint or data set: the run record plus the caller's fields."""
    path = Path(directory) / "meta.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(run_record() | fields, indent=2, default=str))
    return path


SETUP_ATTEMPTS = 5


def sqlite_path(uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` URI (None for other backends)."""
    return Path(uri.removeprefix("sqlite:///")) if uri.startswith("sqlite:///") else None


@contextlib.contextmanager
def setup_lock(uri: str):
    """An exclusive lock on ``<db>.lock`` while a process creates or migrates a SQLite tracking database.

    Three ``evaluate`` processes started together on a fresh database each ran MLflow's schema creation at
    once and lost 6 of 9 runs to alembic errors (issue 18); holding this lock around the first connection
    and the experiment's creation makes them take turns. Other backends need no lock.
    """
    path = sqlite_path(uri)
    if path is None or fcntl is None:
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(f"{path}.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def start_run(experiment: str, run_name: str):
    """Open an MLflow run on the configured backend (imported here: mlflow takes seconds to import).

    Setup (schema, experiment) runs under :func:`setup_lock`, retried with a growing pause should another
    process still hold the database (SQLite's "database is locked")."""
    import mlflow

    uri = tracking_uri()
    for attempt in range(SETUP_ATTEMPTS):
        try:
            with setup_lock(uri):
                mlflow.set_tracking_uri(uri)
                mlflow.set_experiment(experiment)
                return mlflow.start_run(run_name=run_name)
        except Exception:  # MLflow raises many types for a busy database; the last try re-raises
            if attempt == SETUP_ATTEMPTS - 1:
                raise
            time.sleep(0.5 * 2**attempt)
    raise AssertionError("unreachable")


def log_evaluation(
    result, summary: dict, vs_hold: dict | None, artifacts: list[Path], vs_benchmark: dict | None = None
) -> str:
    """One MLflow run for one (agent, task, env version); returns its run id."""
    import mlflow

    name = f"{result.agent} {result.config.task} env {result.env_version}"
    with start_run(EVAL_EXPERIMENT, name) as run:
        mlflow.log_params(result.params())
        mlflow.set_tags(run_record())
        metrics = {}
        for metric, estimate in summary.items():
            metrics |= {
                metric: estimate.mean,
                f"{metric}_ci_low": estimate.low,
                f"{metric}_ci_high": estimate.high,
            }
        for name, paired in (("vs_hold", vs_hold), ("vs_buy_and_hold", vs_benchmark)):
            for metric, estimate in (paired or {}).items():
                metrics |= {f"{metric}_{name}": estimate.mean, f"{metric}_{name}_ci_low": estimate.low,
                            f"{metric}_{name}_ci_high": estimate.high}  # fmt: skip
        score = summary.get("score")
        if score is not None:
            metrics |= {"n_episodes": score.n, "n_eff": score.as_dict()["n_eff"]}
        mlflow.log_metrics(metrics)
        for path in artifacts:
            mlflow.log_artifact(str(path))
        if result.transcripts:
            mlflow.log_dict({"transcripts": result.transcripts}, "transcripts.json")
        return run.info.run_id


def load_runs(experiment: str = EVAL_EXPERIMENT):
    """All evaluation runs as a DataFrame (empty when there are none)."""
    import mlflow
    import pandas as pd

    mlflow.set_tracking_uri(tracking_uri())
    if mlflow.get_experiment_by_name(experiment) is None:
        return pd.DataFrame()
    return mlflow.search_runs(experiment_names=[experiment], order_by=["attributes.start_time ASC"])
