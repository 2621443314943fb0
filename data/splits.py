"""Temporal train/val/test splits, as data.

The test window starts in 2025, after the knowledge cut-off of the supported models, to limit how much
of the test prices a model can have memorised. Every day of an episode (its decision closes and the
final marking close) lies inside its split; indicators may look back before the split start (that is
the past), never past the current day.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd


@dataclass(frozen=True)
class Split:
    name: str
    start: str  # first allowed decision date, ISO
    end: str  # last allowed marking date, ISO

    def contains(self, dates: pd.DatetimeIndex | pd.Series) -> pd.Series:
        return (dates >= pd.Timestamp(self.start)) & (dates <= pd.Timestamp(self.end))


SPLITS: dict[str, Split] = {
    "train": Split("train", "2020-01-01", "2023-12-31"),
    "val": Split("val", "2024-01-01", "2024-12-31"),
    "test": Split("test", "2025-01-01", "2026-04-24"),
}


def get_split(name: str) -> Split:
    if name not in SPLITS:
        raise ValueError(f"unknown split {name!r}; expected one of {sorted(SPLITS)}")
    return SPLITS[name]
