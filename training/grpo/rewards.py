"""The GRPO reward: a completion's action applied at its state, the episode finished, the env's score.

For each completion, :class:`EnvScoreReward`

1. loads the row's :class:`~market_env.simulator.EpisodeState` into a slot of one batch env (prices do not
   depend on our orders, so the fork is exact and every completion of a group replays the same market);
2. steps that slot with the completion text, through the env's own text step (``market_env.actions``
   grammar: ``<think>`` ignored, anything malformed is an invalid HOLD);
3. lets the episode finish under a continuation: ``hold`` (default: keep the resulting positions to the
   end), ``exit`` (keep them ``exit_days`` days, then sell everything and stay in cash, so a decision is
   credited with its own horizon, not with the rest of the episode), ``rsi`` (the RSI rule plays on) or
   ``recorded`` (the policy that reached the state plays on with the actions it actually took: the row's
   ``continuation`` column);
4. returns the score of the finished episode under the env version (default: 3.0.0), in [0, 1] -- the
   same grader evaluation reports -- minus, with ``baseline="hold"``, the score of the same episode with the
   decision replaced by HOLD and the same continuation. ``recorded`` + ``hold`` is the *counterfactual
   credit* of a decision: what this one decision changed in the episode the policy really played. The
   market ignores our orders, so both replays are exact.

Within a group the baseline is a constant (every completion faces the same state), so it does not change
the group-relative advantage; it removes the market's level from the reward, so a batch-wide std
(``scale_rewards="batch"``) measures what decisions change, not how good each episode's market was.

Control reward (``imitate``, not a trading reward): 1 when an answer's orders name the same (side, stock)
pairs as a rule expert's decision at the state (``training.sft.experts``), else 0. It is noiseless and its
answer is known, so it asks whether GRPO can teach this model a rule at all, apart from how noisy the
market's credit is (docs/grpo.md).

Format term: an invalid completion scores ``invalid_reward`` (default -0.1) below the lowest valid reward
(0 for a score; -1 for a score minus the HOLD replay's, since both lie in [0, 1]). Within a group that
makes "answer in the grammar" the first thing learned and costs nothing once every answer is valid (GRPO
only sees differences within a group).

Group check: TRL repeats each prompt ``num_generations`` times in a row; every completion of a group must
start from the same state, else the group-relative advantage compares different markets. Each row's state
hash is recomputed from its state and the hashes of each group must agree. A group that fails is logged and
scored flat (the invalid reward for all), so it carries no gradient.

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
from data.synthetic import resolve_data
from market_env.actions import BUY, SELL, parse_action
from market_env.versions import get_version
from training.grpo.prompts import state_from_json, state_hash

logger = logging.getLogger(__name__)

CONTINUATIONS = ("hold", "exit", "rsi", "recorded")
BASELINES = ("none", "hold")
SCALE_REWARDS = ("batch", "none", "group")


class GroupMismatchError(ValueError):
    """Completions of one GRPO group come from different states (or a row's hash does not match its state)."""


@dataclass(frozen=True)
class RewardConfig:
    """How a completion is scored.

    Attributes:
        task: the task every row must belong to.
        env_version: env version whose grader scores the finished episode (default: ``ENV_VERSION``).
        continuation: policy that plays the rest of the episode after the decision: ``hold`` (keep the
            resulting positions; default), ``exit`` (keep them ``exit_days`` days, then sell all), ``rsi``
            (the RSI rule agent, through the text grammar) or ``recorded`` (the actions the reaching policy
            took; needs the ``continuation`` column).
        baseline: ``none`` (the reward is the episode's score) or ``hold`` (minus the score of the same
            episode with the decision replaced by HOLD: the decision's own consequence).
        invalid_reward: how far below the lowest valid reward an invalid completion scores; must be < 0.
        num_generations: completions per prompt (TRL's group size), for the group check.
        exit_days: with ``continuation="exit"``, the days a decision's positions are kept (open to open)
            before everything is sold; against the HOLD baseline a BUY is then paid that many days' move
            minus its round trip's costs.
        center_actions: subtract from each valid answer's reward the mean reward of the batch's answers of
            the same kind (HOLD, BUY, SELL, BUY and SELL; see :func:`center_by_action`). What is paid is what
            the answer earns *on this state* beyond what it earns on the step's other states, not an action's
            pooled worth (which the policy then cannot learn). On the edge market this did not keep BUY from
            moving in both regimes together (docs/grpo.md, design 6).
        imitate: an expert's name (``training.sft.experts``): the control reward instead of the market's
            (1 where the answer's (side, stock) pairs are the expert's at the state, else 0; no episode is
            played, so ``continuation`` and ``baseline`` do not apply). ``""``: the market's reward.
    """

    task: str = "easy"
    env_version: str | None = None
    continuation: str = "hold"
    invalid_reward: float = -0.1
    num_generations: int = 4
    baseline: str = "none"
    data: str | None = None  # market data spec (``data.synthetic.resolve_data``); None: the real panel
    exit_days: int = 5
    center_actions: bool = False
    imitate: str = ""

    def __post_init__(self) -> None:
        if self.continuation not in CONTINUATIONS:
            raise ValueError(f"unknown continuation {self.continuation!r}; expected one of {CONTINUATIONS}")
        if self.baseline not in BASELINES:
            raise ValueError(f"unknown baseline {self.baseline!r}; expected one of {BASELINES}")
        if not self.invalid_reward < 0.0:
            raise ValueError(
                f"invalid_reward must be < 0 (below the lowest valid reward), got {self.invalid_reward}"
            )
        if self.num_generations < 1:
            raise ValueError(f"num_generations must be >= 1, got {self.num_generations}")
        if self.exit_days < 1:
            raise ValueError(f"exit_days must be >= 1, got {self.exit_days}")
        if self.imitate:
            from training.sft.experts import make_expert

            make_expert(self.imitate)  # an unknown name fails here, listing the valid ones

    @property
    def invalid_score(self) -> float:
        """The reward of an invalid completion: ``invalid_reward`` below the lowest valid reward."""
        return (-1.0 if self.baseline == "hold" and not self.imitate else 0.0) + self.invalid_reward


@dataclass(frozen=True)
class RewardStats:
    """What one reward call saw, for the per-step diagnostics."""

    n: int
    invalid: float  # share of completions the grammar rejects (among rows that passed the checks)
    hold: float  # share of completions that are valid and place no order
    failed: float  # share scored invalid because of an error or a failed group check
    mean: float
    std: float
    zero_std_groups: float  # share of groups whose rewards are all equal
    buy: float = 0.0  # share of completions with at least one valid BUY order (an answer may also SELL)
    sell: float = 0.0  # share of completions with at least one valid SELL order


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


def group_advantages(rewards: Sequence[float], group_size: int, scale_rewards: str = "batch") -> np.ndarray:
    """The advantages TRL's ``GRPOTrainer`` gives these rewards (its ``sum_then_normalize`` path, one reward).

    ``reward - group mean``, divided by ``std + 1e-4`` where the std is the group's (``"group"``, TRL's
    default), the whole batch's (``"batch"``, our default) or not at all (``"none"``). Why not ``"group"``:
    the fork makes the reward a deterministic function of (state, action), so a group usually holds two
    values, and dividing by the group's std leaves only their order: rewards {0.4, 0.5} and {0.1, 0.9} both
    become -1, +1, and the majority sign wins even when the minority's gains are larger (the collapse to HOLD
    measured in ``docs/grpo.md``). A group whose rewards are all equal gets advantage 0 under every setting:
    with ``beta=0`` its completions carry no gradient.
    """
    if scale_rewards not in SCALE_REWARDS:
        raise ValueError(f"unknown scale_rewards {scale_rewards!r}; expected one of {SCALE_REWARDS}")
    r = np.asarray(rewards, dtype=np.float64)
    groups = r.reshape(-1, group_size)
    centred = (groups - groups.mean(axis=1, keepdims=True)).ravel()
    if scale_rewards == "none":
        return centred
    # torch.std is the unbiased (n - 1) std; TRL uses it
    if scale_rewards == "group":
        std = np.repeat(groups.std(axis=1, ddof=1) if group_size > 1 else np.zeros(len(groups)), group_size)
    else:
        std = np.full(r.size, r.std(ddof=1) if r.size > 1 else 0.0)
    return centred / (std + 1e-4)


def momentum_up(prompt: Any) -> bool | None:
    """Whether a one-stock prompt shows a 5-day change > 0 (the edge market's regime signal); else None.

    Env 4.0.0 prints the direction word after the value ("0.0 up"), which also tells a rounded tiny rise
    from a fall; 3.0.0 prints the value alone."""
    from training.sft.think import table_cells

    try:
        cells = table_cells(completion_text(prompt))
        if len(cells) != 1:
            return None
        value, _, label = next(iter(cells.values()))["5d"].partition(" ")
        return label == "up" if label else float(value) > 0
    except (ValueError, KeyError, StopIteration):
        return None


def regime_shares(prompts: Sequence[Any], sides: np.ndarray) -> dict[str, float]:
    """BUY and SELL shares where the prompt's 5-day change is up and where it is down (one-stock prompts).

    Whether a policy learns the edge market's rule shows here first: its BUY share rises where the 5-day
    change is up and falls where it is down, while the pooled share may barely move.
    """
    up = [momentum_up(prompt) for prompt in prompts]
    shares = {}
    for regime, want in (("up", True), ("down", False)):
        rows = [i for i, u in enumerate(up) if u is want]
        if rows and len(sides) == len(prompts):
            shares[f"buy_{regime}"] = float(sides[rows, 1].mean())
            shares[f"sell_{regime}"] = float(sides[rows, 2].mean())
    return shares


def center_by_action(rewards: np.ndarray, valid: np.ndarray, sides: np.ndarray) -> np.ndarray:
    """Rewards minus the mean reward of the valid answers of the same kind in the batch.

    The kind is the row of ``sides`` (valid HOLD, has a BUY, has a SELL). Invalid answers keep their reward
    (below every valid one). A group's flatness is unchanged (equal rewards of one kind stay equal), and
    each kind's rewards sum to 0 over the batch. The update's push on an action is not centred with them:
    TRL weighs each state's advantages by how its group split, and the optimizer rescales the step.
    """
    centred = np.asarray(rewards, dtype=float).copy()
    kinds = [tuple(row) for row in np.asarray(sides, dtype=bool)]
    for kind in set(kinds):
        rows = np.array([k == kind for k in kinds]) & np.asarray(valid, dtype=bool)
        if rows.any():
            centred[rows] -= centred[rows].mean()
    return centred


def _sides(parsed: Sequence[Any]) -> np.ndarray:
    """(n, 3) bool per parsed answer: valid HOLD (no order), has a BUY order, has a SELL order."""
    has = lambda p, side: any(order.side == side for order in p.orders)  # noqa: E731
    rows = [(not p.invalid and not p.orders, has(p, BUY), has(p, SELL)) for p in parsed]
    return np.array(rows, dtype=bool).reshape(len(parsed), 3)


def sell_everything(env: market_env.BatchMarketEnv) -> list[str]:
    """One text action per slot that sells every stock the slot holds (HOLD where it holds none)."""
    shares = env.market.snapshot().shares
    actions = []
    for names, held in zip(env.names, shares):
        lines = [f"SELL {name} 1" for name, count in zip(names, held) if count > 0]
        actions.append("\n".join(lines) or "HOLD")
    return actions


class EnvScoreReward:
    """TRL reward function ``(prompts, completions, **columns) -> list[float]`` scored by the environment.

    Needs the dataset columns ``state`` and ``state_hash`` (from :mod:`training.grpo.prompts`), which TRL
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
        continuation: Sequence[str] | None = None,
        **kwargs: Any,
    ) -> list[float]:
        n = len(completions)
        try:
            rewards, invalid, sides, failed = self._score(completions, state, state_hash, continuation)
        except Exception:  # the reward must never stop training: log and score the batch as invalid
            logger.exception("reward failed for a batch of %d completions; scored as invalid", n)
            rewards, failed = np.full(n, self.config.invalid_score), np.ones(n, dtype=bool)
            invalid, sides = np.zeros(n, dtype=bool), np.zeros((n, 3), dtype=bool)
        self.last_stats = self._stats(rewards, invalid, sides, failed)
        if log_metric is not None:  # the HOLD / BUY / SELL shares over training are the collapse's trace
            for name in ("invalid", "hold", "buy", "sell", "failed", "zero_std_groups"):
                log_metric(f"env/{name}_share", getattr(self.last_stats, name))
            for name, value in regime_shares(prompts, sides).items():
                log_metric(f"env/{name}_share", value)
            if self.config.center_actions:  # TRL logs the centred reward; this is the credit itself
                log_metric("env/raw_reward", self.last_stats.mean)
        if self.config.center_actions:
            rewards = center_by_action(rewards, ~(invalid | failed), sides)
        return [float(r) for r in rewards]

    # ------------------------------------------------------------------------------------------ scoring
    def _score(
        self,
        completions: Sequence[Any],
        states: Sequence[str] | None,
        hashes: Sequence[str] | None,
        continuations: Sequence[str] | None = None,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        n = len(completions)
        if states is None or hashes is None or len(states) != n or len(hashes) != n:
            raise GroupMismatchError(
                "the reward needs a 'state' and a 'state_hash' column, one per completion"
            )
        if self.config.continuation == "recorded" and (continuations is None or len(continuations) != n):
            raise GroupMismatchError(
                "continuation='recorded' needs a 'continuation' column, one per completion"
            )
        texts = [completion_text(c) for c in completions]
        good = self._valid_rows(states, hashes)
        rewards = np.full(n, self.config.invalid_score)
        invalid, sides = np.zeros(n, dtype=bool), np.zeros((n, 3), dtype=bool)
        rows = np.flatnonzero(good)
        if rows.size:
            pick = lambda column: [column[i] for i in rows] if column is not None else None  # noqa: E731
            scores, row_invalid, row_sides = self.score_texts(pick(texts), pick(states), pick(continuations))
            rewards[rows] = np.where(row_invalid, self.config.invalid_score, scores)
            invalid[rows], sides[rows] = row_invalid, row_sides
        return rewards, invalid, sides, ~good

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

    def score_texts(
        self, texts: Sequence[str], states: Sequence[str], continuations: Sequence[str] | None = None
    ) -> tuple[np.ndarray, ...]:
        """(rewards, invalid, sides) of each text applied at its state (JSON), finished by the continuation.

        ``sides`` is an (n, 3) boolean array: valid HOLD (no order), has a BUY order, has a SELL order.

        With ``baseline="hold"`` each distinct (state, continuation) is replayed once more with HOLD in the
        same batch, and its score is subtracted from the rewards of the texts that share it.
        """
        n = len(texts)
        if self.config.imitate:
            return self._agreement(texts, states)
        continuations = list(continuations) if continuations is not None else ["[]"] * n
        keys, replays = list(zip(states, continuations)), []
        if self.config.baseline == "hold":
            replays = list(dict.fromkeys(keys))  # distinct, in first-seen order
        all_texts = [*texts, *["HOLD"] * len(replays)]
        all_keys = [*keys, *replays]
        scores, invalid, sides = self._play(all_texts, [k[0] for k in all_keys], [k[1] for k in all_keys])
        if replays:
            base = dict(zip(replays, scores[n:]))
            scores = scores[:n] - np.array([base[key] for key in keys])
        return scores[:n], invalid[:n], sides[:n]

    def _play(
        self, texts: Sequence[str], states: Sequence[str], continuations: Sequence[str]
    ) -> tuple[np.ndarray, ...]:
        """Score of each episode: the text at its state, then the continuation to the end (one batch env)."""
        import json

        n = len(texts)
        env = self._env(n)
        env.load_states(range(n), [state_from_json(s) for s in states])
        names = list(env.names[:n])
        sides = _sides([parse_action(text, names[i]) for i, text in enumerate(texts)])
        observations, _, done, _, infos = env.step(list(texts))
        invalid = np.asarray(infos["invalid_action"], dtype=bool)
        scores = np.full(n, np.nan)
        self._collect(scores, done, infos)
        recorded = [json.loads(c) for c in continuations]
        continuation = self._continuation(n, recorded)
        for k in range(env.market.task.n_days):  # every slot finishes within one episode length
            if not np.isnan(scores).any():
                break
            observations, _, done, _, infos = env.step(continuation(k, observations, env))
            self._collect(scores, done, infos)
        return scores, invalid, sides

    def _agreement(self, texts: Sequence[str], states: Sequence[str]) -> tuple[np.ndarray, ...]:
        """The control reward: 1 where a text's (side, stock) pairs are the ``imitate`` expert's, else 0."""
        from training.sft.experts import make_expert

        n = len(texts)
        env = self._env(n)
        env.load_states(range(n), [state_from_json(s) for s in states])
        names = list(env.names[:n])
        signals = make_expert(self.config.imitate).signals(env.market.snapshot())
        parsed = [parse_action(text, names[i]) for i, text in enumerate(texts)]
        pairs = lambda orders: sorted((o.side, o.symbol) for o in orders)  # noqa: E731
        agree = [pairs(p.orders) == pairs(signals.decision(i, names[i]).orders) for i, p in enumerate(parsed)]
        invalid = np.array([p.invalid for p in parsed], dtype=bool)
        return np.array(agree, dtype=float), invalid, _sides(parsed)

    @staticmethod
    def _collect(scores: np.ndarray, done: np.ndarray, infos: dict) -> None:
        """Record the grades of slots that finished for the first time (later ones are autoreset episodes)."""
        for i in np.flatnonzero(done & np.isnan(scores)):
            scores[i] = infos["grade"][i]["score"]

    def _continuation(
        self, n: int, recorded: list[list[str]]
    ) -> Callable[[int, Any, market_env.BatchMarketEnv], list[str]]:
        """Actions for the k-th step after the decision (slots that already finished get HOLD)."""
        if self.config.continuation == "hold":
            return lambda k, observations, env: ["HOLD"] * n
        if self.config.continuation == "recorded":
            return lambda k, observations, env: [a[k] if k < len(a) else "HOLD" for a in recorded]
        if self.config.continuation == "exit":
            return lambda k, observations, env: (
                sell_everything(env) if k == self.config.exit_days - 1 else ["HOLD"] * n
            )
        from eval.agents import RSIAgent
        from eval.harness import numeric_to_text

        agent = RSIAgent()
        agent.reset(n, 0)
        return lambda k, observations, env: numeric_to_text(
            agent.act(observations, env.market.snapshot()), env.names
        )

    def _env(self, n: int) -> market_env.BatchMarketEnv:
        """One text-mode batch env per batch size, reset once (its autoreset draws need seeded generators)."""
        if n not in self._envs:
            data = {"data": resolve_data(self.config.data)} if self.config.data else {}
            env = market_env.make_batch(
                self.config.task, n_envs=n, obs_mode="text", version=self.version, **data
            )
            env.reset(seed=0)
            self._envs[n] = env
        return self._envs[n]

    # -------------------------------------------------------------------------------------- diagnostics
    def _stats(
        self, rewards: np.ndarray, invalid: np.ndarray, sides: np.ndarray, failed: np.ndarray
    ) -> RewardStats:
        n, size = len(rewards), self.config.num_generations
        zero_std = 0.0
        if n and n % size == 0:
            groups = rewards.reshape(-1, size)
            zero_std = float(np.mean(np.isclose(groups.std(axis=1), 0.0)))
        return RewardStats(
            n=n,
            invalid=float(invalid.mean()) if n else 0.0,
            hold=float(sides[:, 0].mean()) if n else 0.0,
            failed=float(failed.mean()) if n else 0.0,
            mean=float(rewards.mean()) if n else 0.0,
            std=float(rewards.std()) if n else 0.0,
            zero_std_groups=zero_std,
            buy=float(sides[:, 1].mean()) if n else 0.0,
            sell=float(sides[:, 2].mean()) if n else 0.0,
        )
