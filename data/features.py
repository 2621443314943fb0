"""The seven causal indicators, computed once per panel.

Each indicator is a function of ONE symbol's rows sorted by date and may only use rows up to the current
one (rolling windows and EWMs that end today; never ``shift(-k)``). ``tests/data/test_features.py``
and the look-ahead test in ``tests/market_env`` enforce that: a planted indicator that peeks one day ahead
makes them fail.

Conventions (textbook definitions, so traders recognise the numbers):
- RSI(14): Wilder smoothing (EWM with alpha = 1/14) of gains and losses; 100 when there were no losses.
- MACD(12, 26, 9): EMA12 - EMA26, signal = EMA9 of MACD, histogram = MACD - signal (price units);
  ``macd_hist_change`` is today's histogram minus yesterday's ("rising"/"falling").
- Bollinger %B(20, 2): (close - lower) / (upper - lower) with bands SMA20 +- 2 population std.
- trend: SMA(20) / SMA(50) - 1.
- ATR(14) as a fraction of the close, Wilder smoothing of the true range.
- momentum: 5-day and 20-day rate of change (``change_5d`` is the 5-day one).
- volume ratio: today's volume / mean volume of the last 20 days (today included).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np
import pandas as pd

Indicator = Callable[[pd.DataFrame], pd.Series]

# Warm-up rows each indicator needs before its value is defined (MACD: 26-day EMA + 9-day signal).
MACD_WARMUP = 26 + 9 - 1


def change_1d(rows: pd.DataFrame) -> pd.Series:
    return rows["close"].pct_change(1, fill_method=None)


def change_5d(rows: pd.DataFrame) -> pd.Series:
    return rows["close"].pct_change(5, fill_method=None)


def momentum_20d(rows: pd.DataFrame) -> pd.Series:
    return rows["close"].pct_change(20, fill_method=None)


def rsi_14(rows: pd.DataFrame) -> pd.Series:
    delta = rows["close"].diff()
    gain = delta.clip(lower=0.0).ewm(alpha=1 / 14, adjust=False, min_periods=14).mean()
    loss = (-delta.clip(upper=0.0)).ewm(alpha=1 / 14, adjust=False, min_periods=14).mean()
    with np.errstate(divide="ignore", invalid="ignore"):
        rsi = 100.0 - 100.0 / (1.0 + gain / loss)
    rsi = rsi.where(loss > 0, 100.0)  # no losses in the window: maximally overbought
    return rsi.where((gain > 0) | (loss > 0), 50.0).where(gain.notna())  # flat: neutral


def _macd_hist(rows: pd.DataFrame) -> pd.Series:
    close = rows["close"]
    macd = close.ewm(span=12, adjust=False).mean() - close.ewm(span=26, adjust=False).mean()
    hist = macd - macd.ewm(span=9, adjust=False).mean()
    hist.iloc[:MACD_WARMUP] = np.nan
    return hist


def macd_hist(rows: pd.DataFrame) -> pd.Series:
    return _macd_hist(rows)


def macd_hist_change(rows: pd.DataFrame) -> pd.Series:
    return _macd_hist(rows).diff()


def bollinger_pct_b(rows: pd.DataFrame) -> pd.Series:
    close = rows["close"]
    mean = close.rolling(20).mean()
    std = close.rolling(20).std(ddof=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        pct_b = (close - (mean - 2 * std)) / (4 * std)
    return pct_b.where(std > 0, 0.5).where(mean.notna())


def trend_sma20_sma50(rows: pd.DataFrame) -> pd.Series:
    close = rows["close"]
    return close.rolling(20).mean() / close.rolling(50).mean() - 1.0


def atr_14_pct(rows: pd.DataFrame) -> pd.Series:
    previous_close = rows["close"].shift(1)
    true_range = pd.concat(
        [
            rows["high"] - rows["low"],
            (rows["high"] - previous_close).abs(),
            (rows["low"] - previous_close).abs(),
        ],
        axis=1,
    ).max(axis=1)
    atr = true_range.ewm(alpha=1 / 14, adjust=False, min_periods=14).mean()
    return atr / rows["close"]


def volume_ratio_20d(rows: pd.DataFrame) -> pd.Series:
    mean_volume = rows["volume"].rolling(20).mean()
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = rows["volume"] / mean_volume
    return ratio.where(mean_volume > 0, 1.0).where(mean_volume.notna())


# Order matters: it is the order of the per-stock block of the numeric observation.
INDICATORS: dict[str, Indicator] = {
    "change_1d": change_1d,
    "change_5d": change_5d,
    "rsi": rsi_14,
    "macd_hist": macd_hist,
    "macd_hist_change": macd_hist_change,
    "pct_b": bollinger_pct_b,
    "trend": trend_sma20_sma50,
    "atr_pct": atr_14_pct,
    "momentum_20d": momentum_20d,
    "volume_ratio": volume_ratio_20d,
}


def compute_features(prices: pd.DataFrame, indicators: Mapping[str, Indicator] = INDICATORS) -> pd.DataFrame:
    """Indicator columns for a long price table sorted by (symbol, date), one symbol at a time."""
    blocks = []
    for _, rows in prices.groupby("symbol", sort=False):
        blocks.append(pd.DataFrame({name: function(rows) for name, function in indicators.items()}))
    return pd.concat(blocks).loc[prices.index]
