"""The panel: its trading calendar, the aligned (day x symbol) arrays, eligibility windows, the features
on the grid, caching, and panels of users' files and DataFrames."""

from __future__ import annotations

import dataclasses
import os

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from data import build_panel, load_panel, load_prices
from data.features import INDICATORS, compute_features
from data.loader import frame_sha256

DROPPED_DAY = "2025-03-18"  # a real NSE session the source lacks for 90 of its 95 listed symbols
N_DAYS = 1_561


# ------------------------------------------------------------------------------------------- calendar
def test_the_calendar_is_the_days_at_least_half_the_symbols_trade(panel, embedded_prices):
    rows_per_day = embedded_prices.groupby("date").size()
    brute = rows_per_day.index[rows_per_day >= 50].to_numpy().astype("datetime64[D]")
    np.testing.assert_array_equal(panel.dates, brute)
    assert panel.n_days == N_DAYS and (np.diff(panel.dates) > np.timedelta64(0, "D")).all()
    assert (panel.iso_date(0), panel.iso_date(N_DAYS - 1)) == ("2020-01-01", "2026-04-24")


def test_the_calendar_drops_the_day_the_source_mostly_lacks(panel, embedded_prices):
    on_the_day = embedded_prices[embedded_prices["date"] == DROPPED_DAY]
    assert len(on_the_day) == 5  # 5 of 100 symbols (5 more were not listed yet): far below half
    assert np.datetime64(DROPPED_DAY) not in panel.dates
    with pytest.raises(ValueError, match=f"{DROPPED_DAY} is not a trading day of this panel"):
        panel.day_index(DROPPED_DAY)


@pytest.mark.parametrize(
    "symbols, kept",
    [
        (["ITC", "TCS"], True),  # ITC has the 2025-03-18 row, TCS not: 1 of 2 is half, so the day stays
        (["INFY", "ITC", "TCS"], False),  # 1 of 3 is under half: dropped, as in the full set
        (["ADANIENSOL", "ITC"], True),  # both have it: an ordinary day for this universe
    ],
)
def test_the_calendar_rule_is_relative_to_the_universe_loaded(cut, symbols, kept):
    small = build_panel(*load_prices(cut(symbols, "2025-03-10", 8)))
    assert (np.datetime64(DROPPED_DAY) in small.dates) is kept


# --------------------------------------------------------------------------------------------- arrays
def test_arrays_are_day_by_symbol(panel):
    shape = (N_DAYS, 100)
    for name in ("open", "high", "low", "close", "volume"):
        assert getattr(panel, name).shape == shape and getattr(panel, name).dtype == np.float64, name
    assert panel.features.shape == (*shape, len(INDICATORS))
    assert panel.feature_names == tuple(INDICATORS)
    assert list(panel.symbols) == sorted(panel.symbols) and len(set(panel.symbols)) == 100
    assert panel.present_count.shape == (N_DAYS + 1, 100)


def test_every_source_row_sits_in_its_cell(panel, embedded_prices):
    """All 143,445 calendar rows at once: the grid holds exactly the file's numbers, nothing shifted."""
    rows = embedded_prices[embedded_prices["date"] != DROPPED_DAY]
    day = np.searchsorted(panel.dates, rows["date"].to_numpy().astype("datetime64[D]"))
    symbol = np.searchsorted(np.array(panel.symbols), rows["symbol"].to_numpy())
    for name in ("open", "high", "low", "close", "volume"):
        np.testing.assert_array_equal(getattr(panel, name)[day, symbol], rows[name].to_numpy(), err_msg=name)
    assert (~np.isnan(panel.close)).sum() == len(rows) == 143_450 - 5


def test_present_count_is_the_running_count_of_rows(panel, embedded_prices):
    present = ~np.isnan(panel.close)
    assert (panel.present_count[0] == 0).all()
    np.testing.assert_array_equal(np.diff(panel.present_count, axis=0), present.astype(np.int64))
    rows = embedded_prices[embedded_prices["date"] != DROPPED_DAY].groupby("symbol").size()
    np.testing.assert_array_equal(panel.present_count[-1], rows.loc[list(panel.symbols)].to_numpy())


def test_absent_symbol_days_are_nan_in_every_array(panel):
    absent = np.isnan(panel.close)
    assert absent.any()  # late listings (JIOFIN 2023-08-21) and gaps (ETERNAL misses 21 days)
    for name in ("open", "high", "low", "volume"):
        np.testing.assert_array_equal(np.isnan(getattr(panel, name)), absent, err_msg=name)
    assert np.isnan(panel.features[absent]).all()
    jiofin = panel.symbols.index("JIOFIN")
    assert np.isnan(panel.features[: panel.day_index("2023-08-18"), jiofin]).all()  # before its listing


@pytest.mark.parametrize(
    "symbol",
    [
        "RELIANCE",  # a row on every calendar day
        "ITC",  # has a row on the dropped day: its features must be computed without it
        "ETERNAL",  # lists in 2021-07 and misses 21 days: indicators run over its own rows
    ],
)
def test_features_on_the_grid_are_the_symbols_own_indicators(panel, embedded_prices, symbol):
    rows = embedded_prices[(embedded_prices["symbol"] == symbol) & (embedded_prices["date"] != DROPPED_DAY)]
    expected = compute_features(rows.reset_index(drop=True)).to_numpy()
    s = panel.symbols.index(symbol)
    present = ~np.isnan(panel.close[:, s])
    np.testing.assert_array_equal(panel.features[present, s], expected)


def test_the_panel_is_frozen(panel):
    with pytest.raises(dataclasses.FrozenInstanceError):
        panel.sha256 = "tampered"


# ---------------------------------------------------------------------------------------- eligibility
def test_78_symbols_trade_on_every_calendar_day(panel):
    assert len(panel.complete_symbols(0, N_DAYS - 1)) == 78  # as SOURCE.md records


@settings(max_examples=60, deadline=None)
@given(first=st.integers(0, N_DAYS - 1), length=st.integers(1, N_DAYS))
def test_complete_symbols_agree_with_brute_force(panel, first, length):
    last = min(first + length - 1, N_DAYS - 1)
    brute = [s for s in range(len(panel.symbols)) if not np.isnan(panel.close[first : last + 1, s]).any()]
    np.testing.assert_array_equal(panel.complete_symbols(first, last), brute)


@pytest.mark.parametrize(
    "first, last",
    [
        (-5, 10),  # a lookback reaching before the data: used to wrap round to the end silently
        (0, N_DAYS),  # one past the last day
        (10, 9),  # an empty window: says nothing about completeness
    ],
)
def test_complete_symbols_refuses_days_outside_the_panel(panel, first, last):
    with pytest.raises(IndexError, match="is not inside"):
        panel.complete_symbols(first, last)


# ---------------------------------------------------------------------------------------- day lookup
@settings(max_examples=50, deadline=None)
@given(day=st.integers(0, N_DAYS - 1))
def test_day_index_inverts_iso_date(panel, day):
    iso = panel.iso_date(day)
    assert panel.day_index(iso) == day
    assert panel.day_index(np.datetime64(iso)) == day  # numpy dates work too
    assert panel.day_index(pd.Timestamp(iso) + pd.Timedelta(hours=15, minutes=30)) == day  # the close's time


@pytest.mark.parametrize(
    "date",
    [
        DROPPED_DAY,  # dropped from the calendar
        "2020-01-04",  # a Saturday
        "2024-01-26",  # Republic Day, an exchange holiday
        "2019-12-31",  # before the first day
        "2026-04-27",  # after the last day (the search runs off the end)
    ],
)
def test_day_index_of_a_non_trading_day_raises(panel, date):
    with pytest.raises(ValueError, match=f"{date} is not a trading day"):
        panel.day_index(date)


# ------------------------------------------------------------------------------------ sources, caching
def test_load_panel_builds_the_embedded_panel_once(panel, embedded):
    assert load_panel() is load_panel() is panel
    assert panel.sha256 == embedded[1]


def test_a_file_panel_is_cached_by_resolved_path(small, tmp_path, monkeypatch):
    path = tmp_path / "mine.csv"
    small.to_csv(path, index=False)
    monkeypatch.chdir(tmp_path)
    first = load_panel(path)
    assert load_panel(str(path)) is first and load_panel("mine.csv") is first  # relative, same file
    assert first.symbols == ("INFY", "ITC", "TCS") and first.n_days == 120


def test_a_dataframe_panel_is_built_from_its_content(small):
    first, second = load_panel(small), load_panel(small)
    assert first is not second  # a DataFrame can change under us: never cached
    np.testing.assert_array_equal(first.features, second.features)
    assert first.sha256 == second.sha256 == frame_sha256(load_prices(small)[0])
    assert first.close.shape == (120, 3) and first.features.shape == (120, 3, len(INDICATORS))


def test_a_dataframe_panel_matches_the_full_panel_where_the_calendars_agree(panel, embedded_prices):
    two = embedded_prices[embedded_prices["symbol"].isin(["ITC", "TCS"])]
    small = build_panel(*load_prices(two))
    assert small.symbols == ("ITC", "TCS") and small.n_days == N_DAYS + 1  # keeps ITC's 2025-03-18
    on_full = np.searchsorted(small.dates, panel.dates)
    tcs, itc = panel.symbols.index("TCS"), panel.symbols.index("ITC")
    np.testing.assert_array_equal(small.close[on_full, 1], panel.close[:, tcs])
    np.testing.assert_array_equal(small.features[on_full, 1], panel.features[:, tcs])  # no row on the day
    before = panel.dates < np.datetime64(DROPPED_DAY)
    np.testing.assert_array_equal(small.features[on_full[before], 0], panel.features[before, itc])
    assert not np.array_equal(small.features[on_full[~before], 0], panel.features[~before, itc])


def test_custom_indicators_become_the_feature_columns(small):
    indicators = {"close_again": lambda rows: rows["close"], "log_volume": lambda r: np.log1p(r["volume"])}
    custom = build_panel(*load_prices(small), indicators=indicators)
    assert custom.feature_names == ("close_again", "log_volume")
    np.testing.assert_array_equal(custom.features[..., 0], custom.close)
    np.testing.assert_array_equal(custom.features[..., 1], np.log1p(custom.volume))


def test_the_shared_panel_is_read_only(panel):
    """Every env shares one cached panel, so an in-place edit would silently change them all."""
    for array in (panel.close, panel.features, panel.dates, panel.present_count):
        with pytest.raises(ValueError, match="read-only"):
            array[0] = array[1]


def test_a_file_rewritten_in_place_is_read_again(small, tmp_path):
    """Same path, same size, same mtime: the cache is keyed on content, so the new prices are served."""
    path = tmp_path / "mine.csv"
    small.to_csv(path, index=False)
    first = load_panel(path)
    stat = path.stat()
    changed = small.assign(volume=small["volume"] + np.where(small.index == 5, 1.0, 0.0))  # one share more
    changed.to_csv(path, index=False)
    if path.stat().st_size != stat.st_size:  # 999 -> 1000 changes the size; keep the case as hard as possible
        pytest.skip("the edit changed the file size")
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    second = load_panel(path)
    assert second is not first and second.sha256 != first.sha256
    assert np.nansum(second.volume) == np.nansum(first.volume) + 1
    assert load_panel(path) is second  # unchanged since: cached again


@pytest.mark.parametrize(
    "value",
    [
        "NaT",  # pandas' missing-date text: used to raise "NaTType does not support date"
        "",  # an empty form field
        "garbage",  # free text
        "2024-13-01",  # month 13
        None,  # JSON null
        20240102,  # a number, not a date (pandas would read it as nanoseconds since 1970)
        float("nan"),  # NaN from a spreadsheet
    ],
)
def test_day_index_of_a_value_that_is_no_date_names_the_argument_and_format(panel, value):
    with pytest.raises(ValueError, match=r"start_date must be an ISO date YYYY-MM-DD") as error:
        panel.day_index(value)
    assert repr(value) in str(error.value)
    with pytest.raises(ValueError, match=r"^when must be an ISO date"):
        panel.day_index(value, argument="when")
