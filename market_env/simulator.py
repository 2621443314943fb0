"""The pure market simulator: B independent episodes stepped at once with numpy.

The single env is this simulator with B = 1 and the batch env is the same class with B = n_envs, so there
is one implementation of the market rules. Only ``reset_envs``, ``step`` and ``load_state`` change state.

Execution of a step (decision at the close of day d; DESIGN.md "Market rules"):
1. Sells fill at open[d+1] * (1 - slippage): floor(fraction * shares held) shares. A sell whose fees exceed
   its value (the flat DP charge on a tiny lot) is rejected.
2. Buys: fraction of the cash available after the sells; if the fractions add up to more than 1 they are
   scaled down to 1. Each buy is clipped so the position stays under ``position_cap`` x NAV (NAV valued at
   the open), then rounded down to whole shares at open[d+1] * (1 + slippage) with fees included, so cash
   never goes negative.
3. The book is marked at close[d+1]; the step reward is the change in the episode's score-to-date.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from data.panel import Panel
from market_env.costs import CostModel
from market_env.episodes import Episode
from market_env.grader import Grader, nav_metrics, sharpe_from_moments
from market_env.tasks import TaskSpec
from market_env.versions import MarketRules

# Buys spend at most this share of their budget, so float rounding can never push cash below zero.
BUDGET_SAFETY = 1.0 - 1e-9


@dataclass
class StepReport:
    """What one step did, as arrays over the batch (B,) or (B, K).

    The (B, K) arrays are the simulator's work buffers: valid until the next ``step``; copy to keep them.
    """

    reward: np.ndarray
    done: np.ndarray
    costs: np.ndarray  # fees paid this step
    sold: np.ndarray  # shares sold
    bought: np.ndarray  # shares bought
    sell_price: np.ndarray  # fill prices, slippage included
    buy_price: np.ndarray
    sell_costs: np.ndarray
    buy_costs: np.ndarray
    n_trades: np.ndarray  # (B,) stocks traded this step
    capped: np.ndarray  # buy clipped by the position cap
    rejected: np.ndarray  # order rejected: fees would exceed its value
    unfilled: np.ndarray  # order asked for but rounded to zero shares


@dataclass(frozen=True)
class EpisodeState:
    """Everything that defines one episode's position at a step: enough to fork it exactly."""

    start_day: int
    symbols: tuple[int, ...]
    t: int
    cash: float
    shares: tuple[float, ...]
    avg_cost: tuple[float, ...]
    nav: tuple[float, ...]  # V_0..V_t
    trade_days: int
    costs_paid: float


def row_sum(x: np.ndarray) -> np.ndarray:
    """Sum over stocks. ``einsum`` is ~3x faster than ``sum(axis=1)`` here and, unlike a BLAS ``x @ ones``,
    adds each row in an order that does not depend on the batch size, so a batch slot and the single env
    agree to the last bit."""
    return np.einsum("ij->i", x)


class Workspace:
    """Preallocated (B, K) buffers for one step. On this class of machine a fresh 200 KB temporary costs
    more than the arithmetic on it, so the hot path writes into these with ``out=`` instead."""

    FLOATS = ("open", "sell_price", "buy_price", "sold", "bought", "sell_value", "buy_value", "sell_costs",
              "buy_costs", "budget", "room", "tmp")  # fmt: skip
    BOOLS = ("capped", "rejected", "unfilled", "mask")

    def __init__(self, n_envs: int, n_stocks: int) -> None:
        shape = (n_envs, n_stocks)
        self.index = np.zeros(shape, dtype=np.int64)
        for name in self.FLOATS:
            setattr(self, name, np.zeros(shape))
        for name in self.BOOLS:
            setattr(self, name, np.zeros(shape, dtype=bool))


def fill_buys(
    cash: np.ndarray,
    shares: np.ndarray,
    open_price: np.ndarray,
    buy_frac: np.ndarray,
    price: np.ndarray,
    position_cap: float,
    costs: CostModel,
    work: Workspace,
) -> None:
    """Whole-share buys for fractions of ``cash`` (B,), capped per position, into ``work``.

    Writes ``work.bought``, ``buy_value``, ``buy_costs``, ``capped`` and ``rejected``. Used by ``step`` and
    by the equal-weight benchmark, so the buy-and-hold agent and grader 2.0.0 agree to the rupee.
    """
    w = work
    # fractions adding up to more than 1 are scaled down to 1
    scale = cash * BUDGET_SAFETY / np.maximum(row_sum(buy_frac), 1.0)
    np.multiply(buy_frac, scale[:, None], out=w.budget)
    np.multiply(shares, open_price, out=w.tmp)  # value held, at the open
    nav_at_open = cash + row_sum(w.tmp)
    np.subtract((position_cap * nav_at_open)[:, None], w.tmp, out=w.room)
    np.maximum(w.room, 0.0, out=w.room)
    np.greater(w.budget, w.room, out=w.capped)
    np.minimum(w.budget, w.room, out=w.budget)
    if costs.buy_flat:
        np.subtract(w.budget, costs.buy_flat, out=w.budget)
        np.maximum(w.budget, 0.0, out=w.budget)
    np.multiply(price, 1.0 + costs.buy_rate, out=w.tmp)
    np.divide(w.budget, w.tmp, out=w.bought)
    np.floor(w.bought, out=w.bought)
    np.multiply(w.bought, price, out=w.buy_value)
    np.multiply(w.buy_value, costs.buy_rate, out=w.buy_costs)
    w.rejected.fill(False)
    if costs.buy_flat:  # a flat fee can exceed a tiny order's value; proportional fees never do
        w.buy_costs += np.minimum(w.bought, 1.0) * costs.buy_flat
        np.greater(w.buy_costs, w.buy_value, out=w.rejected)
        if w.rejected.any():
            for array in (w.bought, w.buy_value, w.buy_costs):
                array[w.rejected] = 0.0


class MarketSimulator:
    """B episodes of one task on one panel. Arrays are public for the env, observations and forks."""

    def __init__(self, panel: Panel, task: TaskSpec, rules: MarketRules, grader: Grader, n_envs: int) -> None:
        self.panel, self.task, self.rules, self.grader = panel, task, rules, grader
        self.costs = rules.costs
        self.n_envs, self.n_stocks, self.n_days = n_envs, task.n_stocks, task.n_days
        self.start_cash = float(rules.start_cash)
        self._n_symbols = len(panel.symbols)
        self._open = np.ascontiguousarray(panel.open).ravel()
        self._close = np.ascontiguousarray(panel.close).ravel()
        shape, stock_shape = (n_envs,), (n_envs, task.n_stocks)
        self.start_day = np.zeros(shape, dtype=np.int64)
        self.t = np.zeros(shape, dtype=np.int64)
        self.symbols = np.zeros(stock_shape, dtype=np.int64)
        self.cash = np.full(shape, self.start_cash)
        self.shares = np.zeros(stock_shape)  # whole numbers, kept as floats for speed
        self.avg_cost = np.zeros(stock_shape)
        self.nav = np.full((n_envs, task.n_days + 1), np.nan)
        self.trade_days = np.zeros(shape, dtype=np.int64)
        self.costs_paid = np.zeros(shape)
        self.close_now = np.zeros(stock_shape)  # close of the current decision day
        # Equal-weight buy-and-hold of the same stocks, for grader 2.0.0 and the buy-and-hold agent.
        self.bench_cash = np.zeros(shape)
        self.bench_shares = np.zeros(stock_shape)
        self.bench_nav = np.zeros(shape)
        # Running statistics for the score-to-date, O(1) per step.
        self._sum_r = np.zeros(shape)
        self._sum_r2 = np.zeros(shape)
        self._peak = np.zeros(shape)
        self._max_dd = np.zeros(shape)
        self._score = np.zeros(shape)
        self._rows = np.arange(n_envs)
        self._work = Workspace(n_envs, task.n_stocks)

    # ----------------------------------------------------------------------------------------- reset
    @property
    def day(self) -> np.ndarray:
        """Calendar index of each episode's current decision close."""
        return self.start_day + self.t

    def _prices(self, flat: np.ndarray, day: np.ndarray) -> np.ndarray:
        return flat.take(day[:, None] * self._n_symbols + self.symbols)

    def reset_envs(self, env_ids: np.ndarray, episodes: Sequence[Episode]) -> None:
        env_ids = np.asarray(env_ids, dtype=np.int64)
        self.start_day[env_ids] = [episode.start_day for episode in episodes]
        self.symbols[env_ids] = [episode.symbols for episode in episodes]
        self.t[env_ids] = 0
        self.cash[env_ids] = self.start_cash
        self.shares[env_ids] = 0.0
        self.avg_cost[env_ids] = 0.0
        self.nav[env_ids] = np.nan
        self.nav[env_ids, 0] = self.start_cash
        self.trade_days[env_ids] = 0
        self.costs_paid[env_ids] = 0.0
        self._sum_r[env_ids] = self._sum_r2[env_ids] = self._max_dd[env_ids] = 0.0
        self._peak[env_ids] = self.start_cash
        self._reset_benchmark(env_ids)
        self.close_now[env_ids] = self._prices(self._close, self.start_day)[env_ids]
        self._score[env_ids] = self._score_to_date()[env_ids]

    def _reset_benchmark(self, env_ids: np.ndarray) -> None:
        symbols = self.symbols[env_ids]
        open_price = self._open.take((self.start_day[env_ids] + 1)[:, None] * self._n_symbols + symbols)
        cash = np.full(len(env_ids), self.start_cash)
        work = Workspace(*symbols.shape)
        weights = np.full(symbols.shape, 1.0 / self.n_stocks)
        buy_price = open_price * (1.0 + self.task.slippage)
        no_shares = np.zeros(symbols.shape)
        fill_buys(cash, no_shares, open_price, weights, buy_price, self.task.position_cap, self.costs, work)
        self.bench_shares[env_ids] = work.bought
        self.bench_cash[env_ids] = cash - row_sum(work.buy_value + work.buy_costs)
        self.bench_nav[env_ids] = self.start_cash

    # ------------------------------------------------------------------------------------------ step
    def step(self, sell_frac: np.ndarray, buy_frac: np.ndarray) -> StepReport:
        """Advance every episode by one decision. Fractions are (B, K) arrays in [0, 1]."""
        w = self._work
        fill_day = self.day + 1
        np.multiply(fill_day[:, None], self._n_symbols, out=w.index)
        w.index += self.symbols
        self._open.take(w.index, out=w.open)
        np.multiply(w.open, 1.0 - self.task.slippage, out=w.sell_price)
        np.multiply(w.open, 1.0 + self.task.slippage, out=w.buy_price)
        step_costs = self._sell(sell_frac) + self._buy(buy_frac)

        np.add(w.sold, w.bought, out=w.tmp)
        np.greater(w.tmp, 0.0, out=w.mask)
        n_trades = np.count_nonzero(w.mask, axis=1)
        # asked for but no share moved, and not because it was rejected
        w.unfilled[:] = ((sell_frac > 0) | (buy_frac > 0)) & ~w.mask & ~w.rejected
        reward, done = self._mark(step_costs, n_trades > 0)
        return StepReport(
            reward, done, step_costs, w.sold, w.bought, w.sell_price, w.buy_price, w.sell_costs, w.buy_costs,
            n_trades, w.capped, w.rejected, w.unfilled,
        )  # fmt: skip

    def _sell(self, sell_frac: np.ndarray) -> np.ndarray:
        """Fill the sells into the work buffers; returns the fees paid per env."""
        w = self._work
        if not sell_frac.any():
            for array in (w.sold, w.sell_value, w.sell_costs):
                array.fill(0.0)
            w.rejected.fill(False)
            return np.zeros(self.n_envs)
        np.multiply(sell_frac, self.shares, out=w.sold)
        np.floor(w.sold, out=w.sold)
        np.multiply(w.sold, w.sell_price, out=w.sell_value)
        np.multiply(w.sell_value, self.costs.sell_rate, out=w.sell_costs)
        np.minimum(w.sold, 1.0, out=w.tmp)  # 1 where shares are sold: the DP charge is per symbol sold
        w.tmp *= self.costs.sell_flat
        w.sell_costs += w.tmp
        np.greater(w.sell_costs, w.sell_value, out=w.rejected)
        if w.rejected.any():
            for array in (w.sold, w.sell_value, w.sell_costs):
                array[w.rejected] = 0.0
        np.subtract(w.sell_value, w.sell_costs, out=w.tmp)
        self.cash += row_sum(w.tmp)
        self.shares -= w.sold
        np.greater(self.shares, 0.0, out=w.mask)
        self.avg_cost *= w.mask  # a closed position has no average cost
        return row_sum(w.sell_costs)

    def _buy(self, buy_frac: np.ndarray) -> np.ndarray:
        """Fill the buys (after the sells) into the work buffers; returns the fees paid per env."""
        w = self._work
        if not buy_frac.any():
            for array in (w.bought, w.buy_value, w.buy_costs):
                array.fill(0.0)
            w.capped.fill(False)
            return np.zeros(self.n_envs)
        sell_rejected = w.rejected.copy()
        cap = self.task.position_cap
        fill_buys(self.cash, self.shares, w.open, buy_frac, w.buy_price, cap, self.costs, w)
        w.rejected |= sell_rejected
        np.add(w.buy_value, w.buy_costs, out=w.tmp)
        self.cash -= row_sum(w.tmp)
        # average cost (fill price incl. slippage) of the shares now held
        np.multiply(self.shares, self.avg_cost, out=w.tmp)
        w.tmp += w.buy_value
        self.shares += w.bought
        np.maximum(self.shares, 1.0, out=w.room)
        np.divide(w.tmp, w.room, out=self.avg_cost)
        return row_sum(w.buy_costs)

    def _mark(self, step_costs: np.ndarray, traded: np.ndarray) -> tuple:
        """Mark the book at the close of the fill day (``work.index`` still points at it)."""
        w = self._work
        self._close.take(w.index, out=self.close_now)
        np.multiply(self.shares, self.close_now, out=w.tmp)
        nav = self.cash + row_sum(w.tmp)
        previous = self.nav[self._rows, self.t]
        self.t += 1
        self.nav[self._rows, self.t] = nav
        self.trade_days += traded
        self.costs_paid += step_costs
        np.multiply(self.bench_shares, self.close_now, out=w.tmp)
        self.bench_nav = self.bench_cash + row_sum(w.tmp)
        r = nav / previous - 1.0
        self._sum_r += r
        self._sum_r2 += r * r
        np.maximum(self._peak, nav, out=self._peak)
        np.maximum(self._max_dd, 1.0 - nav / self._peak, out=self._max_dd)
        score = self._score_to_date()
        done = self.t >= self.n_days
        if done.any():
            score = np.where(done, self.final_scores(done), score)
        reward = score - self._score
        self._score = score
        return reward, done

    # --------------------------------------------------------------------------------------- grading
    def _running_metrics(self) -> dict[str, np.ndarray]:
        t = self.t.astype(np.float64)
        total_return = self.nav[self._rows, self.t] / self.start_cash - 1.0
        benchmark = self.bench_nav / self.start_cash - 1.0
        return {
            "sharpe": sharpe_from_moments(self._sum_r, self._sum_r2, t),
            "total_return": total_return,
            "max_drawdown": self._max_dd,
            "activity": self.trade_days / np.maximum(t, 1.0),
            "benchmark_return": benchmark,
            "excess_return": total_return - benchmark,
            "cost_ratio": self.costs_paid / self.start_cash,
        }

    def _score_to_date(self) -> np.ndarray:
        return self.grader.score(self._running_metrics())[0]

    def metrics(self, env_ids: np.ndarray | slice = slice(None)) -> dict[str, np.ndarray]:
        """Full-series metrics of finished episodes (the authoritative grade inputs)."""
        return nav_metrics(
            self.nav[env_ids],
            self.trade_days[env_ids],
            self.costs_paid[env_ids],
            self.bench_nav[env_ids] / self.start_cash - 1.0,
        )

    def final_scores(self, done: np.ndarray) -> np.ndarray:
        scores = np.zeros(self.n_envs)
        scores[done] = self.grader.score(self.metrics(done))[0]
        return scores

    # ---------------------------------------------------------------------------------------- forks
    def export_state(self, env_id: int) -> EpisodeState:
        t = int(self.t[env_id])
        return EpisodeState(
            start_day=int(self.start_day[env_id]),
            symbols=tuple(int(s) for s in self.symbols[env_id]),
            t=t,
            cash=float(self.cash[env_id]),
            shares=tuple(float(s) for s in self.shares[env_id]),
            avg_cost=tuple(float(c) for c in self.avg_cost[env_id]),
            nav=tuple(float(v) for v in self.nav[env_id, : t + 1]),
            trade_days=int(self.trade_days[env_id]),
            costs_paid=float(self.costs_paid[env_id]),
        )

    def load_state(self, env_id: int, state: EpisodeState) -> None:
        """Put an exported state into slot ``env_id``: the continuation is exactly the original's."""
        self.reset_envs(np.array([env_id]), [Episode(state.start_day, state.symbols)])
        t = state.t
        self.t[env_id] = t
        self.cash[env_id] = state.cash
        self.shares[env_id] = state.shares
        self.avg_cost[env_id] = state.avg_cost
        self.nav[env_id, : t + 1] = state.nav
        self.trade_days[env_id] = state.trade_days
        self.costs_paid[env_id] = state.costs_paid
        nav = np.asarray(state.nav)
        returns = nav[1:] / nav[:-1] - 1.0
        self._sum_r[env_id], self._sum_r2[env_id] = returns.sum(), (returns * returns).sum()
        self._peak[env_id] = nav.max()
        self._max_dd[env_id] = (1.0 - nav / np.maximum.accumulate(nav)).max()
        day = state.start_day + t
        self.close_now[env_id] = self._close.take(day * self._n_symbols + self.symbols[env_id])
        held = row_sum(self.bench_shares[env_id : env_id + 1] * self.close_now[env_id : env_id + 1])[0]
        self.bench_nav[env_id] = self.start_cash if t == 0 else self.bench_cash[env_id] + held
        self._score[env_id] = self._score_to_date()[env_id]
