"""Fixtures for the data tests: the embedded set loaded once, and small real slices cut from it."""

from __future__ import annotations

from collections.abc import Callable

import pandas as pd
import pytest

from data import load_prices


@pytest.fixture(scope="session")
def embedded() -> tuple[pd.DataFrame, str]:
    """The whole embedded NIFTY 100 table and its sha256, validated once per session (~1.5 s)."""
    return load_prices()


@pytest.fixture(scope="session")
def embedded_prices(embedded) -> pd.DataFrame:
    return embedded[0]


@pytest.fixture(scope="session")
def cut(embedded_prices) -> Callable[[list[str], str, int], pd.DataFrame]:
    """``cut(symbols, start, n_days)``: that many real trading days of rows from ``start`` on, in file
    order (date, then symbol) with a fresh RangeIndex, like a user's own file would be."""

    def cut_rows(symbols: list[str], start: str, n_days: int) -> pd.DataFrame:
        prices = embedded_prices
        rows = prices[prices["symbol"].isin(symbols) & (prices["date"] >= start)]
        days = rows["date"].drop_duplicates().sort_values().iloc[:n_days]
        rows = rows[rows["date"].isin(days)]
        return rows.sort_values(["date", "symbol"]).reset_index(drop=True)

    return cut_rows


@pytest.fixture(scope="session")
def small(cut) -> pd.DataFrame:
    """Three liquid symbols x 120 real trading days (2022-03..2022-08), in file order (date, symbol)."""
    return cut(["INFY", "ITC", "TCS"], "2022-03-01", 120)
