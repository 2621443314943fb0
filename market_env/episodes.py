"""Which episodes exist: start days and stock universes, drawn with the env's seeded generator.

An episode of N decisions starting at calendar day t0 decides at the closes of t0..t0+N-1, fills at the
opens of t0+1..t0+N and is marked at the closes of t0+1..t0+N. Its days t0..t0+N all lie inside the split.
Its stocks have a row on every calendar day of [t0 - lookback, t0 + N], so every indicator is defined
and no price is missing; they are drawn without replacement and kept in alphabetical order.

An episode is ``rng.integers(n_starts)`` then ``rng.choice(pool, K, replace=False)``. A large batch restarts
hundreds of finished episodes at once through a compiled copy of that draw (``draw_episode``: Floyd's
algorithm, then the shuffle ``choice`` applies) that consumes each generator exactly as NumPy 2 does, so
a seed plays the same episodes either way (tested, and ``tests/market_env/reference_episodes.json``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numba import njit
from numba.typed import List

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
        self.start_days, eligible = self._valid_start_days()
        # every start day's eligible symbols, concatenated: pool j is pools[offsets[j]:offsets[j + 1]]
        self._offsets = np.concatenate([[0], np.cumsum([len(pool) for pool in eligible])]).astype(np.int64)
        self._pools = np.concatenate(eligible).astype(np.int64) if eligible else np.zeros(0, np.int64)
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
        pool = self._pools[self._offsets[j] : self._offsets[j + 1]]
        chosen = rng.choice(pool, size=self.task.n_stocks, replace=False)
        return Episode(int(self.start_days[j]), tuple(sorted(chosen.tolist())))

    def sample_many(self, rngs: List, slots: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``sample`` for each generator ``rngs[slot]``, compiled: start days (n,), sorted symbols (n, K).

        ``rngs`` is a numba typed List of the generators, built once: handing numba a generator costs
        ~9 µs and leaks a little memory each time (its ctypes interface), handing it the list neither.
        """
        start_days = np.empty(len(slots), dtype=np.int64)
        symbols = np.empty((len(slots), self.task.n_stocks), dtype=np.int64)
        draw_episodes(rngs, slots, self.start_days, self._offsets, self._pools, start_days, symbols)
        symbols.sort(axis=1)
        return start_days, symbols

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


@njit(cache=True)
def _mask(value: int) -> int:
    """The smallest all-ones bit mask >= value (NumPy's ``_gen_mask``)."""
    for shift in (1, 2, 4, 8, 16, 32):
        value |= value >> shift
    return value


@njit(cache=True)
def draw_episodes(rngs, slots, start_days, offsets, pools, start_out, symbols_out) -> None:
    """``draw_episode`` for each slot, with generator ``rngs[slot]``, into row ``row`` of the outputs."""
    for row in range(slots.shape[0]):
        start_out[row] = draw_episode(rngs[slots[row]], start_days, offsets, pools, symbols_out[row])


@njit(cache=True)
def draw_episode(rng, start_days, offsets, pools, symbols_out) -> int:
    """A start day (returned), then K distinct symbols of its pool (into ``symbols_out``, unsorted).

    Bounded draws go through ``Generator.integers`` (Lemire's method, as NumPy's ``choice`` uses
    internally), so the stream matches NumPy's ``integers`` + ``choice(replace=False)`` draw for draw.
    """
    size = symbols_out.shape[0]
    j = rng.integers(0, start_days.shape[0])
    first, population = offsets[j], offsets[j + 1] - offsets[j]
    # Floyd's algorithm with an open-addressing set, exactly as NumPy's choice
    mask = _mask(np.int64(1.2 * size))
    taken = np.full(mask + 1, -1, dtype=np.int64)
    chosen = np.empty(size, dtype=np.int64)
    for candidate in range(population - size, population):
        value = rng.integers(0, candidate + 1)
        slot = value & mask
        while taken[slot] != -1 and taken[slot] != value:
            slot = (slot + 1) & mask
        if taken[slot] == -1:
            taken[slot] = value
        else:  # already chosen: take ``candidate`` itself
            value = candidate
            slot = candidate & mask
            while taken[slot] != -1:
                slot = (slot + 1) & mask
            taken[slot] = value
        chosen[candidate - population + size] = value
    for i in range(size - 1, 0, -1):  # choice then shuffles its result; the order is discarded (sorted)
        swap = rng.integers(0, i + 1)
        chosen[i], chosen[swap] = chosen[swap], chosen[i]
    for k in range(size):
        symbols_out[k] = pools[first + chosen[k]]
    return start_days[j]
