"""Synthetic markets: the loader's contract, the real calendar, seeded, and the price laws they promise."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import market_env
from data.loader import REQUIRED_COLUMNS, validate_prices
from data.panel import load_panel
from data.synthetic import (
    KINDS,
    SyntheticSpec,
    momentum_fractions,
    parse_spec,
    real_calendar,
    resolve_data,
    symbol_names,
    synthetic_prices,
)
from market_env.actions import parse_action


@pytest.mark.parametrize("kind", KINDS)
def test_tables_follow_the_loaders_contract_on_the_real_calendar(kind):
    prices = synthetic_prices(kind, seed=1)
    assert list(prices.columns) == list(REQUIRED_COLUMNS)
    validate_prices(prices)  # raises on any broken rule (positive prices, OHLC order, volume)
    assert (prices["low"] <= prices[["open", "close"]].min(axis=1)).all()
    assert (prices["high"] >= prices[["open", "close"]].max(axis=1)).all()
    assert (prices["volume"] > 0).all()
    calendar = pd.DatetimeIndex(sorted(prices["date"].unique()))
    assert calendar.equals(real_calendar())  # the real splits hold the same days
    assert prices["symbol"].nunique() == 30


def test_same_spec_same_table_other_seed_other_table_and_copies_are_independent():
    first = synthetic_prices("edge", seed=3)
    first.loc[0, "close"] = -1.0  # a caller editing its copy must not reach the cache
    again = synthetic_prices("edge", seed=3)
    assert again.loc[0, "close"] > 0
    pd.testing.assert_frame_equal(again, synthetic_prices("edge", seed=3))
    assert not np.allclose(again["close"], synthetic_prices("edge", seed=4)["close"])


def test_symbol_names_are_valid_distinct_grammar_symbols():
    names = symbol_names(30)
    assert names[:2] == ["SYNA", "SYNB"] and names[26] == "SYNAA" and len(set(names)) == 30
    parsed = parse_action("BUY SYNAB 0.5\nSELL syna 1", names)
    assert not parsed.invalid and [o.symbol for o in parsed.orders] == ["SYNAB", "SYNA"]


def test_resolve_data_parses_specs_and_passes_everything_else():
    frame = resolve_data("synthetic:edge:seed=2,edge=0.01,n_symbols=5")
    pd.testing.assert_frame_equal(frame, synthetic_prices("edge", seed=2, edge=0.01, n_symbols=5))
    assert parse_spec("synthetic:martingale") == SyntheticSpec("martingale")
    for other in (None, "prices.csv", frame):
        assert resolve_data(other) is other
    with pytest.raises(ValueError, match="unknown synthetic market"):
        resolve_data("synthetic:bubble")
    with pytest.raises(ValueError, match="bad synthetic parameter"):
        resolve_data("synthetic:edge:strength=2")
    with pytest.raises(ValueError, match="edge must be"):
        SyntheticSpec("edge", edge=1.5)


def _moves(prices: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(T, S) close, overnight ratio open/previous close, intraday ratio close/open."""
    wide = prices.pivot(index="date", columns="symbol")
    close, open_ = wide["close"].to_numpy(), wide["open"].to_numpy()
    return close, open_[1:] / close[:-1], close[1:] / open_[1:]


def test_martingale_moves_have_mean_one_in_price_and_no_autocorrelation():
    _, overnight, intraday = _moves(synthetic_prices("martingale", seed=0))
    for ratio in (overnight, intraday, overnight * intraday):
        standard_error = ratio.std() / np.sqrt(ratio.size)
        assert abs(ratio.mean() - 1.0) < 4 * standard_error
    daily = (overnight * intraday - 1.0).ravel()
    lagged = np.corrcoef(daily[:-1], daily[1:])[0, 1]
    assert abs(lagged) < 4 / np.sqrt(daily.size)


def test_edge_market_moves_follow_their_five_day_change_but_not_on_average():
    close, overnight, intraday = _moves(synthetic_prices("edge", seed=0))
    next_move = (overnight * intraday)[5:] - 1.0  # from close t to close t+1, t >= 5
    change_5d = close[5:-1] / close[:-6] - 1.0
    # no unconditional drift over the easy task's 20 days (one day alone drifts slightly down, by design)
    gain_20d = (close[20::20] / close[:-20:20]).ravel()  # non-overlapping windows
    assert abs(gain_20d.mean() - 1.0) < 4 * gain_20d.std() / np.sqrt(gain_20d.size)
    assert next_move[change_5d > 0].mean() > 0.005  # the planted edge: a trend persists
    assert next_move[change_5d < 0].mean() < -0.005


def test_momentum_fractions_enter_up_moves_and_exit_down_moves():
    change = np.array([[0.1, -0.1, 0.2, -0.3]])
    held = np.array([[False, True, True, False]])
    sell, buy = momentum_fractions(change, held)
    assert sell.tolist() == [[0.0, 1.0, 0.0, 0.0]]
    assert buy.tolist() == [[1.0, 0.0, 0.0, 0.0]]  # the held up-stock is kept, not bought again


@pytest.mark.parametrize("kind", KINDS)
def test_every_task_and_split_runs_on_a_synthetic_frame(kind):
    panel = load_panel(synthetic_prices(kind))
    for task in market_env.TASK_NAMES:
        for split in ("train", "val", "test"):
            env = market_env.make(task, split=split, data=panel, seed=1)
            obs, info = env.reset()
            assert "SYN" in obs and info["split"] == split
            _, _, _, _, info = env.step(f"BUY {env.names[0]} 0.5")
            assert info["positions"][env.names[0]] > 0
    env = market_env.make("easy", data=synthetic_prices(kind, n_symbols=3), seed=0)  # a DataFrame works too
    env.reset()
