"""Expert policies for SFT rollouts: classic indicator rules that say why they trade.

An expert reads one step's batch :class:`~market_env.observations.Snapshot` (the numbers the observation is
rendered from: indicators up to the decision close, shares, average cost, close) and nothing else, so it
cannot see the future. ``expert.signals(snapshot)`` returns :class:`Signals`, (B, K) arrays saying which
stocks to buy, which exit rule fired for which holding, and why a would-be entry was blocked;
``signals.decision(i, names)`` turns episode ``i`` into orders plus the :class:`Call` behind each one,
which is what ``training.sft.think`` writes the ``<think>`` trace from.

The rules (every fraction is rounded to the 4 decimals ``format_action`` prints, so the text answer parses
back to exactly these orders):

- ``rsi``: the evaluation harness's :class:`~eval.agents.RSIAgent`, unchanged. Buy a stock not held when
  RSI < 30 and the trend (SMA20/SMA50 - 1) >= -2%, with 1/n of the cash (n = stocks not held); sell all
  when RSI > 70 or the close is more than 5% below the average cost.
- ``trend``: trend following. Buy a stock not held when the trend > +1% and the MACD histogram is
  positive and rising, with 1/n of the cash; sell all when the trend < -1% or the histogram is negative
  and falling.
- ``bollinger``: mean reversion to the band. Buy a stock not held when Bollinger %B < 0.05 and RSI >= 25
  (at the lower band, but not collapsing), with half of 1/n of the cash; sell all when %B > 0.8 or the
  close is more than 5% below the average cost.
- ``momentum``: the synthetic edge market's documented best simple rule (the evaluation's ``momentum``
  agent, through ``data.synthetic.momentum_fractions``). Buy every stock not held whose 5-day change is
  above 0, with 1/n of the cash (n = such entries); sell all of a held stock whose 5-day change is below 0.
  Not a textbook indicator rule: a control that says what imitating the known answer reaches
  (docs/grpo.md).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from data.synthetic import momentum_fractions
from eval.agents import (
    RSIAgent,
    RuleAgent,
    UnknownAgentError,
    buy_action,
    feature,
    register_prefix,
    sell_action,
)
from market_env.actions import BUY, SELL, Order, format_fraction
from market_env.observations import Snapshot

HOLD = "HOLD"


@dataclass(frozen=True)
class Call:
    """One stock's part in a decision: a trade and the rule that fired, or why it is left alone.

    ``rule`` names the situation for ``training.sft.think``: an entry rule (``oversold``, ``trend_up``,
    ``lower_band``), an exit rule (``overbought``, ``stop_loss``, ``trend_down``, ``macd_down``,
    ``upper_band``), or for a HOLD call ``blocked_<filter>`` (the entry fired but a filter stopped it),
    ``held`` (a position with no exit) or ``no_signal`` (the stock nearest to an entry, which is not one).
    """

    symbol: str
    stock: int  # index in the episode's symbol order (the table row)
    side: str  # BUY, SELL or HOLD
    rule: str
    fraction: float = 0.0  # the order's fraction; 0 for HOLD


@dataclass(frozen=True)
class Decision:
    """An expert's answer for one episode and step: the orders and the calls that explain them."""

    expert: str
    orders: tuple[Order, ...]
    calls: tuple[Call, ...]  # trades (sells first), or for a hold the one or two stocks the note is about
    n_stocks: int

    @property
    def is_hold(self) -> bool:
        return not self.orders


@dataclass(frozen=True)
class Signals:
    """One step's rule outcomes for B episodes x K stocks; dict order is the order rules are reported in."""

    expert: str
    entry: str  # the entry rule's name, for the calls of buys
    held: np.ndarray  # (B, K) bool
    buy: np.ndarray  # (B, K) bool
    buy_fraction: np.ndarray  # (B, K) fraction of cash for an entry
    exits: dict[str, np.ndarray]  # exit rule -> (B, K) bool (only where held)
    blocked: dict[str, np.ndarray]  # filter -> (B, K) bool: the entry trigger fired, this filter said no
    nearest: np.ndarray  # (B, K) how close each stock is to an entry (lower is closer)

    @property
    def sell(self) -> np.ndarray:
        return _any(self.exits, self.held) & self.held

    def trades(self) -> np.ndarray:
        """(B,) True where the episode places at least one order this step."""
        return (self.sell | (self.buy & ~self.held)).any(axis=1)

    def decision(self, i: int, names: tuple[str, ...]) -> Decision:
        """Orders and calls of episode ``i`` (``names``: its symbols in table order)."""
        sells = [
            Call(names[k], k, SELL, self._first(self.exits, i, k), 1.0) for k in np.flatnonzero(self.sell[i])
        ]
        buys = [
            Call(names[k], k, BUY, self.entry, float(format_fraction(self.buy_fraction[i, k])))
            for k in np.flatnonzero(self.buy[i] & ~self.held[i])
        ]
        calls = sells + buys
        orders = tuple(Order(c.side, c.symbol, c.fraction) for c in calls)
        return Decision(self.expert, orders, tuple(calls) or self._hold_calls(i, names), len(names))

    @staticmethod
    def _first(rules: dict[str, np.ndarray], i: int, k: int) -> str:
        return next(name for name, mask in rules.items() if mask[i, k])

    def _hold_calls(self, i: int, names: tuple[str, ...]) -> tuple[Call, ...]:
        """What a hold is about: a blocked entry, else the nearest stock to an entry; plus one position."""
        blocked = _any(self.blocked, self.held)[i] & ~self.held[i]
        flat = ~self.held[i]
        calls = []
        if blocked.any():
            k = int(np.flatnonzero(blocked)[0])
            calls.append(Call(names[k], k, HOLD, "blocked_" + self._first(self.blocked, i, k)))
        elif flat.any():
            k = int(np.flatnonzero(flat)[np.argmin(self.nearest[i][flat])])
            calls.append(Call(names[k], k, HOLD, "no_signal"))
        if self.held[i].any():
            k = int(np.flatnonzero(self.held[i])[0])
            calls.append(Call(names[k], k, HOLD, "held"))
        return tuple(calls)


def _any(masks: dict[str, np.ndarray], like: np.ndarray) -> np.ndarray:
    """Element-wise OR of the masks (all False when there are none)."""
    return np.logical_or.reduce([np.zeros_like(like, dtype=bool), *masks.values()])


class Expert(Protocol):
    name: str

    def signals(self, snapshot: Snapshot) -> Signals: ...


def _n_flat(held: np.ndarray) -> np.ndarray:
    return np.maximum((~held).sum(axis=1, keepdims=True), 1)


def _loss(snapshot: Snapshot, held: np.ndarray) -> np.ndarray:
    """close / average cost - 1 where held, else 0."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(held, snapshot.close / snapshot.avg_cost - 1.0, 0.0)


@dataclass
class RSIExpert:
    """The RSI rule agent of the evaluation harness, with its reasons (its rules: ``eval.agents``)."""

    agent: RSIAgent = field(default_factory=RSIAgent)
    name: str = "rsi"

    def signals(self, snapshot: Snapshot) -> Signals:
        s = self.agent.signals(snapshot)
        rsi, trend = feature(snapshot, "rsi"), feature(snapshot, "trend")
        held = snapshot.shares > 0
        # explanation only: oversold entries the trend filter stopped
        bearish = ~held & (rsi < self.agent.oversold) & (trend < self.agent.bearish_trend)
        exits = {"overbought": s.overbought, "stop_loss": s.stop_loss}
        return Signals(
            self.name, "oversold", held, s.buy, s.buy_fraction, exits, {"bearish_trend": bearish}, rsi
        )


@dataclass
class TrendExpert:
    """Trend following on SMA20/SMA50 and the MACD histogram (thresholds as fractions)."""

    entry_trend: float = 0.01  # buy above +1%: the observation's "up" label
    exit_trend: float = -0.01  # sell below -1%: its "down" label
    name: str = "trend"

    def signals(self, snapshot: Snapshot) -> Signals:
        trend, hist = feature(snapshot, "trend"), feature(snapshot, "macd_hist")
        rising = feature(snapshot, "macd_hist_change") >= 0  # the observation's "rising" label
        held = snapshot.shares > 0
        trend_up = trend > self.entry_trend
        momentum = (hist > 0) & rising
        exits = {"trend_down": held & (trend < self.exit_trend), "macd_down": held & (hist < 0) & ~rising}
        buy = ~held & trend_up & momentum
        blocked = {"macd": ~held & trend_up & ~momentum}
        fraction = np.broadcast_to(1.0 / _n_flat(held), held.shape)
        return Signals(self.name, "trend_up", held, buy, fraction, exits, blocked, -trend)


@dataclass
class BollingerExpert:
    """Mean reversion to the Bollinger band: buy at the lower band unless RSI is collapsing."""

    lower: float = 0.05  # %B below this is at (or under) the lower band
    upper: float = 0.8  # %B above this: back in the upper part of the band, take profit
    min_rsi: float = 25.0  # below this the fall is a collapse, not a dip
    stop_loss: float = 0.05
    size: float = 0.5  # entries use half of the equal slice of cash: mean reversion can keep falling
    name: str = "bollinger"

    def signals(self, snapshot: Snapshot) -> Signals:
        pct_b, rsi = feature(snapshot, "pct_b"), feature(snapshot, "rsi")
        held = snapshot.shares > 0
        at_band = ~held & (pct_b < self.lower)
        exits = {
            "upper_band": held & (pct_b > self.upper),
            "stop_loss": held & (_loss(snapshot, held) < -self.stop_loss),
        }
        buy = at_band & (rsi >= self.min_rsi)
        blocked = {"rsi_collapse": at_band & (rsi < self.min_rsi)}
        fraction = np.broadcast_to(self.size / _n_flat(held), held.shape)
        return Signals(self.name, "lower_band", held, buy, fraction, exits, blocked, pct_b)


@dataclass
class MomentumExpert:
    """The edge market's best simple rule: buy a stock not held that rose over 5 days, sell one that fell."""

    name: str = "momentum"

    def signals(self, snapshot: Snapshot) -> Signals:
        change = feature(snapshot, "change_5d")
        held = snapshot.shares > 0
        sell, buy = momentum_fractions(change, held)  # reused, so the expert is the evaluation's agent
        exits = {"falling_5d": sell > 0}
        return Signals(self.name, "rising_5d", held, buy > 0, buy, exits, {}, -change)


EXPERTS = {"rsi": RSIExpert, "trend": TrendExpert, "bollinger": BollingerExpert, "momentum": MomentumExpert}


def make_expert(name: str) -> Expert:
    if name not in EXPERTS:
        raise ValueError(f"unknown expert {name!r}; expected one of: {', '.join(EXPERTS)}")
    return EXPERTS[name]()


@dataclass
class ExpertAgent(RuleAgent):
    """An SFT teacher as an evaluation agent (``evaluate --agent expert:trend``): a student's claim to have
    learnt something holds only beside the score of the rule it imitated, on the same episodes. Its orders
    are the ones the SFT answers write: sell all on an exit, buy ``buy_fraction`` of the cash on an entry."""

    expert: Expert = field(default_factory=TrendExpert)
    name: str = "expert:trend"

    def act(self, observations: object, snapshot: Snapshot) -> np.ndarray:
        signals = self.expert.signals(snapshot)
        fraction = np.vectorize(lambda f: float(format_fraction(f)))(signals.buy_fraction)  # as the text says
        entries = signals.buy & ~signals.held
        actions = np.where(signals.sell, sell_action(1.0), np.where(entries, buy_action(fraction), 0.0))
        return actions.astype(np.float32)


def _resolve(name: str, options: dict) -> ExpertAgent:
    try:
        return ExpertAgent(expert=make_expert(name.removeprefix("expert:")), name=name)
    except ValueError as err:
        raise UnknownAgentError(f"{name}: {err}") from err


register_prefix("expert:", _resolve)
