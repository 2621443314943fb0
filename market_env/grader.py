"""The grader: one score in [0, 1] per episode, versioned.

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
Grader 3.0.0 (the default since env 3.0.0; a score that pays for skill, not for variance):
  clip(0.5 + total_return / RETURN_SCALE),  RETURN_SCALE = 1.0
  - 0.5 means the episode ended with exactly the cash it started with: doing nothing scores 0.5, every step.
  - +0.1 means +10% net return on the start cash over the episode (RETURN_SCALE / 10), after every fee and
    the slippage in the fill prices. A paired difference of two agents is their difference in net return.
  Why this shape:
  - Affine in the net P&L, so no policy gains from variance: on a martingale market every non-anticipating
    policy has expected score 0.5 (with zero costs; below with costs), whatever its exposure or trading.
    Graders 1.0.0/2.0.0 clip a 20-40 day Sharpe (standard error ~2.5) at its centre, which pays for noise:
    under 2.0.0 a 1% position bought on day one scores about +0.1 over hold on the easy test split.
  - Size-aware by construction: a position's P&L, hence its score, scales with its size; a 1% position
    scores like cash (within 0.01 on the real test split), where a Sharpe term cannot tell 1% from 100%.
  - Costs enter once, through the NAV (fees and slippage lower total_return); there is no cost term.
  - No benchmark inside the score: the benchmark (equal-weight buy-and-hold) is a policy any agent can
    play, so "beats buy-and-hold" is a paired difference of scores, reported by the evaluation.
  - RETURN_SCALE keeps the term's mass away from the clip: measured on the net returns of 2,000 episodes per
    task and split (train, val, test pooled; the 2.0.0 market, before the MOTHERSON repair), the clip binds
    for 0.25% of buy-and-hold episodes on easy (0.6% of train, 0.15% of val, 0% of test),
    for 0% of random-agent episodes on easy, and for none of either on medium and hard.
  Sharpe, drawdown, benchmark and excess return, activity and costs stay in the grade as diagnostics.
clip(x) is clip(x, 0, 1). Each grader is a table of such terms (``Term``): numpy evaluates it here for final
grades of any batch shape (the batch environment, the evaluation harness and the GRPO reward all call these
functions) and the compiled step kernel evaluates the same table for the per-step score-to-date.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from market_env.errors import check_name

TRADING_DAYS_PER_YEAR = 252
# Grader 3.0.0: score = clip(0.5 + total_return / RETURN_SCALE); +0.1 of score = +RETURN_SCALE / 10 return.
RETURN_SCALE = 1.0
Metrics = dict[str, np.ndarray]


def _clip01(x: np.ndarray) -> np.ndarray:
    return np.minimum(np.maximum(x, 0.0), 1.0)


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


# The metrics a grader term can read, in the order the compiled step kernel computes them.
METRIC_NAMES = ("sharpe", "total_return", "max_drawdown", "activity", "benchmark_return", "excess_return",
                "cost_ratio")  # fmt: skip


@dataclass(frozen=True)
class Term:
    """One weighted component: ``clip(offset + sign * metric / scale, 0, 1)``."""

    name: str
    metric: str
    weight: float
    offset: float
    sign: float
    scale: float

    def component(self, metrics: Metrics) -> np.ndarray:
        return _clip01(self.offset + self.sign * metrics[self.metric] / self.scale)


@dataclass(frozen=True)
class Grader:
    version: str
    terms: tuple[Term, ...]
    description: str

    @property
    def weights(self) -> dict[str, float]:
        return {term.name: term.weight for term in self.terms}

    def score(self, metrics: Metrics) -> tuple[np.ndarray, Metrics]:
        """(score, components) for any batch shape; components are unweighted, in [0, 1]."""
        components = {term.name: term.component(metrics) for term in self.terms}
        score = sum(term.weight * components[term.name] for term in self.terms)
        return np.asarray(score, dtype=np.float64), components

    def kernel_table(self) -> tuple[np.ndarray, np.ndarray]:
        """The terms as arrays for the step kernel: metric indices; rows of (weight, offset, sign, scale)."""
        index = np.array([METRIC_NAMES.index(term.metric) for term in self.terms], dtype=np.int64)
        coefficients = np.array([[term.weight, term.offset, term.sign, term.scale] for term in self.terms])
        return index, coefficients


GRADERS: dict[str, Grader] = {
    "1.0.0": Grader(
        "1.0.0",
        (
            Term("sharpe", "sharpe", 0.40, 0.0, 1.0, 3.0),
            Term("return", "total_return", 0.30, 0.5, 1.0, 0.2),
            Term("drawdown", "max_drawdown", 0.15, 1.0, -1.0, 0.2),
            Term("activity", "activity", 0.15, 0.0, 1.0, 0.5),
        ),
        "published composite: Sharpe, return, drawdown, activity",
    ),
    "2.0.0": Grader(
        "2.0.0",
        (
            Term("sharpe", "sharpe", 0.40, 0.0, 1.0, 3.0),
            Term("excess_return", "excess_return", 0.30, 0.5, 1.0, 0.2),
            Term("drawdown", "max_drawdown", 0.15, 1.0, -1.0, 0.2),
            Term("costs", "cost_ratio", 0.15, 1.0, -1.0, 0.01),
        ),
        "no pay-for-activity: Sharpe, return over equal-weight buy-and-hold, drawdown, costs",
    ),
    "3.0.0": Grader(
        "3.0.0",
        (Term("return", "total_return", 1.0, 0.5, 1.0, RETURN_SCALE),),
        "net return, linear: 0.5 = the start cash kept, +0.1 = +10% net return; no variance premium",
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
    # one row per episode (zip of the columns): a batch ends hundreds of episodes in one step
    metric_rows = zip(*(values.tolist() for values in metrics.values()))
    component_rows = zip(*(values.tolist() for values in components.values()))
    n_days = nav.shape[1] - 1
    return [
        {
            "grader_version": grader.version,
            "score": episode_score,
            "components": dict(zip(components, component_row)),
            "metrics": dict(zip(metrics, metric_row))
            | {"trade_days": episode_trade_days, "n_days": n_days, "costs": episode_costs},
            "nav": series,
        }
        for episode_score, component_row, metric_row, episode_trade_days, episode_costs, series in zip(
            score.tolist(), component_rows, metric_rows, trade_days.tolist(), costs.tolist(), nav.tolist()
        )
    ]


def grade_episode(
    nav: np.ndarray, trade_days: int, costs: float, benchmark_return: float, grader_version: str
) -> dict:
    """The grade of one finished episode (see :func:`grade_episodes`)."""
    return grade_episodes(
        np.asarray(nav)[None], np.array([trade_days]), costs, benchmark_return, grader_version
    )[0]
