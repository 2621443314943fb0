"""``BatchMarketEnv``: many independent episodes stepped at once (PPO, evaluation, GRPO forks).

It runs the same simulator as ``MarketEnv`` (one simulator with B = n_envs), so episode i of a batch
seeded with ``seed`` is exactly the episode ``MarketEnv.reset(seed=seed + i)`` plays.

Gymnasium ``VectorEnv`` with same-step autoreset: when an episode ends, the returned observation already
starts that slot's next episode (drawn from the slot's own seeded generator) and ``infos["grade"][i]``
carries the finished episode's grade (``infos["_grade"]`` marks which slots finished); the grade holds the
finished episode's identity (``symbols``, and in the clear ``start_date``, ``end_date``, ``real_symbols``).
Episodes never truncate, so no final observation is needed to bootstrap and none is returned.

``infos`` holds arrays over the batch: ``nav``, ``cash``, ``costs``, ``n_trades``, ``invalid_action`` (these
describe the step just taken, so for a finished slot its episode's last step), and in text mode
``invalid_reason`` (a list of strings); plus ``env_version``, ``task_version`` and ``symbols``: the names
each slot trades with in the episode its returned observation shows (after an autoreset, the new one).

Seeding: ``reset(seed=s)`` seeds slot i with ``s + i``; the construction seed serves the first reset; a
``reset()`` without a seed after that continues every slot's generator (as the single env's does), so a
batch is reproducible from its construction seed alone.

Anonymised (``anonymize=True``): as ``MarketEnv``; the real identities are
``episode_identities()`` and, for the slots the last step finished, ``finished_identities()`` (not for
agents).
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
from market_env.actions import (
    numeric_action_array,
    numeric_to_fractions,
    orders_to_fractions,
    parse_action,
    text_action_list,
)
from market_env.env import check_options, check_seed
from market_env.episodes import Episode
from market_env.market import Market, PriceData
from market_env.observations import render_vectors
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
        if not isinstance(n_envs, (int, np.integer)) or isinstance(n_envs, bool) or n_envs < 1:
            raise ValueError(f"n_envs must be an int >= 1, got {n_envs!r}")
        check_seed(seed)
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
        # the slots the last step finished and what identified their episodes (built into dicts on demand:
        # building them at every autoreset would cost ~10% of a large batch's time)
        self._finished: tuple[np.ndarray, tuple] | None = None
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
        """Seed slot i with ``seed + i`` (or ``seed[i]``); ``options={"episodes": [...]}`` plays those.

        Without a seed: the construction seed on the first reset, else every slot's generator continues.
        """
        if self._first_seed is not None:  # it serves the first reset only (see the module docstring)
            seed = self._first_seed if seed is None else seed
            self._first_seed = None
        episodes = self._episodes_option(options)
        if seed is not None or not self._rngs:
            self._rngs = [seeding.np_random(s)[0] for s in self._slot_seeds(seed)]
            self._rng_list = None
        episodes = episodes or [self.market.sampler.sample(rng) for rng in self._rngs]
        self.market.sim.reset_envs(np.arange(self.num_envs), episodes)
        self._finished = None
        self._name_slots(np.arange(self.num_envs))
        infos = self._common_info() | {
            "episodes": self.market.episode_infos(np.arange(self.num_envs)),
        }
        return self._observe(), infos

    def _slot_seeds(self, seed: Any) -> list[int | None]:
        if seed is None or isinstance(seed, (int, np.integer)):
            check_seed(seed)
            return [None if seed is None else int(seed) + i for i in range(self.num_envs)]
        if isinstance(seed, (str, bytes)) or not hasattr(seed, "__len__") or len(seed) != self.num_envs:
            raise ValueError(
                f"seed must be None, an int or {self.num_envs} seeds (one per env), got {seed!r}"
            )
        for i, one in enumerate(seed):
            check_seed(one, f"seed[{i}]")
        return [None if one is None else int(one) for one in seed]

    def _episodes_option(self, options: Any) -> list[Episode] | None:
        check_options(options)
        episodes = (options or {}).get("episodes")
        if episodes is None:
            return None
        if (
            isinstance(episodes, (str, bytes))
            or not hasattr(episodes, "__len__")
            or len(episodes) != self.num_envs
            or not all(isinstance(e, Episode) for e in episodes)
        ):
            raise ValueError(f"options['episodes'] must be {self.num_envs} Episode objects (one per env)")
        return list(episodes)

    def episode_identities(self) -> list[dict[str, Any]]:
        """Where each slot's current episode lies in the real data (``MarketEnv.episode_identity``).

        For evaluation's pairing and bookkeeping; NOT for agents: it undoes anonymisation.
        """
        return self.market.identities(self.market.where(np.arange(self.num_envs)))

    def finished_identities(self) -> list[dict[str, Any] | None]:
        """The identities of the episodes the last ``step`` finished (None for slots that go on)."""
        if self._finished is None:
            return [None] * self.num_envs
        slots, where = self._finished
        identities: list[dict[str, Any] | None] = [None] * self.num_envs
        for i, identity in zip(slots.tolist(), self.market.identities(where)):
            identities[i] = identity
        return identities

    def _name_slots(self, env_ids: np.ndarray) -> None:
        for i, names in zip(env_ids.tolist(), self.market.names_for(env_ids)):
            self._names[i] = names

    def step(self, actions: Any) -> tuple[Any, np.ndarray, np.ndarray, np.ndarray, dict]:
        sell, buy, invalid, reasons = self._fractions(actions)
        sim = self.market.sim
        report, vectors = self.market.step(sell, buy)
        infos = self.market.base_info() | {
            "nav": sim.nav[sim.rows, sim.t],
            "cash": sim.cash.copy(),
            "costs": report.costs.copy(),
            "n_trades": report.n_trades.copy(),
            "invalid_action": invalid,
        }
        if reasons is not None:
            infos["invalid_reason"] = reasons
        reward, done = report.reward.copy(), report.done.copy()  # the report is reused by the next step
        self._finished = None
        if done.any():
            self._finish(done, infos)
            vectors = None  # the finished slots have started new episodes: observe those
        infos["symbols"] = list(self._names)  # after any autoreset: the episodes the observations show
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
        self._finished = (finished, self.market.where(finished))
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
            values = numeric_action_array(actions, (n_envs, n_stocks), "actions")
            sell, buy, nonfinite = numeric_to_fractions(values, out=self._fractions_out)
            # the whole-array test first: it is the common case and 10x cheaper than the per-row one
            invalid = nonfinite.any(axis=1) if nonfinite.any() else np.zeros(n_envs, dtype=bool)
            return sell, buy, invalid, None
        texts = text_action_list(actions, n_envs)
        sell, buy = np.zeros((n_envs, n_stocks)), np.zeros((n_envs, n_stocks))
        invalid, reasons = np.zeros(n_envs, dtype=bool), [""] * n_envs
        for i, text in enumerate(texts):
            parsed = parse_action(text, self._names[i])
            sell[i], buy[i] = orders_to_fractions(parsed, self._names[i])
            invalid[i], reasons[i] = parsed.invalid, parsed.reason
        return sell, buy, invalid, reasons

    def _common_info(self) -> dict[str, Any]:
        return self.market.base_info() | {"symbols": list(self._names)}

    def _observe(self) -> Any:
        snapshot = self.market.snapshot()
        if self.market.obs_mode == "numeric":
            return render_vectors(snapshot)
        return [self.market.text(snapshot, i, self._names[i]) for i in range(self.num_envs)]

    # ---------------------------------------------------------------------------------- GRPO forks
    def export_state(self, env_id: int) -> EpisodeState:
        return self.market.sim.export_state(env_id)

    def load_states(self, env_ids: Sequence[int], states: Sequence[EpisodeState]) -> Any:
        """Continue exported states in the given slots; returns the new observations of all slots.

        Every slot and state is checked before any is loaded (a ValueError names the bad one).
        """
        ids, states = list(env_ids), list(states)
        if len(ids) != len(states):
            raise ValueError(f"env_ids and states differ in length: {len(ids)} != {len(states)}")
        for i in ids:
            if not isinstance(i, (int, np.integer)) or isinstance(i, bool) or not 0 <= i < self.num_envs:
                raise ValueError(f"env_ids must be slot indices in 0..{self.num_envs - 1}, got {i!r}")
        for state in states:
            self.market.sim.check_state(state)
        for i, state in zip(ids, states):
            self.market.sim.load_state(int(i), state)
            self._names[int(i)] = self.market.names_for([int(i)])[0]
        return self._observe()
