"""The pure market simulator: B independent episodes stepped at once.

The single env is this simulator with B = 1 and the batch env is the same class with B = n_envs, so there
is one implementation of the market rules. Only ``start_episodes``, ``step`` and ``load_state`` change
state.

Execution of a step (decision at the close of day d; DESIGN.md "Market rules"):
1. Sells fill at open[d+1] * (1 - slippage): floor(fraction * shares held) shares. A sell whose fees exceed
   its value (the flat DP charge on a tiny lot) is rejected.
2. Buys: fraction of the cash available after the sells; if the fractions add up to more than 1 they are
   scaled down to 1. Each buy is clipped so the position stays under ``position_cap`` x NAV (NAV valued at
   the open), then rounded down to whole shares at open[d+1] * (1 + slippage) with fees included, so cash
   never goes negative.
3. The book is marked at close[d+1]; the step reward is the change in the episode's score-to-date.

The arithmetic of a step runs in one compiled call (``market_env.kernels``); this class owns the state
arrays, resets, final grades and forks.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass

import numba
import numpy as np

from data.panel import Panel
from market_env import kernels
from market_env.episodes import Episode
from market_env.grader import Grader, nav_metrics
from market_env.tasks import TaskSpec
from market_env.versions import MarketRules


@dataclass
class StepReport:
    """What one step did, as arrays over the batch (B,) or (B, K).

    The arrays are the simulator's buffers: valid until the next ``step``; copy to keep them.
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


class MarketSimulator:
    """B episodes of one task on one panel. Arrays are public for the env, observations and forks."""

    def __init__(self, panel: Panel, task: TaskSpec, rules: MarketRules, grader: Grader, n_envs: int) -> None:
        self.panel, self.task, self.rules, self.grader = panel, task, rules, grader
        self.costs = rules.costs
        self.n_envs, self.n_stocks, self.n_days = n_envs, task.n_stocks, task.n_days
        self.start_cash = float(rules.start_cash)
        self._n_symbols = len(panel.symbols)
        self._open = np.ascontiguousarray(panel.open, dtype=np.float64).ravel()
        self._close = np.ascontiguousarray(panel.close, dtype=np.float64).ravel()
        # the constants every kernel call takes, in the layout of market_env.kernels
        costs = self.costs
        rules_by_name = {
            "slippage": task.slippage, "position_cap": task.position_cap, "sell_rate": costs.sell_rate,
            "sell_flat": costs.sell_flat, "buy_rate": costs.buy_rate, "buy_flat": costs.buy_flat,
            "start_cash": self.start_cash, "n_days": task.n_days,
            "cap_after_costs": float(rules.cap_after_costs),
        }  # fmt: skip
        self._rules = np.array([rules_by_name[name] for name in kernels.RULE_NAMES], dtype=np.float64)
        self._metric_index, self._coefficients = grader.kernel_table()
        if n_envs >= kernels.PARALLEL_MIN_ENVS:  # one block of episodes per thread
            self._step_kernel = functools.partial(kernels.step_parallel, numba.get_num_threads())
        else:
            self._step_kernel = kernels.step_serial
        # what the kernel takes when no observation is wanted: an output without columns
        self._no_observation = (np.zeros((n_envs, 0), dtype=np.float32), np.zeros((1, 1, 1), np.float32), 0.0)

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
        self.rows = np.arange(n_envs)
        # The step report's buffers, overwritten by every step.
        floats = {name: np.zeros(stock_shape) for name in
                  ("sold", "bought", "sell_price", "buy_price", "sell_costs", "buy_costs")}  # fmt: skip
        flags = {name: np.zeros(stock_shape, dtype=bool) for name in ("capped", "rejected", "unfilled")}
        self._report = report = StepReport(
            reward=np.zeros(shape), done=np.zeros(shape, dtype=bool), costs=np.zeros(shape),
            n_trades=np.zeros(shape, dtype=np.int64), **floats, **flags,
        )  # fmt: skip
        # The step kernel's arguments after the fractions, bound once: every array above is updated in
        # place and never rebound, and packing ~40 arguments per step costs more than a small step.
        self._kernel_arrays = (
            self._open, self._close, self._n_symbols, self._rules, self._metric_index, self._coefficients,
            self.start_day, self.symbols, self.t, self.cash, self.shares, self.avg_cost, self.nav,
            self.trade_days, self.costs_paid, self.close_now, self.bench_cash, self.bench_shares,
            self.bench_nav, self._sum_r, self._sum_r2, self._peak, self._max_dd, self._score,
            report.reward, report.done, report.costs, report.sold, report.bought, report.sell_price,
            report.buy_price, report.sell_costs, report.buy_costs, report.n_trades, report.capped,
            report.rejected, report.unfilled,
        )  # fmt: skip

    # ----------------------------------------------------------------------------------------- reset
    @property
    def day(self) -> np.ndarray:
        """Calendar index of each episode's current decision close."""
        return self.start_day + self.t

    def reset_envs(self, env_ids: np.ndarray, episodes: Sequence[Episode]) -> None:
        start_days = [episode.start_day for episode in episodes]
        self.start_episodes(np.asarray(env_ids, dtype=np.int64), start_days, [e.symbols for e in episodes])

    def start_episodes(self, env_ids: np.ndarray, start_days: Sequence[int], symbols: Sequence) -> None:
        """Start new episodes in slots ``env_ids``: their start days (n,) and symbol indices (n, K)."""
        self.start_day[env_ids] = start_days
        self.symbols[env_ids] = symbols
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
        start = self.start_day[env_ids]
        self.close_now[env_ids] = self._close.take(start[:, None] * self._n_symbols + self.symbols[env_ids])
        self._rescore(env_ids)

    def _reset_benchmark(self, env_ids: np.ndarray) -> None:
        symbols = self.symbols[env_ids]
        open_price = self._open.take((self.start_day[env_ids] + 1)[:, None] * self._n_symbols + symbols)
        shares, cash = np.zeros(symbols.shape), np.zeros(len(env_ids))
        kernels.benchmark_buys(open_price, self._rules, shares, cash)
        self.bench_shares[env_ids] = shares
        self.bench_cash[env_ids] = cash
        self.bench_nav[env_ids] = self.start_cash

    def _rescore(self, env_ids: np.ndarray) -> None:
        kernels.rescore(
            env_ids, self.t, self.nav, self.trade_days, self.costs_paid, self.bench_nav, self._sum_r,
            self._sum_r2, self._max_dd, self._rules, self._metric_index, self._coefficients, self._score,
        )  # fmt: skip

    # ------------------------------------------------------------------------------------------ step
    def step(self, sell_frac: np.ndarray, buy_frac: np.ndarray, observe: tuple | None = None) -> StepReport:
        """Advance every episode by one decision. Fractions are (B, K) float64 arrays in [0, 1].

        ``observe=(out, market_table, clip)`` also writes the next numeric observations into ``out`` in the
        same compiled pass (``market_env.observations`` owns that layout; this only saves a second pass).
        """
        report = self._report
        sell_frac = np.ascontiguousarray(sell_frac, dtype=np.float64)
        buy_frac = np.ascontiguousarray(buy_frac, dtype=np.float64)
        observe = self._no_observation if observe is None else observe
        if self._step_kernel(*observe, sell_frac, buy_frac, *self._kernel_arrays):  # some episodes ended:
            done = report.done  # their final score comes from the full NAV series
            final = self.final_scores(done)[done]
            report.reward[done] = final - self._score[done]
            self._score[done] = final
        return report

    # --------------------------------------------------------------------------------------- grading
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

    def check_state(self, state: EpisodeState) -> None:
        """Raise a ValueError naming every field of ``state`` that no episode of this simulator can have.

        A corrupt state would otherwise load silently: start day -1 reads prices from the end of the
        panel (NaN), symbol index -1 wraps to the last symbol, negative shares make a negative NAV.
        """
        if not isinstance(state, EpisodeState):
            raise ValueError(
                f"state must be an EpisodeState (from get_state/export_state), got {type(state).__name__}"
            )
        problems = self._state_problems(state)
        if problems:
            raise ValueError("state is not a valid episode position: " + "; ".join(problems))

    def _state_problems(self, state: EpisodeState) -> list[str]:
        n_days, lookback = self.n_days, self.rules.lookback_days
        last_start = self.panel.n_days - n_days - 1
        problems: list[str] = []
        if not _is_int(state.start_day) or not lookback <= state.start_day <= last_start:
            problems.append(f"start_day {state.start_day!r} is not a day index in {lookback}..{last_start}")
        if not _is_int(state.t) or not 0 <= state.t <= n_days:
            problems.append(f"t {state.t!r} is not in 0..{n_days}")
        symbols = _reals(state.symbols, self.n_stocks)
        if symbols is None or not all(_is_int(s) for s in state.symbols):
            problems.append(f"symbols must be {self.n_stocks} symbol indices, got {state.symbols!r}"[:200])
        elif len(set(symbols.tolist())) != self.n_stocks or not (symbols >= 0).all():
            problems.append("symbols must be distinct, non-negative symbol indices")
        elif (symbols >= self._n_symbols).any():
            problems.append(f"symbols {symbols.tolist()} reach past the panel's {self._n_symbols} symbols")
        elif not problems:  # every price of the window must exist, as for a sampled episode
            complete = self.panel.complete_symbols(state.start_day - lookback, state.start_day + n_days)
            if not np.isin(symbols, complete).all():
                problems.append("some symbols lack prices in the episode's window")
        for field, size in (("shares", self.n_stocks), ("avg_cost", self.n_stocks)):
            values = _reals(getattr(state, field), size)
            if values is None or not (np.isfinite(values) & (values >= 0)).all():
                problems.append(f"{field} must be {size} finite values >= 0")
            elif field == "shares" and (values != np.floor(values)).any():
                problems.append("shares must be whole numbers")
        nav = _reals(state.nav, state.t + 1 if _is_int(state.t) else -1)
        if nav is None or not (np.isfinite(nav) & (nav > 0)).all():
            problems.append("nav must hold t + 1 finite values > 0 (V_0..V_t)")
        for field in ("cash", "costs_paid"):
            value = getattr(state, field)
            if not isinstance(value, (int, float, np.number)) or isinstance(value, bool) or not value >= 0:
                problems.append(f"{field} {value!r} is not a finite number >= 0")
            elif not np.isfinite(value):
                problems.append(f"{field} {value!r} is not finite")
        t_max = state.t if _is_int(state.t) else n_days
        if not _is_int(state.trade_days) or not 0 <= state.trade_days <= t_max:
            problems.append(f"trade_days {state.trade_days!r} is not in 0..t")
        return problems

    def load_state(self, env_id: int, state: EpisodeState) -> None:
        """Put an exported state into slot ``env_id``: the continuation is exactly the original's."""
        self.check_state(state)
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
        if t:  # summed in order, as the step kernel accumulates them, so the fork continues bit for bit
            self._sum_r[env_id] = np.cumsum(returns)[-1]
            self._sum_r2[env_id] = np.cumsum(returns * returns)[-1]
        self._peak[env_id] = nav.max()
        self._max_dd[env_id] = (1.0 - nav / np.maximum.accumulate(nav)).max()
        day = state.start_day + t
        self.close_now[env_id] = self._close.take(day * self._n_symbols + self.symbols[env_id])
        held = np.cumsum(self.bench_shares[env_id] * self.close_now[env_id])[-1]
        self.bench_nav[env_id] = self.start_cash if t == 0 else self.bench_cash[env_id] + held
        self._rescore(np.array([env_id]))


def _is_int(value: object) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _reals(values: object, size: int) -> np.ndarray | None:
    """``values`` as a float64 vector of ``size`` real numbers, or None."""
    try:
        array = np.asarray(values)
    except (TypeError, ValueError, OverflowError):
        return None
    if array.dtype.kind not in "iuf" or array.shape != (size,):
        return None
    return array.astype(np.float64)
