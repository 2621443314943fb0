"""No future in the agent's hands: the panel an agent sees ends at its episode's current day."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

import market_env
from eval.agents import RuleAgent
from eval.harness import EvalConfig, run_evaluation
from eval.views import LookAheadError, PastArray, agent_snapshot

CONFIG = EvalConfig(task="medium", split="val", episodes=6, seed=11)


@dataclass
class Peeker(RuleAgent):
    """Tries to read tomorrow's open of its first stock in every episode (the fill price of today's order)."""

    name: str = "peeker"

    def act(self, observations, snapshot):
        first = snapshot.symbols[:, 0]
        snapshot.panel.open[snapshot.day + 1, first]
        return np.zeros(snapshot.symbols.shape, dtype=np.float32)


@dataclass
class HistoryReader(RuleAgent):
    """Reads only the past, in every way the view allows, and records what it read."""

    name: str = "history"

    def __post_init__(self):
        self.seen: list[tuple[np.ndarray, np.ndarray]] = []

    def act(self, observations, snapshot):
        today = snapshot.panel.close[snapshot.day, snapshot.symbols[:, 0]]
        window = snapshot.panel.history("close", snapshot.symbols, 5)
        assert snapshot.features.shape[:2] == snapshot.symbols.shape  # the rule agents' indicators still work
        _ = (
            snapshot.panel.close[:3],
            snapshot.panel.close[-1],
            snapshot.market_table[snapshot.day[:, None], 0],
        )
        self.seen.append((today.copy(), window[:, -1, 0].copy()))
        return np.zeros(snapshot.symbols.shape, dtype=np.float32)


def test_an_agent_that_reads_tomorrow_fails():
    with pytest.raises(LookAheadError, match="agents see only up to today"):
        run_evaluation(Peeker(), CONFIG, progress=False)


def test_an_agent_that_reads_the_past_plays_and_sees_the_true_past():
    agent = HistoryReader()
    result = run_evaluation(agent, CONFIG, progress=False)
    assert len(result.episodes) == 6 and len(agent.seen) == 30
    for today, last_of_window in agent.seen:
        np.testing.assert_array_equal(today, last_of_window)


def test_the_view_checks_each_episode_against_its_own_day(panel):
    batch = market_env.make_batch("hard", n_envs=4, split="test", seed=3)
    batch.reset()
    snapshot = batch.market.snapshot()
    view = agent_snapshot(snapshot)
    days = snapshot.day
    assert not np.all(days == days[0])  # episodes on different calendar days: the per-episode check matters
    late = int(np.argmax(days))
    ok = view.panel.close[days, 0]
    np.testing.assert_array_equal(ok, panel.close[days, 0])
    ahead = days.copy()
    ahead[np.argmin(days)] += 1  # one episode one day ahead, even if that day is past for another
    with pytest.raises(LookAheadError):
        view.panel.close[ahead, 0]
    with pytest.raises(LookAheadError):  # a plain index may only reach the batch's common past
        view.panel.close[int(days[late])]
    assert len(view.panel.close) == days.min() + 1 and np.asarray(view.panel.close).shape[0] == days.min() + 1
    with pytest.raises(ValueError):  # read-only: the env's state is not the agent's to edit
        view.shares[0, 0] = 1.0
    with pytest.raises(LookAheadError):
        view.panel.iso_date(int(days.max()) + 1)
    assert view.panel.iso_date(int(days[0])) == panel.iso_date(int(days[0]))


def test_past_array_rejects_non_integer_days():
    view = PastArray(np.arange(10.0), np.array([4]))
    assert view[4] == 4.0 and view[-1] == 4.0 and list(view[view.__array__() > 2]) == [3.0, 4.0]
    with pytest.raises(LookAheadError):
        view[5]
    with pytest.raises(TypeError):
        view[1.5]
    assert view.shape == (5,) and view.dtype == np.float64
