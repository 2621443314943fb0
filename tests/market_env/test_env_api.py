"""The Gymnasium contract of MarketEnv: check_env, registration, info keys, determinism, errors."""

from __future__ import annotations

import warnings

import gymnasium
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import market_env
from market_env import EpisodeError, EpisodeFinishedError, UnknownNameError

STEP_INFO_KEYS = {
    "env_version", "task_version", "date", "nav", "cash", "positions", "prices", "costs", "trades",
    "invalid_action", "invalid_reason",
}  # fmt: skip


@pytest.mark.parametrize("obs_mode", ["text", "numeric"])
@pytest.mark.parametrize("task", market_env.TASK_NAMES)
def test_check_env_passes_with_warnings_as_errors(task, obs_mode):
    env = market_env.make(task, obs_mode=obs_mode, seed=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_env(env, skip_render_check=True)


@pytest.mark.parametrize("version", sorted(market_env.ENV_VERSIONS))
def test_registered_ids_make_the_versioned_env(version):
    major = version.split(".")[0]
    env = gymnasium.make(f"nifty-rl/Hard-v{major}", obs_mode="numeric")
    _, info = env.reset(seed=3)
    assert info["env_version"] == version
    assert env.unwrapped.market.task.n_stocks == 25


def test_every_step_info_carries_the_contract(panel):
    env = market_env.make("medium", split="val", version="2.0.0", seed=1)  # 2.0.0: its components below
    _, info = env.reset()
    assert {"env_version", "task_version", "date", "symbols"} <= set(info)
    names = info["symbols"]
    for t in range(env.market.task.n_days):
        _, _, terminated, truncated, info = env.step(
            f"BUY {names[t % 10]} 0.3\nSELL {names[(t + 3) % 10]} 0.5"
        )
        assert set(info) >= STEP_INFO_KEYS
        held = sum(info["positions"][s] * info["prices"][s] for s in names)
        assert info["nav"] == pytest.approx(info["cash"] + held, rel=1e-12)
        assert not truncated
    assert terminated
    grade = info["grade"]
    assert 0.0 <= grade["score"] <= 1.0
    assert grade["env_version"] == "2.0.0" and grade["task_version"] == "1.0.0"
    assert set(grade["components"]) == {"sharpe", "excess_return", "drawdown", "costs"}
    # the date the next decision would see is the final marking close, inside the split
    assert info["date"] == grade["end_date"] <= "2024-12-31"


def test_same_seed_same_actions_identical_trajectories():
    def rollout():
        env = market_env.make("hard", obs_mode="numeric", seed=11)
        env.action_space.seed(5)
        obs, info = env.reset()
        trajectory = [(obs, 0.0, info)]
        done = False
        while not done:
            obs, reward, done, _, info = env.step(env.action_space.sample())
            trajectory.append((obs, reward, info))
        return trajectory

    first, second = rollout(), rollout()
    assert len(first) == len(second) == 41
    for (obs_a, reward_a, info_a), (obs_b, reward_b, info_b) in zip(first, second):
        np.testing.assert_array_equal(obs_a, obs_b)
        assert reward_a == reward_b
        assert info_a == info_b


def test_different_seeds_give_different_episodes():
    env = market_env.make("easy", seed=0)
    starts = {env.reset(seed=seed)[1]["start_date"] for seed in range(10)}
    assert len(starts) > 5


def test_explicit_episode_from_reset_options():
    env = market_env.make("medium", split="test")
    symbols = ["INFY", "ITC", "LT", "M&M", "MARUTI", "NTPC", "ONGC", "SBIN", "TCS", "TITAN"]
    _, info = env.reset(options={"start_date": "2025-06-02", "symbols": symbols})
    assert info["start_date"] == "2025-06-02" and info["symbols"] == sorted(symbols)


@pytest.mark.parametrize(
    "options, message",
    [
        (
            {"start_date": "2024-06-03", "symbols": ["TCS"]},
            "not a valid easy start",
        ),  # val date in test split
        ({"start_date": "2025-06-02", "symbols": ["NOPE"]}, "unknown symbol"),
        ({"start_date": "2025-06-02", "symbols": ["TCS", "INFY"]}, "needs 1 distinct"),
        ({"start_date": "2025-06-02", "symbols": ["LTM"]}, "lack rows"),  # listed 2026-02-18
        ({"start": "2025-06-02"}, "name no episode"),
    ],
)
def test_bad_explicit_episode_is_a_clear_error(options, message):
    env = market_env.make("easy", split="test")
    with pytest.raises(EpisodeError, match=message):
        env.reset(options=options)


@pytest.mark.parametrize(
    "kwargs, kind",
    [
        ({"task": "expert"}, "task"),
        ({"split": "holdout"}, "split"),
        ({"obs_mode": "image"}, "observation mode"),
        ({"version": "0.9.0"}, "env version"),
    ],
)
def test_unknown_names_list_the_valid_ones(kwargs, kind):
    with pytest.raises((UnknownNameError, ValueError), match="expected one of"):
        market_env.make(**kwargs)


def test_step_after_the_end_says_to_reset():
    env = market_env.make("easy", seed=0)
    env.reset()
    for _ in range(20):
        env.step("HOLD")
    with pytest.raises(EpisodeFinishedError, match="reset"):
        env.step("HOLD")


def test_text_env_takes_any_string_and_rejects_other_types_by_name():
    env = market_env.make("easy", seed=0)
    env.reset()
    _, _, _, _, info = env.step("BUY")  # any string is a move of the agent: malformed is an invalid HOLD
    assert info["invalid_action"] and info["trades"] == []
    for bad in (12345, None, b"HOLD", ["HOLD"]):  # not a string: a bug in the caller, said by name
        with pytest.raises(ValueError, match="text action must be a str"):
            env.step(bad)


def test_numeric_action_of_the_wrong_shape_is_a_clear_error():
    env = market_env.make("medium", obs_mode="numeric", seed=0)
    env.reset()
    with pytest.raises(ValueError, match=r"shape \(10,\)"):
        env.step(np.zeros(3))


def test_nonfinite_numeric_values_hold_that_stock_and_are_flagged():
    env = market_env.make("medium", obs_mode="numeric", seed=0)
    env.reset()
    action = np.zeros(10, dtype=np.float32)
    action[[0, 1]] = [np.nan, 1.0]
    _, _, _, _, info = env.step(action)
    assert info["nonfinite_actions"] == [env.names[0]]
    assert info["positions"][env.names[0]] == 0 and info["positions"][env.names[1]] > 0


def test_render_shows_the_text_view_in_numeric_mode():
    env = market_env.make("easy", obs_mode="numeric", seed=0, render_mode="ansi")
    env.reset()
    assert env.render().startswith("Day 1 of 20")


# ------------------------------------------------------------------------------ seeding and small defects
def test_a_reset_after_an_explicitly_seeded_first_reset_plays_a_new_episode():
    # before: make(seed=s), reset(seed=s), reset() replayed the first episode (the construction seed
    # was still waiting to be used)
    env = market_env.make("medium", split="train", obs_mode="numeric", seed=3)
    first, _ = env.reset(seed=3)
    second, _ = env.reset()
    assert not np.array_equal(first, second)
    reference = market_env.make("medium", split="train", obs_mode="numeric")
    reference.reset(seed=3)
    np.testing.assert_array_equal(reference.reset()[0], second)  # it continues the generator


def test_a_nan_numeric_action_is_flagged_invalid_as_in_the_batch():
    env = market_env.make("medium", obs_mode="numeric", seed=0)
    env.reset()
    _, _, _, _, info = env.step(np.zeros(10))
    assert not info["invalid_action"] and info["invalid_reason"] == ""
    action = np.zeros(10)
    action[3] = np.nan
    _, _, _, _, info = env.step(action)
    batch = market_env.make_batch("medium", n_envs=1, seed=0)
    batch.reset()
    batch.step(np.zeros((1, 10)))
    _, _, _, _, infos = batch.step(action[None])
    assert info["invalid_action"] and infos["invalid_action"][0]
    assert env.names[3] in info["invalid_reason"] and info["nonfinite_actions"] == [env.names[3]]


# ----------------------------------------------------------------------- input validation (issue 18)
@pytest.mark.parametrize(
    "bad",
    [
        1 + 2j,  # complex: NumPy would drop the imaginary part (or raise TypeError)
        np.full(10, 1 + 1j),
        {"a": 1},  # a dict: TypeError from float()
        np.array([0.1] * 9 + ["x"], dtype=object),  # object arrays
        pytest.param([10**400] * 10, id="list-of-10**400"),  # too large for a float: OverflowError
        pytest.param(10**400, id="10**400"),
        "0.5",
        None,
        [[0.1], [0.1, 0.2]],  # ragged
        np.ones(10, dtype=bool),
    ],
)
def test_numeric_actions_of_a_bad_type_are_a_value_error_naming_the_action(bad):
    env = market_env.make("medium", obs_mode="numeric", seed=0)
    env.reset()
    with pytest.raises(ValueError, match="numeric action"):
        env.step(bad)
    env.step(np.zeros(10))  # the env is intact


@pytest.mark.parametrize("seed", [-1, 1.5, "7", True])
def test_bad_seeds_and_options_are_value_errors_naming_them(seed):
    env = market_env.make("easy")
    with pytest.raises(ValueError, match="seed"):
        env.reset(seed=seed)
    with pytest.raises(ValueError, match="options"):
        env.reset(options=["start_date"])
    with pytest.raises(ValueError, match="episode"):
        env.play("2025-06-02")
