"""The loader: the embedded set is whole and matches its provenance; bad rows are rejected naming the
symbol, the date and the rule; users' CSV/parquet files and DataFrames load the same way."""

from __future__ import annotations

import gzip
import hashlib
import io
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from data import DataValidationError, embedded_path, load_prices, validate_prices
from data.loader import MAX_PRICE, MIN_PRICE, REQUIRED_COLUMNS, SYMBOL_PATTERN, frame_sha256

EMBEDDED_SHA256 = "28e86766a79eeb07568e40644c7d0a95cd869cdaebe5857b3fd7f0871d49abbd"  # the file (SOURCE.md)
LOADED_SHA256 = (
    "92a721ed0d8b604f933dc2c3d7aa0ea9663867bc1869626cf0a9f8a36f239fe6"  # after the load-time repairs
)
ROW = 37  # the row the bad-data cases break: mid-table, so "the first row" would be the wrong answer


# ------------------------------------------------------------------------------------------ embedded set
def test_the_embedded_set_is_whole(embedded_prices):
    assert len(embedded_prices) == 143_450
    assert embedded_prices["symbol"].nunique() == 100
    assert embedded_prices["date"].nunique() == 1_562
    assert embedded_prices["date"].min() == pd.Timestamp("2020-01-01")
    assert embedded_prices["date"].max() == pd.Timestamp("2026-04-24")
    assert list(embedded_prices.columns) == list(REQUIRED_COLUMNS)


def test_the_embedded_sha256_is_the_one_its_provenance_records(embedded):
    """The file is the provenance copy (its bytes' sha256); runs record the repaired table's content hash."""
    source_md = (embedded_path().parent / "SOURCE.md").read_text()
    recorded = re.search(r"^sha256: ([0-9a-f]{64})", source_md, re.MULTILINE).group(1)
    recorded_loaded = re.search(r"^loaded sha256: ([0-9a-f]{64})", source_md, re.MULTILINE).group(1)
    on_disk = hashlib.sha256(embedded_path().read_bytes()).hexdigest()
    assert on_disk == recorded == EMBEDDED_SHA256
    assert embedded[1] == frame_sha256(embedded[0]) == recorded_loaded == LOADED_SHA256
    assert load_prices(embedded_path())[1] == LOADED_SHA256  # the embedded file named by its path: the same
    assert load_prices(embedded[0])[1] == LOADED_SHA256  # the same table as a DataFrame: the same identity


def test_the_embedded_rows_per_symbol_match_the_shipped_coverage_table(embedded_prices):
    coverage = pd.read_csv(embedded_path().parent / "coverage.csv", index_col="symbol")
    counts = embedded_prices.groupby("symbol").size()
    pd.testing.assert_series_equal(counts, coverage["rows"].sort_index(), check_names=False)


def test_loaded_prices_are_typed_and_sorted_by_symbol_then_date(embedded_prices):
    assert isinstance(embedded_prices.index, pd.RangeIndex)
    assert embedded_prices["date"].dtype == "datetime64[ns]"
    assert all(embedded_prices[c].dtype == np.float64 for c in ("open", "high", "low", "close", "volume"))
    order = embedded_prices.sort_values(["symbol", "date"]).index
    assert (order == embedded_prices.index).all()


# -------------------------------------------------------------------------------------------- bad data
@pytest.fixture
def as_read(small) -> pd.DataFrame:
    """The small real slice as a CSV reader hands it over: ISO date strings, file order."""
    return small.assign(date=small["date"].dt.strftime("%Y-%m-%d"))


def _set(column: str, value: object) -> Callable[[pd.DataFrame, int], pd.DataFrame]:
    def breaker(frame: pd.DataFrame, row: int) -> pd.DataFrame:
        broken = frame.copy()
        if isinstance(value, str) or value is None:
            broken[column] = broken[column].astype(object)
        broken.loc[row, column] = value
        return broken

    return breaker


def _scale(column: str, of: str, factor: float) -> Callable[[pd.DataFrame, int], pd.DataFrame]:
    """Set ``column`` to ``of * factor`` at the row (relative to the row's own bar, so it stays real)."""

    def breaker(frame: pd.DataFrame, row: int) -> pd.DataFrame:
        broken = frame.copy()
        broken.loc[row, column] = broken.loc[row, of] * factor
        return broken

    return breaker


def _duplicate(frame: pd.DataFrame, row: int) -> pd.DataFrame:
    """Repeat the row at the end, as a careless concat of two downloads would."""
    return pd.concat([frame, frame.iloc[[row]]], ignore_index=True)


BAD_DATA = [
    # A missing price (Yahoo's all-NaN rows, as UNITDSPR had before its repair).
    pytest.param(_set("close", np.nan), "close is NaN or not a number", id="nan-close"),
    # Text in a numeric column ("n/a" placeholders).
    pytest.param(_set("volume", "n/a"), "volume is NaN or not a number", id="non-numeric-volume"),
    # An Indian-style thousands separator in an exported price: must not be silently dropped.
    pytest.param(_set("open", "1,234.50"), "open is NaN or not a number", id="thousands-separator"),
    # The same (symbol, date) twice: a double download; which quote is right is unknowable.
    pytest.param(_duplicate, "duplicate (symbol, date) row", id="duplicate-symbol-date"),
    # An inverted bar: high below low.
    pytest.param(_scale("high", "low", 0.99), "high < low", id="high-below-low"),
    # A zero price (placeholder rows); returns on it are infinite.
    pytest.param(_set("close", 0.0), "close must be > 0", id="zero-close"),
    # A negative price (a sign error in someone's adjustment).
    pytest.param(_set("low", -5.0), "low must be > 0", id="negative-low"),
    # Open above the high and below the low: both sides of the [low, high] range.
    pytest.param(_scale("open", "high", 1.01), "open outside [low, high]", id="open-above-high"),
    pytest.param(_scale("open", "low", 0.99), "open outside [low, high]", id="open-below-low"),
    # Close above the high and below the low.
    pytest.param(_scale("close", "high", 1.01), "close outside [low, high]", id="close-above-high"),
    pytest.param(_scale("close", "low", 0.99), "close outside [low, high]", id="close-below-low"),
    # Negative volume.
    pytest.param(_set("volume", -1.0), "volume must be >= 0", id="negative-volume"),
    # Infinite prices, both signs (a division by a zero adjustment factor).
    pytest.param(_set("high", np.inf), "high is infinite", id="inf-high"),
    pytest.param(_set("close", -np.inf), "close is infinite", id="minus-inf-close"),
]


@pytest.mark.parametrize("breaker, rule", BAD_DATA)
def test_bad_rows_are_rejected_naming_symbol_date_and_rule(as_read, breaker, rule):
    symbol, iso_date = as_read.loc[ROW, "symbol"], as_read.loc[ROW, "date"]
    broken = breaker(as_read, ROW)
    with pytest.raises(DataValidationError) as error:
        validate_prices(broken)
    message = str(error.value)
    assert f"symbol {symbol}" in message, message
    assert f"date {iso_date}" in message, message
    assert rule in message, message
    assert "1 row(s) break it" in message, message


@pytest.mark.parametrize(
    "bad_date",
    [
        "2022-13-45",  # a date that looks like one but is not (month 13)
        "not a date",  # free text in the date column
        None,  # an empty cell
    ],
)
def test_an_unparseable_date_is_rejected_naming_symbol_value_and_rule(as_read, bad_date):
    symbol = as_read.loc[ROW, "symbol"]
    with pytest.raises(DataValidationError) as error:
        validate_prices(_set("date", bad_date)(as_read, ROW))
    message = str(error.value)
    assert f"row {ROW} (symbol {symbol}, date {bad_date!r})" in message
    assert "date is missing or not a date" in message


@pytest.mark.parametrize(
    "bad_symbol",
    [
        None,  # an empty cell: would have become a phantom symbol "nan"
        "  ",  # a blank cell of spaces
    ],
)
def test_a_missing_symbol_is_rejected_naming_the_date(as_read, bad_symbol):
    with pytest.raises(DataValidationError) as error:
        validate_prices(_set("symbol", bad_symbol)(as_read, ROW))
    message = str(error.value)
    assert f"row {ROW} (symbol {bad_symbol!r}, date {as_read.loc[ROW, 'date']})" in message
    assert "symbol is missing or empty" in message


@pytest.mark.parametrize("column", REQUIRED_COLUMNS)  # every required column, each alone
def test_a_missing_column_is_named_with_the_expected_ones(small, column):
    with pytest.raises(DataValidationError) as error:
        validate_prices(small.drop(columns=[column]))
    message = str(error.value)
    assert f"missing required column(s) {[column]}" in message
    assert f"expected columns {list(REQUIRED_COLUMNS)}" in message


def test_an_empty_table_is_rejected_clearly(small):
    with pytest.raises(DataValidationError, match="no rows"):
        validate_prices(small.iloc[:0])


def test_the_message_names_the_first_bad_row_and_counts_them_all(as_read):
    broken = _set("volume", -1.0)(_set("volume", -7.0)(as_read, ROW), ROW + 50)
    with pytest.raises(DataValidationError) as error:
        validate_prices(broken)
    assert f"row {ROW} (symbol {as_read.loc[ROW, 'symbol']}, date {as_read.loc[ROW, 'date']})" in str(
        error.value
    )
    assert "2 row(s) break it" in str(error.value)


def test_a_repeated_index_still_names_one_row(as_read):
    """Two frames concatenated without ignore_index: the index repeats, the message must not garble."""
    broken = _set("close", np.nan)(as_read, ROW)
    broken.index = np.arange(len(broken)) % 60  # labels 0..59 six times over
    with pytest.raises(DataValidationError) as error:
        validate_prices(broken)
    symbol, iso_date = as_read.loc[ROW, "symbol"], as_read.loc[ROW, "date"]
    assert f"row {ROW} (symbol {symbol}, date {iso_date}): close is NaN" in str(error.value)


VALUE_RULES = [
    (_set("close", np.nan), "close is NaN or not a number"),
    (_scale("high", "low", 0.5), "high < low"),
    (_scale("close", "high", 2.0), "close outside [low, high]"),
    (_set("volume", -1.0), "volume must be >= 0"),
]


@settings(max_examples=40, deadline=None)
@given(position=st.floats(0, 1, exclude_max=True), case=st.sampled_from(VALUE_RULES))
def test_any_broken_row_is_the_one_named(small, position, case):
    row = int(position * len(small))
    breaker, rule = case
    with pytest.raises(DataValidationError) as error:
        validate_prices(breaker(small, row))
    iso_date = small.loc[row, "date"].date().isoformat()
    assert f"row {row} (symbol {small.loc[row, 'symbol']}, date {iso_date}): {rule}" in str(error.value)


def test_validation_leaves_the_callers_frame_alone(as_read):
    before = as_read.copy()
    validate_prices(as_read)
    pd.testing.assert_frame_equal(as_read, before)


def test_timezone_aware_and_intraday_stamps_become_plain_dates(small):
    stamped = small.assign(date=small["date"].dt.strftime("%Y-%m-%dT09:15:00+05:30"))
    pd.testing.assert_frame_equal(validate_prices(stamped), validate_prices(small))


# ------------------------------------------------------------------------------------------ user files
def _write(frame: pd.DataFrame, path: Path) -> Path:
    if path.name.lower().endswith(".parquet"):
        frame.to_parquet(path, index=False)
    else:
        frame.assign(date=frame["date"].dt.strftime("%Y-%m-%d")).to_csv(path, index=False)
    return path


@pytest.mark.parametrize(
    "name",
    [
        "mine.csv",  # the plain case
        "mine.csv.gz",  # compressed, like the embedded file
        "MINE.CSV",  # an upper-case extension from a Windows export is still a CSV
        "mine.parquet",  # the columnar alternative
    ],
)
def test_a_users_file_loads_to_the_validated_frame_with_the_files_sha256(small, tmp_path, name):
    path = _write(small, tmp_path / name)
    loaded, sha = load_prices(path)
    pd.testing.assert_frame_equal(loaded, validate_prices(small))
    assert sha == hashlib.sha256(path.read_bytes()).hexdigest()


def test_csv_and_parquet_of_the_same_rows_give_the_same_frame(small, tmp_path):
    from_csv, csv_sha = load_prices(_write(small, tmp_path / "a.csv"))
    from_parquet, parquet_sha = load_prices(_write(small, tmp_path / "a.parquet"))
    pd.testing.assert_frame_equal(from_csv, from_parquet)
    assert csv_sha != parquet_sha  # a file source is identified by its bytes
    assert frame_sha256(from_csv) == frame_sha256(from_parquet)


@pytest.mark.parametrize("unit", ["s", "ms", "us", "ns"])  # pandas 2 writes [ns], pandas 3 [us], others [s]
def test_a_parquet_files_date_resolution_does_not_matter(small, tmp_path, unit):
    path = tmp_path / f"{unit}.parquet"
    small.assign(date=small["date"].astype(f"datetime64[{unit}]")).to_parquet(path, index=False)
    pd.testing.assert_frame_equal(load_prices(path)[0], validate_prices(small))


def test_extra_columns_and_another_column_order_are_fine(small, tmp_path):
    wide = small.assign(adj_close=small["close"] * 0.98, note="from a broker export")
    wide = wide[["volume", "adj_close", "close", "note", "symbol", "low", "date", "high", "open"]]
    loaded, _ = load_prices(_write(wide, tmp_path / "wide.csv"))
    pd.testing.assert_frame_equal(loaded, validate_prices(small))


@pytest.mark.parametrize(
    "name",
    [
        "prices.xlsx",  # a spreadsheet: we do not guess how to read it
        "prices.json",  # a plausible but unsupported format
        "prices",  # no extension at all
    ],
)
def test_an_unsupported_file_type_says_which_ones_work(tmp_path, name):
    path = tmp_path / name
    path.write_text("date,symbol\n")
    expected = r"unsupported file type; expected \.csv, \.csv\.gz or \.parquet"
    with pytest.raises(DataValidationError, match=expected):
        load_prices(path)


def test_a_missing_file_says_what_to_pass(tmp_path):
    missing = tmp_path / "nowhere.csv"
    with pytest.raises(FileNotFoundError, match=re.escape(f"price file {missing} does not exist")):
        load_prices(missing)
    with pytest.raises(FileNotFoundError, match="pass a CSV/parquet path or a DataFrame"):
        load_prices(str(missing))  # a str path too


def test_a_bad_row_in_a_users_file_is_named(small, tmp_path):
    broken = _set("close", -1.0)(small, ROW)
    with pytest.raises(DataValidationError) as error:
        load_prices(_write(broken, tmp_path / "broken.csv"))
    iso_date = small.loc[ROW, "date"].date().isoformat()
    assert f"symbol {small.loc[ROW, 'symbol']}, date {iso_date}): close must be > 0" in str(error.value)


# ------------------------------------------------------------------------------------ DataFrame sources
def test_a_dataframe_source_loads_sorted_with_a_content_hash(small):
    loaded, sha = load_prices(small)
    pd.testing.assert_frame_equal(loaded, validate_prices(small))
    assert loaded["symbol"].is_monotonic_increasing
    assert sha == frame_sha256(loaded) and re.fullmatch(r"[0-9a-f]{64}", sha)


@pytest.fixture(scope="module")
def small_sha(small) -> str:
    return load_prices(small)[1]


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**32 - 1))
def test_the_content_hash_ignores_row_order_and_index(small, small_sha, seed):
    rng = np.random.default_rng(seed)
    shuffled = small.iloc[rng.permutation(len(small))].set_axis(rng.permutation(len(small)) * 7)
    assert load_prices(shuffled)[1] == small_sha


@pytest.mark.parametrize(
    "restyle",
    [
        lambda f: f.assign(date=f["date"].dt.strftime("%Y-%m-%d")),  # dates as ISO text, like a CSV
        lambda f: f.assign(date=f["date"].astype("datetime64[ns]")),  # pandas 2 default resolution
        lambda f: f.assign(date=f["date"].astype("datetime64[us]")),  # pandas 3 default resolution
        lambda f: f.assign(volume=f["volume"].astype("int64")),  # volumes as integers
        lambda f: f.assign(symbol=f["symbol"].astype(object)),  # symbols as plain Python objects
    ],
)
def test_the_content_hash_ignores_how_the_same_values_are_typed(small, small_sha, restyle):
    assert load_prices(restyle(small))[1] == small_sha


@pytest.mark.parametrize(
    "column, delta",
    [
        ("volume", 1.0),  # one share more on one day
        ("close", -0.05),  # five paise on one close (stays inside the bar)
        ("symbol", None),  # one row relabelled to another symbol's name
    ],
)
def test_the_content_hash_sees_a_one_value_change(small, small_sha, column, delta):
    changed = small.copy()
    if column == "symbol":
        changed.loc[ROW, "symbol"] = "ZZZ"
    else:
        changed.loc[ROW, column] += delta
    validate_prices(changed)  # still valid data: only the hash may tell them apart
    assert load_prices(changed)[1] != small_sha


# --------------------------------------------------------------------------- files that are not tables
def _csv_text(frame: pd.DataFrame) -> str:
    return frame.assign(date=frame["date"].dt.strftime("%Y-%m-%d")).to_csv(index=False)


def _parquet_bytes(frame: pd.DataFrame) -> bytes:
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False)
    return buffer.getvalue()


def _line(text: str, row: int, edit: Callable[[str], str]) -> str:
    """``text`` with data row ``row`` (line row + 2 of the file) edited."""
    lines = text.splitlines(keepends=True)
    lines[row + 1] = edit(lines[row + 1])
    return "".join(lines)


BAD_FILES = [
    # A zero-byte file (an interrupted download); pandas: EmptyDataError.
    pytest.param("empty.csv", lambda f: b"", "the file is empty", id="empty"),
    # A zero-byte .csv.gz: no gzip stream at all.
    pytest.param("empty.csv.gz", lambda f: b"", "the file is empty", id="empty-gz"),
    # Latin-1 bytes in a symbol (a non-UTF-8 export); raw: UnicodeDecodeError. Line 39 = data row 37.
    pytest.param(
        "latin1.csv",
        lambda f: _line(_csv_text(f), ROW, lambda s: s.replace(",", "\xe9,", 2)[:-1] + "\n").encode(
            "latin-1"
        ),
        "line 39 is not UTF-8 text (byte 0xe9)",
        id="non-utf8",
    ),
    # A gzip cut in half (a partial copy); raw: EOFError.
    pytest.param(
        "cut.csv.gz",
        lambda f: (lambda z: z[: len(z) // 2])(gzip.compress(_csv_text(f).encode())),
        "not a complete gzip file",
        id="truncated-gzip",
    ),
    # A parquet file with its middle overwritten (disk corruption); raw: pyarrow ArrowInvalid.
    pytest.param(
        "bad.parquet",
        lambda f: (lambda b: b[:8] + bytes(len(b) - 16) + b[-8:])(_parquet_bytes(f)),
        "not a readable parquet file",
        id="corrupt-parquet",
    ),
    # A row with one field too many (a comma inside an unquoted value); raw: pandas ParserError.
    pytest.param(
        "ragged.csv",
        lambda f: _line(_csv_text(f), ROW, lambda s: s.rstrip("\n") + ",7\n").encode(),
        "malformed CSV: Expected 7 fields in line 39, saw 8",
        id="ragged-row",
    ),
    # Years a datetime64[ns] cannot hold; raw: OutOfBoundsDatetime.
    pytest.param(
        "y9999.csv",
        lambda f: _line(_csv_text(f), ROW, lambda s: "9999" + s[4:]).encode(),
        "date outside 1900-01-01..2199-12-31",
        id="year-9999",
    ),
    pytest.param(
        "y1500.csv",
        lambda f: _line(_csv_text(f), ROW, lambda s: "1500" + s[4:]).encode(),
        "date outside 1900-01-01..2199-12-31",
        id="year-1500",
    ),
    # Exchange stamps in IST, one row in UTC; raw: ValueError "Mixed timezones detected".
    pytest.param(
        "zones.csv",
        lambda f: _line(
            f.assign(date=f["date"].dt.strftime("%Y-%m-%dT09:15:00+05:30")).to_csv(index=False),
            ROW,
            lambda s: s.replace("+05:30", "+00:00"),
        ).encode(),
        "date time zone UTC+0000 differs from row 0's UTC+0530",
        id="mixed-time-zones",
    ),
]


@pytest.mark.parametrize("name, content, rule", BAD_FILES)
def test_a_file_that_is_not_a_price_table_is_named_with_what_is_wrong(small, tmp_path, name, content, rule):
    path = tmp_path / name
    path.write_bytes(content(small))
    with pytest.raises(DataValidationError) as error:
        load_prices(path)
    assert str(path) in str(error.value) and rule in str(error.value), str(error.value)


def test_a_directory_is_not_a_price_file(tmp_path):
    folder = tmp_path / "prices.csv"
    folder.mkdir()
    with pytest.raises(DataValidationError, match=re.escape(f"{folder}: is a directory")):
        load_prices(folder)


def test_gzip_is_recognised_by_content_and_a_byte_order_mark_is_not_a_header(small, tmp_path):
    expected = validate_prices(small)
    zipped = tmp_path / "prices.csv"  # gzip bytes behind a plain .csv name
    zipped.write_bytes(gzip.compress(_csv_text(small).encode()))
    excel = tmp_path / "excel.csv"  # Excel's "CSV UTF-8" starts with a byte-order mark
    excel.write_bytes(_csv_text(small).encode("utf-8-sig"))
    for path in (zipped, excel):
        pd.testing.assert_frame_equal(load_prices(path)[0], expected)


# ---------------------------------------------------------------------------------------------- symbols
@pytest.mark.parametrize(
    "bad_symbol",
    [
        "TATA MOTORS",  # a space: the grammar reads "TATA" as the symbol and "MOTORS" as a bad fraction
        " ITC",  # a leading space from a sloppy export: never typed by an agent
        "X(1)",  # brackets: outside the grammar's symbol characters
        "TCSÉ",  # non-ASCII letters: the grammar's symbol is ASCII
        "INFY\t",  # a trailing tab
    ],
)
def test_a_symbol_the_grammar_cannot_trade_is_rejected(as_read, bad_symbol):
    with pytest.raises(DataValidationError) as error:
        validate_prices(_set("symbol", bad_symbol)(as_read, ROW))
    message = str(error.value)
    assert f"row {ROW} (symbol {bad_symbol!r}" in message, message
    assert "is not one the action grammar can trade" in message, message


def test_symbols_that_differ_only_in_case_are_rejected(as_read):
    """``ABB`` and ``abb`` in one file: an episode holding both would make every text step raise."""
    upper = as_read.loc[ROW, "symbol"]
    with pytest.raises(DataValidationError) as error:
        validate_prices(_set("symbol", upper.lower())(as_read, ROW))
    assert f"row {ROW} (symbol {upper.lower()!r}" in str(error.value)
    assert f"symbols {[upper, upper.lower()]} differ only in case" in str(error.value)
    assert "unique ignoring case" in str(error.value)


def test_the_loaders_symbol_rule_is_the_action_grammars():
    from market_env import actions

    assert actions._SYMBOL.pattern == SYMBOL_PATTERN


@settings(max_examples=300, deadline=None)
@given(symbol=st.text(min_size=1, max_size=12))
def test_the_loader_accepts_exactly_the_symbols_the_grammar_can_trade(small, symbol):
    from market_env.actions import parse_action

    accepted = True
    try:
        validate_prices(_set("symbol", symbol)(small, ROW))
    except DataValidationError:
        accepted = False
    parsed = parse_action(f"BUY {symbol} 0.5", [symbol])
    tradable = not parsed.invalid and parsed.orders[0].symbol == symbol
    assert accepted == tradable or (symbol.upper() in {"INFY", "ITC", "TCS"} and not accepted), symbol


# ----------------------------------------------------------------------------------------- price bounds
@pytest.mark.parametrize(
    "value",
    [
        1e-300,  # passes "> 0", then the NAV's share count overflows to inf and the score to NaN
        0.001,  # a tenth of a paisa: a unit error
        1e300,  # a run-away adjustment factor
        2e7,  # above the bound: no Indian share trades at two crore rupees
    ],
)
def test_prices_outside_the_sane_range_are_rejected_naming_the_row(as_read, value, tmp_path):
    broken = as_read.copy()
    broken.loc[ROW, ["open", "high", "low", "close"]] = value
    path = tmp_path / "bounds.csv"
    broken.to_csv(path, index=False)
    with pytest.raises(DataValidationError) as error:
        load_prices(path)
    symbol, iso_date = as_read.loc[ROW, "symbol"], as_read.loc[ROW, "date"]
    assert f"{path}: row {ROW} (symbol {symbol}, date {iso_date})" in str(error.value)
    assert f"open outside the sane price range [{MIN_PRICE:g}, {MAX_PRICE:g}] rupees" in str(error.value)


def test_the_price_bounds_themselves_are_allowed(as_read):
    edge = as_read.copy()
    edge.loc[ROW, ["open", "high", "low", "close"]] = MIN_PRICE
    edge.loc[ROW + 1, ["open", "high", "low", "close"]] = MAX_PRICE
    assert len(validate_prices(edge)) == len(as_read)
