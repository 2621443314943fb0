"""Execution rules and invariants: fills, costs, caps, whole shares, cash >= 0, NAV identity."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import market_env
from data.loader import embedded_path
from market_env.costs import CostModel
from market_env.grader import get_grader
from market_env.simulator import MarketSimulator
from market_env.tasks import EASY_V1
from market_env.versions import MarketRules

COSTS = CostModel()
BUY_RATE = 0.001 + 0.00015 + (0.0000297 + 0.000001) * 1.18  # STT + stamp + GST-taxed exchange and SEBI fees
SELL_RATE = 0.001 + (0.0000297 + 0.000001) * 1.18


@pytest.fixture(scope="module")
def raw_prices():
    """The CSV read directly with pandas: an independent source for hand-checked numbers."""
    prices = pd.read_csv(embedded_path(), parse_dates=["date"])
    return prices.set_index(["symbol", "date"]).sort_index()


def test_cost_rates_match_the_indian_delivery_schedule():
    assert COSTS.buy_rate == pytest.approx(BUY_RATE)
    assert COSTS.sell_rate == pytest.approx(SELL_RATE)
    assert COSTS.sell_flat == pytest.approx(15.93)
    assert COSTS.buy_cost(100_000) == pytest.approx(100_000 * BUY_RATE)
    assert COSTS.sell_cost(100_000) == pytest.approx(100_000 * SELL_RATE + 15.93)
    assert COSTS.sell_cost(0) == 0.0


def test_first_step_against_numbers_worked_out_by_hand(raw_prices):
    env = market_env.make("easy", split="train")
    env.reset(options={"start_date": "2021-03-01", "symbols": ["RELIANCE"]})
    _, _, _, _, info = env.step("BUY RELIANCE 0.5")
    fill_open = raw_prices.loc[("RELIANCE", pd.Timestamp("2021-03-02")), "open"]
    mark_close = raw_prices.loc[("RELIANCE", pd.Timestamp("2021-03-02")), "close"]
    price = fill_open * 1.0005  # 5 bps slippage on easy
    shares = math.floor(500_000 * (1 - 1e-9) / (price * (1 + BUY_RATE)))
    fees = shares * price * BUY_RATE
    cash = 1_000_000 - shares * price - fees
    assert info["trades"] == [
        {"side": "BUY", "symbol": "RELIANCE", "shares": shares, "price": pytest.approx(price),
         "value": pytest.approx(shares * price), "costs": pytest.approx(fees)}
    ]  # fmt: skip
    assert info["cash"] == pytest.approx(cash)
    assert info["nav"] == pytest.approx(cash + shares * mark_close)
    assert info["date"] == "2021-03-02"


def test_round_trip_loses_exactly_the_modelled_costs_and_slippage(raw_prices):
    env = market_env.make("easy", split="train")
    env.reset(options={"start_date": "2021-03-01", "symbols": ["TCS"]})
    _, _, _, _, bought = env.step("BUY TCS 1")
    _, _, _, _, sold = env.step("SELL TCS 1")
    n = bought["trades"][0]["shares"]
    open_buy = raw_prices.loc[("TCS", pd.Timestamp("2021-03-02")), "open"]
    open_sell = raw_prices.loc[("TCS", pd.Timestamp("2021-03-03")), "open"]
    spent = n * open_buy * 1.0005 * (1 + BUY_RATE)
    received = n * open_sell * 0.9995 * (1 - SELL_RATE) - 15.93
    assert sold["positions"] == {"TCS": 0}
    assert sold["cash"] == pytest.approx(1_000_000 - spent + received, abs=1e-6)
    # at unchanged prices the loss would be exactly fees + slippage:
    slippage = n * (open_buy * 0.0005 + open_sell * 0.0005)
    fees = bought["costs"] + sold["costs"]
    price_move = n * (open_sell - open_buy)
    assert 1_000_000 - sold["cash"] == pytest.approx(fees + slippage - price_move, abs=1e-6)


def test_buys_asking_for_more_than_the_cash_are_scaled_down():
    env = market_env.make("medium", split="val", seed=0)
    _, info = env.reset()
    a, b = info["symbols"][:2]
    _, _, _, _, info = env.step(f"BUY {a} 0.2\nBUY {b} 0.2")
    alone = {t["symbol"]: t["value"] for t in info["trades"]}
    env.reset(seed=0)
    _, _, _, _, info = env.step(f"BUY {a} 0.8\nBUY {b} 0.8")  # 160% of cash: scaled to 50% each, then capped
    scaled = {t["symbol"]: t["value"] for t in info["trades"]}
    assert info["cash"] >= 0
    assert set(info["capped"]) == {a, b}  # 50% of cash is over the 25% position cap
    for symbol in (a, b):
        assert scaled[symbol] <= 0.25 * 1_000_000
        assert scaled[symbol] > alone[symbol]


def test_position_cap_clips_buys_at_share_of_nav():
    env = market_env.make("hard", split="test", seed=3)
    _, info = env.reset()
    name = info["symbols"][5]
    _, _, _, _, info = env.step(f"BUY {name} 1")
    value = info["trades"][0]["value"]
    assert info["capped"] == [name]
    assert 0.14 * 1_000_000 < value <= 0.15 * 1_000_000


def test_sells_fill_before_buys_so_proceeds_fund_them():
    env = market_env.make("medium", split="val", seed=7)
    _, info = env.reset()
    a, b = info["symbols"][:2]
    env.step(f"BUY {a} 0.25")
    env.step("HOLD")
    _, _, _, _, info = env.step(f"SELL {a} 1\nBUY {b} 1")
    assert [t["side"] for t in info["trades"]] == ["SELL", "BUY"]
    assert info["trades"][1]["value"] > 0.24 * info["nav"]  # funded by all the cash incl. the proceeds


def test_an_order_whose_fees_exceed_its_value_is_rejected_and_flagged(panel):
    rules = MarketRules(costs=CostModel(dp_charge=10_000_000.0))  # a DP charge no sale can cover
    sim = MarketSimulator(panel, EASY_V1, rules, get_grader("1.0.0"), n_envs=1)
    episode = market_env.make("easy", split="train").market.sampler.explicit("2021-03-01", ["TCS"])
    sim.reset_envs(np.array([0]), [episode])
    sim.step(np.zeros((1, 1)), np.ones((1, 1)))
    held, cash = sim.shares.copy(), sim.cash.copy()
    report = sim.step(np.ones((1, 1)), np.zeros((1, 1)))
    assert report.rejected[0, 0] and report.sold[0, 0] == 0
    np.testing.assert_array_equal(sim.shares, held)
    np.testing.assert_array_equal(sim.cash, cash)


def test_a_sell_too_small_for_one_share_is_reported_unfilled():
    env = market_env.make("easy", split="train")
    env.reset(options={"start_date": "2021-03-01", "symbols": ["TCS"]})
    env.step("BUY TCS 0.001")  # a single share
    _, _, _, _, info = env.step("SELL TCS 0.5")  # floor(0.5 * 1) = 0 shares
    assert info["unfilled"] == ["TCS"] and info["trades"] == []


# ------------------------------------------------------------------------------------ invariants
def _text_action(draw_orders: list[tuple[str, int, float]], names: tuple[str, ...]) -> str:
    if not draw_orders:
        return "HOLD"
    seen, lines = set(), []
    for side, k, fraction in draw_orders:
        symbol = names[k % len(names)]
        if symbol not in seen:
            seen.add(symbol)
            lines.append(f"{side} {symbol} {fraction:.3f}")
    return "\n".join(lines)


ORDER = st.tuples(st.sampled_from(["BUY", "SELL"]), st.integers(0, 24), st.floats(0.001, 1.0))


def _check_invariants(env, info, before):
    sim = env.market.sim
    assert sim.cash[0] >= 0.0
    shares = sim.shares[0]
    assert (shares >= 0).all() and (shares == np.floor(shares)).all()
    held = sum(info["positions"][s] * info["prices"][s] for s in env.names)
    assert info["nav"] == pytest.approx(info["cash"] + held, rel=1e-12, abs=1e-6)
    if before is not None and not info["trades"]:
        # nothing executed: cash and positions unchanged, only the marking moved
        assert info["cash"] == before["cash"] and info["positions"] == before["positions"]


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    task=st.sampled_from(["easy", "medium", "hard"]),
    steps=st.lists(st.lists(ORDER, max_size=6), min_size=1, max_size=40),
)
def test_invariants_hold_under_random_text_actions(seed, task, steps):
    env = market_env.make(task, split="train", seed=seed)
    _, info = env.reset()
    before = None
    for orders in steps:
        _, _, done, _, info = env.step(_text_action(orders, env.names))
        _check_invariants(env, info, before)
        before = info
        if done:
            break


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    task=st.sampled_from(["easy", "medium", "hard"]),
    raw=st.lists(
        st.lists(st.floats(-1.5, 1.5, allow_nan=False), min_size=25, max_size=25), min_size=1, max_size=40
    ),
)
def test_invariants_hold_under_random_numeric_actions(seed, task, raw):
    env = market_env.make(task, split="train", obs_mode="numeric", seed=seed)
    _, info = env.reset()
    n_stocks = env.market.task.n_stocks
    before = None
    for values in raw:
        _, _, done, _, info = env.step(np.array(values[:n_stocks], dtype=np.float32))
        _check_invariants(env, info, before)
        before = info
        if done:
            break


def test_hold_changes_nothing_but_the_marking():
    env = market_env.make("hard", split="val", seed=9)
    _, info = env.reset()
    _, _, _, _, after_buy = env.step("\n".join(f"BUY {s} 0.04" for s in info["symbols"]))
    _, _, _, _, after_hold = env.step("HOLD")
    assert after_hold["cash"] == after_buy["cash"]
    assert after_hold["positions"] == after_buy["positions"]
    assert after_hold["costs"] == 0.0 and after_hold["trades"] == []
    marked = after_hold["cash"] + sum(
        after_hold["positions"][s] * after_hold["prices"][s] for s in info["symbols"]
    )
    assert after_hold["nav"] == pytest.approx(marked, rel=1e-12)


# ----------------------------------------------------------------------- set_state validation (issue 18)
def _medium_state():
    env = market_env.make("medium", split="val", seed=4)
    env.reset()
    env.step(f"BUY {env.names[0]} 0.5")
    env.step("HOLD")
    return env, env.get_state()


@pytest.mark.parametrize(
    "change, message",
    [
        ({"start_day": -1}, "start_day"),  # before: NaN prices from the panel's end
        ({"start_day": 10**6}, "start_day"),
        ({"start_day": 1.5}, "start_day"),
        ({"symbols": (-1, *range(1, 10))}, "symbols"),  # before: -1 wrapped to the last symbol
        ({"symbols": (*range(1, 10), 10**4)}, "symbols"),
        ({"symbols": (1,) * 10}, "distinct"),
        ({"symbols": (1, 2)}, "symbols"),
        ({"t": 99}, "t 99"),
        ({"cash": float("nan")}, "cash"),
        ({"cash": -5.0}, "cash"),
        ({"cash": float("inf")}, "cash"),
        ({"shares": (-10.0,) + (0.0,) * 9}, "shares"),  # before: a negative NAV
        ({"shares": (0.5,) + (0.0,) * 9}, "whole"),
        ({"avg_cost": (float("nan"),) * 10}, "avg_cost"),
        ({"nav": (1e6,)}, "nav"),
        ({"nav": (1e6, float("nan"), 1e6)}, "nav"),
        ({"trade_days": 5}, "trade_days"),
        ({"costs_paid": "x"}, "costs_paid"),
    ],
)
def test_set_state_rejects_a_corrupt_state_naming_the_field(change, message):
    import dataclasses

    env, state = _medium_state()
    before = env.render()
    with pytest.raises(ValueError, match=message):
        env.set_state(dataclasses.replace(state, **change))
    assert env.render() == before  # nothing was loaded
    with pytest.raises(ValueError, match="EpisodeState"):
        env.set_state({"t": 0})


def test_set_state_rejects_symbols_without_prices_in_the_window():
    import dataclasses

    env, state = _medium_state()
    complete = set(env.market.sampler.eligible_symbols(state.start_day).tolist())
    absent = [s for s in range(len(env.panel.symbols)) if s not in complete]
    assert absent  # the embedded panel has symbols listed later (e.g. LTM, 2026)
    symbols = (absent[0], *state.symbols[1:])
    with pytest.raises(ValueError, match="lack prices"):
        env.set_state(dataclasses.replace(state, symbols=symbols))


@settings(max_examples=60, deadline=None)
@given(
    cash=st.floats(allow_nan=True, allow_infinity=True),
    shares=st.lists(st.floats(allow_nan=True, allow_infinity=True), min_size=10, max_size=10),
    t=st.integers(-5, 40),
)
def test_set_state_loads_a_state_only_if_its_nav_and_book_are_sane(cash, shares, t):
    import dataclasses

    env, state = _medium_state()
    nav = state.nav[:1] * (t + 1) if t >= 0 else state.nav
    candidate = dataclasses.replace(state, cash=cash, shares=tuple(shares), t=t, nav=tuple(nav), trade_days=0)
    try:
        env.set_state(candidate)
    except ValueError:
        return
    sim = env.market.sim
    assert math.isfinite(cash) and cash >= 0 and 0 <= t <= 30
    assert all(math.isfinite(s) and s >= 0 and s == int(s) for s in shares)
    assert np.isfinite(sim.nav[0, : t + 1]).all() and np.isfinite(sim.close_now[0]).all()
