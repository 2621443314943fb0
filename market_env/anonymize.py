"""The agent's view of an anonymised episode (``anonymize=True``): nothing in it names the real market.

What an anonymised agent sees, and why each piece has the form it has:

- **Names.** Stocks are STOCK_A, STOCK_B, .. and are listed in that order in the text table, the numeric
  vector and the numeric action. Which real stock is behind which letter is a seeded pseudo-random
  permutation of the episode's stocks (``agent_order``), so neither the letters nor the row order follow the
  real symbols' alphabetical order. The permutation is a hash of the episode itself (start day and panel
  symbol indices), not of the env's seed: the same episode gets the same letters in the single env, in
  every slot of a batch and in a fork (``set_state``/``load_states``), which GRPO's forked prompts rely on.
- **Dates.** "day k", the k-th close of the episode: day 1 is the first decision, day N + 1 the final
  marking close (``day_label``).
- **Prices.** Each stock's prices are rescaled so its close at the episode start is 100 (``price_scale``).
- **Share counts.** Shown as *units* = shares / scale = shares x (start close / 100), so that cash (in real
  rupees, the same start capital in every episode) spent on a position divided by its units gives the
  rescaled price, never the real one; units x rescaled price is the position's real rupee value, so
  ``nav == cash + sum(units x price)`` still holds. Fractions in actions are unaffected.

The simulator itself never changes: it runs the episode in panel order with real prices, so an anonymised
episode has exactly the NAV path and score of the same episode in the clear. Only the boundary permutes and
rescales (``Market`` in ``market_env.market``). The real identity, which evaluation needs to pair episodes,
is kept out of every ``info`` and is read from ``MarketEnv.episode_identity`` /
``BatchMarketEnv.episode_identities()`` (not for agents).
"""

from __future__ import annotations

import numpy as np

_SALT = np.uint64(0x9E3779B97F4A7C15)  # any odd constant: it only decorrelates the hash from raw indices
_DAY_STRIDE = np.uint64(1 << 20)  # more symbols than any panel can hold, so (day, symbol) keys never collide


def _splitmix64(x: np.ndarray) -> np.ndarray:
    """SplitMix64's finaliser: a bijective mix of uint64 keys (wrapping arithmetic is intended)."""
    with np.errstate(over="ignore"):
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def agent_order(start_day: np.ndarray, symbols: np.ndarray) -> np.ndarray:
    """(n, K) int64: ``order[i, j]`` is the simulator slot shown to the agent as its j-th stock (STOCK_<j>).

    Each stock gets a key hashed from (start day, panel index); sorting the keys gives a permutation that
    is uniform over episodes and independent of where the stock sits alphabetically.
    """
    day = np.asarray(start_day, dtype=np.uint64)[:, None]
    keys = _splitmix64(day * _DAY_STRIDE + np.asarray(symbols, dtype=np.uint64) + _SALT)
    return np.argsort(keys, axis=1, kind="stable").astype(np.int64)


def to_agent(values: np.ndarray, order: np.ndarray) -> np.ndarray:
    """Per-slot values (n, K) reordered into the agent's stock order."""
    return np.take_along_axis(values, order, axis=1)


def to_slots(values: np.ndarray, order: np.ndarray) -> np.ndarray:
    """Values (n, K) in the agent's stock order put back into simulator slots (inverse of ``to_agent``)."""
    out = np.empty_like(values)
    np.put_along_axis(out, order, values, axis=1)
    return out


def day_label(t: int) -> str:
    """The anonymous date of the close seen after ``t`` decisions: "day 1" .. "day N + 1"."""
    return f"day {t + 1}"


def price_scale(start_close: np.ndarray) -> np.ndarray:
    """Factor that turns real prices into the anonymous ones (close at the episode start = 100)."""
    return 100.0 / np.asarray(start_close, dtype=np.float64)
