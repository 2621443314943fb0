"""market_env: a versioned NIFTY market simulator with a Gymnasium API.

Imports no ML library, so it starts fast. Entry points:

>>> import market_env
>>> env = market_env.make("hard", split="test", obs_mode="text", seed=0)      # a gymnasium.Env
>>> benv = market_env.make_batch("hard", n_envs=8, split="train", seed=0)     # a gymnasium VectorEnv
"""

from __future__ import annotations

from market_env.actions import ACTION_GRAMMAR, Order, ParsedAction, format_action, parse_action
from market_env.batch import BatchMarketEnv
from market_env.env import MarketEnv
from market_env.episodes import Episode
from market_env.errors import EpisodeError, EpisodeFinishedError, MarketEnvError, UnknownNameError
from market_env.grader import GRADERS, grade_episode
from market_env.market import PriceData
from market_env.registration import register_envs
from market_env.simulator import EpisodeState
from market_env.tasks import TASK_NAMES
from market_env.versions import ENV_VERSION, ENV_VERSIONS, get_version


def make(
    task: str = "easy",
    split: str = "train",
    obs_mode: str = "text",
    version: str | None = None,
    seed: int | None = None,
    data: PriceData = None,
    anonymize: bool = False,
    render_mode: str | None = None,
) -> MarketEnv:
    """One episode at a time, as a ``gymnasium.Env`` (``version`` defaults to ``ENV_VERSION``)."""
    return MarketEnv(task, split, obs_mode, version, data, anonymize, seed, render_mode)


def make_batch(
    task: str = "easy",
    n_envs: int = 16,
    split: str = "train",
    obs_mode: str = "numeric",
    version: str | None = None,
    seed: int | None = None,
    data: PriceData = None,
    anonymize: bool = False,
) -> BatchMarketEnv:
    """``n_envs`` independent episodes stepped together; slot i is seeded with ``seed + i``."""
    return BatchMarketEnv(task, n_envs, split, obs_mode, version, data, anonymize, seed)


register_envs()

__all__ = [
    "ACTION_GRAMMAR",
    "ENV_VERSION",
    "ENV_VERSIONS",
    "GRADERS",
    "TASK_NAMES",
    "BatchMarketEnv",
    "Episode",
    "EpisodeError",
    "EpisodeFinishedError",
    "EpisodeState",
    "MarketEnv",
    "MarketEnvError",
    "Order",
    "ParsedAction",
    "UnknownNameError",
    "format_action",
    "get_version",
    "grade_episode",
    "make",
    "make_batch",
    "parse_action",
]
