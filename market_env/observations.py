"""Observations: one per-step snapshot, rendered as text (for LLMs) or as a float32 vector (for PPO).

Both renderers read the same :class:`Snapshot`, so both modes carry the same information; a test decodes
the text and compares it with the vector.

Numeric layout, ``K * len(STOCK_FEATURES) + len(GLOBAL_FEATURES)`` float32 values in three blocks: the market
features stock by stock (K x 10, the episode's symbol order), then the portfolio features feature by feature
(weight of every stock, then unrealised P&L of every stock, then held), then the global features.
``split_observation`` turns a vector back into (K, 13) per-stock rows in ``STOCK_FEATURES`` order. Every
value is a fixed transform (no fitted statistics, so nothing leaks from the future) clipped to [-CLIP, CLIP]:

| feature            | transform                         | feature         | transform                       |
|--------------------|-----------------------------------|-----------------|---------------------------------|
| change_1d          | x * 20                            | trend           | (SMA20/SMA50 - 1) * 10          |
| change_5d          | x * 10                            | atr_pct         | ATR14/close * 20                |
| rsi                | (RSI - 50) / 50                   | momentum_20d    | x * 5                           |
| macd_hist          | hist / close * 50                 | volume_ratio    | log(volume / 20-day mean)       |
| macd_hist_change   | (hist - hist_prev) / close * 200  | weight          | position value / NAV            |
| pct_b              | %B - 0.5                          | unrealised_pnl  | (close / avg cost - 1) * 10     |
|                    |                                   | held            | 1 if shares > 0 else 0          |
Global: cash_weight = cash / NAV, return_since_start = (NAV / start cash - 1) * 10, progress = t / N.
"""

from __future__ import annotations

import string
from dataclasses import dataclass
from functools import cached_property

import numba
import numpy as np

from data.panel import Panel
from market_env import kernels
from market_env.actions import action_grammar

CLIP = 5.0
MARKET_FEATURES = (
    "change_1d", "change_5d", "rsi", "macd_hist", "macd_hist_change",
    "pct_b", "trend", "atr_pct", "momentum_20d", "volume_ratio",
)  # fmt: skip
STOCK_FEATURES = (*MARKET_FEATURES, "weight", "unrealised_pnl", "held")
GLOBAL_FEATURES = ("cash_weight", "return_since_start", "progress")
TEXT_CHARSET = frozenset(string.printable)
ANONYMOUS_NAMES = tuple(f"STOCK_{letter}" for letter in string.ascii_uppercase)


def vector_size(n_stocks: int) -> int:
    return n_stocks * len(STOCK_FEATURES) + len(GLOBAL_FEATURES)


def market_vector_table(panel: Panel) -> np.ndarray:
    """Normalised market features for every (day, symbol), float32 (T, S, 10); computed once per panel."""
    f = {name: panel.features[..., panel.feature_names.index(name)] for name in MARKET_FEATURES}
    close = panel.close
    with np.errstate(divide="ignore", invalid="ignore"):
        columns = [
            f["change_1d"] * 20.0,
            f["change_5d"] * 10.0,
            (f["rsi"] - 50.0) / 50.0,
            f["macd_hist"] / close * 50.0,
            f["macd_hist_change"] / close * 200.0,
            f["pct_b"] - 0.5,
            f["trend"] * 10.0,
            f["atr_pct"] * 20.0,
            f["momentum_20d"] * 5.0,
            np.log(np.maximum(f["volume_ratio"], 1e-6)),
        ]
    table = np.clip(np.nan_to_num(np.stack(columns, axis=-1), nan=0.0), -CLIP, CLIP)
    return table.astype(np.float32)


@dataclass(eq=False)  # not frozen: a frozen dataclass is ~3x slower to build, and one is built per step
class Snapshot:
    """The state every observation of a step is rendered from, for B episodes (B = 1 for the single env)."""

    panel: Panel
    market_table: np.ndarray  # (T, S, 10) float32 from market_vector_table
    day: np.ndarray  # (B,) calendar index of the decision close
    t: np.ndarray  # (B,) decisions already made
    n_days: int
    start_day: np.ndarray  # (B,)
    symbols: np.ndarray  # (B, K) panel symbol indices
    cash: np.ndarray  # (B,)
    nav: np.ndarray  # (B,)
    nav_series: np.ndarray  # (B, N + 1): nav[b] is nav_series[b, t[b]]
    start_cash: float
    shares: np.ndarray  # (B, K)
    avg_cost: np.ndarray  # (B, K)
    close: np.ndarray  # (B, K) close of the decision day

    @cached_property
    def features(self) -> np.ndarray:
        """Raw indicator values (B, K, F) in ``panel.feature_names`` order."""
        return self.panel.features[self.day[:, None], self.symbols]


def render_vectors(snapshot: Snapshot) -> np.ndarray:
    """Numeric observations (B, D) float32 of a snapshot, as a new array (one compiled pass)."""
    n_envs, n_stocks = snapshot.symbols.shape
    out = np.empty((n_envs, vector_size(n_stocks)), dtype=np.float32)
    arrays = (
        snapshot.market_table, snapshot.start_day, snapshot.t, snapshot.nav_series, snapshot.symbols,
        snapshot.shares, snapshot.close, snapshot.avg_cost, snapshot.cash, snapshot.n_days,
        snapshot.start_cash, CLIP,
    )  # fmt: skip
    if n_envs >= kernels.PARALLEL_MIN_ENVS:
        kernels.render_parallel(numba.get_num_threads(), out, *arrays)
    else:
        kernels.render_serial(out, *arrays)
    return out


def split_observation(obs: np.ndarray, n_stocks: int) -> tuple[np.ndarray, np.ndarray]:
    """(..., D) observations -> per-stock rows (..., K, 13) in ``STOCK_FEATURES`` order, globals (..., 3)."""
    lead, k, n_market = obs.shape[:-1], n_stocks, len(MARKET_FEATURES)
    market = obs[..., : k * n_market].reshape(*lead, k, n_market)
    portfolio = obs[..., k * n_market : k * len(STOCK_FEATURES)].reshape(*lead, 3, k)
    per_stock = np.concatenate([market, np.swapaxes(portfolio, -1, -2)], axis=-1)
    return per_stock, obs[..., k * len(STOCK_FEATURES) :]


# ------------------------------------------------------------------------------------------------ text
def format_rupees(amount: float) -> str:
    """Indian digit grouping: 1234567.8 -> 'Rs 12,34,568'."""
    sign, whole = ("-" if amount < 0 else ""), f"{abs(amount):.0f}"
    head, tail = whole[:-3], whole[-3:]
    groups = []
    while len(head) > 2:
        groups.insert(0, head[-2:])
        head = head[:-2]
    if head:
        groups.insert(0, head)
    return f"Rs {sign}{','.join([*groups, tail])}"


def _pct(x: float, digits: int = 1) -> str:
    return f"{x * 100:+.{digits}f}%"


def _number(x: float, digits: int = 1) -> str:
    """No '+' (it costs a token) and no '-0.0'."""
    text = f"{x:.{digits}f}"
    return text[1:] if text.startswith("-") and float(text) == 0 else text


def format_price(price: float) -> str:
    """Fewer digits where they carry no information (SmolLM2 spends one token per digit)."""
    return f"{price:.0f}" if price >= 1000 else f"{price:.1f}" if price >= 10 else f"{price:.2f}"


def rsi_label(rsi: float) -> str:
    return "oversold" if rsi < 30 else "overbought" if rsi > 70 else "neutral"


def macd_label(change: float) -> str:
    """Direction of the MACD histogram (its sign is in the value): "-3.2 rising" is negative but rising."""
    return "rising" if change >= 0 else "falling"


def pct_b_label(pct_b: float) -> str:
    """Where the close sits in its Bollinger bands."""
    if pct_b < 0:
        return "below"
    if pct_b > 1:
        return "above"
    return "low" if pct_b < 0.2 else "high" if pct_b > 0.8 else "mid"


def trend_label(trend: float) -> str:
    return "up" if trend > 0.01 else "down" if trend < -0.01 else "flat"


def direction_label(change: float) -> str:
    """The sign of a change in a word (env 4.0.0's 5d% cell): a 135M model reads "up" where it does not
    read the sign of "-0.4"."""
    return "up" if change > 0 else "down" if change < 0 else "flat"


def atr_label(atr_pct: float) -> str:
    return "calm" if atr_pct < 0.015 else "volatile" if atr_pct > 0.03 else "normal"


def volume_label(ratio: float) -> str:
    return "heavy" if ratio > 1.5 else "light" if ratio < 0.7 else "normal"


# "|" with no spaces: SmolLM2 spends a token on every space before a digit, and 25 hard-task rows must
# fit a 2,000-token prompt with room to spare.
TABLE_HEADER = (
    "symbol|close|day%|5d%|RSI14|MACD hist|Boll %B|trend% SMA20/50|ATR%|mom20%|volume/avg20|"
    "position: shares @avg cost P&L"
)


def _stock_row(
    name: str, close: float, f: dict[str, float], shares: float, avg_cost: float, scale: float, label_5d: bool
) -> str:
    """One table row. ``scale`` != 1 (anonymised) shows prices x scale and shares as units = shares / scale
    (``market_env.anonymize``), so cash spent / units gives the shown price, never the real one.
    ``label_5d`` (env 4.0.0) follows the 5d% value with its direction word, as the trend cell does."""
    position = "-"
    if shares > 0:
        held = f"{shares:.0f}" if scale == 1.0 else _number(shares / scale, 1)
        position = f"{held} @{format_price(avg_cost * scale)} {_pct(close / avg_cost - 1.0)}"
    five_day = _number(f["change_5d"] * 100)
    return "|".join(
        (
            name,
            format_price(close * scale),
            _number(f["change_1d"] * 100),
            f"{five_day} {direction_label(f['change_5d'])}" if label_5d else five_day,
            f"{f['rsi']:.0f} {rsi_label(f['rsi'])}",
            f"{_number(f['macd_hist'] * scale)} {macd_label(f['macd_hist_change'])}",
            f"{_number(f['pct_b'])} {pct_b_label(f['pct_b'])}",
            f"{_number(f['trend'] * 100)} {trend_label(f['trend'])}",
            f"{f['atr_pct'] * 100:.1f} {atr_label(f['atr_pct'])}",
            _number(f["momentum_20d"] * 100),
            f"{f['volume_ratio']:.1f} {volume_label(f['volume_ratio'])}",
            position,
        )
    )


def display_names(panel: Panel, symbols: np.ndarray, anonymize: bool) -> list[tuple[str, ...]]:
    """Names each episode (a row of ``symbols``) trades with: real symbols, or STOCK_A.. in its order."""
    if anonymize:
        return [ANONYMOUS_NAMES[: symbols.shape[1]]] * len(symbols)
    return list(map(tuple, real_names(panel, symbols)))


def real_names(panel: Panel, symbols: np.ndarray) -> list[list[str]]:
    """The real symbol names of each row of panel indices (one vectorised lookup, for batch resets)."""
    return panel.symbol_array[symbols].tolist()


def _headline(snapshot: Snapshot, i: int, anonymize: bool) -> str:
    """Day t of N while decisions remain; the final observation (last marking close) says it ended."""
    t, n_days = int(snapshot.t[i]), snapshot.n_days
    date = "" if anonymize else f", {snapshot.panel.iso_date(int(snapshot.day[i]))}"
    day = f"Day {t + 1} of {n_days}" if t < n_days else f"Episode over: {n_days} of {n_days} days done"
    nav, cash = float(snapshot.nav[i]), float(snapshot.cash[i])
    return (
        f"{day}{date}. Cash {format_rupees(cash)}; portfolio value {format_rupees(nav)} "
        f"({_pct(nav / snapshot.start_cash - 1.0, 2)} since start)."
    )


def render_text(
    snapshot: Snapshot, env_index: int, names: tuple[str, ...], anonymize: bool, label_5d: bool = False
) -> str:
    """The text observation of one episode. Anonymised: STOCK_A.. names, no date, prices = 100 at start,
    positions in units (``market_env.anonymize``). ``label_5d``: the env version's ``label_5d``."""
    i = env_index
    panel = snapshot.panel
    # one header in both modes (readers find the table by it); anonymised "shares" are units of the
    # rescaled stock, which is what trades at the shown price
    lines = [_headline(snapshot, i, anonymize), TABLE_HEADER]
    start_close = panel.close[int(snapshot.start_day[i]), snapshot.symbols[i]]
    features = snapshot.features[i]
    for k, name in enumerate(names):
        f = dict(zip(panel.feature_names, features[k].tolist()))
        scale = 100.0 / float(start_close[k]) if anonymize else 1.0
        lines.append(
            _stock_row(
                name,
                float(snapshot.close[i, k]),
                f,
                float(snapshot.shares[i, k]),
                float(snapshot.avg_cost[i, k]),
                scale,
                label_5d,
            )
        )
    lines.append(action_grammar(names[0]))
    return "\n".join(lines)
