"""Grader 3.0.0 on controls with a known answer (issue 15): no variance premium, size-aware, skill is paid.

The zero-cost runs drive the simulator directly (a MarketRules/TaskSpec variant with no fees and no
slippage) on independent episodes: every symbol, windows that do not overlap in time, several seeds of the
martingale market. Their standard errors are honest, and a premium of 0.01 would be caught (checked).
"""

from __future__ import annotations

import dataclasses
import functools

import numpy as np
import pytest

import market_env
from data.panel import Panel, load_panel
from data.synthetic import momentum_fractions, synthetic_prices
from market_env.actions import NUMERIC_DEADZONE
from market_env.costs import CostModel
from market_env.grader import get_grader
from market_env.observations import split_observation
from market_env.simulator import MarketSimulator
from market_env.versions import get_version

SEEDS = (0, 1, 2)
ZERO_COSTS = CostModel(stt_rate=0.0, transaction_rate=0.0, sebi_rate=0.0, stamp_duty_rate=0.0, dp_charge=0.0)


@functools.lru_cache(maxsize=12)
def _panel(kind: str, seed: int) -> Panel:
    return load_panel(synthetic_prices(kind, seed=seed))


def _independent_episodes(panel: Panel, n_stocks: int, n_days: int, lookback: int) -> tuple[list, list]:
    """Start days and symbols of episodes that share no price move: disjoint windows, disjoint symbols."""
    starts = np.arange(lookback, panel.n_days - n_days - 1, n_days + 1)
    groups = np.arange(len(panel.symbols) // n_stocks * n_stocks).reshape(-1, n_stocks)
    return [int(s) for s in starts for _ in groups], [g for _ in starts for g in groups]


def _policy_fractions(policy: str, t: int, shape: tuple, rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    """(sell, buy) fractions: hold, a fixed exposure bought on day one ("exposure:0.5"), or random trading."""
    zeros = np.zeros(shape)
    if policy.startswith("exposure:"):
        return zeros, np.full(shape, float(policy.split(":")[1]) / shape[1] if t == 0 else 0.0)
    if policy == "random":  # eval.agents.RandomAgent's rule
        draw, fraction = rng.random(shape), rng.uniform(0.1, 1.0, shape)
        return np.where((draw >= 0.1) & (draw < 0.2), fraction, 0.0), np.where(draw < 0.1, fraction, 0.0)
    return zeros, zeros


def _scores(panel: Panel, task: str, policy: str, costs: bool, grader: str = "3.0.0") -> np.ndarray:
    version = get_version("3.0.0")
    spec = version.task(task)
    rules = version.rules
    if not costs:
        spec, rules = (
            dataclasses.replace(spec, slippage_bps=0.0),
            dataclasses.replace(rules, costs=ZERO_COSTS),
        )
    starts, symbols = _independent_episodes(panel, spec.n_stocks, spec.n_days, rules.lookback_days)
    sim = MarketSimulator(panel, spec, rules, get_grader(grader), len(starts))
    sim.start_episodes(np.arange(len(starts)), starts, symbols)
    rng = np.random.default_rng(7)
    for t in range(spec.n_days):
        sim.step(*_policy_fractions(policy, t, sim.shares.shape, rng))
    return get_grader(grader).score(sim.metrics())[0]


POLICIES = ("exposure:0.01", "exposure:0.5", "exposure:1.0", "random")


# one stock (wide swings, 2,000+ episodes a seed) and a 25-stock book (36 disjoint windows a seed: more seeds)
@pytest.mark.parametrize("task, seeds", [("easy", SEEDS), ("hard", range(8))])
def test_no_policy_beats_cash_on_a_martingale_without_costs_and_all_lose_with_them(task, seeds):
    for policy in POLICIES:
        free = np.concatenate([_scores(_panel("martingale", s), task, policy, costs=False) for s in seeds])
        paid = np.concatenate([_scores(_panel("martingale", s), task, policy, costs=True) for s in seeds])
        standard_error = free.std(ddof=1) / np.sqrt(free.size)
        assert 4 * standard_error < 0.01, "too few episodes to catch a 0.01 premium"
        assert abs(free.mean() - 0.5) < 4 * standard_error + 1e-12, policy  # hold scores exactly 0.5
        paired = paid - free  # same episodes, same moves: what the costs took
        assert paired.mean() < 0, policy
        if policy != "exposure:0.01":  # a token position's costs are below whole-share rounding noise
            assert paired.mean() < -4 * paired.std(ddof=1) / np.sqrt(paired.size), policy
    hold = np.concatenate([_scores(_panel("martingale", s), task, "hold", costs=True) for s in seeds])
    assert (hold == 0.5).all()


def test_the_same_martingale_episodes_show_grader_2_premium():
    """The check above can fail: under grader 2.0.0 a token position beats hold on the same episodes."""
    panel = _panel("martingale", 0)
    token = _scores(panel, "easy", "exposure:0.01", costs=False, grader="2.0.0")
    hold = _scores(panel, "easy", "hold", costs=False, grader="2.0.0")
    assert token.mean() - hold.mean() > 0.05


def _play(batch, actions_of) -> np.ndarray:
    obs, _ = batch.reset(seed=0)
    for t in range(batch.market.task.n_days):
        obs, _, _, _, infos = batch.step(actions_of(obs, t))
    return np.array([grade["score"] for grade in infos["grade"]])


def _exposure(fraction: float):
    buy = NUMERIC_DEADZONE + (1.0 - NUMERIC_DEADZONE) * fraction
    return lambda obs, t: np.full((obs.shape[0], 1), buy if t == 0 else 0.0, dtype=np.float32)


def _momentum(scale: float, n_stocks: int):
    """The edge market's rule on numeric observations, entries sized at ``scale`` of its fractions."""

    def act(obs, t):
        per_stock, _ = split_observation(obs, n_stocks)
        sell, buy = momentum_fractions(per_stock[..., 1], per_stock[..., 12] > 0)  # change_5d x 10, held
        buy_value = NUMERIC_DEADZONE + (1.0 - NUMERIC_DEADZONE) * buy * scale
        return np.where(sell > 0, -1.0, np.where(buy > 0, buy_value, 0.0)).astype(np.float32)

    return act


def test_a_one_percent_position_scores_like_cash_on_the_real_test_split():
    means = {}
    for version in ("3.0.0", "2.0.0"):
        batch = market_env.make_batch("easy", n_envs=400, split="test", version=version)
        means[version] = _play(batch, _exposure(0.01)).mean() - _play(batch, _exposure(0.0)).mean()
    assert abs(means["3.0.0"]) < 0.01
    # regression record: grader 2.0.0 pays a token position ~+0.1 over hold (its clipped Sharpe term)
    assert means["2.0.0"] > 0.05


def test_on_the_edge_market_the_edge_at_full_size_beats_it_at_one_percent_and_beats_hold_and_buy_and_hold():
    for seed in (0, 1):
        panel = _panel("edge", seed)
        batch = market_env.make_batch("easy", n_envs=400, split="val", data=panel)
        full, token = _play(batch, _momentum(1.0, 1)), _play(batch, _momentum(0.01, 1))
        buy_and_hold, hold = _play(batch, _exposure(1.0)), _play(batch, _exposure(0.0))
        assert full.mean() > token.mean() + 0.08
        assert abs(token.mean() - 0.5) < 0.01
        assert full.mean() > hold.mean() + 0.08  # net of its costs: they enter once, through the NAV
        assert full.mean() > buy_and_hold.mean() + 0.08
