"""Read and validate daily OHLCV prices.

The embedded default is the NIFTY 100 set in this folder (provenance and caveats in ``SOURCE.md``):
prices are split/bonus adjusted but NOT dividend adjusted, volume is split-adjusted shares, and the
universe is the April-2026 index (survivorship bias: names that left the index earlier are absent).

Users can point :func:`load_prices` at their own CSV or parquet file, or pass a DataFrame, with the
columns ``date, symbol, open, high, low, close, volume``. Every row is validated; the first violation
raises :class:`DataValidationError` naming the symbol, the date and the rule, because a silently
repaired price would make every agent result built on it untrustworthy.
"""

from __future__ import annotations

import hashlib
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd

REQUIRED_COLUMNS = ("date", "symbol", "open", "high", "low", "close", "volume")
PRICE_COLUMNS = ("open", "high", "low", "close")
EMBEDDED_FILE = "nifty100_ohlcv_2020_2026.csv.gz"

PriceSource = str | Path | pd.DataFrame | None


class DataValidationError(ValueError):
    """A price table broke a rule; the message names the row (symbol, date) and the rule."""


def embedded_path() -> Path:
    """Path of the embedded NIFTY 100 file (works from a source checkout and an installed wheel)."""
    return Path(str(resources.files("data").joinpath(EMBEDDED_FILE)))


def file_sha256(path: str | Path) -> str:
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


def read_table(source: PriceSource = None) -> tuple[pd.DataFrame, str]:
    """Read a price table and return it with its sha256 (of the file; of the content for a DataFrame)."""
    if isinstance(source, pd.DataFrame):
        return source.copy(), ""
    path = embedded_path() if source is None else Path(source)
    if not path.exists():
        raise FileNotFoundError(f"price file {path} does not exist; pass a CSV/parquet path or a DataFrame")
    name = path.name.lower()  # "PRICES.CSV" is a CSV file too
    if name.endswith(".parquet"):
        frame = pd.read_parquet(path)
    elif name.endswith((".csv", ".csv.gz")):
        frame = pd.read_csv(path)
    else:
        raise DataValidationError(f"{path.name}: unsupported file type; expected .csv, .csv.gz or .parquet")
    return frame, file_sha256(path)


def load_prices(source: PriceSource = None) -> tuple[pd.DataFrame, str]:
    """Read and validate a price table; returns (prices sorted by symbol then date, sha256)."""
    frame, sha = read_table(source)
    prices = validate_prices(frame)
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


def _parse_symbols(prices: pd.DataFrame) -> pd.Series:
    symbols = prices["symbol"]
    bad = symbols.isna().to_numpy() | (symbols.astype(str).str.strip() == "").to_numpy()
    if bad.any():
        first = int(np.argmax(bad))
        raise DataValidationError(
            f"row {first} (symbol {symbols.iloc[first]!r}, date {prices.loc[first, 'date']}): "
            "symbol is missing or empty"
        )
    return symbols.astype(str)


def _parse_dates(prices: pd.DataFrame) -> pd.Series:
    dates = pd.to_datetime(prices["date"], errors="coerce")
    if getattr(dates.dt, "tz", None) is not None:
        dates = dates.dt.tz_localize(None)
    bad = dates.isna().to_numpy()
    if bad.any():
        first = prices.index[int(np.argmax(bad))]
        raise DataValidationError(
            f"row {first} (symbol {prices.loc[first, 'symbol']}, date {prices.loc[first, 'date']!r}): "
            "date is missing or not a date"
        )
    # One resolution whatever the source (CSV text parses to [us] in pandas 3, parquet may hold [ns]):
    # the content hash of a DataFrame source hashes the raw integers, so the unit must not vary.
    return dates.dt.normalize().astype("datetime64[ns]")


def _parse_numbers(prices: pd.DataFrame, column: str) -> pd.Series:
    values = pd.to_numeric(prices[column], errors="coerce").astype("float64")
    _fail_first(prices, values.isna(), f"{column} is NaN or not a number")
    _fail_first(prices, ~np.isfinite(values.to_numpy()), f"{column} is infinite")
    return values


def _check_rows(prices: pd.DataFrame) -> None:
    _fail_first(prices, prices.duplicated(["symbol", "date"], keep="first"), "duplicate (symbol, date) row")
    for column in PRICE_COLUMNS:
        _fail_first(prices, prices[column] <= 0, f"{column} must be > 0")
    _fail_first(prices, prices["high"] < prices["low"], "high < low")
    for column in ("open", "close"):
        outside = (prices[column] < prices["low"]) | (prices[column] > prices["high"])
        _fail_first(prices, outside, f"{column} outside [low, high]")
    _fail_first(prices, prices["volume"] < 0, "volume must be >= 0")
