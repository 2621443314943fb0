"""Agents and the registry that resolves their names.

An agent acts on a whole batch of episodes at once (so an LLM can batch its generation across episodes):
``act(observations, snapshot)`` gets the batch env's observations (text list or numeric array, as the agent's
``obs_mode`` asks) and the step's :class:`~market_env.observations.Snapshot` (the same numbers the
observations are rendered from: indicators, positions, cash), and returns the actions for every episode.

Rule agents act in numeric mode: a value a in [-1, 1] per stock, where a > 0.1 buys (a - 0.1)/0.9 of cash
and a < -0.1 sells (-a - 0.1)/0.9 of the shares (DESIGN.md). ``buy_action(f)`` / ``sell_action(f)`` encode a
fraction exactly that way.

Names: ``hold``, ``buy-and-hold``, ``random``, ``rsi``, ``momentum``; ``ppo:<path>``; LLMs (``smollm2-135m``,
``qwen-0.5b``, ``deepseek-7b``, ``llm:<hf-id-or-path>[@<adapter>]``) resolve lazily, so rule-agent runs never
import torch.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol

import numpy as np

from data.synthetic import momentum_fractions
from market_env.actions import NUMERIC_DEADZONE
from market_env.observations import Snapshot


class Agent(Protocol):
    name: str
    obs_mode: str  # "text" or "numeric": what the harness renders for it

    def reset(self, n_envs: int, seed: int) -> None: ...

    def act(self, observations: Any, snapshot: Snapshot) -> Any: ...

    def describe(self) -> dict[str, str]:
        """Params for the run record: at least ``model`` and ``adapter`` (empty for rule agents)."""
        ...


class UnknownAgentError(ValueError):
    """An agent name the registry does not know; the message lists the valid names."""


def buy_action(fraction: np.ndarray | float) -> np.ndarray:
    """Numeric action value that buys ``fraction`` of the available cash."""
    return NUMERIC_DEADZONE + (1.0 - NUMERIC_DEADZONE) * np.asarray(fraction, dtype=np.float64)


def sell_action(fraction: np.ndarray | float) -> np.ndarray:
    """Numeric action value that sells ``fraction`` of the shares held."""
    return -buy_action(fraction)


def feature(snapshot: Snapshot, name: str) -> np.ndarray:
    """One raw indicator for every (episode, stock) of the step, shape (B, K)."""
    return snapshot.features[..., snapshot.panel.feature_names.index(name)]


@dataclass
class RuleAgent:
    """Base of the rule agents: numeric actions, no model."""

    name: str = "rule"
    obs_mode: str = "numeric"

    def reset(self, n_envs: int, seed: int) -> None:
        self.n_envs = n_envs

    def describe(self) -> dict[str, str]:
        return {"model": "", "adapter": ""}


@dataclass
class HoldAgent(RuleAgent):
    """Never trades. Scores exactly 0.300 under grader 1.0.0."""

    name: str = "hold"

    def act(self, observations: Any, snapshot: Snapshot) -> np.ndarray:
        return np.zeros(snapshot.symbols.shape, dtype=np.float32)


@dataclass
class BuyAndHoldAgent(RuleAgent):
    """Equal weight on the first day (every stock asks for all the cash, so each gets 1/K), then holds.

    That is exactly the equal-weight benchmark grader 2.0.0 measures excess return against.
    """

    name: str = "buy-and-hold"

    def act(self, observations: Any, snapshot: Snapshot) -> np.ndarray:
        first_day = (snapshot.t == 0)[:, None]
        return np.where(first_day, 1.0, 0.0) * np.ones(snapshot.symbols.shape, dtype=np.float32)


@dataclass
class RandomAgent(RuleAgent):
    """Each day, each stock: buy a random fraction with probability 10%, sell one with 10%, else hold.

    Episode i of a run seeded ``seed`` draws from its own generator seeded ``seed + i`` (the seed of the
    episode it plays), so an episode's actions do not depend on which other episodes share its batch: a
    run sharded over workers (``evaluate --workers``) plays exactly what one process plays.
    """

    name: str = "random"
    trade_probability: float = 0.1
    rngs: list[np.random.Generator] = field(default_factory=list, repr=False)

    def reset(self, n_envs: int, seed: int) -> None:
        super().reset(n_envs, seed)
        self.rngs = [np.random.default_rng(seed + i) for i in range(n_envs)]

    def act(self, observations: Any, snapshot: Snapshot) -> np.ndarray:
        n_stocks = snapshot.symbols.shape[1]
        draw = np.stack([rng.random(n_stocks) for rng in self.rngs])
        fraction = np.stack([rng.uniform(0.1, 1.0, n_stocks) for rng in self.rngs])
        buy = draw < self.trade_probability
        sell = (draw >= self.trade_probability) & (draw < 2 * self.trade_probability)
        return np.where(buy, buy_action(fraction), np.where(sell, sell_action(fraction), 0.0)).astype(
            np.float32
        )


class RSISignals(NamedTuple):
    """What :class:`RSIAgent` decides for every (episode, stock), as (B, K) arrays."""

    buy: np.ndarray  # bool: enter
    buy_fraction: np.ndarray  # fraction of cash for an entry: 1 / stocks not held
    overbought: np.ndarray  # bool: exit because RSI > 70
    stop_loss: np.ndarray  # bool: exit because the close is > 5% below the average cost


@dataclass
class RSIAgent(RuleAgent):
    """The classic RSI(14) mean-reversion rule, per stock, each day:

    - BUY when not holding, RSI < 30 and the trend is not bearish (SMA20/SMA50 - 1 >= -2%), with a fraction
      1/n of the cash, n = the number of stocks not held (so cash is shared among possible entries);
      the position cap of the task still applies.
    - SELL everything when holding and RSI > 70 (overbought) or the close is more than 5% below the average
      cost (stop-loss).
    - Otherwise hold.
    """

    name: str = "rsi"
    oversold: float = 30.0
    overbought: float = 70.0
    bearish_trend: float = -0.02
    stop_loss: float = 0.05

    def signals(self, snapshot: Snapshot) -> RSISignals:
        """The rule's decisions with the exit that fired; ``act`` and the SFT experts both use it."""
        rsi, trend = feature(snapshot, "rsi"), feature(snapshot, "trend")
        held = snapshot.shares > 0
        n_flat = np.maximum((~held).sum(axis=1, keepdims=True), 1)
        buy = ~held & (rsi < self.oversold) & (trend >= self.bearish_trend)
        with np.errstate(divide="ignore", invalid="ignore"):
            loss = np.where(held, snapshot.close / snapshot.avg_cost - 1.0, 0.0)
        overbought, stop_loss = held & (rsi > self.overbought), held & (loss < -self.stop_loss)
        return RSISignals(buy, np.broadcast_to(1.0 / n_flat, buy.shape), overbought, stop_loss)

    def act(self, observations: Any, snapshot: Snapshot) -> np.ndarray:
        s = self.signals(snapshot)
        sell = s.overbought | s.stop_loss
        return np.where(s.buy, buy_action(s.buy_fraction), np.where(sell, sell_action(1.0), 0.0)).astype(
            np.float32
        )


@dataclass
class MomentumAgent(RuleAgent):
    """The edge market's documented best simple rule (``data.synthetic.momentum_fractions``), per stock, each
    day: sell all of a held stock whose 5-day change is below 0; buy every stock not held whose 5-day change
    is above 0, with 1/n of the cash each, n = the number of such entries. The rule is reused, not restated,
    so this agent and the synthetic market's calibration cannot drift apart.
    """

    name: str = "momentum"

    def act(self, observations: Any, snapshot: Snapshot) -> np.ndarray:
        sell, buy = momentum_fractions(feature(snapshot, "change_5d"), snapshot.shares > 0)
        return np.where(sell > 0, sell_action(sell), np.where(buy > 0, buy_action(buy), 0.0)).astype(
            np.float32
        )


RULE_AGENTS: dict[str, Callable[[], Agent]] = {
    "hold": HoldAgent,
    "buy-and-hold": BuyAndHoldAgent,
    "random": RandomAgent,
    "rsi": RSIAgent,
    "momentum": MomentumAgent,
}
# Prefix and alias resolvers added by other packages (PPO, LLM), imported only when their name is asked for.
PREFIX_RESOLVERS: dict[str, Callable[[str, dict], Agent]] = {}
_LAZY_PREFIXES = {
    "ppo:": "training.ppo.trainer",
    "llm:": "llm_agent.policy",
    "expert:": "training.sft.experts",
}
_LLM_ALIASES = ("smollm2-135m", "qwen-0.5b", "deepseek-7b")


def register_prefix(prefix: str, resolver: Callable[[str, dict], Agent]) -> None:
    """Let ``<prefix><rest>`` names resolve through ``resolver(name, options)``."""
    PREFIX_RESOLVERS[prefix] = resolver


def agent_names() -> list[str]:
    return [*RULE_AGENTS, "ppo:<path>", "expert:<rsi|trend|bollinger>", *_LLM_ALIASES,
            "llm:<hf-id-or-path>[@<adapter>]"]  # fmt: skip


def make_agent(name: str, **options: Any) -> Agent:
    """Resolve an agent name; ``options`` go to model-backed agents (generation settings and the like)."""
    if name in RULE_AGENTS:
        return RULE_AGENTS[name]()
    # "+flags" (smollm2-135m+constrained) name an LLM configuration; the LLM resolver reads them
    llm_alias = name.split("+", 1)[0] in _LLM_ALIASES
    lookup = "llm:" if llm_alias else next((p for p in _LAZY_PREFIXES if name.startswith(p)), None)
    if lookup is None:
        raise UnknownAgentError(f"unknown agent {name!r}; expected one of: {', '.join(agent_names())}")
    if lookup not in PREFIX_RESOLVERS:
        import importlib

        importlib.import_module(_LAZY_PREFIXES[lookup])  # registers its resolver
    return PREFIX_RESOLVERS[lookup](name, options)
