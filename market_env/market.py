"""What the single and the batch env share: versions, data, episode sampler, simulator, spaces and info.

Keeping it here means both envs build identical episodes, observations and info dicts from one simulator.
"""

from __future__ import annotations

import functools
from itertools import compress
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from gymnasium import spaces

from data.panel import Panel, load_panel
from data.splits import Split, get_split
from market_env import anonymize as anon
from market_env.episodes import Episode, EpisodeSampler
from market_env.errors import EpisodeError, UnknownNameError
from market_env.grader import get_grader, grade_episodes
from market_env.observations import (
    ANONYMOUS_NAMES,
    CLIP,
    TEXT_CHARSET,
    Snapshot,
    display_names,
    market_vector_table,
    real_names,
    render_text,
    vector_size,
)
from market_env.simulator import MarketSimulator, StepReport
from market_env.tasks import TaskSpec
from market_env.versions import get_version

PriceData = str | Path | pd.DataFrame | Panel | None
OBS_MODES = ("text", "numeric")
MAX_OBS_CHARS = 65_536
MAX_ACTION_CHARS = 8_192


@functools.lru_cache(maxsize=32)
def episode_sampler(panel: Panel, task: TaskSpec, split: Split, lookback: int) -> EpisodeSampler:
    return EpisodeSampler(panel, task, split, lookback)


@functools.lru_cache(maxsize=4)
def cached_market_table(panel: Panel) -> np.ndarray:
    return market_vector_table(panel)


def trades_of(
    report: StepReport, i: int, names: tuple[str, ...], scale: np.ndarray | None = None
) -> list[dict]:
    """Executed trades of env ``i`` this step, sells first (the order they filled in).

    ``names`` are in simulator slot order. With ``scale`` (anonymised), prices are the rescaled ones and
    ``shares`` the matching units (``market_env.anonymize``); ``value`` and ``costs`` are rupees either way.
    """
    if not report.n_trades[i]:
        return []
    trades = []
    for side, shares, price, fees in (
        ("SELL", report.sold[i], report.sell_price[i], report.sell_costs[i]),
        ("BUY", report.bought[i], report.buy_price[i], report.buy_costs[i]),
    ):
        filled = shares.tolist()
        trades += [
            {"side": side, "symbol": names[k], "shares": int(filled[k]), "price": p, "value": filled[k] * p,
             "costs": c}
            for k, p, c in compress(zip(range(len(names)), price.tolist(), fees.tolist()), filled)
        ]  # fmt: skip
    if scale is not None:
        index = {name: k for k, name in enumerate(names)}
        for trade in trades:
            factor = float(scale[index[trade["symbol"]]])
            trade["shares"], trade["price"] = trade["shares"] / factor, trade["price"] * factor
    return trades


def _named(flags: np.ndarray, names: tuple[str, ...]) -> list[str]:
    return list(compress(names, flags.tolist()))


class Market:
    def __init__(
        self,
        task: str,
        split: str,
        obs_mode: str,
        version: str | None,
        data: PriceData,
        anonymize: bool,
        n_envs: int,
    ) -> None:
        if obs_mode not in OBS_MODES:
            raise UnknownNameError("observation mode", obs_mode, list(OBS_MODES))
        self.version = get_version(version)
        self.task = self.version.task(task)
        self.split = get_split(split)
        self.obs_mode, self.anonymize = obs_mode, anonymize
        self.panel = data if isinstance(data, Panel) else load_panel(data)
        rules = self.version.rules
        self.sampler = episode_sampler(self.panel, self.task, self.split, rules.lookback_days)
        self.sim = MarketSimulator(self.panel, self.task, rules, get_grader(self.version.grader), n_envs)
        self.table = cached_market_table(self.panel)
        self.observation_space, self.action_space = self._spaces()
        # The agent's view (market_env.anonymize): order[i, j] is the slot shown as the agent's j-th stock,
        # scale[i, k] turns slot k's real prices into shown ones. The identity and 1 in the clear.
        n_stocks = self.task.n_stocks
        self.order = np.tile(np.arange(n_stocks, dtype=np.int64), (n_envs, 1))
        self.scale = np.ones((n_envs, n_stocks))

    def _spaces(self) -> tuple[spaces.Space, spaces.Space]:
        n_stocks = self.task.n_stocks
        if self.obs_mode == "numeric":
            observation = spaces.Box(-CLIP, CLIP, (vector_size(n_stocks),), dtype=np.float32)
            return observation, spaces.Box(-1.0, 1.0, (n_stocks,), dtype=np.float32)
        observation = spaces.Text(MAX_OBS_CHARS, charset=TEXT_CHARSET)
        return observation, spaces.Text(MAX_ACTION_CHARS, min_length=0, charset=TEXT_CHARSET)

    # ------------------------------------------------------------------------------------- episodes
    def names_for(self, env_ids: np.ndarray) -> list[tuple[str, ...]]:
        """Names each of the episodes ``env_ids`` trades with, in the agent's stock order.

        Both envs call this after every episode start (reset, autoreset, fork), so it also sets up the
        anonymised view of those episodes.
        """
        if self.anonymize:
            ids, sim = np.asarray(env_ids, dtype=np.int64), self.sim
            self.order[ids] = anon.agent_order(sim.start_day[ids], sim.symbols[ids])
            self.scale[ids] = anon.price_scale(
                self.panel.close[sim.start_day[ids][:, None], sim.symbols[ids]]
            )
        return self._shown_names(env_ids)

    def _shown_names(self, env_ids: np.ndarray) -> list[tuple[str, ...]]:
        return display_names(self.panel, self.sim.symbols[env_ids], self.anonymize)

    def slot_names(self, i: int, names: tuple[str, ...]) -> tuple[str, ...]:
        """Episode ``i``'s names (given in the agent's order) in simulator slot order."""
        if not self.anonymize:
            return names
        slots = [""] * len(names)
        for name, slot in zip(names, self.order[i].tolist()):
            slots[slot] = name
        return tuple(slots)

    def where(self, env_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Copies of what identifies episodes ``env_ids``: start days, slot symbols, agent order."""
        ids = np.asarray(env_ids, dtype=np.int64)
        return self.sim.start_day[ids].copy(), self.sim.symbols[ids].copy(), self.order[ids].copy()

    def identities(self, where: tuple[np.ndarray, np.ndarray, np.ndarray]) -> list[dict[str, Any]]:
        """Where episodes lie in the real data (from ``where``): for pairing and bookkeeping, not agents.

        ``start_date``, ``end_date``, ``real_symbols`` (slot order), ``names`` (shown name -> real symbol).
        """
        iso, n_days = self.panel.iso_date, self.task.n_days
        start_days, symbols, order = where
        real = real_names(self.panel, symbols)
        shown = display_names(self.panel, symbols, self.anonymize)
        identities = []
        for start, slots, names, agent in zip(start_days.tolist(), real, shown, order.tolist()):
            by_name = dict(zip(names, (slots[k] for k in agent)))
            identities.append(
                {
                    "start_date": iso(start),
                    "end_date": iso(start + n_days),
                    "real_symbols": slots,
                    "names": by_name,
                }
            )
        return identities

    def episode_from_options(self, options: dict[str, Any] | None) -> Episode | None:
        """An explicit episode from reset options: ``{"episode": Episode}`` or start_date + symbols."""
        if not options:
            return None
        if isinstance(options.get("episode"), Episode):
            return options["episode"]
        if "start_date" in options and "symbols" in options:
            return self.sampler.explicit(str(options["start_date"]), list(options["symbols"]))
        raise EpisodeError(
            f"reset options {sorted(options)} name no episode; pass {{'start_date': ..., 'symbols': [...]}}"
        )

    def snapshot(self, env_ids: np.ndarray | slice | None = None) -> Snapshot:
        """The state of episodes ``env_ids`` (all when None) that observations are rendered from."""
        sim = self.sim
        nav = sim.nav[sim.rows, sim.t]
        if self.anonymize:
            return self._agent_snapshot(slice(None) if env_ids is None else env_ids, nav)
        if env_ids is None:  # the per-step case: no indexing, arrays as they are
            return Snapshot(
                panel=self.panel, market_table=self.table, day=sim.day, t=sim.t, n_days=sim.n_days,
                start_day=sim.start_day, symbols=sim.symbols, cash=sim.cash, nav=nav, nav_series=sim.nav,
                start_cash=sim.start_cash, shares=sim.shares, avg_cost=sim.avg_cost, close=sim.close_now,
            )  # fmt: skip
        return Snapshot(
            panel=self.panel, market_table=self.table, day=sim.day[env_ids], t=sim.t[env_ids],
            n_days=sim.n_days, start_day=sim.start_day[env_ids], symbols=sim.symbols[env_ids],
            cash=sim.cash[env_ids], nav=nav[env_ids], nav_series=sim.nav[env_ids], start_cash=sim.start_cash,
            shares=sim.shares[env_ids], avg_cost=sim.avg_cost[env_ids], close=sim.close_now[env_ids],
        )  # fmt: skip

    def text(self, snapshot: Snapshot, env_index: int, names: tuple[str, ...]) -> str:
        """The text observation of one episode of ``snapshot``, as this market's version renders it."""
        return render_text(snapshot, env_index, names, self.anonymize, self.version.label_5d)

    def _agent_snapshot(self, env_ids: np.ndarray | slice, nav: np.ndarray) -> Snapshot:
        """The anonymised episodes as their agents see them: per-stock arrays in the agent's order."""
        sim, order = self.sim, self.order[env_ids]

        def shown(values: np.ndarray) -> np.ndarray:
            return anon.to_agent(values[env_ids], order)

        return Snapshot(
            panel=self.panel, market_table=self.table, day=sim.day[env_ids], t=sim.t[env_ids],
            n_days=sim.n_days, start_day=sim.start_day[env_ids], symbols=shown(sim.symbols),
            cash=sim.cash[env_ids], nav=nav[env_ids], nav_series=sim.nav[env_ids], start_cash=sim.start_cash,
            shares=shown(sim.shares), avg_cost=shown(sim.avg_cost), close=shown(sim.close_now),
        )  # fmt: skip

    def step(self, sell_frac: np.ndarray, buy_frac: np.ndarray) -> tuple[StepReport, np.ndarray | None]:
        """Step every episode; in numeric mode the next observations come from the same compiled pass.

        Fractions are in the agent's stock order; anonymised, they are put back into slot order and the
        observations are rendered from the agent's snapshot instead (returned as None).
        """
        if self.anonymize:
            sell_frac, buy_frac = anon.to_slots(sell_frac, self.order), anon.to_slots(buy_frac, self.order)
            return self.sim.step(sell_frac, buy_frac), None
        if self.obs_mode != "numeric":
            return self.sim.step(sell_frac, buy_frac), None
        vectors = np.empty((self.sim.n_envs, vector_size(self.task.n_stocks)), dtype=np.float32)
        return self.sim.step(sell_frac, buy_frac, observe=(vectors, self.table, CLIP)), vectors

    # ----------------------------------------------------------------------------------------- info
    def base_info(self) -> dict[str, Any]:
        return {
            "env_version": self.version.version,
            "task_version": self.task.version,
            "task": self.task.name,
            "split": self.split.name,
        }

    def episode_infos(self, env_ids: np.ndarray) -> list[dict[str, Any]]:
        """Where each episode lies: real dates and symbols in the clear; "day 1", "day N + 1" anonymised."""
        if self.anonymize:
            span = {"start_date": anon.day_label(0), "end_date": anon.day_label(self.task.n_days)}
            return [dict(span) for _ in range(len(env_ids))]
        iso, n_days = self.panel.iso_date, self.task.n_days
        starts = self.sim.start_day[env_ids].tolist()
        real = real_names(self.panel, self.sim.symbols[env_ids])
        return [
            {"start_date": iso(start), "end_date": iso(start + n_days), "real_symbols": symbols}
            for start, symbols in zip(starts, real)
        ]

    def date_of(self, i: int) -> str:
        """The date of the close episode ``i``'s next decision sees (its final marking close at the end)."""
        sim = self.sim
        return anon.day_label(int(sim.t[i])) if self.anonymize else self.panel.iso_date(int(sim.day[i]))

    def reset_info(self, i: int) -> dict[str, Any]:
        return (
            self.base_info()
            | self.episode_infos([i])[0]
            | {
                "date": self.date_of(i),
                "symbols": list(self.names_for([i])[0]),
                "nav": float(self.sim.start_cash),
                "cash": float(self.sim.cash[i]),
            }
        )

    def step_info(self, i: int, report: StepReport, names: tuple[str, ...]) -> dict[str, Any]:
        """Episode ``i``'s step info; ``names`` in the agent's order. Anonymised: units and shown prices."""
        sim = self.sim
        slots = self.slot_names(i, names)
        shares, prices = sim.shares[i].astype(np.int64), sim.close_now[i]
        if self.anonymize:
            shares, prices = shares / self.scale[i], prices * self.scale[i]
        return self.base_info() | {
            "date": self.date_of(i),
            "nav": float(sim.nav[i, sim.t[i]]),
            "cash": float(sim.cash[i]),
            "positions": dict(zip(slots, shares.tolist())),
            "prices": dict(zip(slots, prices.tolist())),
            "costs": float(report.costs[i]),
            "capped": _named(report.capped[i], slots),
            "rejected": _named(report.rejected[i], slots),
            "unfilled": _named(report.unfilled[i], slots),
        }

    def trades(self, report: StepReport, i: int, names: tuple[str, ...]) -> list[dict]:
        """Episode ``i``'s executed trades this step (``names`` in the agent's order)."""
        scale = self.scale[i] if self.anonymize else None
        return trades_of(report, i, self.slot_names(i, names), scale)

    def grades(self, env_ids: np.ndarray) -> list[dict[str, Any]]:
        """Final grades of finished episodes, with where each lay in the data."""
        sim = self.sim
        grades = grade_episodes(
            sim.nav[env_ids],
            sim.trade_days[env_ids],
            sim.costs_paid[env_ids],
            sim.bench_nav[env_ids] / sim.start_cash - 1.0,
            self.version.grader,
        )
        base = self.base_info()
        spans = self.episode_infos(env_ids)
        if self.anonymize:
            shown = list(ANONYMOUS_NAMES[: self.task.n_stocks])
            return [{**grade, **base, **span, "symbols": list(shown)} for grade, span in zip(grades, spans)]
        return [
            {**grade, **base, **span, "symbols": list(span["real_symbols"])}
            for grade, span in zip(grades, spans)
        ]
