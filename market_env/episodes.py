"""Which episodes exist: start days and stock universes, drawn with the env's seeded generator.

An episode of N decisions starting at calendar day t0 decides at the closes of t0..t0+N-1, fills at the
opens of t0+1..t0+N and is marked at the closes of t0+1..t0+N. Its days t0..t0+N all lie inside the split.
Its stocks have a row on every calendar day of [t0 - lookback, t0 + N], so every indicator is defined
and no price is missing; they are drawn without replacement and kept in alphabetical order.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from data.panel import Panel
from data.splits import Split
from market_env.errors import EpisodeError
from market_env.tasks import TaskSpec


@dataclass(frozen=True)
class Episode:
    start_day: int  # calendar index of the first decision close
    symbols: tuple[int, ...]  # panel symbol indices, ascending


class EpisodeSampler:
    """Valid episodes of one (panel, task, split), computed once."""

    def __init__(self, panel: Panel, task: TaskSpec, split: Split, lookback: int) -> None:
        self.panel, self.task, self.split, self.lookback = panel, task, split, lookback
        self.start_days, self._eligible = self._valid_start_days()
        if len(self.start_days) == 0:
            raise EpisodeError(
                f"no valid {task.name} episode in split {split.name} ({split.start}..{split.end}): "
                f"needs {task.n_days + 1} trading days in the split, {lookback} days of history before, "
                f"and {task.n_stocks} symbols with a row on every one of those days"
            )

    def _window(self, start_day: int) -> tuple[int, int]:
        return start_day - self.lookback, start_day + self.task.n_days

    def _valid_start_days(self) -> tuple[np.ndarray, list[np.ndarray]]:
        """Valid start days and, for each, its eligible symbols (kept: sampling is on the reset hot path)."""
        panel, n_days = self.panel, self.task.n_days
        candidates = np.arange(self.lookback, panel.n_days - n_days)
        in_split = (panel.dates[candidates] >= np.datetime64(self.split.start)) & (
            panel.dates[candidates + n_days] <= np.datetime64(self.split.end)
        )
        candidates = candidates[in_split]
        rows = panel.present_count[candidates + n_days + 1] - panel.present_count[candidates - self.lookback]
        complete = rows == n_days + self.lookback + 1
        valid = complete.sum(axis=1) >= self.task.n_stocks
        return candidates[valid], [np.flatnonzero(row) for row in complete[valid]]

    def eligible_symbols(self, start_day: int) -> np.ndarray:
        return self.panel.complete_symbols(*self._window(start_day))

    def sample(self, rng: np.random.Generator) -> Episode:
        j = rng.integers(len(self.start_days))
        chosen = rng.choice(self._eligible[j], size=self.task.n_stocks, replace=False)
        return Episode(int(self.start_days[j]), tuple(np.sort(chosen).tolist()))

    def explicit(self, start_date: str, symbols: Sequence[str]) -> Episode:
        """An episode named by its first decision date and its symbols (checked against every rule)."""
        start_day = self.panel.day_index(start_date)
        if start_day not in set(self.start_days.tolist()):
            raise EpisodeError(
                f"{start_date} is not a valid {self.task.name} start in split {self.split.name}"
            )
        if len(symbols) != self.task.n_stocks or len(set(symbols)) != len(symbols):
            raise EpisodeError(
                f"{self.task.name} needs {self.task.n_stocks} distinct symbols, got {list(symbols)}"
            )
        unknown = [s for s in symbols if s not in self.panel.symbols]
        if unknown:
            raise EpisodeError(f"unknown symbol(s) {unknown}")
        indices = sorted(self.panel.symbols.index(s) for s in symbols)
        missing = sorted(set(indices) - set(self.eligible_symbols(start_day).tolist()))
        if missing:
            names = [self.panel.symbols[i] for i in missing]
            raise EpisodeError(f"{names} lack rows in the window of an episode starting {start_date}")
        return Episode(start_day, tuple(indices))
