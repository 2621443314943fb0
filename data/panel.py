"""A price panel: the trading calendar, (day x symbol) price arrays and the indicator features.

Built once per data source and shared by every environment that uses it (``load_panel`` caches it), so
a reset never touches pandas.
"""

from __future__ import annotations

import datetime
import functools
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from data.features import INDICATORS, Indicator, compute_features
from data.loader import PriceSource, embedded_path, file_sha256, load_prices

# A day is a trading day when at least half the symbols have a row on it. This drops 2025-03-18,
# which the source lacks for 90 of 100 symbols (5 more were not listed yet); its 5 rows are dropped with it.
CALENDAR_MIN_SHARE = 0.5


@dataclass(frozen=True, eq=False)
class Panel:
    """Aligned arrays on the trading calendar. Missing symbol-days are NaN and ``present`` is False."""

    dates: np.ndarray  # (T,) datetime64[D]
    symbols: tuple[str, ...]  # (S,)
    open: np.ndarray  # (T, S) float64
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray
    features: np.ndarray  # (T, S, F) float64, raw indicator values
    feature_names: tuple[str, ...]
    sha256: str
    present_count: np.ndarray = field(repr=False)  # (T + 1, S) cumulative count of present rows

    @property
    def n_days(self) -> int:
        return len(self.dates)

    def day_index(self, date: str | np.datetime64 | datetime.date, argument: str = "start_date") -> int:
        """Index of a calendar date (exact match); ``argument`` names ``date`` in a bad value's error."""
        target = parse_day(date, argument)
        index = int(np.searchsorted(self.dates, target))
        if index >= len(self.dates) or self.dates[index] != target:
            raise ValueError(f"{target} is not a trading day of this panel")
        return index

    def complete_symbols(self, first_day: int, last_day: int) -> np.ndarray:
        """Indices of symbols with a row on every calendar day in [first_day, last_day]."""
        if not 0 <= first_day <= last_day < self.n_days:  # a negative day would wrap round silently
            raise IndexError(f"day range [{first_day}, {last_day}] is not inside 0..{self.n_days - 1}")
        rows = self.present_count[last_day + 1] - self.present_count[first_day]
        return np.flatnonzero(rows == last_day - first_day + 1)

    def iso_date(self, day: int) -> str:
        return self._iso_dates[day]

    @functools.cached_property
    def symbol_array(self) -> np.ndarray:
        """``symbols`` as an object array, so many episodes' names come from one fancy index."""
        return np.array(self.symbols, dtype=object)

    @functools.cached_property
    def _iso_dates(self) -> list[str]:  # every info dict names a date: format them once
        return np.datetime_as_string(self.dates, unit="D").tolist()


def parse_day(value: object, argument: str = "start_date") -> np.datetime64:
    """``value`` as a day; a value that is no date ("", "NaT", text, a number) raises a ValueError that names
    the argument and the accepted format, not pandas' internal error."""
    accepted = f"{argument} must be an ISO date YYYY-MM-DD (e.g. 2024-01-02)"
    if not isinstance(value, str | np.datetime64 | datetime.date):  # pd.Timestamp is a datetime.date
        raise ValueError(f"{accepted}, got {type(value).__name__} {value!r}")
    try:
        stamp = pd.Timestamp(value)
    except (ValueError, TypeError, OverflowError):
        stamp = pd.NaT
    if pd.isna(stamp):
        raise ValueError(f"{accepted}, got {value!r}")
    return np.datetime64(stamp.date(), "D")


def trading_calendar(prices: pd.DataFrame) -> pd.DatetimeIndex:
    counts = prices.groupby("date").size()
    n_symbols = prices["symbol"].nunique()
    return pd.DatetimeIndex(counts.index[counts >= CALENDAR_MIN_SHARE * n_symbols]).sort_values()


def build_panel(prices: pd.DataFrame, sha256: str, indicators: Mapping[str, Indicator] = INDICATORS) -> Panel:
    """Align a validated long price table onto its calendar and compute the indicators once."""
    calendar = trading_calendar(prices)
    on_calendar = prices[prices["date"].isin(calendar)]
    features = compute_features(on_calendar, indicators)
    wide = pd.concat([on_calendar, features], axis=1).set_index(["date", "symbol"])
    symbols = sorted(on_calendar["symbol"].unique())
    full_index = pd.MultiIndex.from_product([calendar, symbols], names=["date", "symbol"])
    wide = wide.reindex(full_index)
    shape = (len(calendar), len(symbols))

    def grid(columns: list[str]) -> np.ndarray:
        return wide[columns].to_numpy(dtype=np.float64).reshape(*shape, len(columns))

    prices_grid = grid(["open", "high", "low", "close", "volume"])
    present = ~np.isnan(prices_grid[..., 3])
    present_count = np.zeros((shape[0] + 1, shape[1]), dtype=np.int64)
    np.cumsum(present, axis=0, out=present_count[1:])
    arrays = {
        "dates": calendar.to_numpy().astype("datetime64[D]"),
        **{
            name: prices_grid[..., j].copy()
            for j, name in enumerate(("open", "high", "low", "close", "volume"))
        },
        "features": grid(list(indicators)),
        "present_count": present_count,
    }
    for array in arrays.values():
        array.flags.writeable = False  # one cached panel serves every env: nobody may edit it in place
    return Panel(symbols=tuple(symbols), feature_names=tuple(indicators), sha256=sha256, **arrays)


def load_panel(source: PriceSource = None) -> Panel:
    """Load, validate and align a data source; file sources (and the embedded default) are cached.

    The cache is keyed on the file's content (its sha256), so a file rewritten in place is read again. The
    hash is recomputed only when the file's stat changes (size, mtime, ctime, inode: a write always moves
    ctime, which no user call can set back), so a repeated ``make`` does not re-read an unchanged file.
    """
    if isinstance(source, pd.DataFrame):
        prices, sha = load_prices(source)
        return build_panel(prices, sha)
    path = (embedded_path() if source is None else Path(source)).resolve()
    if not path.is_file():
        load_prices(path)  # raises the loader's error (missing file, a directory, ...)
    stat = path.stat()
    content = _file_sha256(str(path), stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns, stat.st_ino)
    return _cached_file_panel(str(path), content)


@functools.lru_cache(maxsize=16)
def _file_sha256(path: str, size: int, mtime_ns: int, ctime_ns: int, inode: int) -> str:
    """sha256 of the file; the stat fields are the cache key only."""
    return file_sha256(path)


@functools.lru_cache(maxsize=4)
def _cached_file_panel(path: str, content_sha256: str) -> Panel:
    """The panel of ``path``; ``content_sha256`` is the cache key only (see :func:`load_panel`)."""
    prices, sha = load_prices(path)  # the embedded file gets its repairs whichever way it is named
    return build_panel(prices, sha)
