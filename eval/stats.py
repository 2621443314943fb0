"""Means with 95% bootstrap confidence intervals, and paired differences between agents.

Percentile bootstrap over episodes with a seeded generator, so the same numbers give the same interval.
A constant sample (hold under grader 1.0.0) gets a zero-width interval.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

N_RESAMPLES = 5000


@dataclass(frozen=True)
class Estimate:
    mean: float
    low: float
    high: float
    n: int

    def as_dict(self) -> dict[str, float]:
        return {"mean": self.mean, "ci_low": self.low, "ci_high": self.high, "n": self.n}


def bootstrap_mean(values: np.ndarray, seed: int = 0, confidence: float = 0.95) -> Estimate:
    values = np.asarray(values, dtype=np.float64)
    if values.size == 0:
        raise ValueError("cannot estimate the mean of no episodes")
    if values.size == 1 or np.all(values == values[0]):
        constant = float(values[0])  # exactly, where a float mean of n copies could drift in the last bit
        return Estimate(constant, constant, constant, int(values.size))
    mean = float(values.mean())
    rng = np.random.default_rng(seed)
    samples = rng.integers(0, values.size, (N_RESAMPLES, values.size))
    means = values[samples].mean(axis=1)
    tail = (1.0 - confidence) / 2.0 * 100.0
    low, high = np.percentile(means, [tail, 100.0 - tail])
    return Estimate(mean, float(low), float(high), int(values.size))


def paired_difference(values: np.ndarray, baseline: np.ndarray, seed: int = 0) -> Estimate:
    """Mean of per-episode differences (same episodes, so market luck cancels) with its interval."""
    values, baseline = np.asarray(values, dtype=np.float64), np.asarray(baseline, dtype=np.float64)
    if values.shape != baseline.shape:
        raise ValueError(f"paired samples need the same episodes: {values.shape} vs {baseline.shape}")
    return bootstrap_mean(values - baseline, seed)
