"""Paired evaluation: every agent plays the same episodes, in lockstep through the batch API.

Episodes are fixed by (task, split, seed, episodes): slot i of the batch is the episode
``market_env.make(task, split=split).reset(seed=seed + i)`` plays, for every agent and every run, so
differences between agents are not differences in market luck.

Agents get the step's snapshot through :func:`eval.views.agent_snapshot`: the panel ends at each episode's
current day; anonymised, it is an :class:`eval.views.AnonymousFrame` of the episode's own days, STOCK_
names and prices rescaled to 100 at the start. Each row records the episode's calendar start day
(``start_day``) and real identity, read from the simulator and ``episode_identities()`` here rather than
from the env's ``info`` (which says nothing real in anonymised mode), so anonymised rows pair with clear
ones; the intervals of :mod:`eval.stats` cluster episodes by that start day.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

import market_env
from eval.agents import Agent, RuleAgent
from eval.views import AnonymousFrame, agent_snapshot
from market_env.actions import Order, format_action, numeric_to_fractions
from market_env.grader import grade_episodes
from market_env.market import PriceData
from market_env.versions import get_version

SUMMARY_METRICS = ("score", "total_return", "sharpe", "max_drawdown", "activity", "invalid_rate")


@dataclass(frozen=True)
class EvalConfig:
    """Which episodes to play. The same config gives every agent the same episodes."""

    task: str = "hard"
    split: str = "test"
    episodes: int = 50
    seed: int = 0
    env_version: str | None = None  # default: ENV_VERSION (3.0.0)
    obs_mode: str | None = None  # default: the agent's own mode
    anonymize: bool = False
    data: PriceData = field(default=None, repr=False)  # default: the embedded NIFTY set
    data_name: str = ""  # what --data said (a path or synthetic:<kind>...); "" is the embedded set


@dataclass
class EvalResult:
    """One agent on one (task, env version): per-episode rows and where they came from."""

    agent: str
    model: str
    adapter: str
    config: EvalConfig
    env_version: str
    task_version: str
    grader_version: str
    data_sha256: str
    obs_mode: str
    episodes: list[dict[str, Any]]
    seconds: float
    transcripts: list[dict[str, Any]] = field(default_factory=list)
    # how the agent decided beyond model and adapter (LLMs: backend, think, max_new_tokens, decoding, ...),
    # logged with the run so two LLM runs are only compared when they generated alike
    settings: dict[str, str] = field(default_factory=dict)

    def values(self, metric: str) -> np.ndarray:
        return np.array([row[metric] for row in self.episodes], dtype=np.float64)

    @property
    def starts(self) -> np.ndarray:
        """Calendar index of each episode's first decision day: what the intervals cluster on."""
        return np.array([row["start_day"] for row in self.episodes], dtype=np.int64)

    @property
    def window(self) -> int:
        """Days an episode's returns span; episodes starting closer than this share market days."""
        return get_version(self.env_version).task(self.config.task).n_days

    def params(self) -> dict[str, Any]:
        """The run's identity, as logged to MLflow and written to JSON."""
        return {
            **self.settings,  # first, so an agent's description can never overwrite the run's identity
            "agent": self.agent, "model": self.model, "adapter": self.adapter, "task": self.config.task,
            "split": self.config.split, "episodes": self.config.episodes, "seed": self.config.seed,
            "env_version": self.env_version, "task_version": self.task_version,
            "grader_version": self.grader_version, "data_sha256": self.data_sha256, "obs_mode": self.obs_mode,
            "anonymize": self.config.anonymize, "data": self.config.data_name or "embedded",
        }  # fmt: skip


def numeric_to_text(actions: np.ndarray, names: list[tuple[str, ...]]) -> list[str]:
    """Write numeric actions as text orders, so a rule agent can be run through the text pipeline."""
    sell, buy, _ = numeric_to_fractions(np.asarray(actions, dtype=np.float64))
    texts = []
    for i, symbols in enumerate(names):
        orders = [Order("SELL", s, float(f)) for s, f in zip(symbols, sell[i]) if f > 0]
        orders += [Order("BUY", s, float(f)) for s, f in zip(symbols, buy[i]) if f > 0]
        texts.append(format_action(orders))
    return texts


class StepClock:
    """Progress of a run that can take minutes per day (LLMs on a CPU): an estimate after the first decision
    day (its measured seconds x the days), a remaining time from the mean pace so far (rich's own column
    needs two steps inside 30 s and shows ``-:--:--`` when steps are slower), and, when the output is not
    a terminal (a log), a plain line every ``log_every`` seconds instead of a bar."""

    ESTIMATE_ABOVE_S = 10.0  # say nothing about time for runs shorter than this

    def __init__(
        self, label: str, n_days: int, decisions_per_day: int, enabled: bool, log_every: float = 30.0
    ) -> None:
        self.label, self.n_days, self.per_day, self.enabled = label, n_days, decisions_per_day, enabled
        self.console, self.log_every = Console(stderr=True), log_every
        self.start = self.last_log = time.perf_counter()
        self.done = 0
        self.bar = Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("{task.fields[eta]}"), console=self.console, transient=True,
            disable=not (enabled and self.console.is_terminal),
        )  # fmt: skip
        self.job = self.bar.add_task(label, total=n_days, eta="")

    def __enter__(self) -> StepClock:
        self.bar.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.bar.__exit__(*exc)

    def remaining(self) -> float:
        elapsed = time.perf_counter() - self.start
        return elapsed / max(self.done, 1) * (self.n_days - self.done)

    def advance(self) -> None:
        self.done += 1
        left = self.remaining()
        self.bar.update(self.job, advance=1, eta=f"{_duration(left)} left")
        if not self.enabled:
            return
        elapsed = time.perf_counter() - self.start
        if self.done == 1 and elapsed * self.n_days > self.ESTIMATE_ABOVE_S:
            per_decision = elapsed / max(self.per_day, 1)
            self.console.print(
                f"{self.label}: {self.n_days * self.per_day} decisions ({self.n_days} days x {self.per_day} "
                f"episodes), {per_decision:.2f} s per decision on day 1: about {_duration(left + elapsed)} "
                "in all",
                soft_wrap=True,  # one line per message in a log
            )
        now = time.perf_counter()
        if not self.console.is_terminal and now - self.last_log >= self.log_every and self.done < self.n_days:
            self.last_log = now
            self.console.print(
                f"{self.label}: day {self.done}/{self.n_days}, {_duration(left)} left", soft_wrap=True
            )


def _duration(seconds: float) -> str:
    seconds = round(seconds)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}" if seconds >= 3600 else (
        f"{seconds // 60}:{seconds % 60:02d}")  # fmt: skip


def run_evaluation(agent: Agent, config: EvalConfig, progress: bool = True) -> EvalResult:
    """Play ``config.episodes`` episodes with ``agent`` in one batch and return the per-episode grades."""
    obs_mode = config.obs_mode or agent.obs_mode
    if obs_mode != agent.obs_mode and not isinstance(agent, RuleAgent):
        raise ValueError(f"agent {agent.name} acts on {agent.obs_mode} observations, not {obs_mode}")
    env = market_env.make_batch(
        config.task, n_envs=config.episodes, split=config.split, obs_mode=obs_mode,
        version=config.env_version, data=config.data, anonymize=config.anonymize,
    )  # fmt: skip
    start = time.perf_counter()
    observations, infos = env.reset(seed=config.seed)
    identity = _identities(env)
    frame = AnonymousFrame(env.market.snapshot(), env.market.version.rules.lookback_days) if (
        config.anonymize) else None  # fmt: skip
    agent.reset(config.episodes, config.seed)
    invalid = np.zeros(config.episodes)
    n_days = env.market.task.n_days
    with StepClock(f"{agent.name} {config.task}", n_days, config.episodes, progress) as clock:
        for _ in range(n_days):
            actions = agent.act(observations, agent_snapshot(env.market.snapshot(), frame))
            if obs_mode == "text" and agent.obs_mode == "numeric":
                actions = numeric_to_text(actions, env.names)
            observations, _, done, _, infos = env.step(actions)
            invalid += infos["invalid_action"]
            clock.advance()
    assert done.all(), "every episode of a task has the same length"
    rows = [
        _episode_row(i, grade, invalid[i] / n_days, identity[i]) for i, grade in enumerate(infos["grade"])
    ]
    described = agent.describe()
    return EvalResult(
        agent=agent.name, model=described.get("model", ""), adapter=described.get("adapter", ""),
        config=config, env_version=env.market.version.version, task_version=env.market.task.version,
        grader_version=env.market.version.grader, data_sha256=env.market.panel.sha256, obs_mode=obs_mode,
        episodes=rows, seconds=time.perf_counter() - start,
        transcripts=list(getattr(agent, "transcripts", [])),
        settings={k: v for k, v in described.items() if k not in ("model", "adapter")},
    )  # fmt: skip


def _identities(env: market_env.BatchMarketEnv) -> list[dict[str, Any]]:
    """Start day, dates and real symbols (simulator order) of every episode, the same in the clear and
    anonymised: from the simulator and ``episode_identities()``, never shown to the agent."""
    starts = env.market.sim.start_day.tolist()
    return [
        {"start_day": int(start), "start_date": identity["start_date"], "end_date": identity["end_date"],
         "symbols": list(identity["real_symbols"])}
        for start, identity in zip(starts, env.episode_identities())
    ]  # fmt: skip


def _episode_row(index: int, grade: dict, invalid_rate: float, identity: dict[str, Any]) -> dict[str, Any]:
    return {
        "episode": index,
        **identity,
        "score": grade["score"],
        **{f"component_{name}": value for name, value in grade["components"].items()},
        **grade["metrics"],
        "invalid_rate": float(invalid_rate),
        "nav": grade["nav"],
    }


def same_market(version_a: str, version_b: str, task: str) -> bool:
    """True when two env versions differ only in their grader for this task (so a rescore is exact)."""
    a, b = get_version(version_a), get_version(version_b)
    return a.rules == b.rules and a.task(task) == b.task(task)


def rescore(result: EvalResult, env_version: str) -> EvalResult:
    """The same episodes graded under another env version with the same market (no replay needed)."""
    if not same_market(result.env_version, env_version, result.config.task):
        raise ValueError(f"env {result.env_version} and {env_version} differ in market rules: replay instead")
    version = get_version(env_version)
    grades = grade_episodes(
        np.array([row["nav"] for row in result.episodes]),
        np.array([row["trade_days"] for row in result.episodes]),
        result.values("costs"),
        result.values("benchmark_return"),
        version.grader,
    )
    rows = []
    for row, grade in zip(result.episodes, grades):
        kept = {k: v for k, v in row.items() if not k.startswith("component_")}
        components = {f"component_{name}": value for name, value in grade["components"].items()}
        rows.append(kept | {"score": grade["score"]} | components)
    config = EvalConfig(**{**asdict(result.config), "env_version": env_version, "data": result.config.data})
    return EvalResult(
        agent=result.agent, model=result.model, adapter=result.adapter, config=config,
        env_version=version.version, task_version=version.task(config.task).version,
        grader_version=version.grader, data_sha256=result.data_sha256, obs_mode=result.obs_mode,
        episodes=rows, seconds=result.seconds, transcripts=result.transcripts, settings=result.settings,
    )  # fmt: skip
