"""Parity: the same seed and actions give identical observations, rewards, info and grades in-process and over
HTTP, through ``RemoteMarketEnv`` (the Gymnasium client) on the app."""

from __future__ import annotations

import numpy as np
import pytest

import market_env
from market_env.server import RemoteEnvError, RemoteMarketEnv
from market_env.server.models import jsonable


def play(env, actions, seed: int, episodes: int) -> list[tuple]:
    """Every reset and step result of ``episodes`` episodes, the first seeded by the constructor."""
    rng = np.random.default_rng(seed)
    transcript = []
    for _ in range(episodes):
        observation, info = env.reset()
        transcript.append((observation, jsonable(info)))
        terminated = False
        while not terminated:
            observation, reward, terminated, truncated, info = env.step(actions(rng, env.names, env.obs_mode))
            transcript.append((observation, reward, terminated, truncated, jsonable(info)))
    return transcript


def assert_same(local: list[tuple], remote: list[tuple]) -> None:
    assert len(local) == len(remote)
    for mine, theirs in zip(local, remote):
        if isinstance(mine[0], np.ndarray):
            assert theirs[0].dtype == np.float32 and np.array_equal(mine[0], theirs[0])
        else:
            assert mine[0] == theirs[0]
        assert mine[1:] == theirs[1:]  # rewards, flags and the whole info (grade included) to the last bit


@pytest.mark.parametrize(
    ("task", "obs_mode", "version", "anonymize"),
    [
        ("hard", "text", "2.0.0", False),  # the LLM setting: text actions, some malformed, default grader
        ("hard", "numeric", "1.0.0", False),  # float32 vectors through JSON, the older frozen version
        ("medium", "text", None, True),  # anonymised names and rescaled prices, version left to the default
        ("easy", "numeric", "2.0.0", False),  # one stock: the smallest action list
    ],
)
def test_same_seed_and_actions_give_identical_episodes(client, actions, task, obs_mode, version, anonymize):
    seed = 11
    local = market_env.make(task, "val", obs_mode, version, seed, anonymize=anonymize)
    local.obs_mode = obs_mode  # so one ``play`` serves both envs
    remote = RemoteMarketEnv(task=task, split="val", obs_mode=obs_mode, version=version, seed=seed,
                             anonymize=anonymize, http=client)  # fmt: skip
    assert remote.observation_space == local.observation_space
    assert remote.action_space == local.action_space
    # two episodes: the second checks that reset() without a seed continues the same random stream
    local_run, remote_run = play(local, actions, seed, 2), play(remote, actions, seed, 2)
    assert_same(local_run, remote_run)
    assert "grade" in remote_run[-1][-1] and remote_run[-1][-1]["grade"]["env_version"] == (
        version or market_env.ENV_VERSION
    )
    remote.close()


def test_reset_with_a_seed_and_with_an_explicit_episode_matches_in_process(client):
    local = market_env.make("easy", "test", "text")
    remote = RemoteMarketEnv(task="easy", split="test", obs_mode="text", http=client)
    assert_same([local.reset(seed=42)], [remote.reset(seed=42)])
    options = {"start_date": "2025-03-03", "symbols": ["TCS"]}
    (obs, info), (remote_obs, remote_info) = local.reset(options=options), remote.reset(options=options)
    assert obs == remote_obs and jsonable(info) == remote_info and remote_info["symbols"] == ["TCS"]
    with pytest.raises(ValueError, match="start_date and symbols"):
        remote.reset(options={"episode": 3})  # an Episode object cannot travel; the error says what can
    with pytest.raises(RemoteEnvError, match="not a trading day"):
        remote.reset(options={"start_date": "2025-03-01", "symbols": ["TCS"]})  # a Saturday
    with pytest.raises(RemoteEnvError, match="not a valid easy start in split test"):
        remote.reset(options={"start_date": "2024-06-03", "symbols": ["TCS"]})  # a trading day of val


def test_state_export_forks_the_remote_episode_in_process_exactly(client, actions):
    """The state endpoint's EpisodeState continues in-process exactly where the session stands."""
    remote = RemoteMarketEnv(task="medium", split="train", obs_mode="numeric", seed=5, http=client)
    remote.reset()
    rng = np.random.default_rng(0)
    for _ in range(12):
        remote.step(actions(rng, remote.names, "numeric"))
    fork = market_env.make("medium", "train", "numeric")
    fork.reset()
    fork.set_state(remote.get_state())
    state = remote.state()
    held = dict(zip(fork.names, (int(shares) for shares in fork.get_state().shares)))
    assert (state["t"], state["done"], state["positions"]) == (12, False, held) and sum(held.values()) > 0
    for _ in range(30 - 12):
        action = actions(rng, remote.names, "numeric")
        (obs, reward, *_, info), (r_obs, r_reward, *_, r_info) = fork.step(action), remote.step(action)
        assert np.array_equal(obs, r_obs) and reward == r_reward
    assert jsonable(info["grade"]) == r_info["grade"]


def test_client_surface_matches_the_in_process_errors(client):
    remote = RemoteMarketEnv(task="easy", obs_mode="numeric", seed=0, http=client)
    with pytest.raises(market_env.EpisodeFinishedError, match="reset"):
        remote.step([0.0])  # before the first reset, as in-process
    remote.reset()
    with pytest.raises(RemoteEnvError, match="list of 1 floats") as refused:
        remote.step([0.5, 0.5])
    assert refused.value.status == 422
    for _ in range(20):
        *_, terminated, _, _ = remote.step([0.0])
    assert terminated
    with pytest.raises(market_env.EpisodeFinishedError, match="reset"):
        remote.step([0.0])
    remote.close()
    remote.close()  # twice is harmless
    assert client.get("/health").json()["active_sessions"] == 0
    obs, _ = remote.reset(seed=3)  # a closed client opens a new session
    assert obs.shape == (16,) and client.get("/health").json()["active_sessions"] == 1
    with pytest.raises(RemoteEnvError, match="unknown task 'expert'") as refused:
        RemoteMarketEnv(task="expert", http=client)
    assert refused.value.status == 422
