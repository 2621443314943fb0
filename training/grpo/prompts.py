"""The GRPO prompt set: market states from train-split episodes, each with its chat prompt and exact state.

Policies (by default the RSI expert and the random agent, sharing the episodes; any agent name
``eval.agents.make_agent`` resolves works, such as the SFT model ``llm:<base>@<adapter>``) play ``episodes``
seeded train-split episodes through the batch env; at every ``stride``-th decision we keep one row per
episode:

- ``prompt``: the chat messages of :func:`llm_agent.prompts.build_messages` for that observation (TRL's
  conversational format: a list of ``{"role", "content"}`` dicts);
- ``state``: the :class:`~market_env.simulator.EpisodeState` the observation was rendered from (portfolio
  included), as canonical JSON, so the reward can fork the episode exactly at that decision;
- ``state_hash``: sha256 of the canonical JSON of (state, task, env version): every completion of a GRPO
  group must carry the same hash (``training.grpo.rewards`` checks it);
- ``action``: the text action the reaching policy took at this decision, and ``continuation``: the JSON list
  of the ones it took after it, to the end of the episode (the ``recorded`` continuation of the reward
  replays them: the policy's own future, not a fixed rule's);
- ``task``, ``env_version``, ``episode`` (its seed), ``expert``, ``t`` (decisions already made), ``date`` and
  ``symbols`` for reading the set.

States come from each policy's own trajectory, so portfolios are the ones that policy holds (RSI is flat
most of the time; the random agent reaches open positions, where SELL decisions matter). Everything is
seeded: the same config gives the same rows.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import market_env
from data.synthetic import resolve_data
from market_env.simulator import EpisodeState
from market_env.versions import get_version

if TYPE_CHECKING:
    from datasets import Dataset


@dataclass(frozen=True)
class PromptSetConfig:
    """Which states the GRPO prompts come from.

    Attributes:
        task: easy, medium or hard.
        episodes: train-split episodes played (slot i is the episode seeded ``seed + i``).
        seed: first episode seed.
        experts: the policies that reach the states, sharing the episodes: any ``eval.agents`` names
            (``rsi``, ``random``, ``llm:<base>@<sft-adapter>`` ...). The default adds ``random`` to the RSI
            expert because RSI alone rarely trades: on the easy task none of its 1,280 states (64 episodes x
            20 days, seed 0) holds a position, so GRPO would never see a SELL decision.
        stride: keep every ``stride``-th decision of each episode (1 = every day).
        think: prompts ask for ``<think>`` reasoning before the actions (match what the SFT data used).
        env_version: env version of the states and of the reward (default: ``ENV_VERSION``).
        split: the split the episodes come from; train unless you know why not.
        data: market data spec (``data.synthetic.resolve_data``, e.g. ``synthetic:edge``); None: real NIFTY.
    """

    task: str = "easy"
    episodes: int = 64
    seed: int = 0
    experts: tuple[str, ...] = ("rsi", "random")
    stride: int = 1
    think: bool = True
    env_version: str | None = None
    split: str = "train"
    data: str | None = None

    def __post_init__(self) -> None:
        if self.episodes < 1 or self.stride < 1:
            raise ValueError(f"episodes and stride must be >= 1, got {self.episodes} and {self.stride}")
        if not self.experts:
            raise ValueError("experts must name at least one policy, e.g. ('rsi',)")


def state_to_json(state: EpisodeState) -> str:
    """Canonical JSON of a state: sorted keys, no spaces; floats round-trip exactly (``repr``)."""
    return json.dumps(asdict(state), sort_keys=True, separators=(",", ":"))


def state_from_json(text: str) -> EpisodeState:
    """Inverse of :func:`state_to_json`."""
    fields = json.loads(text)
    return EpisodeState(**{k: tuple(v) if isinstance(v, list) else v for k, v in fields.items()})


def state_hash(state_json: str, task: str, env_version: str) -> str:
    """sha256 of the canonical JSON of (state, task, env version): one state's identity across processes."""
    payload = json.dumps(
        {"state": json.loads(state_json), "task": task, "env_version": env_version},
        sort_keys=True,
        separators=(",", ":"),
    )
    return hashlib.sha256(payload.encode()).hexdigest()


POLICY = "policy"  # the expert name of the policy being trained (an agent object handed to collect_rows)


def collect_rows(
    config: PromptSetConfig, agent_options: dict[str, Any] | None = None, policy: Any | None = None
) -> list[dict]:
    """Play the experts through ``config.episodes`` episodes and return one row per kept decision.

    The episodes are shared out among ``config.experts`` in contiguous blocks: expert j plays the episodes
    seeded ``seed + first_j`` onwards, so every row's ``episode`` is its own seed and no two experts replay
    the same episode. The expert named ``policy`` is the agent object ``policy`` (the model being trained:
    its states are on-policy).
    """
    version = get_version(config.env_version).version
    rows: list[dict[str, Any]] = []
    first = 0
    for j, expert in enumerate(config.experts):
        count = config.episodes // len(config.experts) + (j < config.episodes % len(config.experts))
        if count:
            agent = _agent(expert, agent_options or {}, policy)
            rows += _expert_rows(agent, expert, count, config.seed + first, config, version)
        first += count
    return rows


def _agent(expert: str, options: dict[str, Any], policy: Any | None) -> Any:
    from eval.agents import make_agent

    if expert == POLICY:
        if policy is None:
            raise ValueError("the expert 'policy' needs the policy being trained (collect_rows(policy=...))")
        return policy
    return make_agent(expert, **options)


def _expert_rows(
    agent: Any, expert: str, episodes: int, seed: int, config: PromptSetConfig, version: str
) -> list[dict[str, Any]]:
    from eval.harness import numeric_to_text
    from llm_agent.prompts import build_messages

    data = {"data": resolve_data(config.data)} if config.data else {}
    env = market_env.make_batch(
        config.task, n_envs=episodes, split=config.split, obs_mode="text", version=version, **data
    )
    observations, _ = env.reset(seed=seed)
    agent.reset(episodes, seed)
    rows: list[dict[str, Any]] = []
    played: list[list[str]] = []  # [step][episode] the text actions the policy took
    for t in range(env.market.task.n_days):
        if t % config.stride == 0:
            for i in range(episodes):
                messages = build_messages(
                    observations[i], config.task, think=config.think, env_version=version
                )
                rows.append(
                    _row(env, i, messages, config.task, version) | {"episode": seed + i, "expert": expert}
                )
        actions = agent.act(observations, env.market.snapshot())
        if agent.obs_mode == "numeric":
            actions = numeric_to_text(actions, env.names)
        played.append(list(actions))
        observations, *_ = env.step(actions)
    for row in rows:  # what the policy did at the row's decision and after it (the recorded continuation)
        i, t = row["episode"] - seed, row["t"]
        row["action"] = played[t][i]
        row["continuation"] = json.dumps([played[k][i] for k in range(t + 1, len(played))])
    return rows


def _row(env: Any, i: int, messages: list[dict[str, str]], task: str, version: str) -> dict[str, Any]:
    state = env.export_state(i)
    state_json = state_to_json(state)
    return {
        "prompt": messages,
        "state": state_json,
        "state_hash": state_hash(state_json, task, version),
        "task": task,
        "env_version": version,
        "t": state.t,
        "date": env.market.panel.iso_date(state.start_day + state.t),
        "symbols": list(env.names[i]),
    }


def build_prompt_dataset(
    config: PromptSetConfig, agent_options: dict[str, Any] | None = None, policy: Any | None = None
) -> Dataset:
    """The prompt set as a ``datasets.Dataset`` (columns: prompt, state, state_hash, task, env_version...)."""
    from datasets import Dataset

    return Dataset.from_list(collect_rows(config, agent_options, policy))
