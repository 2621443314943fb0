"""``MarketEnv``: one NIFTY trading episode as a ``gymnasium.Env``.

Description
    Each step the agent sees the market up to the close of day t and its portfolio, and answers with
    orders. Orders fill at the open of day t+1 with slippage and Indian delivery-equity fees; the book is
    marked at the close of day t+1. Long only, whole shares, no leverage, start cash Rs 10,00,000.

Tasks (``task``): easy = 1 stock / 20 days, medium = 10 / 30, hard = 25 / 40 (``market_env.tasks``).

Action space
    text mode: a string in the grammar of ``market_env.actions`` (``BUY RELIANCE 0.5``, ``SELL TCS 1``,
    ``HOLD``, one per line, optional ``<think>..</think>`` first). Unparseable text is a HOLD with
    ``info["invalid_action"] = True`` and a reason, never an exception.
    numeric mode: ``Box(-1, 1, (K,))``; a_k > 0.1 buys (a_k - 0.1)/0.9 of cash, a_k < -0.1 sells
    (-a_k - 0.1)/0.9 of the shares; non-finite values hold that stock and are flagged.

Observation space
    text mode: ``Text`` (see ``market_env.observations.render_text``); numeric mode: float32 ``Box`` of
    ``K * 13 + 3`` values (the table in ``market_env.observations``). ``anonymize=True`` renames stocks
    STOCK_A.., hides dates and rescales prices to 100 at the episode start.

Reward
    The change in the episode's score-to-date (the grader applied to the episode so far); the last step's
    reward makes the sum equal final score - score of an empty episode. ``info["grade"]`` on the last step
    holds the final score, its components and raw metrics.

Episode end: ``terminated`` after N decisions; never truncated.

Arguments: ``task``, ``split`` (train | val | test), ``obs_mode`` (text | numeric), ``version`` (env
version, default the newest), ``data`` (path, DataFrame or Panel; default the embedded set), ``anonymize``,
``seed`` (used by the first ``reset`` without a seed).
``reset(options={"start_date": "2024-03-01", "symbols": ["TCS"]})`` plays a chosen episode.

Version history: see ``market_env.versions``.

>>> import market_env
>>> env = market_env.make("easy", split="val", obs_mode="numeric", seed=0)
>>> obs, info = env.reset()
>>> obs.shape, info["env_version"], info["task_version"]
((16,), '2.0.0', '1.0.0')
>>> obs, reward, terminated, truncated, info = env.step(env.action_space.sample() * 0)
>>> info["invalid_action"], info["nav"] == info["cash"] == 1_000_000.0
(False, True)
"""

from __future__ import annotations

from typing import Any

import gymnasium
import numpy as np

from data.panel import Panel
from market_env.actions import ParsedAction, numeric_to_fractions, orders_to_fractions, parse_action
from market_env.episodes import Episode
from market_env.errors import EpisodeFinishedError
from market_env.market import Market, PriceData, trades_of
from market_env.observations import render_text, render_vectors

NUMERIC_ACTION = ParsedAction()  # a numeric action always parses: its invalid values are held and flagged


class MarketEnv(gymnasium.Env):
    metadata = {"render_modes": ["ansi"]}

    def __init__(
        self,
        task: str = "easy",
        split: str = "train",
        obs_mode: str = "text",
        version: str | None = None,
        data: PriceData = None,
        anonymize: bool = False,
        seed: int | None = None,
        render_mode: str | None = None,
    ) -> None:
        self.market = Market(task, split, obs_mode, version, data, anonymize, n_envs=1)
        self.observation_space = self.market.observation_space
        self.action_space = self.market.action_space
        self.render_mode = render_mode
        self._first_seed = seed
        self._finished = True
        self._names: tuple[str, ...] = ()

    # Public read-only views, so wrappers and tests need not reach into the market.
    @property
    def panel(self) -> Panel:
        return self.market.panel

    @property
    def names(self) -> tuple[str, ...]:
        """Symbols the agent trades with this episode (STOCK_A.. when anonymised)."""
        return self._names

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[Any, dict]:
        if seed is None and self._first_seed is not None:
            seed, self._first_seed = self._first_seed, None
        super().reset(seed=seed)
        episode = self.market.episode_from_options(options) or self.market.sampler.sample(self.np_random)
        self.market.sim.reset_envs(np.array([0]), [episode])
        self._names = self.market.names_for([0])[0]
        self._finished = False
        return self._observe(), self.market.reset_info(0)

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict]:
        if self._finished:
            raise EpisodeFinishedError("the episode has ended; call reset() before step()")
        sell, buy, parsed, nonfinite = self._fractions(action)
        report, vectors = self.market.step(sell[None], buy[None])
        terminated = bool(report.done[0])
        self._finished = terminated
        info = self.market.step_info(0, report, self._names)
        info["trades"] = trades_of(report, 0, self._names)
        info["invalid_action"], info["invalid_reason"] = parsed.invalid, parsed.reason
        if nonfinite is not None and nonfinite.any():
            info["nonfinite_actions"] = [self._names[k] for k in np.flatnonzero(nonfinite)]
        if terminated:
            info["grade"] = self.market.grades(np.array([0]))[0]
        observation = vectors[0] if vectors is not None else self._observe()
        return observation, float(report.reward[0]), terminated, False, info

    def _fractions(self, action: Any) -> tuple[np.ndarray, np.ndarray, ParsedAction, np.ndarray | None]:
        if self.market.obs_mode == "text":
            if isinstance(action, str):
                parsed = parse_action(action, self._names)
            else:
                parsed = ParsedAction(
                    invalid=True, reason=f"expected a string action, got {type(action).__name__}"
                )
            sell, buy = orders_to_fractions(parsed, self._names)
            return sell, buy, parsed, None
        values = np.asarray(action, dtype=np.float64)
        if values.shape != (self.market.task.n_stocks,):
            raise ValueError(
                f"numeric action must have shape ({self.market.task.n_stocks},), got {values.shape}"
            )
        sell, buy, nonfinite = numeric_to_fractions(values)
        return sell, buy, NUMERIC_ACTION, nonfinite

    def _observe(self) -> Any:
        snapshot = self.market.snapshot()
        if self.market.obs_mode == "numeric":
            return render_vectors(snapshot)[0]
        return render_text(snapshot, 0, self._names, self.market.anonymize)

    def render(self) -> str:
        """ANSI rendering: the text observation of the current step (in either observation mode)."""
        return render_text(self.market.snapshot(), 0, self._names, self.market.anonymize)

    # GRPO-style forks: export the current position and continue it elsewhere, exactly.
    def get_state(self):
        return self.market.sim.export_state(0)

    def set_state(self, state) -> None:
        self.market.sim.load_state(0, state)
        self._names = self.market.names_for([0])[0]
        self._finished = state.t >= self.market.task.n_days

    def play(self, episode: Episode) -> tuple[Any, dict]:
        """Reset to a given :class:`Episode` (start day and symbol indices)."""
        return self.reset(options={"episode": episode})
