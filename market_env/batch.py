"""``BatchMarketEnv``: many independent episodes stepped at once (PPO, evaluation, GRPO forks).

It runs the same simulator as ``MarketEnv`` (one simulator with B = n_envs), so episode i of a batch
seeded with ``seed`` is exactly the episode ``MarketEnv.reset(seed=seed + i)`` plays.

Gymnasium ``VectorEnv`` with same-step autoreset: when an episode ends, the returned observation already
starts that slot's next episode (drawn from the slot's own seeded generator) and ``infos["grade"][i]``
carries the finished episode's grade (``infos["_grade"]`` marks which slots finished). Episodes never
truncate, so no final observation is needed to bootstrap and none is returned.

``infos`` holds arrays over the batch: ``nav``, ``cash``, ``costs``, ``n_trades``, ``invalid_action``, and in
text mode ``invalid_reason`` (a list of strings); plus ``env_version``, ``task_version`` and ``symbols``
(the names each slot trades with, a list of tuples).
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
from gymnasium.utils import seeding
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space
from numba.typed import List

from market_env import kernels
from market_env.actions import numeric_to_fractions, orders_to_fractions, parse_action
from market_env.market import Market, PriceData
from market_env.observations import render_text, render_vectors
from market_env.simulator import EpisodeState


@contextlib.contextmanager
def _collector_paused() -> Iterator[None]:
    """Pause Python's cyclic garbage collector while a batch ends its episodes.

    Ending 1,024 episodes builds ~9,000 dicts and lists (grades, infos, names) that all stay alive; with
    the collector on, that triggers a dozen collections of everything recently allocated, ~10% of the
    batch's time (measured). Nothing here makes reference cycles, so nothing is left uncollected.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


class BatchMarketEnv(VectorEnv):
    metadata = {"autoreset_mode": AutoresetMode.SAME_STEP}

    def __init__(
        self,
        task: str,
        n_envs: int,
        split: str = "train",
        obs_mode: str = "numeric",
        version: str | None = None,
        data: PriceData = None,
        anonymize: bool = False,
        seed: int | None = None,
    ) -> None:
        if n_envs < 1:
            raise ValueError(f"n_envs must be >= 1, got {n_envs}")
        self.market = Market(task, split, obs_mode, version, data, anonymize, n_envs)
        self.num_envs = n_envs
        self.single_observation_space = self.market.observation_space
        self.single_action_space = self.market.action_space
        self.observation_space = batch_space(self.single_observation_space, n_envs)
        self.action_space = batch_space(self.single_action_space, n_envs)
        self._first_seed = seed
        self._rngs: list[np.random.Generator] = []
        # the same generators as a numba typed list, built when a large batch first ends episodes
        self._rng_list: List | None = None
        self._names: list[tuple[str, ...]] = [()] * n_envs
        self._fractions_out = (
            np.zeros((n_envs, self.market.task.n_stocks)),
            np.zeros((n_envs, self.market.task.n_stocks)),
        )

    @property
    def names(self) -> list[tuple[str, ...]]:
        """Symbols each slot trades with this episode."""
        return self._names

    def reset(
        self, *, seed: int | Sequence[int | None] | None = None, options: dict[str, Any] | None = None
    ) -> tuple[Any, dict]:
        """Seed slot i with ``seed + i`` (or ``seed[i]``); ``options={"episodes": [...]}`` plays those."""
        if seed is None and self._first_seed is not None:
            seed, self._first_seed = self._first_seed, None
        if seed is None or isinstance(seed, int):
            seeds = [None if seed is None else seed + i for i in range(self.num_envs)]
        else:
            seeds = list(seed)
        self._rngs = [seeding.np_random(s)[0] for s in seeds]
        self._rng_list = None
        episodes = (options or {}).get("episodes") or [self.market.sampler.sample(rng) for rng in self._rngs]
        self.market.sim.reset_envs(np.arange(self.num_envs), list(episodes))
        self._name_slots(np.arange(self.num_envs))
        infos = self._common_info() | {
            "episodes": self.market.episode_infos(np.arange(self.num_envs)),
        }
        return self._observe(), infos

    def _name_slots(self, env_ids: np.ndarray) -> None:
        for i, names in zip(env_ids.tolist(), self.market.names_for(env_ids)):
            self._names[i] = names

    def step(self, actions: Any) -> tuple[Any, np.ndarray, np.ndarray, np.ndarray, dict]:
        sell, buy, invalid, reasons = self._fractions(actions)
        sim = self.market.sim
        report, vectors = self.market.step(sell, buy)
        infos = self._common_info() | {
            "nav": sim.nav[sim.rows, sim.t],
            "cash": sim.cash.copy(),
            "costs": report.costs.copy(),
            "n_trades": report.n_trades.copy(),
            "invalid_action": invalid,
        }
        if reasons is not None:
            infos["invalid_reason"] = reasons
        reward, done = report.reward.copy(), report.done.copy()  # the report is reused by the next step
        if done.any():
            self._finish(done, infos)
            vectors = None  # the finished slots have started new episodes: observe those
        observations = vectors if vectors is not None else self._observe()
        return observations, reward, done, np.zeros(self.num_envs, dtype=bool), infos

    def _finish(self, done: np.ndarray, infos: dict) -> None:
        with _collector_paused():
            self._finish_episodes(done, infos)

    def _finish_episodes(self, done: np.ndarray, infos: dict) -> None:
        finished = np.flatnonzero(done)
        grades: list[dict | None] = [None] * self.num_envs
        for i, grade in zip(finished, self.market.grades(finished)):
            grades[i] = grade
        infos["grade"], infos["_grade"] = grades, done.copy()
        sampler = self.market.sampler
        if self.num_envs >= kernels.PARALLEL_MIN_ENVS:
            # one compiled call draws every new episode; its typed list of generators is built once per
            # reset and its code compiles once per process (~0.2 s), which only large batches win back
            if self._rng_list is None:
                self._rng_list = List(self._rngs)
            start_days, symbols = sampler.sample_many(self._rng_list, finished)
        else:
            episodes = [sampler.sample(self._rngs[i]) for i in finished]
            start_days, symbols = [e.start_day for e in episodes], [e.symbols for e in episodes]
        self.market.sim.start_episodes(finished, start_days, symbols)
        self._name_slots(finished)

    def _fractions(self, actions: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str] | None]:
        n_envs, n_stocks = self.num_envs, self.market.task.n_stocks
        if self.market.obs_mode == "numeric":
            values = np.asarray(actions, dtype=np.float64)
            if values.shape != (n_envs, n_stocks):
                raise ValueError(f"actions must have shape ({n_envs}, {n_stocks}), got {values.shape}")
            sell, buy, nonfinite = numeric_to_fractions(values, out=self._fractions_out)
            # the whole-array test first: it is the common case and 10x cheaper than the per-row one
            invalid = nonfinite.any(axis=1) if nonfinite.any() else np.zeros(n_envs, dtype=bool)
            return sell, buy, invalid, None
        if len(actions) != n_envs:
            raise ValueError(f"expected {n_envs} text actions, got {len(actions)}")
        sell, buy = np.zeros((n_envs, n_stocks)), np.zeros((n_envs, n_stocks))
        invalid, reasons = np.zeros(n_envs, dtype=bool), [""] * n_envs
        for i, text in enumerate(actions):
            parsed = parse_action(text if isinstance(text, str) else "", self._names[i])
            sell[i], buy[i] = orders_to_fractions(parsed, self._names[i])
            invalid[i], reasons[i] = parsed.invalid, parsed.reason
        return sell, buy, invalid, reasons

    def _common_info(self) -> dict[str, Any]:
        return self.market.base_info() | {"symbols": list(self._names)}

    def _observe(self) -> Any:
        snapshot = self.market.snapshot()
        if self.market.obs_mode == "numeric":
            return render_vectors(snapshot)
        return [render_text(snapshot, i, self._names[i], self.market.anonymize) for i in range(self.num_envs)]

    # ---------------------------------------------------------------------------------- GRPO forks
    def export_state(self, env_id: int) -> EpisodeState:
        return self.market.sim.export_state(env_id)

    def load_states(self, env_ids: Sequence[int], states: Sequence[EpisodeState]) -> Any:
        """Continue exported states in the given slots; returns the new observations of all slots."""
        for i, state in zip(env_ids, states):
            self.market.sim.load_state(int(i), state)
            self._names[int(i)] = self.market.names_for([int(i)])[0]
        return self._observe()
