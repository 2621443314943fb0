"""Paired episodes, and numbers recomputed independently of the environment's own code."""

from __future__ import annotations

import itertools
import math
import statistics

import numpy as np
import pandas as pd
import pytest

from data.loader import embedded_path
from eval.agents import make_agent
from eval.harness import EvalConfig, rescore, run_evaluation, same_market

CONFIG = EvalConfig(task="medium", split="val", episodes=12, seed=5, env_version="1.0.0")
BUY_RATE = 0.001 + 0.00015 + (0.0000297 + 0.000001) * 1.18


@pytest.fixture(scope="module")
def results():
    return {
        name: run_evaluation(make_agent(name), CONFIG, progress=False)
        for name in ("hold", "buy-and-hold", "rsi")
    }


def test_every_agent_plays_the_same_episodes(results):
    keys = {
        name: [(r["start_date"], tuple(r["symbols"])) for r in res.episodes] for name, res in results.items()
    }
    assert keys["hold"] == keys["rsi"] == keys["buy-and-hold"]
    assert len(set(keys["hold"])) > 1


def test_hold_scores_0_300_on_every_episode_under_1_0_0(results):
    assert results["hold"].values("score").tolist() == [0.3] * 12


def test_buy_and_hold_return_is_the_equal_weight_market_return_minus_costs(results, panel):
    prices = pd.read_csv(embedded_path(), parse_dates=["date"]).set_index(["symbol", "date"]).sort_index()
    for row in results["buy-and-hold"].episodes:
        start = panel.day_index(row["start_date"])
        fill_day, last_day = pd.Timestamp(panel.dates[start + 1]), pd.Timestamp(panel.dates[start + 30])
        cash, held, market = 1_000_000.0, 0.0, []
        for symbol in row["symbols"]:
            price = prices.loc[(symbol, fill_day), "open"] * 1.001  # 10 bps slippage
            shares = math.floor(1_000_000 * (1 - 1e-9) / 10 / (price * (1 + BUY_RATE)))
            cash -= shares * price * (1 + BUY_RATE)
            held += shares * prices.loc[(symbol, last_day), "close"]
            market.append(
                prices.loc[(symbol, last_day), "close"] / prices.loc[(symbol, fill_day), "open"] - 1
            )
        assert row["total_return"] == pytest.approx((cash + held) / 1_000_000 - 1, abs=1e-9)
        # and close to the plain equal-weight market return minus entry costs and slippage; whole shares
        # leave up to a few % of the cash uninvested, which earns nothing, hence the loose tolerance
        assert row["total_return"] == pytest.approx(np.mean(market) - BUY_RATE - 0.001, abs=0.01)
        assert row["benchmark_return"] == pytest.approx(row["total_return"], abs=1e-12)


def test_metrics_match_an_independent_implementation(results):
    for row in results["rsi"].episodes:
        nav = row["nav"]
        returns = [b / a - 1 for a, b in itertools.pairwise(nav)]
        sd = statistics.stdev(returns)
        sharpe = statistics.fmean(returns) / sd * math.sqrt(252) if sd > 0 else 0.0
        peak, drawdown = nav[0], 0.0
        for value in nav:
            peak = max(peak, value)
            drawdown = max(drawdown, 1 - value / peak)
        assert row["sharpe"] == pytest.approx(sharpe, rel=1e-9, abs=1e-12)
        assert row["max_drawdown"] == pytest.approx(drawdown, abs=1e-12)
        assert row["total_return"] == pytest.approx(nav[-1] / nav[0] - 1, abs=1e-12)
        assert row["activity"] == pytest.approx(row["trade_days"] / 30)
        clip = lambda x: min(max(x, 0.0), 1.0)  # noqa: E731
        score = (0.4 * clip(sharpe / 3) + 0.3 * clip(0.5 + row["total_return"] / 0.2)
                 + 0.15 * clip(1 - drawdown / 0.2) + 0.15 * clip(row["activity"] / 0.5))  # fmt: skip
        assert row["score"] == pytest.approx(score, abs=1e-12)


def test_rescoring_under_2_0_0_equals_replaying_under_2_0_0(results):
    assert same_market("1.0.0", "2.0.0", "medium")
    rescored = rescore(results["rsi"], "2.0.0")
    replayed = run_evaluation(
        make_agent("rsi"), EvalConfig(**{**CONFIG.__dict__, "env_version": "2.0.0"}), False
    )
    assert rescored.grader_version == replayed.grader_version == "2.0.0"
    np.testing.assert_allclose(rescored.values("score"), replayed.values("score"), atol=1e-12)
    assert rescored.episodes[0]["component_costs"] == replayed.episodes[0]["component_costs"]


def test_a_rule_agent_through_the_text_pipeline_matches_its_numeric_run(results):
    text = run_evaluation(make_agent("rsi"), EvalConfig(**{**CONFIG.__dict__, "obs_mode": "text"}), False)
    assert text.obs_mode == "text"
    np.testing.assert_allclose(text.values("score"), results["rsi"].values("score"), atol=1e-3)
    assert text.values("invalid_rate").max() == 0.0


def test_rows_carry_the_calendar_start_day_the_intervals_cluster_on(results, panel):
    result = results["rsi"]
    for row in result.episodes:
        assert panel.iso_date(row["start_day"]) == row["start_date"]
    assert result.window == 30 and result.starts.shape == (12,)


def test_a_slow_run_says_how_long_it_will_take_and_logs_progress_without_a_terminal(capsys, monkeypatch):
    from eval import harness

    monkeypatch.setattr(harness.StepClock, "ESTIMATE_ABOVE_S", 0.0)
    with harness.StepClock("llm easy", n_days=4, decisions_per_day=3, enabled=True, log_every=0.0) as clock:
        for _ in range(4):
            clock.advance()
            assert clock.bar.tasks[0].fields["eta"].endswith("left")  # a real remaining time, never -:--:--
    err = capsys.readouterr().err
    assert "12 decisions (4 days x 3 episodes)" in err and "s per decision on day 1: about" in err
    assert "day 1/4" in err and "day 3/4" in err  # plain lines for a log
    assert harness._duration(3725) == "1:02:05" and harness._duration(65) == "1:05"
