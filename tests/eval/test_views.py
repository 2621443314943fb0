"""No future in the agent's hands: the panel an agent sees ends at its episode's current day."""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

import numpy as np
import pytest

import market_env
from eval.agents import RuleAgent, buy_action, make_agent
from eval.harness import EvalConfig, run_evaluation
from eval.views import AnonymousFrame, LookAheadError, PastArray, agent_snapshot

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


@dataclass
class Recorder(RuleAgent):
    """Buys every stock on day one, then holds, and reads everything reachable from its snapshot (every
    attribute, recursively, private ones included) on the first and the last day."""

    name: str = "recorder"

    def __post_init__(self):
        self.strings: list[str] = []
        self.arrays: list[np.ndarray] = []
        self.first_close: np.ndarray | None = None

    def act(self, observations, snapshot):
        if snapshot.t[0] in (0, snapshot.n_days - 1):
            snapshot.features  # noqa: B018 - the cached indicators become part of what it reads
            self.read(snapshot, set())
            panel = snapshot.panel
            self.strings += [panel.iso_date(day) for day in range(panel.n_days)]
            self.arrays += [
                panel.history(name, snapshot.symbols, 10) for name in ("open", "close", "macd_hist")
            ]
        if snapshot.t[0] == 0:
            self.first_close = np.array(snapshot.close)
        return buy_action(np.ones(snapshot.symbols.shape)) * (snapshot.t == 0)[:, None]

    def read(self, value, seen: set[int]) -> None:
        if id(value) in seen:
            return
        seen.add(id(value))
        if isinstance(value, str):
            self.strings.append(value)
        elif isinstance(value, np.ndarray | PastArray):
            array = np.asarray(value)
            if array.dtype.kind in "US" or array.dtype == object:
                self.strings += [str(x) for x in array.ravel()]
            else:
                self.arrays.append(array)
        elif isinstance(value, dict):
            for item in value.values():
                self.read(item, seen)
        elif isinstance(value, list | tuple):
            for item in value:
                self.read(item, seen)
        elif isinstance(value, float | int | np.number):
            self.arrays.append(np.asarray([value]))
        elif hasattr(value, "__dict__"):
            self.read(vars(value), seen)


def _what_leaks(agent: Recorder, result, panel) -> dict[str, bool]:
    """Whether the recorder saw a real symbol, an ISO date, or a real price of its episodes' stocks."""
    real_symbols = set(panel.symbols)
    symbol = any(s in real_symbols for text in agent.strings for s in text.replace(",", " ").split())
    iso = any(re.search(r"\d{4}-\d{2}-\d{2}", text) for text in agent.strings)
    iso |= any(array.dtype.kind == "M" for array in agent.arrays)
    rows = [(row["start_day"], [panel.symbols.index(s) for s in row["symbols"]]) for row in result.episodes]
    fields = ("open", "high", "low", "close")
    prices = np.concatenate([getattr(panel, field)[start - 60 : start + 21][:, columns].ravel()
                             for start, columns in rows for field in fields])  # fmt: skip
    seen = np.concatenate([a.ravel().astype(np.float64) for a in agent.arrays if a.dtype.kind in "fiu"])
    price = np.intersect1d(seen[np.isfinite(seen)], prices).size > 0
    return {"symbol": symbol, "iso_date": iso, "price": price}


@pytest.mark.parametrize("anonymize", [True, False])  # False: the control, so the check can fail
def test_an_anonymised_agent_sees_no_real_symbol_date_or_price(anonymize, panel):
    agent = Recorder()
    config = EvalConfig(task="easy", split="val", episodes=5, seed=2, anonymize=anonymize)
    result = run_evaluation(agent, config, progress=False)
    leaks = _what_leaks(agent, result, panel)
    if not anonymize:
        assert leaks == {"symbol": True, "iso_date": True, "price": True}
        return
    assert leaks == {"symbol": False, "iso_date": False, "price": False}
    np.testing.assert_allclose(agent.first_close, 100.0)  # rescaled like the env's anonymised observation
    assert "STOCK_A" in agent.strings and "day 1" in agent.strings


@pytest.mark.parametrize("agent", ["rsi", "momentum"])  # their rules are scale-free and per stock
def test_scale_free_rules_score_identically_anonymised_and_in_the_clear(agent):
    config = EvalConfig(task="medium", split="val", episodes=8, seed=4)
    clear = run_evaluation(make_agent(agent), config, progress=False)
    hidden = run_evaluation(make_agent(agent), replace(config, anonymize=True), progress=False)
    assert hidden.values("activity").sum() > 0  # the rule traded, so the comparison means something
    assert hidden.episodes == clear.episodes  # same pairing identity, same scores, to the bit


def test_the_anonymous_frame_refuses_an_unclassified_indicator():
    batch = market_env.make_batch("easy", n_envs=2, split="val", seed=0, anonymize=True)
    batch.reset()
    snapshot = batch.market.snapshot()
    snapshot.panel = replace(snapshot.panel, feature_names=(*snapshot.panel.feature_names[:-1], "sma_20"))
    with pytest.raises(ValueError, match=r"\['sma_20'\] are not classified"):
        AnonymousFrame(snapshot, lookback=60)
