"""The loader rejects bad data with the row (symbol, date) and the rule, and reads users' files."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from data import DataValidationError, load_prices, validate_prices
from data.loader import embedded_path, file_sha256, frame_sha256

EMBEDDED_SHA256 = "28e86766a79eeb07568e40644c7d0a95cd869cdaebe5857b3fd7f0871d49abbd"  # as in data/SOURCE.md


@pytest.fixture(scope="module")
def prices():
    frame, _ = load_prices()
    return frame


@pytest.fixture
def sample(prices):
    """Three symbols x 30 days of real rows, in file order."""
    rows = prices[prices["symbol"].isin(["INFY", "ITC", "TCS"]) & (prices["date"] < "2020-02-15")]
    return rows.sort_values(["date", "symbol"]).reset_index(drop=True)


def test_embedded_set_loads_whole_and_matches_its_provenance(prices):
    assert len(prices) == 143_450 and prices["symbol"].nunique() == 100
    assert file_sha256(embedded_path()) == EMBEDDED_SHA256 == load_prices()[1]
    assert "not dividend adjusted" in (embedded_path().parent / "SOURCE.md").read_text().replace("NOT", "not")


def _break(frame: pd.DataFrame, row: int, **values) -> pd.DataFrame:
    broken = frame.copy()
    for column, value in values.items():
        broken[column] = broken[column].astype(object) if isinstance(value, str) else broken[column]
        broken.loc[row, column] = value
    return broken


@pytest.mark.parametrize(
    "change, rule",
    [
        ({"close": np.nan}, "close is NaN"),  # a missing price
        ({"volume": "n/a"}, "volume is NaN or not a number"),  # text in a numeric column
        ({"high": np.inf}, "high is infinite"),
        ({"low": -5.0}, "low must be > 0"),  # non-positive price
        ({"open": 0.0}, "open must be > 0"),
        ({"high": 1.0}, "high < low"),  # inverted bar
        ({"open": 1e9}, "open outside [low, high]"),  # open above the high
        ({"close": 10_000.0}, "close outside [low, high]"),  # close above the high
        ({"volume": -1.0}, "volume must be >= 0"),
        ({"date": "not a date"}, "date is missing or not a date"),
    ],
)
def test_bad_rows_are_rejected_naming_symbol_date_and_rule(sample, change, rule):
    row = 17
    symbol, date = sample.loc[row, "symbol"], sample.loc[row, "date"].date().isoformat()
    with pytest.raises(DataValidationError) as error:
        validate_prices(_break(sample, row, **change))
    message = str(error.value)
    assert rule in message and f"symbol {symbol}" in message
    if "date" not in change:
        assert date in message


def test_a_duplicate_symbol_day_is_rejected(sample):
    doubled = pd.concat([sample, sample.iloc[[5]]], ignore_index=True)
    symbol, date = sample.loc[5, "symbol"], sample.loc[5, "date"].date().isoformat()
    with pytest.raises(DataValidationError, match=rf"symbol {symbol}, date {date}\): duplicate"):
        validate_prices(doubled)


def test_a_missing_column_lists_the_expected_ones(sample):
    with pytest.raises(DataValidationError, match=r"missing required column\(s\) \['volume'\]"):
        validate_prices(sample.drop(columns=["volume"]))


@pytest.mark.parametrize("suffix", [".csv", ".csv.gz", ".parquet"])
def test_users_files_load_like_the_embedded_rows(sample, tmp_path, suffix):
    path = tmp_path / f"mine{suffix}"
    if suffix == ".parquet":
        sample.to_parquet(path, index=False)
    else:
        sample.assign(date=sample["date"].dt.strftime("%Y-%m-%d")).to_csv(path, index=False)
    loaded, sha = load_prices(path)
    expected = validate_prices(sample)
    pd.testing.assert_frame_equal(loaded, expected)
    assert sha == file_sha256(path)


def test_a_dataframe_source_hashes_its_content_not_its_row_order(sample):
    _, sha = load_prices(sample)
    _, shuffled_sha = load_prices(sample.sample(frac=1.0, random_state=3))
    assert sha == shuffled_sha == frame_sha256(validate_prices(sample))
    _, other = load_prices(_break(sample, 0, volume=1.0))
    assert other != sha


def test_unreadable_sources_say_what_to_do(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_prices(tmp_path / "missing.csv")
    odd = tmp_path / "prices.xlsx"
    odd.write_text("x")
    with pytest.raises(DataValidationError, match=r"expected \.csv, \.csv\.gz or \.parquet"):
        load_prices(odd)
