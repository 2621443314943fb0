"""Load-time repairs of the embedded file: MOTHERSON's 2022-01-14 mis-scaling is undone, nothing else moves,
and no symbol is left with an overnight gap a real price series does not have."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from data import load_prices
from data.loader import read_table, validate_prices
from data.repairs import EMBEDDED_REPAIRS, MOTHERSON_2022_DEMERGER, apply_repairs

MAX_GAP = 0.30  # no NIFTY 100 stock opened 30% away from its previous close in 2020-2026 (the file's own
ALLOWED_GAPS: set[tuple[str, str]] = (
    set()
)  # largest real gaps: -20% ADANIENSOL 2024-11-21, +22% IRFC 2024-01-16)


@pytest.fixture(scope="module")
def raw_prices() -> pd.DataFrame:
    """The embedded file as shipped (validated, not repaired)."""
    return validate_prices(read_table()[0])


def overnight_gaps(prices: pd.DataFrame) -> pd.DataFrame:
    """Rows with open / previous close - 1 beyond ``MAX_GAP`` in size."""
    ordered = prices.sort_values(["symbol", "date"])
    gap = ordered["open"] / ordered.groupby("symbol")["close"].shift() - 1
    return ordered.assign(gap=gap)[gap.abs() > MAX_GAP]


def test_the_shipped_file_has_the_motherson_defect(raw_prices):
    """The defect the repair exists for: +35% at the open of the ex-demerger day, never reverted."""
    gaps = overnight_gaps(raw_prices)
    assert [(s, d.date().isoformat()) for s, d in zip(gaps["symbol"], gaps["date"])] == [
        ("MOTHERSON", "2022-01-14")
    ]
    assert gaps["gap"].iloc[0] == pytest.approx(0.3506, abs=1e-4)


def test_no_symbol_has_an_overnight_gap_beyond_30_percent_once_loaded(embedded_prices):
    gaps = overnight_gaps(embedded_prices)
    found = {(s, d.date().isoformat()) for s, d in zip(gaps["symbol"], gaps["date"])}
    assert found <= ALLOWED_GAPS, gaps[["symbol", "date", "gap"]]


def test_motherson_shows_the_exchanges_ex_demerger_drop(embedded_prices):
    """NSE: Rs 234.80 on 2022-01-13, ~185.5 on 2022-01-14; the file's scale is bonus-adjusted by 2.25."""
    rows = embedded_prices[embedded_prices["symbol"] == "MOTHERSON"].set_index("date")
    before, after = rows.loc["2022-01-13"], rows.loc["2022-01-14"]
    assert before["close"] * 2.25 == pytest.approx(234.80, abs=1e-9)
    assert after["close"] / before["close"] - 1 == pytest.approx(-0.2098, abs=1e-4)
    assert after["open"] / before["close"] - 1 == pytest.approx(-0.1697, abs=1e-4)


def test_the_repair_rescales_only_motherson_prices_before_the_day(raw_prices, embedded_prices):
    factor = MOTHERSON_2022_DEMERGER.factor(raw_prices)
    assert factor == pytest.approx(1.62671, abs=1e-5)
    moved = (embedded_prices["symbol"] == "MOTHERSON") & (embedded_prices["date"] < "2022-01-14")
    assert moved.sum() == 508  # 2020-01-01 .. 2022-01-13
    columns = ["open", "high", "low", "close"]
    np.testing.assert_allclose(
        embedded_prices.loc[moved, columns], raw_prices.loc[moved, columns] * factor, rtol=1e-15
    )
    pd.testing.assert_frame_equal(embedded_prices[~moved], raw_prices[~moved])
    pd.testing.assert_series_equal(embedded_prices["volume"], raw_prices["volume"])


def test_the_repair_is_idempotent_and_keeps_every_row_valid(embedded_prices):
    again = apply_repairs(embedded_prices, EMBEDDED_REPAIRS)
    assert again is embedded_prices  # factor exactly 1: nothing to do
    pd.testing.assert_frame_equal(validate_prices(embedded_prices), embedded_prices)


def test_a_users_file_is_not_repaired(raw_prices, tmp_path):
    """A user's copy may carry the right adjustment already: only the embedded file gets the repairs."""
    path = tmp_path / "mine.parquet"
    raw_prices.to_parquet(path, index=False)
    pd.testing.assert_frame_equal(load_prices(path)[0], raw_prices)
