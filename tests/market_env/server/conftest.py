"""Server test fixtures: apps with small limits, a real uvicorn server on loopback, random actions."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient

from market_env.server.app import create_app, serving
from market_env.server.sessions import ServerConfig


@pytest.fixture
def make_client(panel) -> Callable[..., TestClient]:
    """A TestClient on a fresh app; 5xx come back as responses, so a test can assert there are none."""

    def make(**config) -> TestClient:
        return TestClient(create_app(ServerConfig(**config)), raise_server_exceptions=False)

    return make


@pytest.fixture
def client(make_client) -> TestClient:
    return make_client()


@pytest.fixture(scope="module")
def live_url() -> str:
    """A real uvicorn server on 127.0.0.1 (a free port), shared by one test module."""
    with serving(ServerConfig()) as url:
        yield url


@contextlib.contextmanager
def serve_env_process(*flags: str) -> Iterator[str]:
    """``serve-env`` itself in a child process on a free loopback port (its own CPU, untraced by coverage)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    command = [sys.executable, "-m", "market_env.server.app", "--port", str(port), "--log-level", "warning"]
    command += flags
    root = Path(__file__).resolve().parents[3]
    server = subprocess.Popen(command, env=os.environ | {"PYTHONPATH": str(root)}, cwd=root)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                httpx.get(f"{url}/health", timeout=2)
                break
            except httpx.TransportError:
                assert server.poll() is None and time.monotonic() < deadline, "serve-env did not start"
                time.sleep(0.1)
        yield url
    finally:
        server.terminate()
        server.wait(timeout=30)


@pytest.fixture
def serve_env() -> Callable[..., contextlib.AbstractContextManager[str]]:
    return serve_env_process


def random_action(rng: np.random.Generator, names: tuple[str, ...], obs_mode: str) -> str | np.ndarray:
    """An agent-like random action: numeric uniform in [-1, 1]; text two orders, one time in ten junk."""
    if obs_mode == "numeric":
        return rng.uniform(-1.0, 1.0, len(names)).astype(np.float32)
    if rng.random() < 0.1:
        return "I would rather BUY everything"  # malformed: an invalid action, a HOLD
    buy, sell = rng.choice(names), rng.choice(names)
    return f"BUY {buy} {rng.uniform(0.05, 0.6):.3f}\nSELL {sell} {rng.uniform(0.1, 1.0):.2f}"


@pytest.fixture
def actions() -> Callable[..., str | np.ndarray]:
    return random_action
