"""The indicators: textbook numbers from independent plain-Python loops, the edge cases traders know,
and causality: garbage after day t moves nothing up to t, while a planted peek at tomorrow is caught."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import Phase, given, settings
from hypothesis import strategies as st

from data import validate_prices
from data.features import INDICATORS, compute_features

NAN = math.nan


# ------------------------------------------------------------------------ independent reference loops
# Plain Python over lists of floats: no pandas rolling/ewm, no numpy vector maths. Conventions as in the
# features.py docstring: Wilder smoothing is the recursive average a += (x - a) / n seeded with the first
# value (what "EWM alpha = 1/n, adjust=False" means), EMAs use alpha = 2 / (span + 1), std is population.
def _smooth(values: list[float], alpha: float) -> list[float]:
    out = [values[0]]
    for value in values[1:]:
        out.append(out[-1] + alpha * (value - out[-1]))
    return out


def _mean(values: list[float]) -> float:
    return sum(values) / len(values)


def ref_rsi(close: list[float], n: int = 14) -> list[float]:
    out = [NAN] * len(close)
    avg_gain = avg_loss = 0.0
    for i in range(1, len(close)):
        gain, loss = max(close[i] - close[i - 1], 0.0), max(close[i - 1] - close[i], 0.0)
        if i == 1:
            avg_gain, avg_loss = gain, loss
        else:
            avg_gain, avg_loss = avg_gain + (gain - avg_gain) / n, avg_loss + (loss - avg_loss) / n
        if i >= n:  # n price changes seen
            if avg_loss == 0:
                out[i] = 100.0 if avg_gain > 0 else 50.0
            else:
                out[i] = 100.0 - 100.0 / (1.0 + avg_gain / avg_loss)
    return out


def ref_macd_hist(close: list[float]) -> list[float]:
    fast, slow = _smooth(close, 2 / 13), _smooth(close, 2 / 27)
    macd = [f - s for f, s in zip(fast, slow)]
    signal = _smooth(macd, 2 / 10)
    return [NAN if i < 26 + 9 - 1 else macd[i] - signal[i] for i in range(len(close))]


def ref_pct_b(close: list[float], n: int = 20) -> list[float]:
    out = [NAN] * len(close)
    for i in range(n - 1, len(close)):
        window = close[i - n + 1 : i + 1]
        mean = _mean(window)
        std = math.sqrt(_mean([(x - mean) ** 2 for x in window]))
        out[i] = 0.5 if std == 0 else (close[i] - (mean - 2 * std)) / (4 * std)
    return out


def ref_trend(close: list[float]) -> list[float]:
    out = [NAN] * len(close)
    for i in range(49, len(close)):
        out[i] = _mean(close[i - 19 : i + 1]) / _mean(close[i - 49 : i + 1]) - 1
    return out


def ref_atr_pct(high: list[float], low: list[float], close: list[float], n: int = 14) -> list[float]:
    true_range = [high[0] - low[0]]
    for i in range(1, len(close)):
        true_range.append(max(high[i] - low[i], abs(high[i] - close[i - 1]), abs(low[i] - close[i - 1])))
    atr = _smooth(true_range, 1 / n)
    return [NAN if i < n - 1 else atr[i] / close[i] for i in range(len(close))]


def ref_roc(close: list[float], k: int) -> list[float]:
    return [NAN if i < k else close[i] / close[i - k] - 1 for i in range(len(close))]


def ref_volume_ratio(volume: list[float], n: int = 20) -> list[float]:
    out = [NAN] * len(volume)
    for i in range(n - 1, len(volume)):
        mean = _mean(volume[i - n + 1 : i + 1])
        out[i] = 1.0 if mean == 0 else volume[i] / mean
    return out


def reference_features(rows: pd.DataFrame) -> dict[str, list[float]]:
    close, high, low = rows["close"].tolist(), rows["high"].tolist(), rows["low"].tolist()
    hist = ref_macd_hist(close)
    return {
        "change_1d": ref_roc(close, 1),
        "change_5d": ref_roc(close, 5),
        "rsi": ref_rsi(close),
        "macd_hist": hist,
        "macd_hist_change": [NAN] + [b - a for a, b in itertools.pairwise(hist)],
        "pct_b": ref_pct_b(close),
        "trend": ref_trend(close),
        "atr_pct": ref_atr_pct(high, low, close),
        "momentum_20d": ref_roc(close, 20),
        "volume_ratio": ref_volume_ratio(rows["volume"].tolist()),
    }


# The first defined row of each indicator (0-based): its warm-up, checked below against the NaNs.
FIRST_DEFINED = {
    "change_1d": 1,
    "change_5d": 5,
    "rsi": 14,  # 14 price changes
    "macd_hist": 34,  # EMA26 then a 9-day signal: 26 + 9 - 1
    "macd_hist_change": 35,
    "pct_b": 19,  # a full 20-day window
    "trend": 49,  # a full 50-day window
    "atr_pct": 13,  # 14 true ranges
    "momentum_20d": 20,
    "volume_ratio": 19,
}


@pytest.fixture(scope="module")
def one_symbol(cut) -> pd.DataFrame:
    """RELIANCE, 120 real trading days from 2023-01-02 (one symbol's rows, as compute_features gets them)."""
    return cut(["RELIANCE"], "2023-01-02", 120)


def test_the_indicator_set_and_its_order_are_fixed():
    # The order is the per-stock block of the numeric observation: reordering silently breaks policies.
    assert list(INDICATORS) == list(FIRST_DEFINED)


@pytest.mark.parametrize(
    "symbol, start",
    [
        ("RELIANCE", "2023-01-02"),  # a calm large cap, a normal year
        ("ADANIENT", "2023-01-02"),  # the Feb-2023 Adani crash: -28% days, huge true ranges
        ("ETERNAL", "2021-07-23"),  # its first 120 rows after listing: warm-up right from the first row
    ],
)
def test_indicators_match_the_textbook_loops(cut, symbol, start):
    rows = cut([symbol], start, 120)
    actual = compute_features(rows)
    for name, expected in reference_features(rows).items():
        got, want = actual[name].to_numpy(), np.array(expected)
        np.testing.assert_array_equal(np.isnan(got), np.isnan(want), err_msg=f"{symbol} {name} warm-up")
        assert np.isnan(got[: FIRST_DEFINED[name]]).all() and not np.isnan(got[FIRST_DEFINED[name]])
        # The last 50 rows to 1e-9 relative (measured: <= 5e-12; MACD, a difference of EMAs, is the worst).
        np.testing.assert_allclose(got[-50:], want[-50:], rtol=1e-9, atol=0, err_msg=f"{symbol} {name}")


def test_rsi_and_atr_converge_to_classic_wilder_seeded_with_a_simple_average(cut):
    """Wilder seeds his average with the simple mean of the first 14 values; features.py seeds with the
    first value. After ~340 rows the seed has decayed by (13/14)^340 < 1e-11: the same numbers."""
    rows = cut(["HDFCBANK"], "2020-01-01", 500)
    close = rows["close"].tolist()
    gains = [max(b - a, 0.0) for a, b in itertools.pairwise(close)]
    losses = [max(a - b, 0.0) for a, b in itertools.pairwise(close)]
    avg_gain, avg_loss = _mean(gains[:14]), _mean(losses[:14])
    rsi = []
    for gain, loss in zip(gains[14:], losses[14:]):
        avg_gain, avg_loss = (avg_gain * 13 + gain) / 14, (avg_loss * 13 + loss) / 14
        rsi.append(100 - 100 / (1 + avg_gain / avg_loss))
    np.testing.assert_allclose(compute_features(rows)["rsi"].to_numpy()[-50:], rsi[-50:], rtol=1e-9)


def test_features_of_several_symbols_are_each_symbols_own(small):
    """Interleaved rows (file order): grouping must neither mix symbols nor reorder the output."""
    together = compute_features(small)
    assert together.index.equals(small.index) and list(together.columns) == list(INDICATORS)
    for symbol in small["symbol"].unique():
        alone = small[small["symbol"] == symbol]
        pd.testing.assert_frame_equal(together.loc[alone.index], compute_features(alone))


# ----------------------------------------------------------------------------------------- edge cases
def _synthetic(small: pd.DataFrame, close: np.ndarray, spread: float = 0.0) -> pd.DataFrame:
    """Real dates, symbol and first-day volume; made-up closes with a bar of +-spread around each."""
    rows = small[small["symbol"] == "ITC"].iloc[: len(close)].copy()
    rows["close"], rows["open"], rows["volume"] = close, close, rows["volume"].iloc[0]
    rows["high"], rows["low"] = close * (1 + spread), close * (1 - spread)
    return validate_prices(rows)


def test_a_constant_price_is_neutral_everywhere(small):
    flat = compute_features(_synthetic(small, np.full(80, 412.35)))
    defined = {name: flat[name].iloc[first:] for name, first in FIRST_DEFINED.items()}
    assert (defined["rsi"] == 50.0).all()  # no gains, no losses: neither overbought nor oversold
    assert (defined["pct_b"] == 0.5).all()  # zero-width bands: the close sits in the middle
    assert (defined["volume_ratio"] == 1.0).all()  # the same volume every day: an ordinary day
    for name in set(FIRST_DEFINED) - {"rsi", "pct_b", "volume_ratio"}:  # no change, no spread, no trend
        assert (defined[name] == 0.0).all(), name


@pytest.mark.parametrize(
    "step, rsi",
    [
        (1.01, 100.0),  # rises every day: no losses at all, maximally overbought
        (0.99, 0.0),  # falls every day: no gains at all, maximally oversold
    ],
)
def test_a_one_way_market_pins_rsi_to_its_bound(small, step, rsi):
    rows = _synthetic(small, 300.0 * step ** np.arange(80), spread=0.002)
    assert (compute_features(rows)["rsi"].iloc[14:] == rsi).all()


def test_no_volume_for_20_days_is_an_ordinary_volume_ratio(small):
    rows = _synthetic(small, np.full(40, 100.0)).assign(volume=0.0)
    assert (compute_features(rows)["volume_ratio"].iloc[19:] == 1.0).all()


# ------------------------------------------------------------------------------------------- causality
def with_garbage_after(prices: pd.DataFrame, cut_date: pd.Timestamp, seed: int) -> pd.DataFrame:
    """Every row after ``cut_date`` replaced by valid nonsense: positive, low <= open/close <= high."""
    rng = np.random.default_rng(seed)
    garbage = prices.copy()
    later = (garbage["date"] > cut_date).to_numpy()
    n = int(later.sum())
    low = rng.uniform(1.0, 5_000.0, n)
    high = low * rng.uniform(1.0, 1.5, n)
    garbage.loc[later, "low"], garbage.loc[later, "high"] = low, high
    garbage.loc[later, "open"], garbage.loc[later, "close"] = rng.uniform(low, high), rng.uniform(low, high)
    garbage.loc[later, "volume"] = rng.integers(0, 10**8, n).astype(float)
    return garbage


def future_leak(prices: pd.DataFrame, indicators: dict, cut_date: pd.Timestamp, seed: int) -> str | None:
    """Where a feature on or before ``cut_date`` moved when every later row became garbage (None: nowhere).

    Exact comparison, NaN positions included: a causal indicator computes the same floats from the
    same past rows. The garbage must move the features after the cut, or the check proves nothing."""
    garbage = with_garbage_after(prices, cut_date, seed)
    validate_prices(garbage)  # the garbage is valid data, so only the indicators can tell them apart
    clean, dirty = compute_features(prices, indicators), compute_features(garbage, indicators)
    past = (prices["date"] <= cut_date).to_numpy()
    assert not clean[~past].equals(dirty[~past]), "the garbage never mattered: not exercising the future"
    for name in indicators:
        a, b = clean.loc[past, name].to_numpy(), dirty.loc[past, name].to_numpy()
        moved = ~((a == b) | (np.isnan(a) & np.isnan(b)))
        if moved.any():
            where = prices[past].iloc[int(np.argmax(moved))]
            day = where["date"].date()
            return f"{name} of {where['symbol']} on {day} moved when rows after {cut_date.date()} changed"
    return None


def _peek(rows: pd.DataFrame) -> pd.Series:
    return rows["close"].shift(-1) / rows["close"] - 1  # tomorrow's return: a leak


CUTS = st.integers(0, 118)  # the cut day's index in the 120-day slice: at least one garbage day after it
# No shrinking: the failure message already names the indicator, symbol and day, and shrinking a leak
# through ~60 ms examples takes minutes.
NO_SHRINK = [Phase.explicit, Phase.reuse, Phase.generate]


@settings(max_examples=30, deadline=None, phases=NO_SHRINK)
@given(cut_day=CUTS, seed=st.integers(0, 2**32 - 1))
def test_no_indicator_reads_past_the_current_day(small, cut_day, seed):
    days = np.sort(small["date"].unique())
    assert future_leak(small, INDICATORS, pd.Timestamp(days[cut_day]), seed) is None


@settings(max_examples=10, deadline=None, phases=NO_SHRINK)
@given(cut_day=CUTS, seed=st.integers(0, 2**32 - 1))
def test_the_same_check_catches_a_planted_peek_at_tomorrow(small, cut_day, seed):
    days = np.sort(small["date"].unique())
    leak = future_leak(small, {**INDICATORS, "peek": _peek}, pd.Timestamp(days[cut_day]), seed)
    assert leak is not None and leak.startswith("peek of ")
    assert f"on {pd.Timestamp(days[cut_day]).date()}" in leak  # the last honest day is the one that moves
