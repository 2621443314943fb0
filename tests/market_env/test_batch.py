"""The batch API: same simulator as the single env, same-step autoreset, exact forks."""

from __future__ import annotations

import numpy as np
import pytest

import market_env


def _numeric_actions(n_steps: int, n_envs: int, n_stocks: int) -> np.ndarray:
    return np.random.default_rng(0).uniform(-1, 1, (n_steps, n_envs, n_stocks)).astype(np.float32)


@pytest.mark.parametrize("task", ["easy", "hard"])
def test_slot_i_plays_exactly_the_single_env_episode_seeded_seed_plus_i(task):
    batch = market_env.make_batch(task, n_envs=4, split="val", seed=100)
    obs, infos = batch.reset()
    n_days, n_stocks = batch.market.task.n_days, batch.market.task.n_stocks
    actions = _numeric_actions(n_days, 4, n_stocks)
    batch_steps = [batch.step(a) for a in actions]
    for i in range(4):
        env = market_env.make(task, split="val", obs_mode="numeric")
        single_obs, info = env.reset(seed=100 + i)
        np.testing.assert_array_equal(single_obs, obs[i])
        assert info["start_date"] == infos["episodes"][i]["start_date"]
        for t, (_, b_reward, b_done, _, b_info) in enumerate(batch_steps):
            _, s_reward, s_done, _, s_info = env.step(actions[t, i])
            assert s_reward == b_reward[i] and s_done == b_done[i]
            assert s_info["nav"] == b_info["nav"][i]
        assert s_info["grade"] == b_info["grade"][i]


def test_finished_slots_autoreset_in_the_same_step_into_the_next_seeded_episode():
    batch = market_env.make_batch("easy", n_envs=3, split="train", version="2.0.0", seed=7)
    batch.reset()
    for _ in range(19):
        _, _, done, _, infos = batch.step(np.zeros((3, 1)))
        assert not done.any() and "grade" not in infos
    obs, _, done, _, infos = batch.step(np.zeros((3, 1)))
    assert done.all() and infos["_grade"].all()
    for grade in infos[
        "grade"
    ]:  # holding under 2.0.0: no Sharpe, no drawdown, no costs, only the excess term moves
        assert grade["score"] == pytest.approx(0.15 + 0.15 + 0.30 * grade["components"]["excess_return"])
    env = market_env.make("easy", split="train", obs_mode="numeric")
    env.reset(seed=8)
    second, _ = env.reset()  # the slot's generator continues, like the single env's
    np.testing.assert_array_equal(obs[1], second)


def test_text_batch_parses_each_slot_with_its_own_symbols():
    batch = market_env.make_batch("medium", n_envs=3, split="test", obs_mode="text", version="2.0.0", seed=1)
    obs, infos = batch.reset()
    assert len(obs) == 3 and all(o.startswith("Day 1 of 30") for o in obs)
    names = infos["symbols"]
    actions = [f"BUY {names[0][0]} 0.2", "I would buy something", f"<think>ok</think>\nSELL {names[2][1]} 1"]
    _, _, _, _, infos = batch.step(actions)
    assert infos["invalid_action"].tolist() == [False, True, False]
    assert infos["invalid_reason"][1] == "no action line found"
    assert infos["n_trades"].tolist() == [1, 0, 0]  # nothing to sell yet in slot 2
    assert infos["env_version"] == "2.0.0" and infos["task_version"] == "1.0.0"


def test_a_forked_state_continues_exactly_like_the_original():
    batch = market_env.make_batch("hard", n_envs=2, split="train", seed=3)
    batch.reset()
    actions = _numeric_actions(40, 2, 25)
    for t in range(10):
        batch.step(actions[t])
    state = batch.export_state(0)
    fork = market_env.make_batch(
        "hard", n_envs=3, split="val", seed=99
    )  # another split: the state carries all
    fork.reset()
    fork_obs = fork.load_states([2], [state])
    original_obs = batch.market.snapshot()
    from market_env.observations import render_vectors

    np.testing.assert_array_equal(fork_obs[2], render_vectors(original_obs)[0])
    for t in range(10, 40):
        _, reward, done, _, infos = batch.step(actions[t])
        fork_action = np.zeros((3, 25), dtype=np.float32)
        fork_action[2] = actions[t, 0]
        _, fork_reward, fork_done, _, fork_infos = fork.step(fork_action)
        assert fork_reward[2] == pytest.approx(reward[0], abs=1e-12) and fork_done[2] == done[0]
    assert fork_infos["grade"][2]["score"] == infos["grade"][0]["score"]
    assert fork_infos["grade"][2]["nav"] == infos["grade"][0]["nav"]


def test_single_env_state_round_trip():
    env = market_env.make("medium", split="val", seed=4)
    env.reset()
    env.step(f"BUY {env.names[0]} 0.5")
    state = env.get_state()
    other = market_env.make("medium", split="val")
    other.reset(seed=0)
    other.set_state(state)
    assert other.names == env.names
    assert other.render() == env.render()


@pytest.mark.parametrize("bad", [np.zeros((2, 25)), np.zeros((3, 24))])
def test_numeric_actions_of_the_wrong_shape_are_a_clear_error(bad):
    batch = market_env.make_batch("hard", n_envs=3, seed=0)
    batch.reset()
    with pytest.raises(ValueError, match=r"shape \(3, 25\)"):
        batch.step(bad)


def test_wrong_number_of_text_actions_is_a_clear_error():
    batch = market_env.make_batch("easy", n_envs=2, obs_mode="text", seed=0)
    batch.reset()
    with pytest.raises(ValueError, match="expected 2 text actions"):
        batch.step(["HOLD"])
    with pytest.raises(ValueError, match="n_envs"):
        market_env.make_batch("easy", n_envs=0)


# ------------------------------------------------------------------------------ seeding and autoreset
def test_a_reset_without_a_seed_is_reproducible_from_the_construction_seed():
    # before: the second reset() drew from OS entropy
    def two_resets():
        batch = market_env.make_batch("medium", n_envs=3, split="train", seed=21)
        batch.reset()
        return batch.reset()[0], [i["start_date"] for i in batch.episode_identities()]

    (first_obs, first_dates), (second_obs, second_dates) = two_resets(), two_resets()
    np.testing.assert_array_equal(first_obs, second_obs)
    assert first_dates == second_dates
    env = market_env.make("medium", split="train", obs_mode="numeric")  # slot i continues seed + i
    env.reset(seed=22)
    np.testing.assert_array_equal(env.reset()[0], first_obs[1])


@pytest.mark.parametrize("anonymize", [False, True])
def test_on_an_autoreset_step_symbols_name_the_new_episode_and_the_grade_the_finished_one(anonymize):
    batch = market_env.make_batch(
        "medium", n_envs=2, split="val", obs_mode="text", seed=3, anonymize=anonymize
    )
    _, infos = batch.reset()
    finished_names = infos["symbols"]
    finished = batch.episode_identities()
    for _ in range(30):
        obs, _, done, _, infos = batch.step(["HOLD", "HOLD"])
    assert done.all()
    new = batch.episode_identities()
    for i in range(2):
        rows = [line.split("|")[0] for line in obs[i].splitlines()[2:12]]
        assert infos["symbols"][i] == tuple(rows) == batch.names[i]  # the observation's episode
        assert infos["grade"][i]["symbols"] == list(finished_names[i])  # the finished one
        assert batch.finished_identities()[i] == finished[i] != new[i]
        if not anonymize:
            assert infos["grade"][i]["real_symbols"] == finished[i]["real_symbols"]
            assert list(infos["symbols"][i]) == new[i]["real_symbols"]
    batch.step(["HOLD", "HOLD"])
    assert batch.finished_identities() == [None, None]


# ------------------------------------------------------------------------- input validation (issue 18)
@pytest.mark.parametrize(
    "bad, message",
    [
        ("HOLD", "single string"),  # before: split into characters
        (np.zeros(3), "array of dtype float64"),  # before: read as 3 actions
        (["HOLD", 1, "HOLD"], r"actions\[1\] must be a string"),  # before: silently a HOLD
        (["HOLD", None, "HOLD"], r"actions\[1\] must be a string"),
        (7, "must be a list"),
        (["HOLD"], "expected 3 text actions"),
    ],
)
def test_text_batch_rejects_actions_that_are_not_a_list_of_strings(bad, message):
    batch = market_env.make_batch("easy", n_envs=3, obs_mode="text", seed=0)
    batch.reset()
    with pytest.raises(ValueError, match=message):
        batch.step(bad)


@pytest.mark.parametrize(
    "bad", [np.full((3, 1), 1j), {"a": 1}, np.zeros((3, 1), dtype=object), [[10**400]] * 3, "0.5"]
)
def test_numeric_batch_rejects_non_real_actions_with_a_value_error(bad):
    batch = market_env.make_batch("easy", n_envs=3, seed=0)
    batch.reset()
    with pytest.raises(ValueError, match="numeric actions"):
        batch.step(bad)


def test_batch_seeds_options_and_fork_slots_are_checked():
    batch = market_env.make_batch("easy", n_envs=2, seed=0)
    batch.reset()
    for seed in (-1, [1], [1, "2"], "ab"):
        with pytest.raises(ValueError, match="seed"):
            batch.reset(seed=seed)
    with pytest.raises(ValueError, match="episodes"):
        batch.reset(options={"episodes": ["x", "y"]})
    state = batch.export_state(0)
    with pytest.raises(ValueError, match="env_ids"):
        batch.load_states([2], [state])
    with pytest.raises(ValueError, match="differ in length"):
        batch.load_states([0, 1], [state])
    with pytest.raises(ValueError, match="n_envs"):
        market_env.make_batch("easy", n_envs="2")
