"""Read and validate daily OHLCV prices.

The embedded default is the NIFTY 100 set in this folder (provenance and caveats in ``SOURCE.md``):
prices are split/bonus adjusted but NOT dividend adjusted, volume is split-adjusted shares, and the
universe is the April-2026 index (survivorship bias: names that left the index earlier are absent).
Known defects of the embedded file are repaired as it loads (``data.repairs``; listed in ``SOURCE.md``).

Users can point :func:`load_prices` at their own CSV (gzip-compressed or not) or parquet file, or pass a
DataFrame, with the columns ``date, symbol, open, high, low, close, volume``. Every row is validated; the
first violation raises :class:`DataValidationError` naming the file, the row (symbol, date) and the rule,
because a silently repaired price would make every agent result built on it untrustworthy. A file that cannot
be read as a table at all (empty, not UTF-8, a truncated gzip, a corrupt parquet, a ragged row, a directory)
gets the same error naming the file and what is wrong with it, never a raw parser error.

Rules beyond the obvious ones, and why:

- Symbols follow :data:`SYMBOL_PATTERN`, the action grammar's symbol token (``market_env.actions``), and are
  unique ignoring case: the grammar matches symbols case-insensitively, so a symbol it cannot spell, or two
  that differ only in case, could never be traded.
- Prices lie in [:data:`MIN_PRICE`, :data:`MAX_PRICE`] rupees: outside it a price is a unit or adjustment
  error, and 1e-300 or 1e300 overflow the portfolio arithmetic to NaN.
- Dates lie in [:data:`FIRST_DATE`, :data:`LAST_DATE`], and all time-zone stamps of a file name one zone: the
  date of a bar is its exchange-local date, which mixed zones make ambiguous.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import re
import zlib
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd

from data.repairs import apply_repairs

REQUIRED_COLUMNS = ("date", "symbol", "open", "high", "low", "close", "volume")
PRICE_COLUMNS = ("open", "high", "low", "close")
EMBEDDED_FILE = "nifty100_ohlcv_2020_2026.csv.gz"
SUPPORTED = ".csv, .csv.gz or .parquet"
# The action grammar's symbol token (market_env/actions.py ``_SYMBOL``; data may not import market_env, which
# imports data: tests/data/test_loader.py checks the two agree). ASCII letters, digits and & _ . -
SYMBOL_PATTERN = r"[A-Za-z0-9&_.\-]+"
_SYMBOL = re.compile(SYMBOL_PATTERN)
# Rupees. The embedded set spans 4.6 .. 41,945; a paise/rupee mix-up or a twice-applied split stays inside by
# far, while 1e-300 or 1e300 (which overflow the NAV to NaN) do not.
MIN_PRICE, MAX_PRICE = 0.01, 1e7
FIRST_DATE, LAST_DATE = pd.Timestamp("1900-01-01"), pd.Timestamp("2199-12-31")

PriceSource = str | Path | pd.DataFrame | None


class DataValidationError(ValueError):
    """A price table broke a rule; the message names the file, the row (symbol, date) and the rule."""


def embedded_path() -> Path:
    """Path of the embedded NIFTY 100 file (works from a source checkout and an installed wheel)."""
    return Path(str(resources.files("data").joinpath(EMBEDDED_FILE)))


def file_sha256(path: str | Path) -> str:
    """sha256 of a file's bytes (the identity of a user's file source)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def frame_sha256(prices: pd.DataFrame) -> str:
    """A content hash of a validated price table, independent of row order and file format."""
    ordered = prices.sort_values(["symbol", "date"]).reset_index(drop=True)
    hashed = pd.util.hash_pandas_object(ordered[list(REQUIRED_COLUMNS)], index=False).to_numpy()
    return hashlib.sha256(hashed.tobytes()).hexdigest()


def is_embedded(source: PriceSource) -> bool:
    """True for the embedded file, whether named by ``None`` or by its path."""
    if source is None:
        return True
    if isinstance(source, pd.DataFrame):
        return False
    return Path(source).resolve() == embedded_path().resolve()


def read_table(source: PriceSource = None) -> tuple[pd.DataFrame, str]:
    """Read a price table and return it with its sha256 (of the file's bytes; "" for a DataFrame).

    The bytes are read once and both hashed and parsed, so the hash is of exactly what was parsed even when
    the file is rewritten meanwhile.
    """
    if isinstance(source, pd.DataFrame):
        return source.copy(), ""
    path = embedded_path() if source is None else Path(source)
    if not path.exists():
        raise FileNotFoundError(f"price file {path} does not exist; pass a CSV/parquet path or a DataFrame")
    if path.is_dir():
        raise DataValidationError(f"{path}: is a directory; expected a {SUPPORTED} file")
    name = path.name.lower()  # "PRICES.CSV" is a CSV file too
    if not name.endswith((".parquet", ".csv", ".csv.gz")):
        raise DataValidationError(f"{path.name}: unsupported file type; expected {SUPPORTED}")
    try:
        raw = path.read_bytes()
    except OSError as error:
        raise DataValidationError(f"{path}: cannot be read ({error.strerror or error})") from None
    parse = _parse_parquet if name.endswith(".parquet") else _parse_csv
    return parse(raw, path), hashlib.sha256(raw).hexdigest()


def _parse_csv(raw: bytes, path: Path) -> pd.DataFrame:
    """A CSV (gzip-compressed or not, whatever the extension says) as a frame of strings and numbers."""
    if raw[:2] == b"\x1f\x8b":  # the gzip magic number
        try:
            raw = gzip.decompress(raw)
        except (EOFError, OSError, zlib.error) as error:
            raise DataValidationError(
                f"{path}: not a complete gzip file ({error}); it is truncated or corrupt, download it again"
            ) from None
    try:
        text = raw.decode("utf-8-sig")  # a byte-order mark (Excel's "CSV UTF-8") is not part of the header
    except UnicodeDecodeError as error:
        line = raw[: error.start].count(b"\n") + 1
        raise DataValidationError(
            f"{path}: line {line} is not UTF-8 text (byte {raw[error.start]:#04x}); save the file as UTF-8"
        ) from None
    if not text.strip():
        raise DataValidationError(
            f"{path}: the file is empty; expected a header line {','.join(REQUIRED_COLUMNS)}"
        )
    try:
        return pd.read_csv(io.StringIO(text))
    except pd.errors.ParserError as error:  # pandas names the line and the field counts
        detail = str(error).removeprefix("Error tokenizing data. C error: ").strip()
        raise DataValidationError(
            f"{path}: malformed CSV: {detail} (a ragged row: every line needs the header's fields)"
        ) from None


def _parse_parquet(raw: bytes, path: Path) -> pd.DataFrame:
    from pyarrow import ArrowException

    try:
        return pd.read_parquet(io.BytesIO(raw))
    except (ArrowException, ValueError, OSError) as error:
        raise DataValidationError(f"{path}: not a readable parquet file ({error})") from None


def load_prices(source: PriceSource = None) -> tuple[pd.DataFrame, str]:
    """Read and validate a price table; returns (prices sorted by symbol then date, sha256).

    The sha256 identifies the data actually used: a user's file by its bytes, a DataFrame by its content, and
    the embedded set by the content of the repaired table (``data.repairs``; recorded in ``SOURCE.md``).
    """
    frame, sha = read_table(source)
    try:
        prices = validate_prices(frame)
    except DataValidationError as error:
        if isinstance(source, pd.DataFrame):
            raise
        raise DataValidationError(f"{embedded_path() if source is None else source}: {error}") from None
    if is_embedded(source):
        prices = apply_repairs(prices)
        sha = ""
    return prices, sha or frame_sha256(prices)


def validate_prices(frame: pd.DataFrame) -> pd.DataFrame:
    """Check every rule of the data contract and return a clean, typed, sorted copy."""
    missing = [column for column in REQUIRED_COLUMNS if column not in frame.columns]
    if missing:
        raise DataValidationError(
            f"missing required column(s) {missing}; expected columns {list(REQUIRED_COLUMNS)}"
        )
    if len(frame) == 0:
        raise DataValidationError("the price table has no rows; expected one row per (symbol, date)")
    # Positional labels: "row N" is the N-th data row (0-based) even when the caller's index repeats.
    prices = frame[list(REQUIRED_COLUMNS)].reset_index(drop=True)
    prices["symbol"] = _parse_symbols(prices)
    prices["date"] = _parse_dates(prices)
    for column in (*PRICE_COLUMNS, "volume"):
        prices[column] = _parse_numbers(prices, column)
    _check_rows(prices)
    return prices.sort_values(["symbol", "date"], kind="stable").reset_index(drop=True)


def _row_name(prices: pd.DataFrame, index: int) -> str:
    row = prices.loc[index]
    date = row["date"]
    date_text = date.date().isoformat() if isinstance(date, pd.Timestamp) and not pd.isna(date) else str(date)
    return f"row {index} (symbol {row['symbol']}, date {date_text})"


def _fail_first(prices: pd.DataFrame, bad: np.ndarray | pd.Series, rule: str) -> None:
    bad = np.asarray(bad, dtype=bool)
    if bad.any():
        first = prices.index[int(np.argmax(bad))]
        raise DataValidationError(f"{_row_name(prices, first)}: {rule} ({int(bad.sum())} row(s) break it)")


def _raw_row(prices: pd.DataFrame, index: int, quote_symbol: bool = False) -> str:
    """A row named by its raw cells, for failures found before the dates are parsed."""
    symbol = prices.loc[index, "symbol"]
    shown = repr(symbol) if quote_symbol else symbol
    return f"row {index} (symbol {shown}, date {prices.loc[index, 'date']!r})"


def _parse_symbols(prices: pd.DataFrame) -> pd.Series:
    symbols = prices["symbol"]
    bad = symbols.isna().to_numpy() | (symbols.astype(str).str.strip() == "").to_numpy()
    if bad.any():
        first = int(np.argmax(bad))
        raise DataValidationError(
            f"row {first} (symbol {symbols.iloc[first]!r}, date {prices.loc[first, 'date']}): "
            "symbol is missing or empty"
        )
    symbols = symbols.astype(str)
    unique = pd.Series(symbols.unique())
    untradable = unique[~unique.map(lambda s: _SYMBOL.fullmatch(s) is not None).astype(bool)]
    if len(untradable):
        first = int(np.argmax((symbols == untradable.iloc[0]).to_numpy()))
        raise DataValidationError(
            f"{_raw_row(prices, first, quote_symbol=True)}: symbol {untradable.iloc[0]!r} is not one the "
            "action grammar can trade; expected ASCII letters, digits and & _ . - only "
            f"({len(untradable)} symbol(s) break it)"
        )
    _check_case_unique(prices, symbols, unique)
    return symbols


def _check_case_unique(prices: pd.DataFrame, symbols: pd.Series, unique: pd.Series) -> None:
    """Symbols must differ by more than case: actions name them case-insensitively."""
    clashing = unique[unique.str.upper().duplicated(keep=False)]  # in order of first appearance
    if len(clashing):
        spellings = list(clashing[clashing.str.upper() == clashing.str.upper().iloc[0]])
        first = int(np.argmax(symbols.isin(spellings[1:]).to_numpy()))
        raise DataValidationError(
            f"{_raw_row(prices, first, quote_symbol=True)}: symbols {spellings} differ only in case; actions "
            "match symbols ignoring case, so symbols must be unique ignoring case"
        )


def _parse_dates(prices: pd.DataFrame) -> pd.Series:
    try:
        dates = pd.to_datetime(prices["date"], errors="coerce")
    except ValueError:  # "Mixed timezones detected": stamps in two zones (errors="coerce" does not cover it)
        _fail_mixed_zones(prices)
        raise
    if getattr(dates.dt, "tz", None) is not None:
        dates = dates.dt.tz_localize(None)  # the exchange-local date: 09:15+05:30 is that day in India
    bad = dates.isna().to_numpy()
    if bad.any():
        first = prices.index[int(np.argmax(bad))]
        raise DataValidationError(f"{_raw_row(prices, first)}: date is missing or not a date")
    outside = ((dates < FIRST_DATE) | (dates > LAST_DATE + pd.Timedelta(days=1))).to_numpy()
    if outside.any():
        first = prices.index[int(np.argmax(outside))]
        raise DataValidationError(
            f"{_raw_row(prices, first)}: date outside {FIRST_DATE.date()}..{LAST_DATE.date()} "
            f"({int(outside.sum())} row(s) break it)"
        )
    # One resolution whatever the source (CSV text parses to [us] in pandas 3, parquet may hold [ns]):
    # the content hash of a DataFrame source hashes the raw integers, so the unit must not vary.
    return dates.dt.normalize().astype("datetime64[ns]")


def _fail_mixed_zones(prices: pd.DataFrame) -> None:
    """Name the first row whose time zone differs from the first row's (only called when they do differ)."""
    zones = [_zone(value) for value in prices["date"]]
    for index, zone in enumerate(zones):
        if zone != zones[0]:
            raise DataValidationError(
                f"{_raw_row(prices, index)}: date time zone {zone} differs from row 0's {zones[0]}; "
                "use one time zone for every date of a file, or plain dates (YYYY-MM-DD)"
            )


def _zone(value: object) -> str:
    try:
        stamp = pd.Timestamp(value)
    except (ValueError, TypeError, OverflowError):
        return "none"
    return "none" if pd.isna(stamp) or stamp.tzinfo is None else stamp.strftime("UTC%z")


def _parse_numbers(prices: pd.DataFrame, column: str) -> pd.Series:
    values = pd.to_numeric(prices[column], errors="coerce").astype("float64")
    _fail_first(prices, values.isna(), f"{column} is NaN or not a number")
    _fail_first(prices, ~np.isfinite(values.to_numpy()), f"{column} is infinite")
    return values


def _check_rows(prices: pd.DataFrame) -> None:
    _fail_first(prices, prices.duplicated(["symbol", "date"], keep="first"), "duplicate (symbol, date) row")
    for column in PRICE_COLUMNS:
        _fail_first(prices, prices[column] <= 0, f"{column} must be > 0")
        outside = (prices[column] < MIN_PRICE) | (prices[column] > MAX_PRICE)
        _fail_first(
            prices, outside, f"{column} outside the sane price range [{MIN_PRICE:g}, {MAX_PRICE:g}] rupees"
        )
    _fail_first(prices, prices["high"] < prices["low"], "high < low")
    for column in ("open", "close"):
        outside = (prices[column] < prices["low"]) | (prices[column] > prices["high"])
        _fail_first(prices, outside, f"{column} outside [low, high]")
    _fail_first(prices, prices["volume"] < 0, "volume must be >= 0")
