"""The grader: hand-checked numbers, hold = 0.300 under 1.0.0, rewards that add up to the grade."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import market_env
from market_env import grader as grader_module
from market_env import kernels
from market_env.grader import GRADERS, RETURN_SCALE, grade_episode, nav_metrics
from market_env.kernels import sharpe_from_moments


def test_grade_of_a_small_nav_series_worked_out_by_hand():
    nav = [100.0, 110.0, 99.0, 121.0]  # returns +10%, -10%, +22.22..%
    r = [0.1, -0.1, 121 / 99 - 1]
    mean = sum(r) / 3
    std = math.sqrt(sum((x - mean) ** 2 for x in r) / 2)
    sharpe = mean / std * math.sqrt(252)  # ~ 9.4: clipped to 1
    grade = grade_episode(
        np.array(nav), trade_days=2, costs=0.5, benchmark_return=0.05, grader_version="1.0.0"
    )
    m = grade["metrics"]
    assert m["sharpe"] == pytest.approx(sharpe)
    assert m["total_return"] == pytest.approx(0.21)
    assert m["max_drawdown"] == pytest.approx(0.1)  # 110 -> 99
    assert m["activity"] == pytest.approx(2 / 3)
    # 0.40 * 1 + 0.30 * clip(0.5 + 0.21 / 0.2) + 0.15 * (1 - 0.1 / 0.2) + 0.15 * clip(0.667 / 0.5)
    assert grade["score"] == pytest.approx(0.40 + 0.30 + 0.15 * 0.5 + 0.15)
    v2 = grade_episode(np.array(nav), trade_days=2, costs=0.5, benchmark_return=0.05, grader_version="2.0.0")
    # excess 0.16 -> 0.5 + 0.8 clipped to 1; cost ratio 0.5 / 100 = 0.005 -> 1 - 0.5
    assert v2["score"] == pytest.approx(0.40 + 0.30 + 0.15 * 0.5 + 0.15 * 0.5)
    assert v2["metrics"]["excess_return"] == pytest.approx(0.16)


def test_a_losing_choppy_episode_scores_low():
    nav = np.array([100.0, 95.0, 97.0, 85.0, 96.0])  # -4% overall, a 15% drawdown on the way
    grade = grade_episode(nav, trade_days=0, costs=0.0, benchmark_return=0.0, grader_version="1.0.0")
    assert grade["metrics"]["sharpe"] < 0
    assert grade["components"] == {
        "sharpe": 0.0,
        "return": pytest.approx(0.5 - 0.04 / 0.2),
        "drawdown": pytest.approx(1 - 0.15 / 0.2),
        "activity": 0.0,
    }


@pytest.mark.parametrize("version", sorted(GRADERS))
def test_weights_add_to_one_so_scores_stay_in_unit_interval(version):
    assert sum(GRADERS[version].weights.values()) == pytest.approx(1.0)


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), task=st.sampled_from(market_env.TASK_NAMES))
def test_hold_every_day_scores_exactly_0_300_under_1_0_0(seed, task):
    env = market_env.make(task, version="1.0.0", obs_mode="numeric")
    env.reset(seed=seed)
    done, rewards = False, []
    while not done:
        _, reward, done, _, info = env.step(np.zeros(env.market.task.n_stocks, dtype=np.float32))
        rewards.append(reward)
    assert info["grade"]["score"] == 0.3
    assert rewards == [0.0] * len(rewards)  # score-to-date of doing nothing never moves


def test_hold_under_2_0_0_is_judged_against_buy_and_hold():
    env = market_env.make("hard", version="2.0.0", split="val", seed=4)
    env.reset()
    for _ in range(40):
        _, _, _, _, info = env.step("HOLD")
    grade = info["grade"]
    bench = grade["metrics"]["benchmark_return"]
    assert grade["metrics"]["excess_return"] == pytest.approx(-bench)
    assert grade["score"] == pytest.approx(0.15 + 0.15 + 0.30 * min(max(0.5 - bench / 0.2, 0.0), 1.0))


@pytest.mark.parametrize("version", sorted(market_env.ENV_VERSIONS))
def test_rewards_add_up_to_final_score_minus_empty_episode_score(version):
    env = market_env.make("medium", version=version, obs_mode="numeric", seed=2)
    env.action_space.seed(2)
    env.reset()
    initial = env.market.sim._score[0]
    total, done = 0.0, False
    while not done:
        _, reward, done, _, info = env.step(env.action_space.sample())
        total += reward
    assert total == pytest.approx(info["grade"]["score"] - initial, abs=1e-12)


@settings(max_examples=50, deadline=None)
@given(st.lists(st.floats(-0.2, 0.2), min_size=2, max_size=40))
def test_running_sharpe_matches_the_full_series_sharpe(returns):
    r = np.array(returns)
    nav = np.concatenate([[1.0], np.cumprod(1 + r)])
    full = nav_metrics(nav, np.array(0), np.array(0.0), np.array(0.0))["sharpe"]
    running = sharpe_from_moments(float(r.sum()), float((r * r).sum()), float(len(r)))
    if r.std(ddof=1) > 1e-9:  # away from zero variance, where the moment form loses precision
        assert running == pytest.approx(full, rel=1e-6, abs=1e-6)


@settings(max_examples=50, deadline=None)
@given(st.lists(st.floats(0.3, 3.0), min_size=2, max_size=41))
def test_grader_3_is_half_plus_the_net_return_clipped_to_the_unit_interval(navs):
    nav = np.array(navs) * 1e6
    grade = grade_episode(nav, trade_days=3, costs=100.0, benchmark_return=0.02, grader_version="3.0.0")
    total_return = nav[-1] / nav[0] - 1.0
    assert 0.0 <= grade["score"] <= 1.0
    assert grade["score"] == min(max(0.5 + total_return / RETURN_SCALE, 0.0), 1.0)
    # the diagnostics stay in the grade, outside the score
    assert {"sharpe", "max_drawdown", "excess_return", "benchmark_return", "cost_ratio"} <= set(
        grade["metrics"]
    )


def test_grader_3_docstring_states_what_half_and_a_tenth_mean():
    doc = grader_module.__doc__
    assert "0.5 means the episode ended with exactly the cash it started with" in doc
    assert "+0.1 means +10% net return" in doc and RETURN_SCALE == 1.0


def test_grader_3_kernel_score_equals_the_numpy_grade_to_the_bit():
    """The per-step score-to-date at the last day is the final grade itself (no Sharpe moment form)."""
    env = market_env.make("hard", version="3.0.0", obs_mode="numeric", seed=5)
    env.action_space.seed(5)
    env.reset()
    sim = env.market.sim
    done = False
    while not done:
        _, _, done, _, info = env.step(env.action_space.sample())
        nav = sim.nav[0, sim.t[0]]
        kernel = kernels.score_to_date(nav, int(sim.t[0]), 0, 0.0, 0.0, 0.0, 0.0, 0.0, sim._rules,
                                       sim._metric_index, sim._coefficients)  # fmt: skip
    assert kernel == info["grade"]["score"]
