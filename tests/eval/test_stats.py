"""Intervals: reproducible, zero width for constants, honest coverage where episodes overlap in time."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from eval.stats import (
    bootstrap_mean,
    effective_windows,
    overlap_mean,
    paired_difference,
    precision_warning,
    student_t_quantile,
)


def test_constant_sample_has_a_zero_width_interval_at_exactly_its_value():
    estimate = bootstrap_mean(np.full(50, 0.3))
    assert (estimate.mean, estimate.low, estimate.high, estimate.n) == (0.3, 0.3, 0.3, 50)
    overlapping = overlap_mean(np.full(50, 0.3), np.arange(50), 20)
    assert (overlapping.mean, overlapping.low, overlapping.high) == (0.3, 0.3, 0.3)
    assert overlapping.n_eff == pytest.approx(69 / 20, abs=0.05)


def test_same_seed_same_interval_and_the_interval_brackets_the_mean():
    values = np.random.default_rng(1).normal(0.5, 0.1, 40)
    a, b = bootstrap_mean(values, seed=3), bootstrap_mean(values, seed=3)
    assert a == b
    assert a.low < a.mean < a.high
    starts = np.random.default_rng(2).integers(0, 300, 40)
    assert overlap_mean(values, starts, 20) == overlap_mean(values, starts, 20)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.floats(-1e3, 1e3), min_size=2, max_size=60))
def test_interval_lies_within_the_sample_range(values):
    estimate = bootstrap_mean(np.array(values))
    assert min(values) - 1e-9 <= estimate.low <= estimate.high <= max(values) + 1e-9


@settings(max_examples=40, deadline=None)
@given(st.lists(st.floats(-1e3, 1e3), min_size=2, max_size=60), st.integers(0, 2**32 - 1), st.integers(1, 60))
def test_overlap_interval_brackets_the_mean_and_counts_windows(values, seed, window):
    starts = np.random.default_rng(seed).integers(0, 400, len(values))
    estimate = overlap_mean(np.array(values), starts, window)
    assert estimate.low <= estimate.mean <= estimate.high
    assert 1 <= estimate.n_eff <= len(values)


def _iid_covered() -> int:
    rng = np.random.default_rng(0)
    return sum(
        (e := bootstrap_mean(rng.normal(1.0, 2.0, 50), seed=i)).low <= 1.0 <= e.high for i in range(200)
    )


def test_95_percent_iid_intervals_cover_independent_episodes():
    assert 0.88 <= _iid_covered() / 200 <= 0.99


def overlapping_episodes(rng, days: int, window: int, episodes: int, true_mean: float):
    """Per-episode paired differences that share the market's days: each is the mean of one shared daily
    series over the episode's window (a moving sum, so neighbouring episodes are strongly correlated), plus
    a little episode-specific noise (its own stocks). The expected difference is ``true_mean``."""
    daily = rng.normal(true_mean, 1.0, days)
    cumulative = np.concatenate([[0.0], np.cumsum(daily)])
    starts = np.sort(rng.integers(0, days - window + 1, episodes))
    values = (cumulative[starts + window] - cumulative[starts]) / window + rng.normal(0, 0.05, episodes)
    return values, starts


@pytest.mark.parametrize(
    "days, window, episodes",
    [
        (1000, 20, 300),  # about 50 independent windows: a long split
        (330, 41, 100),  # the hard task on the test split: about 8 windows for 100 episodes
    ],
)
def test_overlap_aware_intervals_cover_the_truth_where_the_iid_bootstrap_does_not(days, window, episodes):
    rng, truth, repeats = np.random.default_rng(7), 0.1, 600
    samples = [overlapping_episodes(rng, days, window, episodes, truth) for _ in range(repeats)]
    honest = [overlap_mean(v, s, window) for v, s in samples]
    coverage = np.mean([e.low <= truth <= e.high for e in honest])
    assert 0.90 <= coverage <= 0.99, coverage
    naive = [bootstrap_mean(v, seed=i) for i, (v, _) in enumerate(samples[:150])]
    naive_coverage = np.mean([e.low <= truth <= e.high for e in naive])
    assert naive_coverage < 0.7, naive_coverage  # measured about 0.5 and 0.4
    assert np.median([e.n_eff for e in honest]) == pytest.approx((days - window) / window + 1, rel=0.1)


def test_effective_windows_is_the_calendar_span_in_episode_lengths():
    assert effective_windows(np.array([0, 5, 10, 40]), 20) == 3.0
    assert effective_windows(np.array([7, 7, 7]), 20) == 1.0
    assert effective_windows(np.array([0, 100]), 20) == 2.0  # never more windows than episodes


@pytest.mark.parametrize("dof", [1, 2, 3, 4, 7, 10, 31, 200])  # odd and even series, small and large
def test_student_t_quantile_matches_scipy(dof):
    scipy_stats = pytest.importorskip("scipy.stats")  # installed with mlflow
    for p in (0.1, 0.5, 0.9, 0.975, 0.995):
        assert student_t_quantile(p, dof) == pytest.approx(scipy_stats.t.ppf(p, dof), rel=1e-7, abs=1e-9)


def test_a_wide_interval_gets_a_plain_warning():
    wide = overlap_mean(np.array([0.0, 0.2, -0.1, 0.15, 0.05]), np.array([0, 30, 60, 90, 120]), 40)
    assert "wider than +-0.02" in precision_warning(wide) and "independent windows" in precision_warning(wide)
    assert precision_warning(overlap_mean(np.full(5, 0.01), np.arange(5), 40)) is None


def test_paired_difference_needs_the_same_episodes():
    assert paired_difference(np.array([0.5, 0.6]), np.array([0.3, 0.3])).mean == pytest.approx(0.25)
    with pytest.raises(ValueError, match="same episodes"):
        paired_difference(np.array([0.5, 0.6]), np.array([0.3]))
    with pytest.raises(ValueError, match="no episodes"):
        bootstrap_mean(np.array([]))
    with pytest.raises(ValueError, match="one start day per episode"):
        overlap_mean(np.array([0.5, 0.6]), np.array([1]), 20)
    with pytest.raises(ValueError, match="window"):
        overlap_mean(np.array([0.5, 0.6]), np.array([1, 2]), 0)
    values, baseline, starts = np.array([0.5, 0.7, 0.2]), np.full(3, 0.3), np.array([0, 1, 50])
    paired = paired_difference(values, baseline, starts=starts, window=20)
    assert paired.n_eff == 3.0 and paired.low < paired.mean < paired.high
