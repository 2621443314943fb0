"""Bootstrap intervals: reproducible, zero width for constants, honest coverage."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from eval.stats import bootstrap_mean, paired_difference


def test_constant_sample_has_a_zero_width_interval_at_exactly_its_value():
    estimate = bootstrap_mean(np.full(50, 0.3))
    assert (estimate.mean, estimate.low, estimate.high, estimate.n) == (0.3, 0.3, 0.3, 50)


def test_same_seed_same_interval_and_the_interval_brackets_the_mean():
    values = np.random.default_rng(1).normal(0.5, 0.1, 40)
    a, b = bootstrap_mean(values, seed=3), bootstrap_mean(values, seed=3)
    assert a == b
    assert a.low < a.mean < a.high


@settings(max_examples=40, deadline=None)
@given(st.lists(st.floats(-1e3, 1e3), min_size=2, max_size=60))
def test_interval_lies_within_the_sample_range(values):
    estimate = bootstrap_mean(np.array(values))
    assert min(values) - 1e-9 <= estimate.low <= estimate.high <= max(values) + 1e-9


def test_95_percent_intervals_cover_the_true_mean_about_95_percent_of_the_time():
    rng = np.random.default_rng(0)
    covered = sum(
        (e := bootstrap_mean(rng.normal(1.0, 2.0, 50), seed=i)).low <= 1.0 <= e.high for i in range(200)
    )
    assert 0.88 <= covered / 200 <= 0.99  # percentile bootstrap is slightly narrow at n = 50


def test_paired_difference_needs_the_same_episodes():
    assert paired_difference(np.array([0.5, 0.6]), np.array([0.3, 0.3])).mean == pytest.approx(0.25)
    with pytest.raises(ValueError, match="same episodes"):
        paired_difference(np.array([0.5, 0.6]), np.array([0.3]))
    with pytest.raises(ValueError, match="no episodes"):
        bootstrap_mean(np.array([]))
