"""What an agent may see of the price panel: the past up to each episode's current day, read-only.

The batch env's :class:`~market_env.observations.Snapshot` carries the whole panel, so
``snapshot.panel.open[snapshot.day + 1]`` (tomorrow's fill price) would be one index away. The harness
hands agents :func:`agent_snapshot` instead: the same numbers of the step, with ``panel`` (and the
normalised ``market_table``) replaced by :class:`PastPanel`, whose arrays refuse any row after the
current day of the episode asking. Episodes of a batch sit on different calendar days, so a row index
per episode (an array whose first axis has one entry per episode, as ``snapshot.features`` uses) is
checked episode by episode; a plain index or slice may only reach days that are past for every episode
(the earliest current day of the batch). Nothing is copied: the checks cost a comparison per step.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np

from data.panel import Panel
from market_env.observations import Snapshot

PANEL_ARRAYS = ("dates", "open", "high", "low", "close", "volume", "features")


class LookAheadError(IndexError):
    """An agent asked for a day after its episode's current day."""


class PastArray:
    """Rows ``0..horizon[b]`` of a (T, ...) panel array for episode b; later rows raise LookAheadError."""

    def __init__(self, full: np.ndarray, horizon: np.ndarray) -> None:
        self._full, self._horizon = full, np.asarray(horizon, dtype=np.int64)
        self._rows = int(self._horizon.min()) + 1  # the days past for every episode of the batch

    @property
    def shape(self) -> tuple[int, ...]:
        return (self._rows, *self._full.shape[1:])

    @property
    def dtype(self) -> np.dtype:
        return self._full.dtype

    def __len__(self) -> int:
        return self._rows

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        past = self._full[: self._rows]
        return past if dtype is None else past.astype(dtype)

    def __getitem__(self, key: Any) -> Any:
        first = key[0] if isinstance(key, tuple) and key else key
        if isinstance(first, slice) or first is Ellipsis:
            return self._full[: self._rows][key]  # a slice cannot reach past the common past
        days = np.asarray(first)
        if days.dtype == bool:
            return self._full[: self._rows][key]
        if not np.issubdtype(days.dtype, np.integer):
            raise TypeError(f"day index must be an integer, a slice or an integer array, not {days.dtype}")
        days = np.where(days < 0, days + self._rows, days)  # -1 is the latest common day, as for an array
        limit = self._limit(days)
        if (days < 0).any() or (days > limit).any():
            late = int(days[days > limit].max()) if (days > limit).any() else int(days.min())
            raise LookAheadError(
                f"day {late} is not in the past of the episode asking (its current day is "
                f"{int(np.min(limit))} at the latest); agents see only up to today"
            )
        index = (days, *key[1:]) if isinstance(key, tuple) else days
        return self._full[index]

    def _limit(self, days: np.ndarray) -> np.ndarray:
        """Per-episode horizons when the index has one row per episode, else the batch's common past."""
        if days.ndim >= 1 and days.shape[0] == self._horizon.size:
            return self._horizon.reshape(-1, *([1] * (days.ndim - 1)))
        return np.asarray(self._rows - 1)


class PastPanel:
    """A :class:`~data.panel.Panel` seen from the current day: its arrays are :class:`PastArray` views."""

    def __init__(self, panel: Panel, horizon: np.ndarray) -> None:
        self._panel, self._horizon = panel, np.asarray(horizon, dtype=np.int64)
        for name in PANEL_ARRAYS:
            setattr(self, name, PastArray(getattr(panel, name), self._horizon))
        self.symbols, self.feature_names, self.sha256 = panel.symbols, panel.feature_names, panel.sha256

    @property
    def n_days(self) -> int:
        return int(self._horizon.min()) + 1

    def iso_date(self, day: int) -> str:
        if not 0 <= day <= int(self._horizon.max()):
            raise LookAheadError(f"day {day} is after every episode's current day")
        return self._panel.iso_date(day)

    def history(self, name: str, symbols: np.ndarray, lookback: int) -> np.ndarray:
        """The last ``lookback`` days up to each episode's current day of one price field or feature, for
        each episode's own stocks: shape (B, lookback, K) (NaN before the panel starts)."""
        full = getattr(self._panel, name) if name in PANEL_ARRAYS else self._panel.features
        if name not in PANEL_ARRAYS:
            full = full[..., self._panel.feature_names.index(name)]
        days = self._horizon[:, None] - np.arange(lookback - 1, -1, -1)  # (B, L), oldest first
        values = full[np.maximum(days, 0)[:, :, None], np.asarray(symbols)[:, None, :]].astype(np.float64)
        values[days < 0] = np.nan
        return values


def agent_snapshot(snapshot: Snapshot) -> Snapshot:
    """The step's snapshot with the panel and market table cut at each episode's current day."""
    horizon = snapshot.day.copy()
    view = replace(snapshot, panel=PastPanel(snapshot.panel, horizon))
    view.market_table = PastArray(snapshot.market_table, horizon)
    for name in (
        "day",
        "t",
        "start_day",
        "symbols",
        "cash",
        "nav",
        "nav_series",
        "shares",
        "avg_cost",
        "close",
    ):
        value = np.array(getattr(snapshot, name))  # copies: an agent cannot edit the env's state in place
        value.flags.writeable = False
        setattr(view, name, value)
    return view
