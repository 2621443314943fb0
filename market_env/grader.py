"""The composite grader: one score in [0, 1] per episode, versioned.

NAV V_0..V_N (V_0 = start cash, V_t after step t), r_t = V_t / V_{t-1} - 1.
- sharpe = mean(r) / std(r, ddof=1) * sqrt(252), 0 when std is 0 (or fewer than 2 returns)
- total_return = V_N / V_0 - 1;  max_drawdown = max_t (1 - V_t / max_{s<=t} V_s)
- activity = days with at least one executed trade / N
- benchmark_return = equal-weight buy-and-hold of the episode's stocks (bought at the first fill, same
  costs); excess_return = total_return - benchmark_return; cost_ratio = fees paid / V_0 (slippage is in
  the fill prices, not here)

Grader 1.0.0 (the published composite; doing nothing scores exactly 0.300):
  0.40 clip(sharpe/3) + 0.30 clip(0.5 + total_return/0.2) + 0.15 clip(1 - max_drawdown/0.2)
  + 0.15 clip(activity/0.5)
Grader 2.0.0 (no pay-for-activity):
  0.40 clip(sharpe/3) + 0.30 clip(0.5 + excess_return/0.2) + 0.15 clip(1 - max_drawdown/0.2)
  + 0.15 clip(1 - cost_ratio/0.01)
clip(x) is clip(x, 0, 1). Everything here works on arrays with any leading batch shape, so the batch
environment, the evaluation harness and the GRPO reward all call these same functions.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from market_env.errors import check_name

TRADING_DAYS_PER_YEAR = 252
Metrics = dict[str, np.ndarray]


def _clip01(x: np.ndarray) -> np.ndarray:
    # minimum(maximum()) rather than np.clip: the same result at a fraction of the call overhead, which
    # matters for the per-step score of a single env
    return np.minimum(np.maximum(x, 0.0), 1.0)


def sharpe_from_moments(sum_r: np.ndarray, sum_r2: np.ndarray, count: np.ndarray) -> np.ndarray:
    """Annualised Sharpe from running sums, so a step can score its episode-to-date in O(1)."""
    count = np.asarray(count, dtype=np.float64)
    mean = sum_r / np.maximum(count, 1.0)
    variance = np.maximum((sum_r2 - count * mean * mean) / (np.maximum(count, 2.0) - 1.0), 0.0)
    std = np.sqrt(variance)
    defined = (std > 0) & (count >= 2)  # else 0: no risk measured yet
    return mean / np.maximum(std, 1e-300) * np.sqrt(TRADING_DAYS_PER_YEAR) * defined


def nav_metrics(
    nav: np.ndarray,
    trade_days: np.ndarray,
    costs: np.ndarray,
    benchmark_return: np.ndarray,
) -> Metrics:
    """Raw metrics of finished episodes from their NAV series (..., N + 1)."""
    nav = np.asarray(nav, dtype=np.float64)
    n_days = nav.shape[-1] - 1
    returns = nav[..., 1:] / nav[..., :-1] - 1.0
    std = returns.std(axis=-1, ddof=1) if n_days >= 2 else np.zeros(nav.shape[:-1])
    mean = returns.mean(axis=-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        sharpe = np.where(std > 0, mean / std * np.sqrt(TRADING_DAYS_PER_YEAR), 0.0)
    peak = np.maximum.accumulate(nav, axis=-1)
    total_return = nav[..., -1] / nav[..., 0] - 1.0
    return {
        "sharpe": sharpe,
        "total_return": total_return,
        "max_drawdown": (1.0 - nav / peak).max(axis=-1),
        "activity": np.asarray(trade_days, dtype=np.float64) / n_days,
        "benchmark_return": np.asarray(benchmark_return, dtype=np.float64),
        "excess_return": total_return - benchmark_return,
        "cost_ratio": np.asarray(costs, dtype=np.float64) / nav[..., 0],
    }


def _components_v1(m: Metrics) -> Metrics:
    return {
        "sharpe": _clip01(m["sharpe"] / 3.0),
        "return": _clip01(0.5 + m["total_return"] / 0.2),
        "drawdown": _clip01(1.0 - m["max_drawdown"] / 0.2),
        "activity": _clip01(m["activity"] / 0.5),
    }


def _components_v2(m: Metrics) -> Metrics:
    return {
        "sharpe": _clip01(m["sharpe"] / 3.0),
        "excess_return": _clip01(0.5 + m["excess_return"] / 0.2),
        "drawdown": _clip01(1.0 - m["max_drawdown"] / 0.2),
        "costs": _clip01(1.0 - m["cost_ratio"] / 0.01),
    }


@dataclass(frozen=True)
class Grader:
    version: str
    weights: dict[str, float]
    components: Callable[[Metrics], Metrics]
    description: str

    def score(self, metrics: Metrics) -> tuple[np.ndarray, Metrics]:
        """(score, components) for any batch shape; components are unweighted, in [0, 1]."""
        components = self.components(metrics)
        score = sum(self.weights[name] * components[name] for name in self.weights)
        return np.asarray(score, dtype=np.float64), components


GRADERS: dict[str, Grader] = {
    "1.0.0": Grader(
        "1.0.0",
        {"sharpe": 0.40, "return": 0.30, "drawdown": 0.15, "activity": 0.15},
        _components_v1,
        "published composite: Sharpe, return, drawdown, activity",
    ),
    "2.0.0": Grader(
        "2.0.0",
        {"sharpe": 0.40, "excess_return": 0.30, "drawdown": 0.15, "costs": 0.15},
        _components_v2,
        "no pay-for-activity: Sharpe, return over equal-weight buy-and-hold, drawdown, costs",
    ),
}


def get_grader(version: str) -> Grader:
    check_name("grader", version, GRADERS)
    return GRADERS[version]


def grade_episodes(
    nav: np.ndarray,
    trade_days: np.ndarray,
    costs: np.ndarray,
    benchmark_return: np.ndarray,
    grader_version: str,
) -> list[dict]:
    """Grades of finished episodes (rows of ``nav``), computed together, as plain Python dicts.

    Each holds the score, the unweighted components, the raw metrics and the NAV series.
    """
    grader = get_grader(grader_version)
    nav = np.atleast_2d(np.asarray(nav, dtype=np.float64))
    trade_days = np.atleast_1d(trade_days)
    costs = np.atleast_1d(np.asarray(costs, dtype=np.float64))
    metrics = nav_metrics(nav, trade_days, costs, np.atleast_1d(benchmark_return))
    score, components = grader.score(metrics)
    metric_rows = {name: values.tolist() for name, values in metrics.items()}
    component_rows = {name: values.tolist() for name, values in components.items()}
    grades = []
    for row, series in enumerate(nav.tolist()):
        grades.append(
            {
                "grader_version": grader.version,
                "score": float(score[row]),
                "components": {name: values[row] for name, values in component_rows.items()},
                "metrics": {name: values[row] for name, values in metric_rows.items()}
                | {"trade_days": int(trade_days[row]), "n_days": len(series) - 1, "costs": float(costs[row])},
                "nav": series,
            }
        )
    return grades


def grade_episode(
    nav: np.ndarray, trade_days: int, costs: float, benchmark_return: float, grader_version: str
) -> dict:
    """The grade of one finished episode (see :func:`grade_episodes`)."""
    return grade_episodes(
        np.asarray(nav)[None], np.array([trade_days]), costs, benchmark_return, grader_version
    )[0]
