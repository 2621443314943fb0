"""The LLM trading agent: model registry and loading (:mod:`llm_agent.models`), batched generation
(:mod:`llm_agent.generation`).

Importing the package is cheap: torch and transformers load on first use of a function that needs them. The
names below resolve lazily from their submodules.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "MODELS": "models",
    "Hardware": "models",
    "LoadedModel": "models",
    "ModelSpec": "models",
    "UnknownModelError": "models",
    "MissingDependencyError": "models",
    "detect_hardware": "models",
    "load_model": "models",
    "parse_model_spec": "models",
    "Completion": "generation",
    "GenerationConfig": "generation",
    "GenerationStats": "generation",
    "generate": "generation",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
