"""Expert policies: they follow their documented rules, the RSI expert is the evaluation RSI agent, and
nothing after the decision day can change a decision."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

import market_env
from data import build_panel, load_prices
from data.synthetic import resolve_data
from eval.agents import MomentumAgent, RSIAgent, feature
from market_env.actions import format_action, numeric_to_fractions, parse_action
from training.sft.experts import EXPERTS, BollingerExpert, Signals, TrendExpert, make_expert


def _steps(task: str, n_envs: int, expert, n_steps: int, data: str | None = None):
    """Yield (snapshot, signals, names) while the expert trades in a train-split batch."""
    batch = market_env.make_batch(
        task, n_envs=n_envs, split="train", obs_mode="text", seed=0, data=resolve_data(data)
    )
    batch.reset()
    for _ in range(n_steps):
        snapshot = batch.market.snapshot()
        signals = expert.signals(snapshot)
        names = list(batch.names)
        yield snapshot, signals, names
        batch.step([format_action(signals.decision(i, names[i]).orders) for i in range(n_envs)])


def test_unknown_expert_lists_the_valid_names():
    with pytest.raises(ValueError, match="rsi, trend, bollinger, momentum"):
        make_expert("macd")


def sides_taken_matching(agent, steps) -> set[str]:
    """Assert every decision's orders are the rule agent's (buy fractions to the 4 printed decimals, sells
    of all); return the order sides seen."""
    seen = set()
    for snapshot, signals, names in steps:
        sell, buy, _ = numeric_to_fractions(agent.act(None, snapshot))
        for i, symbols in enumerate(names):
            orders = {o.symbol: o for o in signals.decision(i, symbols).orders}
            for k, symbol in enumerate(symbols):
                order = orders.get(symbol)
                if buy[i, k] > 0:
                    assert order.side == "BUY" and order.fraction == pytest.approx(buy[i, k], abs=5e-5)
                elif sell[i, k] > 0:
                    assert order.side == "SELL" and order.fraction == 1.0
                else:
                    assert order is None
                seen |= {order.side} if order else set()
    return seen


def test_rsi_expert_decides_exactly_what_the_rsi_agent_does():
    assert sides_taken_matching(RSIAgent(), _steps("hard", 32, make_expert("rsi"), 25))


def test_momentum_expert_decides_exactly_what_the_momentum_agent_does():
    steps = _steps("medium", 16, make_expert("momentum"), 20, "synthetic:edge")
    assert sides_taken_matching(MomentumAgent(), steps) == {"BUY", "SELL"}


def test_trend_expert_follows_its_documented_rules():
    rules = TrendExpert()
    seen = set()
    for snapshot, signals, _ in _steps("hard", 32, rules, 30):
        trend, hist = feature(snapshot, "trend"), feature(snapshot, "macd_hist")
        rising = feature(snapshot, "macd_hist_change") >= 0
        held = snapshot.shares > 0
        np.testing.assert_array_equal(signals.buy, ~held & (trend > 0.01) & (hist > 0) & rising)
        np.testing.assert_array_equal(signals.sell, held & ((trend < -0.01) | ((hist < 0) & ~rising)))
        seen |= {name for name, mask in signals.exits.items() if mask.any()} | (
            {"buy"} if signals.buy.any() else set()
        )
    assert seen == {"buy", "trend_down", "macd_down"}  # every rule fired at least once


def test_bollinger_expert_follows_its_documented_rules():
    rules = BollingerExpert()
    seen = set()
    for snapshot, signals, _ in _steps("hard", 32, rules, 30):
        pct_b, rsi = feature(snapshot, "pct_b"), feature(snapshot, "rsi")
        held = snapshot.shares > 0
        with np.errstate(divide="ignore", invalid="ignore"):
            loss = np.where(held, snapshot.close / snapshot.avg_cost - 1, 0.0)
        np.testing.assert_array_equal(signals.buy, ~held & (pct_b < 0.05) & (rsi >= 25))
        np.testing.assert_array_equal(signals.sell, held & ((pct_b > 0.8) | (loss < -0.05)))
        np.testing.assert_array_equal(signals.blocked["rsi_collapse"], ~held & (pct_b < 0.05) & (rsi < 25))
        seen |= {name for name, mask in signals.exits.items() if mask.any()} | (
            {"buy"} if signals.buy.any() else set()
        )
    assert seen == {"buy", "upper_band", "stop_loss"}


@pytest.mark.parametrize("name", list(EXPERTS))  # every expert's answers must survive the text round trip
def test_decisions_parse_back_to_the_same_orders_and_explain_every_order(name):
    for _, signals, names in _steps("medium", 16, make_expert(name), 10):
        for i in range(16):
            decision = signals.decision(i, names[i])
            parsed = parse_action(format_action(decision.orders), names[i])
            assert not parsed.invalid and parsed.orders == decision.orders
            assert [(c.side, c.symbol) for c in decision.calls if c.side != "HOLD"] == [
                (o.side, o.symbol) for o in decision.orders
            ]
            assert decision.calls  # a hold is explained too


@given(st.integers(1, 25), st.sampled_from(list(EXPERTS)))
def test_equal_share_fractions_print_and_parse_exactly(n_flat, name):
    # 1/n of the cash (and half of it) for every possible number of flat stocks on the hard task
    held = np.zeros((1, 25), bool)
    held[0, n_flat:] = True
    signals = Signals(name, "oversold", held, ~held, np.full((1, 25), 1 / n_flat), {}, {}, np.zeros((1, 25)))
    symbols = tuple(f"S{k}" for k in range(25))
    orders = signals.decision(0, symbols).orders
    assert len(orders) == n_flat
    assert parse_action(format_action(orders), symbols).orders == orders


# ---------------------------------------------------------------------------------------------- causality
SYMBOLS = ["AXISBANK", "BHARTIARTL", "HDFCBANK", "ICICIBANK", "INFY", "ITC", "LT", "RELIANCE", "SBIN", "TCS"]
EPISODE = {"start_date": "2021-06-01", "symbols": SYMBOLS}
CUT_AFTER_STEPS = 15  # garbage prices from the 17th decision day on


@pytest.fixture(scope="module")
def panels():
    """The real panel of ten stocks, and one where every price after the cut is random garbage."""
    frame, _ = load_prices()
    prices = frame[frame["symbol"].isin(SYMBOLS)].reset_index(drop=True)
    clean = build_panel(prices, "clean")
    cut = pd.Timestamp(clean.dates[clean.day_index(EPISODE["start_date"]) + CUT_AFTER_STEPS])
    rng = np.random.default_rng(0)
    later = prices["date"] > cut
    low = rng.uniform(1, 1000, int(later.sum()))
    dirty = prices.copy()
    dirty.loc[later, "low"], dirty.loc[later, "high"] = low, low * rng.uniform(1, 3, len(low))
    dirty.loc[later, "open"] = rng.uniform(dirty.loc[later, "low"], dirty.loc[later, "high"])
    dirty.loc[later, "close"] = rng.uniform(dirty.loc[later, "low"], dirty.loc[later, "high"])
    return clean, build_panel(dirty, "dirty")


def _decisions(expert, panel) -> list:
    env = market_env.make("medium", data=panel)
    env.reset(options=EPISODE)
    decisions = []
    for _ in range(30):
        decision = expert.signals(env.market.snapshot()).decision(0, env.names)
        decisions.append(decision)
        env.step(format_action(decision.orders))
    return decisions


def first_peek(expert, panels) -> int | None:
    """First decision that changed when only prices after the cut changed (None: causal)."""
    clean, dirty = (_decisions(expert, panel) for panel in panels)
    changed = [t for t, (a, b) in enumerate(zip(clean, dirty)) if a != b]
    assert changed, "the garbage never changed a decision: the check is not exercising the future"
    return changed[0] if changed[0] <= CUT_AFTER_STEPS else None


@pytest.mark.parametrize("name", list(EXPERTS))  # each expert reads only the snapshot of its decision day
def test_prices_after_the_decision_day_do_not_change_a_decision(name, panels):
    assert first_peek(make_expert(name), panels) is None


class PeekingExpert(TrendExpert):
    """A planted leak: buys when tomorrow's close is higher. The check above must catch it."""

    def signals(self, snapshot):
        base = super().signals(snapshot)
        tomorrow = snapshot.panel.close[snapshot.day[:, None] + 1, snapshot.symbols]
        buy = ~base.held & (tomorrow > snapshot.close)
        return Signals(self.name, base.entry, base.held, buy, base.buy_fraction, base.exits, {}, base.nearest)


def test_a_planted_future_peeking_expert_is_caught(panels):
    assert first_peek(PeekingExpert(), panels) is not None


@pytest.mark.parametrize(
    ("name", "task"), [("trend", "easy"), ("bollinger", "medium"), ("rsi", "hard"), ("momentum", "easy")]
)
def test_an_expert_evaluates_as_the_agent_expert_name_with_the_scores_of_its_own_rollouts(name, task):
    from eval.agents import UnknownAgentError, make_agent
    from eval.harness import EvalConfig, run_evaluation
    from training.sft.data import play

    agent = make_agent(f"expert:{name}")
    result = run_evaluation(agent, EvalConfig(task, "val", 12, 4_321), progress=False)
    rollout = play(
        market_env.make_batch(task, n_envs=12, split="val", obs_mode="text"), make_expert(name), 4_321
    )
    assert result.agent == f"expert:{name}"
    np.testing.assert_allclose(result.values("score"), rollout.scores, rtol=0, atol=1e-12)
    assert rollout.trades and any(t.any() for t in rollout.trades)  # the comparison saw trades
    with pytest.raises(UnknownAgentError, match="expert:macd: unknown expert 'macd'"):
        make_agent("expert:macd")
