"""The panel: calendar, aligned arrays, eligibility, causal features; and the splits."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from data import SPLITS, build_panel, get_split, load_panel, load_prices
from data.features import INDICATORS, compute_features


def test_calendar_drops_the_day_most_symbols_lack(panel):
    assert panel.n_days == 1561
    assert np.datetime64("2025-03-18") not in panel.dates
    assert panel.dates[0] == np.datetime64("2020-01-01") and panel.dates[-1] == np.datetime64("2026-04-24")
    assert panel.close.shape == (1561, 100) and panel.features.shape == (1561, 100, len(INDICATORS))
    with pytest.raises(ValueError, match="not a trading day"):
        panel.day_index("2025-03-18")


def test_missing_rows_are_nan_and_complete_symbols_match_brute_force(panel):
    jiofin = panel.symbols.index("JIOFIN")  # listed 2023-08-21
    assert np.isnan(panel.close[panel.day_index("2023-01-02"), jiofin])
    assert np.isnan(panel.features[panel.day_index("2023-01-02"), jiofin]).all()
    present = ~np.isnan(panel.close)
    for first, last in [(0, 60), (900, 1000), (1400, 1560)]:
        brute = np.flatnonzero(present[first : last + 1].all(axis=0))
        np.testing.assert_array_equal(panel.complete_symbols(first, last), brute)


def test_load_panel_is_cached_per_source(panel):
    assert load_panel() is panel


def test_splits_are_disjoint_and_ordered():
    assert [SPLITS[n].start for n in ("train", "val", "test")] == ["2020-01-01", "2024-01-01", "2025-01-01"]
    assert SPLITS["train"].end < SPLITS["val"].start and SPLITS["val"].end < SPLITS["test"].start
    dates = pd.Series(pd.to_datetime(["2023-12-29", "2024-01-01", "2026-04-24"]))
    assert SPLITS["val"].contains(dates).tolist() == [False, True, False]
    with pytest.raises(ValueError, match="expected one of"):
        get_split("holdout")


# --------------------------------------------------------------------------------------- features
@pytest.fixture(scope="module")
def two_symbols():
    prices, _ = load_prices()
    return prices[prices["symbol"].isin(["TCS", "ITC"])].reset_index(drop=True)


def _reference_indicators(close, high, low, volume) -> dict[str, float]:
    """Textbook formulas as plain loops, independent of the pandas code, for the LAST row."""
    n = len(close)
    gains = [max(close[i] - close[i - 1], 0.0) for i in range(1, n)]
    losses = [max(close[i - 1] - close[i], 0.0) for i in range(1, n)]
    avg_gain, avg_loss = gains[0], losses[0]
    for gain, loss in zip(gains[1:], losses[1:]):  # Wilder: EWM alpha 1/14 seeded with the first value
        avg_gain, avg_loss = avg_gain + (gain - avg_gain) / 14, avg_loss + (loss - avg_loss) / 14
    ema = lambda span: _ema(close, 2 / (span + 1))  # noqa: E731
    macd = [a - b for a, b in zip(ema(12), ema(26))]
    signal = _ema(macd, 2 / 10)
    window = close[-20:]
    mean = sum(window) / 20
    std = (sum((x - mean) ** 2 for x in window) / 20) ** 0.5
    true_range = [high[0] - low[0]] + [
        max(high[i] - low[i], abs(high[i] - close[i - 1]), abs(low[i] - close[i - 1])) for i in range(1, n)
    ]
    return {
        "rsi": 100 - 100 / (1 + avg_gain / avg_loss),
        "macd_hist": macd[-1] - signal[-1],
        "pct_b": (close[-1] - (mean - 2 * std)) / (4 * std),
        "trend": mean / (sum(close[-50:]) / 50) - 1,
        "atr_pct": _ema(true_range, 1 / 14)[-1] / close[-1],
        "change_5d": close[-1] / close[-6] - 1,
        "momentum_20d": close[-1] / close[-21] - 1,
        "volume_ratio": volume[-1] / (sum(volume[-20:]) / 20),
    }


def _ema(values, alpha):
    out = [values[0]]
    for value in values[1:]:
        out.append(out[-1] + alpha * (value - out[-1]))
    return out


def test_indicators_match_textbook_loops(two_symbols):
    features = compute_features(two_symbols)
    for symbol in ("TCS", "ITC"):
        rows = two_symbols[two_symbols["symbol"] == symbol].iloc[:400]
        expected = _reference_indicators(*(rows[c].tolist() for c in ("close", "high", "low", "volume")))
        actual = features.loc[rows.index[-1]]
        for name, value in expected.items():
            assert actual[name] == pytest.approx(value, rel=1e-9), (symbol, name)


def test_flat_and_rising_prices_give_the_textbook_extremes():
    days = pd.date_range("2021-01-01", periods=80, freq="B")
    flat = pd.DataFrame({"date": days, "symbol": "X", "open": 10.0, "high": 10.0, "low": 10.0,
                         "close": 10.0, "volume": 100.0})  # fmt: skip
    rising = flat.assign(close=np.linspace(10, 20, 80), high=np.linspace(10, 20, 80) + 0.1)
    assert compute_features(flat)["rsi"].iloc[-1] == 50.0 and compute_features(flat)["pct_b"].iloc[-1] == 0.5
    assert compute_features(rising)["rsi"].iloc[-1] == 100.0


def _future_changes_the_past(prices: pd.DataFrame, indicators: dict, cut: int, seed: int) -> bool:
    """Replace every row after the cut-th date with valid garbage; did any feature up to it move?"""
    dates = np.sort(prices["date"].unique())
    later = prices["date"] > dates[cut]
    rng = np.random.default_rng(seed)
    garbage = prices.copy()
    low = rng.uniform(1, 100, later.sum())
    garbage.loc[later, ["low", "high", "open", "close"]] = np.column_stack(
        [low, low * 2, low * 1.5, low * 1.2]
    )
    garbage.loc[later, "volume"] = rng.uniform(0, 1e6, later.sum())
    before = compute_features(prices, indicators)[~later]
    after = compute_features(garbage, indicators)[~later]
    return not before.equals(after)


@settings(max_examples=15, deadline=None)
@given(cut=st.integers(60, 700), seed=st.integers(0, 1000))
def test_no_indicator_reads_the_future(two_symbols, cut, seed):
    assert not _future_changes_the_past(two_symbols, INDICATORS, cut, seed)


def test_the_future_check_catches_a_planted_peek(two_symbols):
    peek = {**INDICATORS, "peek": lambda rows: rows["close"].shift(-1) / rows["close"] - 1}
    assert _future_changes_the_past(two_symbols, peek, cut=300, seed=0)


def test_a_dataframe_panel_matches_the_file_panel_on_shared_symbols(panel, two_symbols):
    small = build_panel(*load_prices(two_symbols))
    assert small.symbols == ("ITC", "TCS")
    tcs = panel.symbols.index("TCS")
    day = panel.day_index("2022-06-01")
    np.testing.assert_array_equal(small.features[small.day_index("2022-06-01"), 1], panel.features[day, tcs])
