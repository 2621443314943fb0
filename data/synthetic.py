"""Synthetic markets with a known answer: the lab's controls for graders, agents and training.

Each generator returns a price table with exactly the loader's columns (``date, symbol, open, high, low,
close, volume``) on the SAME trading calendar as the embedded NIFTY data, so every task and split of
``market_env`` works on it unchanged: ``market_env.make("easy", data=synthetic_prices("edge"))``. The CLIs'
``--data synthetic:edge`` goes through :func:`resolve_data`. Symbols are ``SYNA``, ``SYNB``, ... (``SYNAA``
after ``SYNZ``): valid symbols of the action grammar that name no real company. Everything is drawn from
``numpy.random.default_rng(seed)``; a (kind, seed, parameters) triple always gives the same table.

Kinds
- ``martingale``: nothing to learn. Each symbol has its own daily volatility sigma in [1.2%, 2.5%], 30% of
  its variance overnight. open[t] = close[t-1] * exp(s_o z - s_o^2 / 2), close[t] = open[t] * exp(s_i z' -
  s_i^2 / 2) with fresh independent normals: every price is a martingale IN PRICE (E[open[t] | past] =
  close[t-1], E[close[t] | open[t], past] = open[t]), so with zero costs every non-anticipating policy has
  expected P&L exactly zero, and with costs it loses them.
- ``edge``: the same noise times a planted, indicator-visible trend. Each symbol is in an up (+1) or down
  (-1) regime, a Markov chain that switches with probability 1 / ``regime_days`` a day (mean regime length
  ``regime_days``, default 15), starting from its stationary law; overnight and intraday moves each get a
  factor (1 + ``edge`` / 2 * regime) / sqrt(divisor). ``edge`` is the expected daily return inside a regime
  (default 2.2%, against ~0.35% for a round trip's costs). The divisor (:func:`regime_drift`) removes the
  drift that regime persistence hands a holder (up days follow up days), so E[P[t+20] / P[t]] = 1 exactly:
  buy-and-hold is worth cash in expectation on the easy task (within ~1% at 30-40 days). A soft reflection
  keeps prices within the loader's sane range over six years (see :func:`_edge_trend`). The regime shows
  in the 5-day change (``change_5d`` of the observation) within a few days. The market is wild by design:
  a single stock's 20-day return has a standard deviation near 30%, so the score's clip binds in several
  percent of buy-and-hold's easy episodes here (never on the martingale market).
  Best simple policy, ``momentum`` (:func:`momentum_fractions`): at each close, sell every held stock whose
  5-day change is below 0, and buy every stock not held whose 5-day change is above 0, splitting the cash
  equally between these entries; it fills at the next open like any agent. The textbook RSI expert buys
  oversold stocks (RSI < 30), which here are the ones in a down regime, so it does not gain; regimes last
  15 days on average, about the SMA20/SMA50 lag, so the trend expert catches only part of the edge.

Calibration (env 3.0.0, easy task, val split, 400 paired episodes, ``edge`` 0.022, ``regime_days`` 15),
mean scores on seed 0: momentum 0.624, hold 0.500, buy-and-hold 0.499, random 0.495, RSI 0.487.
Reproduce: ``OMP_NUM_THREADS=1 python -m data.synthetic --calibrate`` (``--data synthetic:edge:seed=1``).
Seeds 1 and 2: momentum - buy-and-hold = +0.116 and +0.121; random - buy-and-hold = +0.003 and +0.005
(within noise: both have zero expected P&L; random pays more costs); the trend expert (training.sft.experts)
+0.04 to +0.05 over buy-and-hold; RSI -0.01 to -0.02.
"""

from __future__ import annotations

import argparse
import functools
import math
import string
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from data.loader import load_prices
from data.panel import trading_calendar

KINDS = ("martingale", "edge")
PREFIX = "synthetic:"
DEFAULT_EDGE = 0.022
DEFAULT_REGIME_DAYS = 15.0
OVERNIGHT_SHARE = 0.3  # of each symbol's daily variance
SIGMA_RANGE = (0.012, 0.025)  # daily volatility, drawn per symbol
REFLECT_SCALE = 4.0  # log-price distance from the start at which the edge market starts to turn back
DRIFT_HORIZON = 20  # days over which the edge market's holder expects exactly zero gain (the easy task)


@dataclass(frozen=True)
class SyntheticSpec:
    """What a synthetic table is made from; equal specs give equal tables."""

    kind: str
    seed: int = 0
    edge: float = DEFAULT_EDGE  # expected daily return inside a regime (``edge`` kind only)
    n_symbols: int = 30
    regime_days: float = DEFAULT_REGIME_DAYS  # mean regime length (``edge`` kind only)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown synthetic market {self.kind!r}; expected one of {list(KINDS)}")
        if not 0.0 <= self.edge < 1.0:
            raise ValueError(f"edge must be in [0, 1) (a daily return), got {self.edge}")
        if self.regime_days <= 1.0:
            raise ValueError(
                f"regime_days must be > 1 (a mean regime length in days), got {self.regime_days}"
            )
        if not 1 <= self.n_symbols <= 26 * 27:
            raise ValueError(f"n_symbols must be in 1..702, got {self.n_symbols}")


def symbol_names(n: int) -> list[str]:
    """SYNA..SYNZ, then SYNAA, SYNAB, ...: distinct ignoring case, letters only."""
    letters = string.ascii_uppercase
    names = [f"SYN{a}" for a in letters] + [f"SYN{a}{b}" for a in letters for b in letters]
    return names[:n]


@functools.lru_cache(maxsize=1)
def real_calendar() -> pd.DatetimeIndex:
    """The trading calendar of the embedded NIFTY data (so the splits hold the same days)."""
    prices, _ = load_prices(None)
    return trading_calendar(prices)


def regime_drift(edge: float, switch: float, horizon: int = DRIFT_HORIZON) -> float:
    """The daily divisor that makes a holder's expected gain over ``horizon`` days exactly zero.

    With persistent regimes the product of the daily factors (1 + edge/2 * s)^2 has expectation above one
    (up days follow up days). E over the stationary chain of that product for ``horizon`` days, to the power
    1 / horizon, is the divisor: 30 days is the middle of the tasks (20 to 40), and at 20 or 40 days the
    remaining bias is under 0.2% of the price at the default edge.
    """
    up, down = (1.0 + edge / 2.0) ** 2, (1.0 - edge / 2.0) ** 2
    stay = np.array([[1.0 - switch, switch], [switch, 1.0 - switch]])
    weights = np.array([0.5 * up, 0.5 * down])  # the stationary law, through the first day
    for _ in range(horizon - 1):
        weights = (weights @ stay) * (up, down)
    return float(weights.sum() ** (1.0 / horizon))


def _regime_logs(spec: SyntheticSpec) -> tuple[float, float]:
    """Log of the half-day regime factor (1 +- edge/2) / sqrt(divisor) in the up and the down regime."""
    divisor = math.sqrt(regime_drift(spec.edge, 1.0 / spec.regime_days))
    return math.log(1.0 + spec.edge / 2.0) - math.log(divisor), math.log(1.0 - spec.edge / 2.0) - math.log(
        divisor
    )


def _median_log_drift(spec: SyntheticSpec, sigma: np.ndarray) -> np.ndarray:
    """Expected daily change of log price per symbol: mean-one factors drift down in log."""
    drift = -(sigma**2) / 2.0
    if spec.kind == "edge":
        up, down = _regime_logs(spec)
        drift = drift + up + down  # two half-day factors, half the time in each regime
    return drift


def _edge_trend(
    rng: np.random.Generator, log_noise: np.ndarray, median: np.ndarray, spec: SyntheticSpec
) -> np.ndarray:
    """(T, S) half-day regime factors: (1 + edge/2 * s) / sqrt(divisor).

    The regime s in {-1, +1} is a Markov chain per symbol from its stationary law (switch probability 1 /
    regime_days). A soft reflection keeps prices in the loader's sane range over the six-year calendar: the
    switch probability out of a regime that moves the log price further from its median path (start plus
    ``median`` per day) is multiplied by 1 + tanh(d / REFLECT_SCALE)^3, the other one's by 1 - ... (d: the
    distance); this stays below 1.02 while the price is within a factor e^2 of its median path.
    """
    n_days, n = log_noise.shape
    switch = 1.0 / spec.regime_days
    up, down = _regime_logs(spec)
    state = rng.choice([-1.0, 1.0], size=n)
    draws = rng.random((n_days, n))
    regimes = np.empty((n_days, n))
    distance = np.zeros(n)
    for t in range(n_days):
        if t:
            away = state * np.tanh(distance / REFLECT_SCALE) ** 3  # > 0: this regime moves the price away
            state = np.where(draws[t] < switch * (1.0 + away), -state, state)
        regimes[t] = state
        distance += log_noise[t] + 2.0 * np.where(state > 0, up, down) - median
    return np.exp(np.where(regimes > 0, up, down))


def _paths(spec: SyntheticSpec, n_days: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """(T, S) open, high, low, close, volume."""
    n = spec.n_symbols
    sigma = rng.uniform(*SIGMA_RANGE, size=n)
    s_over, s_intra = sigma * math.sqrt(OVERNIGHT_SHARE), sigma * math.sqrt(1.0 - OVERNIGHT_SHARE)
    log_over = s_over * rng.standard_normal((n_days, n)) - s_over**2 / 2  # mean-one multiplicative noise
    log_intra = s_intra * rng.standard_normal((n_days, n)) - s_intra**2 / 2
    log_over[0] = 0.0  # the first day opens at its start price
    median = _median_log_drift(spec, sigma)
    if spec.kind == "edge":
        log_trend = np.log(_edge_trend(rng, log_over + log_intra, median, spec))
        log_over, log_intra = log_over + log_trend, log_intra + log_trend
    # start prices put the middle of each median path between Rs 300 and Rs 3,000
    start = rng.uniform(math.log(300.0), math.log(3000.0), size=n) - median * n_days / 2
    # close[t] = start * prod_{u <= t} over[u] * intra[u]; open[t] = close[t-1] * over[t]
    log_close = start + np.cumsum(log_over + log_intra, axis=0)
    close, open_ = np.exp(log_close), np.exp(log_close - log_intra)
    wick_up = np.exp(np.abs(rng.standard_normal((n_days, n))) * s_intra / 2)
    wick_down = np.exp(-np.abs(rng.standard_normal((n_days, n))) * s_intra / 2)
    volume = np.round(np.exp(rng.normal(math.log(1e6), 0.5, (n_days, n)))) + 1.0
    high = np.maximum(open_, close) * wick_up
    low = np.minimum(open_, close) * wick_down
    return {"open": open_, "high": high, "low": low, "close": close, "volume": volume}


@functools.lru_cache(maxsize=16)
def _cached_prices(spec: SyntheticSpec) -> pd.DataFrame:
    calendar = real_calendar()
    rng = np.random.default_rng([spec.seed, KINDS.index(spec.kind)])
    paths = _paths(spec, len(calendar), rng)
    names = symbol_names(spec.n_symbols)
    frame = pd.DataFrame(
        {
            "date": np.repeat(calendar.to_numpy(), spec.n_symbols),
            "symbol": np.tile(np.array(names, dtype=object), len(calendar)),
            **{column: values.ravel() for column, values in paths.items()},
        }
    )
    return frame.sort_values(["symbol", "date"], kind="stable").reset_index(drop=True)


def synthetic_prices(
    kind: str,
    seed: int = 0,
    edge: float = DEFAULT_EDGE,
    n_symbols: int = 30,
    regime_days: float = DEFAULT_REGIME_DAYS,
) -> pd.DataFrame:
    """A seeded synthetic price table (see the module docstring); cached per spec, returned as a copy."""
    spec = SyntheticSpec(kind, int(seed), float(edge), int(n_symbols), float(regime_days))
    return _cached_prices(spec).copy()


def parse_spec(text: str) -> SyntheticSpec:
    """``synthetic:edge`` or ``synthetic:edge:seed=3,edge=0.02`` -> its spec."""
    body = text[len(PREFIX) :] if text.startswith(PREFIX) else text
    kind, _, params = body.partition(":")
    fields = {"seed": int, "edge": float, "n_symbols": int, "regime_days": float}
    values: dict = {}
    for item in filter(None, (part.strip() for part in params.split(","))):
        name, sep, value = item.partition("=")
        if not sep or name.strip() not in fields:
            raise ValueError(
                f"bad synthetic parameter {item!r} in {text!r}; expected name=value, names {list(fields)}"
            )
        values[name.strip()] = fields[name.strip()](value)
    return SyntheticSpec(kind, **values)


def resolve_data(spec: str | Path | pd.DataFrame | None) -> str | Path | pd.DataFrame | None:
    """A ``--data`` value: ``synthetic:<kind>[:name=value,...]`` becomes its table; anything else passes."""
    if isinstance(spec, str) and spec.startswith(PREFIX):
        parsed = parse_spec(spec)
        return synthetic_prices(parsed.kind, parsed.seed, parsed.edge, parsed.n_symbols, parsed.regime_days)
    return spec


def momentum_fractions(change_5d: np.ndarray, held: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The edge market's best simple policy as (sell, buy) fractions of shape (B, K).

    Sell all of a held stock whose 5-day change is below 0; buy every stock not held whose 5-day change is
    above 0, each with 1 / (number of such entries) of the cash. Inputs: the raw 5-day change (or any
    positive multiple of it, such as the numeric observation's ``change_5d`` column) and a held mask.
    """
    sell = np.where(held & (change_5d < 0.0), 1.0, 0.0)
    enter = ~held & (change_5d > 0.0)
    n_enter = np.maximum(enter.sum(axis=-1, keepdims=True), 1)
    buy = np.where(enter, 1.0 / n_enter, 0.0)
    return sell, buy


# ---------------------------------------------------------------------------------------- calibration
POLICIES = ("hold", "buy-and-hold", "random", "momentum", "rsi")


def _momentum_action(observations: np.ndarray, n_stocks: int) -> np.ndarray:
    """:func:`momentum_fractions` read off numeric observations, as numeric actions."""
    from market_env.actions import NUMERIC_DEADZONE
    from market_env.observations import split_observation

    per_stock, _ = split_observation(observations, n_stocks)
    sell, buy = momentum_fractions(per_stock[..., 1], per_stock[..., 12] > 0)  # change_5d x 10, held
    buy_value = NUMERIC_DEADZONE + (1.0 - NUMERIC_DEADZONE) * buy
    return np.where(sell > 0, -1.0, np.where(buy > 0, buy_value, 0.0)).astype(np.float32)


def calibrate(
    data: pd.DataFrame | object,
    task: str = "easy",
    split: str = "val",
    n_episodes: int = 400,
    seed: int = 0,
    version: str | None = None,
) -> dict[str, float]:
    """Mean score of each policy in ``POLICIES`` over the same ``n_episodes`` episodes (paired by seed)."""
    import market_env
    from eval.agents import RandomAgent, RSIAgent

    means = {}
    for policy in POLICIES:
        batch = market_env.make_batch(task, n_envs=n_episodes, split=split, version=version, data=data)
        obs, _ = batch.reset(seed=seed)
        n_stocks, n_days = batch.market.task.n_stocks, batch.market.task.n_days
        agent = RandomAgent() if policy == "random" else RSIAgent()
        agent.reset(n_episodes, seed)
        for t in range(n_days):
            if policy == "momentum":
                action = _momentum_action(obs, n_stocks)
            elif policy in ("random", "rsi"):
                action = agent.act(obs, batch.market.snapshot())
            else:
                fill = 1.0 if policy == "buy-and-hold" and t == 0 else 0.0
                action = np.full((n_episodes, n_stocks), fill, dtype=np.float32)
            obs, _, _, _, infos = batch.step(action)
        means[policy] = float(np.mean([grade["score"] for grade in infos["grade"]]))
    return means


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Synthetic markets: measure policies on one")
    parser.add_argument("--calibrate", action="store_true", help="mean scores of the reference policies")
    parser.add_argument("--data", default="synthetic:edge", help="synthetic:<kind>[:name=value,...]")
    parser.add_argument("--task", default="easy")
    parser.add_argument("--split", default="val")
    parser.add_argument("--episodes", type=int, default=400)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.calibrate:
        import market_env
        from data.panel import load_panel

        panel = load_panel(resolve_data(args.data))
        means = calibrate(panel, args.task, args.split, args.episodes, args.seed)
        print(
            f"{args.data} {args.task}/{args.split}, env {market_env.ENV_VERSION}, {args.episodes} episodes:"
        )
        for policy, score in means.items():
            print(f"  {policy:<14}{score:.4f}")


if __name__ == "__main__":
    main()
