"""The reproducibility record: what a run's meta.json and MLflow tags say produced it."""

from __future__ import annotations

import subprocess
from pathlib import Path

from eval import tracking

ROOT = Path(__file__).resolve().parents[2]


def test_a_run_keeps_naming_the_commit_it_started_from(monkeypatch):
    tracking.git_commit.cache_clear()
    git = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=ROOT)
    head = git.stdout.strip()
    record = tracking.run_record()
    assert record["git_commit"] == head and record["python"] and record["version_numpy"]

    # a commit lands while a long training run goes on: its later checkpoints still name the code that ran
    landed = "f" * 40
    answer = subprocess.CompletedProcess(["git"], 0, landed + "\n")
    monkeypatch.setattr(tracking.subprocess, "run", lambda *args, **kwargs: answer)
    assert tracking.run_record()["git_commit"] == head
    tracking.git_commit.cache_clear()
    assert tracking.git_commit() == landed  # a new process would see the new commit
    tracking.git_commit.cache_clear()
