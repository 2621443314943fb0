"""Shared fixtures: small real things (the embedded NIFTY panel, real episodes)."""

from __future__ import annotations

import os

import pytest

# Offline by default: nothing in the test suite may reach a model hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture(scope="session")
def panel():
    from data import load_panel

    return load_panel()


@pytest.fixture(autouse=True)
def _isolated_mlflow(tmp_path, monkeypatch):
    """Every test logs MLflow runs into its own SQLite file, never the user's ./mlruns.db."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlruns.db'}")
