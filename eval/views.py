"""What an agent may see of the price panel: the past up to each episode's current day, read-only.

The batch env's :class:`~market_env.observations.Snapshot` carries the whole panel, so
``snapshot.panel.open[snapshot.day + 1]`` (tomorrow's fill price) would be one index away. The harness
hands agents :func:`agent_snapshot` instead: the same numbers of the step, with ``panel`` (and the
normalised ``market_table``) replaced by :class:`PastPanel`, whose arrays refuse any row after the
current day of the episode asking. Episodes of a batch sit on different calendar days, so a row index
per episode (an array whose first axis has one entry per episode, as ``snapshot.features`` uses) is
checked episode by episode; a plain index or slice may only reach days that are past for every episode
(the earliest current day of the batch). Nothing is copied: the checks cost a comparison per step.

Anonymised runs (``evaluate --anonymize``) hand agents the same view of an :class:`AnonymousFrame` instead
of the real panel, so a rule agent reading the snapshot learns no more than the env's anonymised
observation tells (``market_env.anonymize``):

- **Names**: the frame has one column per (episode, stock), in the agent's stock order, named STOCK_A..;
  ``snapshot.symbols`` indexes those columns, so ``panel.symbols[snapshot.symbols]`` gives the names the
  observation uses and the numeric action's order.
- **Dates**: the frame's rows are the episode's own days: ``lookback`` days of history, then the episode.
  Every episode starts on the same row (``start_day`` = ``lookback``), ``dates`` holds day numbers (1 is the
  first decision, 0 and below the history) and ``iso_date`` gives "day k" labels, never a calendar date.
- **Prices**: open, high, low, close, the close and average cost of positions, and the price-unit
  indicators (MACD histogram and its change) are rescaled so the close at the episode start is 100; share
  counts and volume are units = shares / scale, as the env shows them. Scale-free indicators (RSI, %B,
  changes and momentum, trend, ATR %, volume ratio) and the normalised market table are unchanged. Cash
  and NAV stay rupees (the same start capital in every episode, as in the observation).

A rule whose decisions are scale-free therefore acts exactly as in the clear, and the harness pairs
anonymised episodes by their real identity (``BatchMarketEnv.episode_identities``), never shown to agents.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np

from data.panel import Panel
from market_env import anonymize as anon
from market_env.observations import ANONYMOUS_NAMES, Snapshot

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


# How each indicator behaves under a price rescale; an indicator in neither list is refused (fail closed),
# so a new one cannot leak real price levels into anonymised runs unnoticed.
SCALE_FREE_FEATURES = frozenset(
    ("change_1d", "change_5d", "rsi", "pct_b", "trend", "atr_pct", "momentum_20d", "volume_ratio")
)
PRICE_FEATURES = frozenset(("macd_hist", "macd_hist_change"))  # in price units: rescaled with the prices


class AnonymousFrame:
    """A panel of a batch's episodes in their own coordinates: column b * K + j is episode b's j-th stock
    (agent order), row r is the day ``r - lookback`` after the episode's first decision close.

    Built once per run from the reset snapshot of an anonymised batch env (whose per-stock arrays are
    already in the agent's order); duck-types the :class:`~data.panel.Panel` fields agents read.
    """

    def __init__(self, snapshot: Snapshot, lookback: int) -> None:
        panel = snapshot.panel
        unknown = set(panel.feature_names) - SCALE_FREE_FEATURES - PRICE_FEATURES
        if unknown:
            raise ValueError(f"indicators {sorted(unknown)} are not classified as scale-free or in price "
                             "units in eval.views: classify them before running anonymised")  # fmt: skip
        n_envs, n_stocks = snapshot.symbols.shape
        self.lookback, self.n_stocks = lookback, n_stocks
        rows = lookback + snapshot.n_days + 1  # history, the decision closes, the final marking close
        calendar = snapshot.start_day[:, None] - lookback + np.arange(rows)  # (B, R)
        valid = (calendar >= 0) & (calendar < panel.n_days)
        days = np.clip(calendar, 0, panel.n_days - 1)[:, :, None].transpose(1, 0, 2)  # (R, B, 1)
        columns = np.asarray(snapshot.symbols)[None]  # (1, B, K)
        self.scale = anon.price_scale(panel.close[snapshot.start_day[:, None], snapshot.symbols])  # (B, K)
        missing = ~valid.T[:, :, None]  # (R, B, 1): days before or after the panel

        def gather(values: np.ndarray, factor: np.ndarray | float) -> np.ndarray:
            local = values[days, columns] * factor  # (R, B, K, ...)
            local[np.broadcast_to(missing.reshape(missing.shape + (1,) * (local.ndim - 3)), local.shape)] = (
                np.nan
            )
            return local.reshape(rows, n_envs * n_stocks, *values.shape[2:])

        for name in ("open", "high", "low", "close"):
            setattr(self, name, gather(panel.close if name == "close" else getattr(panel, name), self.scale))
        self.volume = gather(panel.volume, 1.0 / self.scale)  # units, like positions
        factors = np.array([1.0 if name in SCALE_FREE_FEATURES else np.nan for name in panel.feature_names])
        feature_scale = np.where(np.isnan(factors)[None, None], self.scale[..., None], factors)  # (B, K, F)
        self.features = gather(panel.features, feature_scale)
        self.market_table = gather(snapshot.market_table, 1.0).astype(np.float32)  # normalised: scale-free
        self.dates = np.arange(rows, dtype=np.int64) - lookback + 1  # day numbers: 1 = first decision
        self.symbols = tuple(ANONYMOUS_NAMES[j] for _ in range(n_envs) for j in range(n_stocks))
        self.feature_names, self.sha256 = panel.feature_names, panel.sha256
        self.columns = np.arange(n_envs * n_stocks, dtype=np.int64).reshape(n_envs, n_stocks)

    @property
    def n_days(self) -> int:
        return len(self.dates)

    def iso_date(self, day: int) -> str:
        """The anonymous label of a row ("day 1" = the first decision close), never a calendar date."""
        return anon.day_label(int(day) - self.lookback)

    def rebase(self, snapshot: Snapshot) -> Snapshot:
        """The step's snapshot (of the env this frame was built for) in the frame's coordinates and scale."""
        rows = np.full(snapshot.day.shape, self.lookback, dtype=np.int64)
        return replace(
            snapshot, panel=self, market_table=self.market_table, day=rows + snapshot.t, start_day=rows,
            symbols=self.columns, shares=snapshot.shares / self.scale,
            avg_cost=snapshot.avg_cost * self.scale, close=snapshot.close * self.scale,
        )  # fmt: skip


def agent_snapshot(snapshot: Snapshot, frame: AnonymousFrame | None = None) -> Snapshot:
    """The step's snapshot with the panel and market table cut at each episode's current day; with an
    anonymised run's ``frame``, in the frame's coordinates (names, days and prices of the episode only)."""
    if frame is not None:
        snapshot = frame.rebase(snapshot)
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
