"""The simulator's inner loops, compiled with numba: one step of the market rules for every episode at once.

Why compiled: a step is a few dozen arithmetic operations per stock. Written as numpy calls on (B, K)
arrays each operation pays ~1 µs of call overhead, which held a single hard env to ~5,000 steps/s and a
1,024-episode batch to ~350,000. Here one call steps every episode (in parallel over episodes for large
batches, see ``PARALLEL_MIN_ENVS``).

Determinism: each episode is computed by one thread, stock by stock in a fixed order, with no fast-math
(no reassociation, no fused multiply-add), so a batch slot equals the single env to the bit whatever the
batch size or thread count. The functions are plain Python on arrays and scalars: ``tests/market_env/
test_kernels.py`` runs them uncompiled and checks that the compiled results are identical.

The rules themselves are documented in ``market_env.simulator``; the grader formula in ``market_env.grader``.

Threads: only batches of ``PARALLEL_MIN_ENVS`` or more use numba's thread pool (its OpenMP layer where the
system has one); as with any OpenMP program, do not fork a process after it has stepped such a batch.
Compiled code is cached in ``market_env/__pycache__``: the first run on a machine compiles for a few seconds.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

from market_env.grader import METRIC_NAMES, TRADING_DAYS_PER_YEAR

# Buys spend at most this share of their budget, so float rounding can never push cash below zero.
BUDGET_SAFETY = 1.0 - 1e-9
SQRT_TRADING_DAYS = math.sqrt(TRADING_DAYS_PER_YEAR)
# Below this many episodes a step is too small to share between threads (thread start-up dominates).
PARALLEL_MIN_ENVS = 256

# Layout of the ``rules`` vector every kernel takes (one float64 array instead of eight arguments).
# ``cap_after_costs`` is 1.0 where the position cap must hold after the buys' own costs (MarketRules).
RULE_NAMES = ("slippage", "position_cap", "sell_rate", "sell_flat", "buy_rate", "buy_flat", "start_cash",
              "n_days", "cap_after_costs")  # fmt: skip
SLIPPAGE, POSITION_CAP, SELL_RATE, SELL_FLAT, BUY_RATE, BUY_FLAT, START_CASH, N_DAYS, CAP_AFTER_COSTS = range(
    len(RULE_NAMES)
)
# Positions of the running metrics the grader terms index.
SHARPE, TOTAL_RETURN, MAX_DRAWDOWN, ACTIVITY, BENCHMARK_RETURN, EXCESS_RETURN, COST_RATIO = (
    METRIC_NAMES.index(name)
    for name in ("sharpe", "total_return", "max_drawdown", "activity", "benchmark_return", "excess_return",
                 "cost_ratio")
)  # fmt: skip
# Columns of the grader's ``coefficients``: score = sum weight * clip01(offset + sign * metric / scale).
WEIGHT, OFFSET, SIGN, SCALE = range(4)

jit = njit(cache=True)


@jit
def clip01(x: float) -> float:
    return min(max(x, 0.0), 1.0)


@jit
def sharpe_from_moments(sum_r: float, sum_r2: float, count: float) -> float:
    """Annualised Sharpe from running sums of returns, so a step scores its episode-to-date in O(1)."""
    mean = sum_r / max(count, 1.0)
    variance = max((sum_r2 - count * mean * mean) / (max(count, 2.0) - 1.0), 0.0)
    std = math.sqrt(variance)
    if std > 0.0 and count >= 2.0:
        return mean / max(std, 1e-300) * SQRT_TRADING_DAYS
    return 0.0  # no risk measured yet


@jit
def score_to_date(
    nav_now: float,
    t: int,
    trade_days: int,
    costs_paid: float,
    bench_nav: float,
    sum_r: float,
    sum_r2: float,
    max_dd: float,
    rules: np.ndarray,
    metric_index: np.ndarray,
    coefficients: np.ndarray,
) -> float:
    """The grader's terms applied to an episode so far, from its running statistics."""
    start_cash = rules[START_CASH]
    total_return = nav_now / start_cash - 1.0
    benchmark_return = bench_nav / start_cash - 1.0
    score = 0.0
    for j in range(metric_index.shape[0]):
        m = metric_index[j]
        if m == SHARPE:
            value = sharpe_from_moments(sum_r, sum_r2, float(t))
        elif m == TOTAL_RETURN:
            value = total_return
        elif m == MAX_DRAWDOWN:
            value = max_dd
        elif m == ACTIVITY:
            value = trade_days / max(float(t), 1.0)
        elif m == BENCHMARK_RETURN:
            value = benchmark_return
        elif m == EXCESS_RETURN:
            value = total_return - benchmark_return
        else:  # COST_RATIO
            value = costs_paid / start_cash
        weight, offset, sign, scale = (
            coefficients[j, WEIGHT],
            coefficients[j, OFFSET],
            coefficients[j, SIGN],
            coefficients[j, SCALE],
        )
        score += weight * clip01(offset + sign * value / scale)
    return score


@jit
def room_after_costs(
    b: int,
    nav: float,
    room_total: float,
    scale: float,
    shares: np.ndarray,
    open_price: np.ndarray,
    buy_frac: np.ndarray,
    rules: np.ndarray,
) -> float:
    """position_cap x the NAV (at the open) left after this step's buys, using a bound on their costs.

    A buy of budget B (fees included) loses at most B (1 - 1 / ((1 + buy_rate)(1 + slippage))) + buy_flat of
    NAV at the open: its fees plus the slippage paid over the open. The bound is summed over the budgets as
    clipped by the plain room; clipping them again by the smaller room only lowers the real costs, so the
    real post-trade NAV is at least the bounded one and no position ends above the cap.
    """
    loss_rate = 1.0 - 1.0 / ((1.0 + rules[BUY_RATE]) * (1.0 + rules[SLIPPAGE]))
    loss = 0.0
    for k in range(shares.shape[1]):
        budget = min(buy_frac[b, k] * scale, max(room_total - shares[b, k] * open_price[k], 0.0))
        loss += budget * loss_rate + (rules[BUY_FLAT] if budget > 0.0 else 0.0)
    return rules[POSITION_CAP] * (nav - loss)


@jit
def fill_buys(
    b: int,
    cash: float,
    shares: np.ndarray,
    open_price: np.ndarray,
    buy_frac: np.ndarray,
    buy_price: np.ndarray,
    rules: np.ndarray,
    bought: np.ndarray,
    buy_costs: np.ndarray,
    capped: np.ndarray,
    rejected: np.ndarray,
) -> float:
    """Whole-share buys of episode ``b`` (row b of the (B, K) arrays; ``open_price`` is its row) for fractions
    of ``cash``.

    Fractions adding up to more than 1 are scaled down to 1. Each buy is clipped so the position stays
    under position_cap x NAV (valued at the open), then rounded down to whole shares at ``buy_price`` with
    fees included. With ``cap_after_costs`` (env 3.0.0) that NAV is the one left after this step's buys
    (see :func:`room_after_costs`); before, it was the NAV before them, which the buys' costs then shrink.
    Writes ``bought``, ``buy_costs`` and ``capped``; sets ``rejected`` where a flat fee
    would exceed a tiny order's value (never clears it, so the sells' rejections stay). Returns the cash
    spent, fees included. Used by ``step`` and by the equal-weight benchmark, so the buy-and-hold agent
    and grader 2.0.0 agree to the rupee. (Rows are indexed, not sliced: a slice in a parallel loop
    updates a shared reference count from every thread.)
    """
    n_stocks = shares.shape[1]
    asked, held_value = 0.0, 0.0
    for k in range(n_stocks):
        asked += buy_frac[b, k]
        held_value += shares[b, k] * open_price[k]
    scale = cash * BUDGET_SAFETY / max(asked, 1.0)
    room_total = rules[POSITION_CAP] * (cash + held_value)
    buy_rate, buy_flat = rules[BUY_RATE], rules[BUY_FLAT]
    if rules[CAP_AFTER_COSTS] != 0.0 and rules[POSITION_CAP] < 1.0:  # a 100% cap cannot bind without leverage
        room_total = room_after_costs(b, cash + held_value, room_total, scale, shares, open_price, buy_frac,
                                      rules)  # fmt: skip
    spent = 0.0
    for k in range(n_stocks):
        budget = buy_frac[b, k] * scale
        room = max(room_total - shares[b, k] * open_price[k], 0.0)
        capped[b, k] = budget > room
        budget = max(min(budget, room) - buy_flat, 0.0)
        n = np.floor(budget / (buy_price[b, k] * (1.0 + buy_rate)))
        value = n * buy_price[b, k]
        fees = value * buy_rate + min(n, 1.0) * buy_flat
        too_costly = fees > value
        rejected[b, k] |= too_costly
        n = 0.0 if too_costly else n
        value = 0.0 if too_costly else value
        fees = 0.0 if too_costly else fees
        bought[b, k], buy_costs[b, k] = n, fees
        spent += value + fees
    return spent


@jit
def benchmark_buys(open_price: np.ndarray, rules: np.ndarray, shares: np.ndarray, cash: np.ndarray) -> None:
    """Equal-weight buy-and-hold of each row's stocks at the first open: fills ``shares`` and ``cash``."""
    n_envs, n_stocks = open_price.shape
    weights = np.full((n_envs, n_stocks), 1.0 / n_stocks)
    no_shares = np.zeros((n_envs, n_stocks))
    price = open_price * (1.0 + rules[SLIPPAGE])
    fees = np.zeros((n_envs, n_stocks))
    capped, rejected = (
        np.zeros((n_envs, n_stocks), dtype=np.bool_),
        np.zeros((n_envs, n_stocks), dtype=np.bool_),
    )
    for b in range(n_envs):
        cash_at_start = rules[START_CASH]
        spent = fill_buys(b, cash_at_start, no_shares, open_price[b], weights, price, rules, shares, fees,
                          capped, rejected)  # fmt: skip
        cash[b] = rules[START_CASH] - spent


@jit
def step_rows(
    first: int,
    last: int,
    sell_frac: np.ndarray,
    buy_frac: np.ndarray,
    open_flat: np.ndarray,
    close_flat: np.ndarray,
    n_symbols: int,
    rules: np.ndarray,
    metric_index: np.ndarray,
    coefficients: np.ndarray,
    # episode state, updated in place
    start_day: np.ndarray,
    symbols: np.ndarray,
    t: np.ndarray,
    cash: np.ndarray,
    shares: np.ndarray,
    avg_cost: np.ndarray,
    nav: np.ndarray,
    trade_days: np.ndarray,
    costs_paid: np.ndarray,
    close_now: np.ndarray,
    bench_cash: np.ndarray,
    bench_shares: np.ndarray,
    bench_nav: np.ndarray,
    sum_r: np.ndarray,
    sum_r2: np.ndarray,
    peak: np.ndarray,
    max_dd: np.ndarray,
    score: np.ndarray,
    # the step report, overwritten
    reward: np.ndarray,
    done: np.ndarray,
    step_costs: np.ndarray,
    sold: np.ndarray,
    bought: np.ndarray,
    sell_price: np.ndarray,
    buy_price: np.ndarray,
    sell_costs: np.ndarray,
    buy_costs: np.ndarray,
    n_trades: np.ndarray,
    capped: np.ndarray,
    rejected: np.ndarray,
    unfilled: np.ndarray,
) -> int:
    """One decision for episodes ``first`` to ``last - 1``: sells, then buys, then marking and the score.

    Returns how many episodes finished: their ``reward`` is left to the caller (the final grade uses the
    full NAV series) and their ``score`` keeps the previous score-to-date.
    """
    finished = 0
    n_stocks = shares.shape[1]
    open_price = np.empty(n_stocks)  # this episode's opens, reused row to row
    # constants in locals: LLVM cannot prove that the array stores below leave ``rules`` unchanged
    sell_mult, buy_mult = 1.0 - rules[SLIPPAGE], 1.0 + rules[SLIPPAGE]
    sell_rate, sell_flat, n_days = rules[SELL_RATE], rules[SELL_FLAT], rules[N_DAYS]
    for b in range(first, last):
        fill_day = start_day[b] + t[b] + 1
        # 1. sells at the next open, whole shares; fees above the value reject the order
        proceeds, sell_fees, any_buy = 0.0, 0.0, False
        for k in range(n_stocks):
            o = open_flat[fill_day * n_symbols + symbols[b, k]]
            open_price[k] = o
            price = o * sell_mult
            sell_price[b, k] = price
            buy_price[b, k] = o * buy_mult
            n = np.floor(sell_frac[b, k] * shares[b, k])
            value = n * price
            fees = value * sell_rate + min(n, 1.0) * sell_flat
            too_costly = fees > value
            rejected[b, k] = too_costly
            # selects, not branches: random orders make branches unpredictable
            n = 0.0 if too_costly else n
            value = 0.0 if too_costly else value
            fees = 0.0 if too_costly else fees
            sold[b, k], sell_costs[b, k] = n, fees
            proceeds += value - fees
            sell_fees += fees
            left = shares[b, k] - n
            shares[b, k] = left
            avg_cost[b, k] = 0.0 if left <= 0.0 else avg_cost[b, k]  # a closed position has no average cost
            any_buy |= buy_frac[b, k] > 0.0
        cash[b] += proceeds
        # 2. buys with the cash after the sells
        buy_fees = 0.0
        if any_buy:
            cash[b] -= fill_buys(b, cash[b], shares, open_price, buy_frac, buy_price, rules, bought,
                                 buy_costs, capped, rejected)  # fmt: skip
            for k in range(n_stocks):
                buy_fees += buy_costs[b, k]
                # average cost (fill price incl. slippage) of the shares now held; unchanged without a buy
                n = bought[b, k]
                held = shares[b, k] + n
                averaged = (shares[b, k] * avg_cost[b, k] + n * buy_price[b, k]) / max(held, 1.0)
                avg_cost[b, k] = averaged if n > 0.0 else avg_cost[b, k]
                shares[b, k] = held
        else:
            for k in range(n_stocks):
                bought[b, k], buy_costs[b, k], capped[b, k] = 0.0, 0.0, False
        # 3. mark at the close of the fill day
        held_value, bench_value, trades = 0.0, 0.0, 0
        for k in range(n_stocks):
            c = close_flat[fill_day * n_symbols + symbols[b, k]]
            close_now[b, k] = c
            held_value += shares[b, k] * c
            bench_value += bench_shares[b, k] * c
            moved = sold[b, k] + bought[b, k] > 0.0
            trades += moved
            asked = (sell_frac[b, k] > 0.0) | (buy_frac[b, k] > 0.0)
            unfilled[b, k] = asked & (not moved) & (not rejected[b, k])
        nav_now = cash[b] + held_value
        previous = nav[b, t[b]]
        t[b] += 1
        nav[b, t[b]] = nav_now
        n_trades[b] = trades
        trade_days[b] += trades > 0
        step_costs[b] = sell_fees + buy_fees
        costs_paid[b] += step_costs[b]
        bench_nav[b] = bench_cash[b] + bench_value
        r = nav_now / previous - 1.0
        sum_r[b] += r
        sum_r2[b] += r * r
        peak[b] = max(peak[b], nav_now)
        max_dd[b] = max(max_dd[b], 1.0 - nav_now / peak[b])
        done[b] = t[b] >= n_days
        if done[b]:
            finished += 1
        else:
            new_score = score_to_date(nav_now, t[b], trade_days[b], costs_paid[b], bench_nav[b], sum_r[b],
                                      sum_r2[b], max_dd[b], rules, metric_index, coefficients)  # fmt: skip
            reward[b] = new_score - score[b]
            score[b] = new_score
    return finished


@jit
def rescore(
    env_ids: np.ndarray,
    t: np.ndarray,
    nav: np.ndarray,
    trade_days: np.ndarray,
    costs_paid: np.ndarray,
    bench_nav: np.ndarray,
    sum_r: np.ndarray,
    sum_r2: np.ndarray,
    max_dd: np.ndarray,
    rules: np.ndarray,
    metric_index: np.ndarray,
    coefficients: np.ndarray,
    score: np.ndarray,
) -> None:
    """Recompute the score-to-date of the given episodes (after a reset or a loaded state)."""
    for b in env_ids:
        score[b] = score_to_date(nav[b, t[b]], t[b], trade_days[b], costs_paid[b], bench_nav[b], sum_r[b],
                                 sum_r2[b], max_dd[b], rules, metric_index, coefficients)  # fmt: skip


@jit
def render_rows(
    first: int,
    last: int,
    out: np.ndarray,
    market_table: np.ndarray,
    start_day: np.ndarray,
    t: np.ndarray,
    nav: np.ndarray,
    symbols: np.ndarray,
    shares: np.ndarray,
    close: np.ndarray,
    avg_cost: np.ndarray,
    cash: np.ndarray,
    n_days: int,
    start_cash: float,
    clip: float,
) -> None:
    """Numeric observations of episodes ``first``..``last - 1`` into ``out`` (see market_env.observations).

    ``nav`` is the NAV series (B, N + 1): the current value is ``nav[b, t[b]]``, the day ``start_day + t``.
    """
    n_stocks = shares.shape[1]
    n_market = market_table.shape[2]
    weight, pnl, held = n_stocks * n_market, n_stocks * (n_market + 1), n_stocks * (n_market + 2)
    globals_at = n_stocks * (n_market + 3)
    n_symbols, flat_table = market_table.shape[1], market_table.reshape(-1)
    for b in range(first, last):
        nav_now, day = nav[b, t[b]], start_day[b] + t[b]
        inverse_nav = 1.0 / nav_now
        for k in range(n_stocks):
            row = (day * n_symbols + symbols[b, k]) * n_market  # flat index: ~25% faster than 3-D
            for f in range(n_market):
                out[b, k * n_market + f] = flat_table[row + f]
            is_held = 1.0 if shares[b, k] > 0.0 else 0.0
            out[b, weight + k] = shares[b, k] * close[b, k] * inverse_nav
            # unrealised P&L where held: a flat position has avg cost 0, floored to stay finite, then zeroed
            # (a product, not a branch: which stocks are held is unpredictable)
            gain = (close[b, k] / max(avg_cost[b, k], 1e-9) - 1.0) * 10.0 * is_held
            out[b, pnl + k] = min(max(gain, -clip), clip)
            out[b, held + k] = is_held
        out[b, globals_at] = cash[b] / nav_now
        out[b, globals_at + 1] = min(max((nav_now / start_cash - 1.0) * 10.0, -clip), clip)
        out[b, globals_at + 2] = t[b] / n_days


@jit
def render_serial(out: np.ndarray, *arrays) -> None:
    """Numeric observations of every episode (the arguments of ``render_rows`` from ``out``)."""
    render_rows(0, out.shape[0], out, *arrays)


@njit(cache=True, parallel=True)
def render_parallel(n_blocks: int, out: np.ndarray, *arrays) -> None:
    """``render_serial`` with the episodes split into ``n_blocks`` blocks (one per thread)."""
    n_envs = out.shape[0]
    size = (n_envs + n_blocks - 1) // n_blocks
    for block in prange(n_blocks):
        render_rows(block * size, min((block + 1) * size, n_envs), out, *arrays)


@jit
def step_observe_rows(
    first: int, last: int, out: np.ndarray, market_table: np.ndarray, clip: float, sell: np.ndarray, *arrays
) -> int:
    """``step_rows`` (``arrays``: its arguments after ``sell_frac``), then, unless ``out`` has no columns
    (text mode), ``render_rows`` of the same episodes while their state is still in cache."""
    finished = step_rows(first, last, sell, *arrays)
    if out.shape[1] == 0:
        return finished
    # the state render_rows reads, by position in step_rows' signature (a test compares with a fresh render)
    rules, start_day, symbols, t, cash = arrays[4], arrays[7], arrays[8], arrays[9], arrays[10]
    shares, avg_cost, nav, close_now = arrays[11], arrays[12], arrays[13], arrays[16]
    render_rows(first, last, out, market_table, start_day, t, nav, symbols, shares, close_now, avg_cost, cash,
                rules[N_DAYS], rules[START_CASH], clip)  # fmt: skip
    return finished


@jit
def step_serial(out: np.ndarray, *arrays) -> int:
    """One decision for every episode, and its next observation (the arguments of ``step_observe_rows``
    from ``out``). Returns how many episodes finished."""
    return step_observe_rows(0, out.shape[0], out, *arrays)


@njit(cache=True, parallel=True)
def step_parallel(n_blocks: int, out: np.ndarray, *arrays) -> int:
    """``step_serial`` with the episodes split into ``n_blocks`` blocks (one per thread).

    The threads run the serially compiled ``step_observe_rows``: numba's parallel compilation of the loop
    body itself ran twice as slow per thread (measured).
    """
    n_envs = out.shape[0]
    size = (n_envs + n_blocks - 1) // n_blocks
    finished = 0
    for block in prange(n_blocks):
        finished += step_observe_rows(block * size, min((block + 1) * size, n_envs), out, *arrays)
    return finished


@jit
def numeric_fractions(
    actions: np.ndarray, deadzone: float, sell: np.ndarray, buy: np.ndarray, nonfinite: np.ndarray
) -> int:
    """Numeric actions (B, K) -> sell and buy fractions (the rule in ``market_env.actions``); returns how
    many values were not finite (each flagged in ``nonfinite`` and held)."""
    n_bad = 0
    for b in range(actions.shape[0]):
        for k in range(actions.shape[1]):
            a = actions[b, k]
            bad = not np.isfinite(a)
            nonfinite[b, k] = bad
            if bad:
                n_bad += 1
                a = 0.0
            a = min(max(a, -1.0), 1.0)
            # division (not multiplication by 1 / 0.9) maps |a| = 1 to exactly 1.0; one side is always 0
            fraction = max((abs(a) - deadzone) / (1.0 - deadzone), 0.0)
            buy[b, k] = fraction if a > 0.0 else 0.0
            sell[b, k] = fraction if a < 0.0 else 0.0
    return n_bad
