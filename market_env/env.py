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
    (-a_k - 0.1)/0.9 of the shares; non-finite values hold that stock and are flagged
    (``info["invalid_action"]``, as in the batch, and ``info["nonfinite_actions"]``).
    An action of the wrong type (text: not a ``str``; numeric: not real numbers of shape (K,)) is a
    ValueError naming the argument: that is a bug in the caller, not a move of the agent.

Observation space
    text mode: ``Text`` (see ``market_env.observations.render_text``); numeric mode: float32 ``Box`` of
    ``K * 13 + 3`` values (the table in ``market_env.observations``). The final observation (after the
    last decision) shows the final marking close and says the episode is over.

Anonymised (``anonymize=True``, ``market_env.anonymize``): nothing returned to the agent (observations,
``info``, trades, grade) names a real symbol, date, price or share count. Stocks are STOCK_A.. in a seeded
random order (the same for the same episode everywhere), dates "day k", prices 100 at the episode start,
positions in units of the rescaled stock. The market and the score are exactly those of the same episode
in the clear. The real identity is ``env.episode_identity`` (for evaluation's pairing, not for agents).

Reward
    The change in the episode's score-to-date (the grader applied to the episode so far); the last step's
    reward makes the sum equal final score - score of an empty episode. ``info["grade"]`` on the last step
    holds the final score, its components and raw metrics.

Episode end: ``terminated`` after N decisions; never truncated.

Arguments: ``task``, ``split`` (train | val | test), ``obs_mode`` (text | numeric), ``version`` (env
version, default ``ENV_VERSION``), ``data`` (path, DataFrame or Panel; default the embedded set),
``anonymize``, ``seed`` (seeds the first ``reset``, unless that reset passes its own; later resets
without a seed continue the same generator, as in Gymnasium).
``reset(options={"start_date": "2024-03-01", "symbols": ["TCS"]})`` plays a chosen episode.

Version history: see ``market_env.versions``.

>>> import market_env
>>> env = market_env.make("easy", split="val", obs_mode="numeric", seed=0)
>>> obs, info = env.reset()
>>> obs.shape, info["env_version"] == market_env.ENV_VERSION, info["task_version"]
((16,), True, '1.0.0')
>>> obs, reward, terminated, truncated, info = env.step(env.action_space.sample() * 0)
>>> info["invalid_action"], info["nav"] == info["cash"] == 1_000_000.0
(False, True)
"""

from __future__ import annotations

from typing import Any

import gymnasium
import numpy as np

from data.panel import Panel
from market_env.actions import (
    ParsedAction,
    numeric_action_array,
    numeric_to_fractions,
    orders_to_fractions,
    parse_action,
)
from market_env.episodes import Episode
from market_env.errors import EpisodeFinishedError
from market_env.market import Market, PriceData
from market_env.observations import render_vectors
from market_env.simulator import EpisodeState

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
        # the construction seed serves the first reset only, whether or not that reset brings its own:
        # a later reset() continues the generator instead of replaying the first episode
        if self._first_seed is not None:
            seed = self._first_seed if seed is None else seed
            self._first_seed = None
        check_seed(seed)
        check_options(options)
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
        info["trades"] = self.market.trades(report, 0, self._names)
        info["invalid_action"], info["invalid_reason"] = parsed.invalid, parsed.reason
        if nonfinite is not None and nonfinite.any():
            held = [self._names[k] for k in np.flatnonzero(nonfinite)]
            info["nonfinite_actions"] = held
            info["invalid_action"] = True  # as the batch flags it; the finite values still trade
            info["invalid_reason"] = f"non-finite values held for {', '.join(held)}"
        if terminated:
            info["grade"] = self.market.grades(np.array([0]))[0]
        observation = vectors[0] if vectors is not None else self._observe()
        return observation, float(report.reward[0]), terminated, False, info

    def _fractions(self, action: Any) -> tuple[np.ndarray, np.ndarray, ParsedAction, np.ndarray | None]:
        if self.market.obs_mode == "text":
            if not isinstance(action, str):
                raise ValueError(f"text action must be a str, got {type(action).__name__}")
            parsed = parse_action(action, self._names)
            sell, buy = orders_to_fractions(parsed, self._names)
            return sell, buy, parsed, None
        values = numeric_action_array(action, (self.market.task.n_stocks,))
        sell, buy, nonfinite = numeric_to_fractions(values)
        return sell, buy, NUMERIC_ACTION, nonfinite

    def _observe(self) -> Any:
        snapshot = self.market.snapshot()
        if self.market.obs_mode == "numeric":
            return render_vectors(snapshot)[0]
        return self.market.text(snapshot, 0, self._names)

    def render(self) -> str:
        """ANSI rendering: the text observation of the current step (in either observation mode)."""
        return self.market.text(self.market.snapshot(), 0, self._names)

    @property
    def episode_identity(self) -> dict[str, Any]:
        """Where the current episode lies in the real data: ``start_date``, ``end_date``, ``real_symbols``
        and ``names`` (shown name -> real symbol). For evaluation's pairing and bookkeeping; NOT for agents
        (it undoes anonymisation)."""
        return self.market.identities(self.market.where(np.array([0])))[0]

    # GRPO-style forks: export the current position and continue it elsewhere, exactly. The state holds
    # the real start day and symbol indices: like episode_identity, it is not for anonymised agents.
    def get_state(self) -> EpisodeState:
        return self.market.sim.export_state(0)

    def set_state(self, state: EpisodeState) -> None:
        """Continue ``state`` (from ``get_state``); a ValueError names what is wrong with a corrupt one."""
        self.market.sim.load_state(0, state)
        self._names = self.market.names_for([0])[0]
        self._finished = state.t >= self.market.task.n_days

    def play(self, episode: Episode) -> tuple[Any, dict]:
        """Reset to a given :class:`Episode` (start day and symbol indices)."""
        if not isinstance(episode, Episode):
            raise ValueError(f"episode must be an Episode, got {type(episode).__name__}")
        return self.reset(options={"episode": episode})


def check_seed(seed: Any, name: str = "seed") -> None:
    """Seeds are None or ints >= 0 (Gymnasium's rule), else a ValueError naming the argument."""
    if seed is not None and (not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or seed < 0):
        raise ValueError(f"{name} must be None or an int >= 0, got {seed!r}")


def check_options(options: Any) -> None:
    if options is not None and not isinstance(options, dict):
        raise ValueError(f"options must be a dict or None, got {type(options).__name__}")
