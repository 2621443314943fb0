"""The temporal splits: the boundaries DESIGN.md fixes, back to back without overlap, and a clear error
for an unknown name."""

from __future__ import annotations

import dataclasses
import itertools

import numpy as np
import pandas as pd
import pytest

from data import SPLITS, Split, get_split

ONE_DAY = pd.Timedelta(days=1)


@pytest.mark.parametrize(
    "name, start, end",
    [
        ("train", "2020-01-01", "2023-12-31"),  # four years of history, from the start of the data
        ("val", "2024-01-01", "2024-12-31"),  # one calendar year for model selection
        ("test", "2025-01-01", "2026-04-24"),  # after the models' knowledge cut-off, to the data's end
    ],
)
def test_split_boundaries_are_the_documented_ones(name, start, end):
    assert get_split(name) == Split(name, start, end)
    assert get_split(name) is SPLITS[name]


def test_the_splits_are_back_to_back_and_cover_the_data(panel):
    ordered = [SPLITS[name] for name in ("train", "val", "test")]
    assert list(SPLITS) == ["train", "val", "test"]
    for earlier, later in itertools.pairwise(ordered):
        assert pd.Timestamp(earlier.end) + ONE_DAY == pd.Timestamp(later.start)  # no gap, no overlap
    assert (ordered[0].start, ordered[-1].end) == (panel.iso_date(0), panel.iso_date(panel.n_days - 1))


def test_every_trading_day_is_in_exactly_one_split(panel):
    days = pd.DatetimeIndex(panel.dates)
    membership = np.stack([np.asarray(split.contains(days)) for split in SPLITS.values()])
    assert (membership.sum(axis=0) == 1).all()
    assert membership.sum(axis=1).tolist() == [
        int(((days >= s.start) & (days <= s.end)).sum()) for s in SPLITS.values()
    ]


@pytest.mark.parametrize(
    "date, inside",
    [
        ("2023-12-29", False),  # the last trading day of train
        ("2024-01-01", True),  # the first day of val: the start is included
        ("2024-12-31", True),  # the last day of val: the end is included
        ("2025-01-01", False),  # the first day of test
    ],
)
def test_contains_includes_both_ends(date, inside):
    as_series = pd.Series(pd.to_datetime([date]))
    assert SPLITS["val"].contains(as_series).tolist() == [inside]
    assert list(SPLITS["val"].contains(pd.DatetimeIndex([date]))) == [inside]


@pytest.mark.parametrize(
    "name",
    [
        "holdout",  # a name other libraries use
        "Train",  # case matters: names are exact
        "",  # an empty name from a blank CLI flag
    ],
)
def test_an_unknown_split_lists_the_valid_names(name):
    with pytest.raises(ValueError) as error:
        get_split(name)
    assert f"unknown split {name!r}" in str(error.value)
    assert "expected one of ['test', 'train', 'val']" in str(error.value)


def test_a_split_is_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        SPLITS["test"].start = "2024-06-01"
