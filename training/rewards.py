"""The GRPO reward: a completion's action applied at its state, the episode finished, the env's score.

For each completion, :class:`EnvScoreReward`

1. loads the row's :class:`~market_env.simulator.EpisodeState` into a slot of one batch env (prices do not
   depend on our orders, so the fork is exact and every completion of a group replays the same market);
2. steps that slot with the completion text, through the env's own text step (``market_env.actions``
   grammar: ``<think>`` ignored, anything malformed is an invalid HOLD);
3. lets the episode finish under a fixed continuation policy (default ``hold``: keep the resulting
   positions to the end, so the outcome is attributed to this one decision);
4. returns the composite score of the finished episode under the env version (default: the newest), in
   [0, 1] -- the same grader evaluation reports.

Format term: an invalid completion scores ``invalid_reward`` (default -0.1), below every valid action, since
valid scores lie in [0, 1]. Within a group that makes "answer in the grammar" the first thing learned and
costs nothing once every answer is valid (GRPO only sees differences within a group).

Group check: TRL repeats each prompt ``num_generations`` times in a row; every completion of a group must
start from the same state, else the group-relative advantage compares different markets. Each row's state
hash is recomputed from its state and the hashes of each group must agree. A group that fails is logged and
scored flat (``invalid_reward`` for all), so it carries no gradient.

The reward never raises: any failure is logged and its completions scored as invalid. All completions of a
call are stepped together in one batch env. Design and alternatives: ``docs/grpo.md``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

import market_env
from market_env.actions import parse_action
from market_env.versions import get_version
from training.grpo_prompts import state_from_json, state_hash

logger = logging.getLogger(__name__)

CONTINUATIONS = ("hold", "rsi")


class GroupMismatchError(ValueError):
    """Completions of one GRPO group come from different states (or a row's hash does not match its state)."""


@dataclass(frozen=True)
class RewardConfig:
    """How a completion is scored.

    Attributes:
        task: the task every row must belong to.
        env_version: env version whose grader scores the finished episode (default: the newest).
        continuation: policy that plays the rest of the episode after the decision: ``hold`` (keep the
            resulting positions; default) or ``rsi`` (the RSI rule agent, through the text grammar).
        invalid_reward: reward of an invalid completion; must be below 0, the lowest valid score.
        num_generations: completions per prompt (TRL's group size), for the group check.
    """

    task: str = "easy"
    env_version: str | None = None
    continuation: str = "hold"
    invalid_reward: float = -0.1
    num_generations: int = 4

    def __post_init__(self) -> None:
        if self.continuation not in CONTINUATIONS:
            raise ValueError(f"unknown continuation {self.continuation!r}; expected one of {CONTINUATIONS}")
        if not self.invalid_reward < 0.0:
            raise ValueError(f"invalid_reward must be < 0 (valid scores are >= 0), got {self.invalid_reward}")
        if self.num_generations < 1:
            raise ValueError(f"num_generations must be >= 1, got {self.num_generations}")


@dataclass(frozen=True)
class RewardStats:
    """What one reward call saw, for the per-step diagnostics."""

    n: int
    invalid: float  # share of completions the grammar rejects (among rows that passed the checks)
    hold: float  # share of valid completions without orders
    failed: float  # share scored invalid because of an error or a failed group check
    mean: float
    std: float
    zero_std_groups: float  # share of groups whose rewards are all equal


def completion_text(completion: Any) -> str:
    """The text of a completion: a plain string, or the content of a conversational message list."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, Sequence) and completion and isinstance(completion[-1], dict):
        content = completion[-1].get("content", "")
        return content if isinstance(content, str) else ""
    return ""


def check_groups(hashes: Sequence[str], group_size: int) -> np.ndarray:
    """Boolean mask over groups: True where all ``group_size`` consecutive hashes agree."""
    if len(hashes) % group_size:
        raise GroupMismatchError(f"{len(hashes)} completions do not split into groups of {group_size}")
    groups = np.asarray(hashes, dtype=object).reshape(-1, group_size)
    return np.array([len(set(group)) == 1 for group in groups], dtype=bool)


class EnvScoreReward:
    """TRL reward function ``(prompts, completions, **columns) -> list[float]`` scored by the environment.

    Needs the dataset columns ``state`` and ``state_hash`` (from :mod:`training.grpo_prompts`), which TRL
    passes as keyword arguments. ``last_stats`` holds the latest call's :class:`RewardStats`.
    """

    __name__ = "env_score"  # TRL names the reward's metrics after it

    def __init__(self, config: RewardConfig) -> None:
        self.config = config
        self.version = get_version(config.env_version).version
        self._envs: dict[int, market_env.BatchMarketEnv] = {}
        self.last_stats: RewardStats | None = None

    def __call__(
        self,
        prompts: Sequence[Any],
        completions: Sequence[Any],
        state: Sequence[str] | None = None,
        state_hash: Sequence[str] | None = None,
        log_metric: Callable[[str, float], None] | None = None,
        **kwargs: Any,
    ) -> list[float]:
        n = len(completions)
        try:
            rewards, invalid, hold, failed = self._score(completions, state, state_hash)
        except Exception:  # the reward must never stop training: log and score the batch as invalid
            logger.exception("reward failed for a batch of %d completions; scored as invalid", n)
            rewards, failed = np.full(n, self.config.invalid_reward), np.ones(n, dtype=bool)
            invalid, hold = np.zeros(n, dtype=bool), np.zeros(n, dtype=bool)
        self.last_stats = self._stats(rewards, invalid, hold, failed)
        if log_metric is not None:
            for name in ("invalid", "hold", "failed", "zero_std_groups"):
                log_metric(f"env/{name}_share", getattr(self.last_stats, name))
        return [float(r) for r in rewards]

    # ------------------------------------------------------------------------------------------ scoring
    def _score(
        self, completions: Sequence[Any], states: Sequence[str] | None, hashes: Sequence[str] | None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        n = len(completions)
        if states is None or hashes is None or len(states) != n or len(hashes) != n:
            raise GroupMismatchError(
                "the reward needs a 'state' and a 'state_hash' column, one per completion"
            )
        texts = [completion_text(c) for c in completions]
        good = self._valid_rows(states, hashes)
        rewards = np.full(n, self.config.invalid_reward)
        invalid, hold = np.zeros(n, dtype=bool), np.zeros(n, dtype=bool)
        rows = np.flatnonzero(good)
        if rows.size:
            scores, row_invalid, row_hold = self.score_texts(
                [texts[i] for i in rows], [states[i] for i in rows]
            )
            rewards[rows] = np.where(row_invalid, self.config.invalid_reward, scores)
            invalid[rows], hold[rows] = row_invalid, row_hold
        return rewards, invalid, hold, ~good

    def _valid_rows(self, states: Sequence[str], hashes: Sequence[str]) -> np.ndarray:
        """Rows whose hash matches their state and whose group shares one hash; failures are logged."""
        recomputed = [state_hash(s, self.config.task, self.version) for s in states]
        matches = np.array([a == b for a, b in zip(recomputed, hashes)])
        if not matches.all():
            logger.error("%d rows carry a state_hash that does not match their state", int((~matches).sum()))
        size = self.config.num_generations
        groups = check_groups(list(hashes), size) & matches.reshape(-1, size).all(axis=1)
        if not groups.all():
            logger.error(
                "%d of %d GRPO groups mix states (hashes differ); scored flat",
                int((~groups).sum()),
                groups.size,
            )
        return np.repeat(groups, size)

    def score_texts(self, texts: Sequence[str], states: Sequence[str]) -> tuple[np.ndarray, ...]:
        """(scores, invalid, hold) of each text applied at its state (JSON), finished by the continuation."""
        n = len(texts)
        env = self._env(n)
        env.load_states(range(n), [state_from_json(s) for s in states])
        names = list(env.names[:n])
        parsed = [parse_action(text, names[i]) for i, text in enumerate(texts)]
        hold = np.array([not p.invalid and not p.orders for p in parsed], dtype=bool)
        observations, _, done, _, infos = env.step(list(texts))
        invalid = np.asarray(infos["invalid_action"], dtype=bool)
        scores = np.full(n, np.nan)
        self._collect(scores, done, infos)
        continuation = self._continuation(n)
        for _ in range(env.market.task.n_days):  # every slot finishes within one episode length
            if not np.isnan(scores).any():
                break
            observations, _, done, _, infos = env.step(continuation(observations, env))
            self._collect(scores, done, infos)
        return scores, invalid, hold

    @staticmethod
    def _collect(scores: np.ndarray, done: np.ndarray, infos: dict) -> None:
        """Record the grades of slots that finished for the first time (later ones are autoreset episodes)."""
        for i in np.flatnonzero(done & np.isnan(scores)):
            scores[i] = infos["grade"][i]["score"]

    def _continuation(self, n: int) -> Callable[[Any, market_env.BatchMarketEnv], list[str]]:
        if self.config.continuation == "hold":
            return lambda observations, env: ["HOLD"] * n
        from eval.agents import RSIAgent
        from eval.harness import numeric_to_text

        agent = RSIAgent()
        agent.reset(n, 0)
        return lambda observations, env: numeric_to_text(
            agent.act(observations, env.market.snapshot()), env.names
        )

    def _env(self, n: int) -> market_env.BatchMarketEnv:
        """One text-mode batch env per batch size, reset once (its autoreset draws need seeded generators)."""
        if n not in self._envs:
            env = market_env.make_batch(self.config.task, n_envs=n, obs_mode="text", version=self.version)
            env.reset(seed=0)
            self._envs[n] = env
        return self._envs[n]

    # -------------------------------------------------------------------------------------- diagnostics
    def _stats(
        self, rewards: np.ndarray, invalid: np.ndarray, hold: np.ndarray, failed: np.ndarray
    ) -> RewardStats:
        n, size = len(rewards), self.config.num_generations
        zero_std = 0.0
        if n and n % size == 0:
            groups = rewards.reshape(-1, size)
            zero_std = float(np.mean(np.isclose(groups.std(axis=1), 0.0)))
        return RewardStats(
            n=n,
            invalid=float(invalid.mean()) if n else 0.0,
            hold=float(hold.mean()) if n else 0.0,
            failed=float(failed.mean()) if n else 0.0,
            mean=float(rewards.mean()) if n else 0.0,
            std=float(rewards.std()) if n else 0.0,
            zero_std_groups=zero_std,
        )
