"""Shared fixtures: the real SmolLM2-135M, converted once per test session into a temporary cache."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from llm_agent.models import LoadedModel, ensure_smollm2_cache, load_model

# Chats of clearly different lengths, so that batching them needs real left padding.
CHATS = [
    [{"role": "user", "content": "What is the capital of France?"}],
    [
        {"role": "system", "content": "You are a careful stock trader. Answer with one action line."},
        {"role": "user", "content": "RELIANCE closed at 2950.5, RSI 28.4 (oversold). BUY, SELL or HOLD?"},
    ],
    [{"role": "user", "content": "Say hi"}],
    [{"role": "user", "content": "Name three colours of the Indian flag and explain each in a sentence."}],
]


@pytest.fixture(scope="session")
def smollm2_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Convert the GGUF into a fresh cache (``$NIFTY_RL_CACHE`` points there for the session)."""
    patch = pytest.MonkeyPatch()
    patch.setenv("NIFTY_RL_CACHE", str(tmp_path_factory.mktemp("nifty-rl-cache")))
    started = time.perf_counter()
    path = ensure_smollm2_cache()
    print(f"\nSmolLM2 GGUF -> safetensors conversion: {time.perf_counter() - started:.1f} s")
    yield path
    patch.undo()


@pytest.fixture(scope="session")
def smollm2(smollm2_cache: Path) -> LoadedModel:
    """The real SmolLM2-135M-Instruct, loaded once for generation (float32 on CPU)."""
    return load_model("smollm2-135m")
