"""MLflow tracking (SQLite backend) and the reproducibility record every run carries.

Tracking URI: ``$MLFLOW_TRACKING_URI`` or ``sqlite:///mlruns.db`` in the working directory. Every evaluation
run logs the params of DESIGN.md (agent, model, adapter, task, split, episodes, seed, env_version,
task_version, data sha256), a metric per grade component and raw metric (mean and 95% CI), and artifacts
(per-episode CSV, equity-curve plot, sample transcripts for LLM agents).
"""

from __future__ import annotations

import functools
import json
import os
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

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


def start_run(experiment: str, run_name: str):
    """Open an MLflow run on the configured backend (imported here: mlflow takes seconds to import)."""
    import mlflow

    mlflow.set_tracking_uri(tracking_uri())
    mlflow.set_experiment(experiment)
    return mlflow.start_run(run_name=run_name)


def log_evaluation(result, summary: dict, vs_hold: dict | None, artifacts: list[Path]) -> str:
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
        for metric, estimate in (vs_hold or {}).items():
            metrics |= {f"{metric}_vs_hold": estimate.mean, f"{metric}_vs_hold_ci_low": estimate.low,
                        f"{metric}_vs_hold_ci_high": estimate.high}  # fmt: skip
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
