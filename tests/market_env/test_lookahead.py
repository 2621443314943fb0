"""No look-ahead: garbage after day t must not move anything the agent saw or earned up to t.

The check is one helper used twice: the real indicators pass it, and a planted indicator that peeks one
day ahead fails it, which shows the test can catch a leak.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import market_env
from data import build_panel, load_prices
from data.features import INDICATORS

SYMBOLS = [
    "AXISBANK",
    "BHARTIARTL",
    "HDFCBANK",
    "ICICIBANK",
    "INFY",
    "ITC",
    "LT",
    "RELIANCE",
    "SBIN",
    "TCS",
    "WIPRO",
]
EPISODE = {"start_date": "2021-06-01", "symbols": SYMBOLS[:10]}
CUT_AFTER_STEPS = 15  # garbage starts after the 16th decision day


@pytest.fixture(scope="module")
def prices():
    frame, _ = load_prices()
    return frame[frame["symbol"].isin(SYMBOLS)].reset_index(drop=True)


def _with_garbage_after(prices: pd.DataFrame, cut: pd.Timestamp, seed: int = 0) -> pd.DataFrame:
    """Valid but meaningless prices (positive, low <= open/close <= high) after ``cut``."""
    rng = np.random.default_rng(seed)
    garbage = prices.copy()
    later = garbage["date"] > cut
    n = int(later.sum())
    low = rng.uniform(1, 1000, n)
    high = low * rng.uniform(1.0, 3.0, n)
    garbage.loc[later, "low"], garbage.loc[later, "high"] = low, high
    garbage.loc[later, "open"] = rng.uniform(low, high)
    garbage.loc[later, "close"] = rng.uniform(low, high)
    garbage.loc[later, "volume"] = rng.uniform(0, 1e8, n)
    return garbage


def _rollout(env, actions):
    obs, info = env.reset(options=EPISODE)
    seen = [(obs, info["date"])]
    results = []
    for action in actions:
        obs, _, _, _, info = env.step(action)
        seen.append((obs, info["date"]))
        results.append((info["trades"], info["nav"], info["cash"], info["date"]))
    return seen, results


def first_lookahead_violation(prices: pd.DataFrame, indicators: dict, obs_mode: str) -> str | None:
    clean = build_panel(prices, "clean", indicators)
    cut = pd.Timestamp(clean.dates[clean.day_index(EPISODE["start_date"]) + CUT_AFTER_STEPS])
    dirty = build_panel(_with_garbage_after(prices, cut), "dirty", indicators)
    if obs_mode == "text":
        actions = [f"BUY {SYMBOLS[t % 10]} 0.2\nSELL {SYMBOLS[(t + 4) % 10]} 0.5" for t in range(30)]
    else:
        actions = list(np.random.default_rng(1).uniform(-1, 1, (30, 10)).astype(np.float32))
    seen_clean, results_clean = _rollout(market_env.make("medium", obs_mode=obs_mode, data=clean), actions)
    seen_dirty, results_dirty = _rollout(market_env.make("medium", obs_mode=obs_mode, data=dirty), actions)
    for (obs_a, date), (obs_b, _) in zip(seen_clean, seen_dirty):
        if pd.Timestamp(date) <= cut and not np.array_equal(np.asarray(obs_a), np.asarray(obs_b)):
            return f"observation on {date} changed when prices after {cut.date()} changed"
    for a, b in zip(results_clean, results_dirty):
        if pd.Timestamp(a[3]) <= cut and a[:3] != b[:3]:
            return f"fills or NAV on {a[3]} changed when prices after {cut.date()} changed"
    if all(a[:3] == b[:3] for a, b in zip(results_clean, results_dirty)):
        return "the garbage never mattered: the test is not exercising the future"
    return None


@pytest.mark.parametrize("obs_mode", ["text", "numeric"])
def test_prices_after_day_t_do_not_move_anything_up_to_t(prices, obs_mode):
    assert first_lookahead_violation(prices, INDICATORS, obs_mode) is None


@pytest.mark.parametrize("obs_mode", ["text", "numeric"])
def test_a_planted_future_peeking_feature_is_caught(prices, obs_mode):
    def peek(rows: pd.DataFrame) -> pd.Series:
        return rows["close"].shift(-1) / rows["close"] - 1.0  # tomorrow's return: a leak

    planted = {**INDICATORS, "momentum_20d": peek}
    violation = first_lookahead_violation(prices, planted, obs_mode)
    assert violation is not None and "observation" in violation
