"""Gymnasium ids: ``nifty-rl/{Easy,Medium,Hard}-v{major}``, one per task and env major version.

``import market_env`` registers them (the Gymnasium convention, as ``import ale_py`` does), or use
``gymnasium.make("market_env:nifty-rl/Hard-v1")`` which imports the package first.
"""

from __future__ import annotations

import gymnasium

from market_env.versions import ENV_VERSIONS

NAMESPACE = "nifty-rl"


def env_id(task: str, version: str) -> str:
    return f"{NAMESPACE}/{task.capitalize()}-v{version.split('.')[0]}"


def register_envs() -> list[str]:
    """Register every (task, version) pair; safe to call twice."""
    ids = []
    for version, entry in ENV_VERSIONS.items():
        for task in entry.tasks:
            name = env_id(task, version)
            if name not in gymnasium.registry:
                gymnasium.register(
                    id=name,
                    entry_point="market_env.env:MarketEnv",
                    kwargs={"task": task, "version": version},
                )
            ids.append(name)
    return ids
