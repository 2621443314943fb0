"""The batch endpoint (the rollout backend): the same observations, rewards, flags and infos as the in-process
``make_batch`` with the same seed and actions, through ``RemoteBatchMarketEnv``; its refusals are 4xx."""

from __future__ import annotations

import numpy as np
import pytest

import market_env
from market_env.server import RemoteBatchMarketEnv, RemoteEnvError
from market_env.server.models import jsonable


def batch_actions(rng: np.random.Generator, benv, obs_mode: str, n_envs: int, n_stocks: int):
    if obs_mode == "numeric":
        values = rng.uniform(-1.0, 1.0, (n_envs, n_stocks))
        values[0, 0] = np.nan  # a non-finite value: a hold for that stock, flagged, as in-process
        return values
    names = benv.names if hasattr(benv, "names") else None
    return [f"BUY {names[i][0]} 0.3\nSELL {names[i][-1]} 0.5" if i % 3 else "nonsense" for i in range(n_envs)]


@pytest.mark.parametrize(
    ("task", "obs_mode", "encoding", "n_envs"),
    [
        ("hard", "numeric", "base64", 8),  # the rollout setting: float32 bits travel exactly
        ("medium", "numeric", "json", 5),  # observations as JSON lists, converted back to float32
        ("easy", "text", "json", 3),  # text actions, some malformed (invalid HOLDs with reasons)
    ],
)
def test_batch_endpoint_matches_in_process_make_batch(client, task, obs_mode, encoding, n_envs):
    local = market_env.make_batch(task, n_envs, "val", obs_mode, seed=3)
    remote = RemoteBatchMarketEnv(task=task, n_envs=n_envs, split="val", obs_mode=obs_mode, seed=3,
                                  encoding=encoding, http=client)  # fmt: skip
    n_stocks = local.market.task.n_stocks
    assert remote.single_observation_space == local.single_observation_space
    assert remote.single_action_space == local.single_action_space
    (obs, infos), (r_obs, r_infos) = local.reset(), remote.reset()
    assert_same_obs(obs, r_obs)
    assert jsonable(infos) == r_infos
    rng = np.random.default_rng(0)
    finished = 0
    for _ in range(local.market.task.n_days + 3):  # past one episode end: autoreset is covered
        actions = batch_actions(rng, local, obs_mode, n_envs, n_stocks)
        obs, reward, terminated, truncated, infos = local.step(actions)
        r_obs, r_reward, r_terminated, r_truncated, r_infos = remote.step(actions)
        assert_same_obs(obs, r_obs)
        assert np.array_equal(reward, r_reward) and np.array_equal(terminated, r_terminated)
        assert np.array_equal(truncated, r_truncated) and jsonable(infos) == r_infos
        finished += int(terminated.sum())
    assert finished == n_envs  # every slot ended one episode and started the next
    (obs, _), (r_obs, _) = local.reset(seed=9), remote.reset(seed=9)  # an explicit seed, as in-process
    assert_same_obs(obs, r_obs)
    remote.close()
    remote.close()  # twice is harmless
    assert client.get("/health").json()["active_sessions"] == 0


def assert_same_obs(local, remote) -> None:
    if isinstance(local, np.ndarray):
        assert remote.dtype == np.float32 and np.array_equal(local, remote)
    else:
        assert local == remote


def test_batch_refusals_are_4xx_with_the_reason(client):
    remote = RemoteBatchMarketEnv(task="hard", n_envs=4, obs_mode="numeric", seed=0, http=client)
    sid = remote.session_id
    cases = [
        ({"actions": np.zeros((3, 25)).tolist()}, "shape (4, 25), got (3, 25)"),  # one slot short
        ({"actions": ["HOLD"] * 4}, "takes 4 lists of 25 floats"),  # text to a numeric batch
        ({"actions": [[0.0] * 25, [0.0]] * 2}, "bad actions"),  # ragged
        ({"actions": {"dtype": "float64", "shape": [4, 25], "data": "AAAA"}}, "cannot decode"),  # 3 bytes
        ({"actions": {"dtype": "int8", "shape": [4, 25], "data": ""}}, "string_pattern_mismatch"),
        ({"actions": [[0.0] * 2_000] * 4}, "longer than 1024"),
    ]
    for body, message in cases:
        response = client.post(f"/batches/{sid}/step", json=body)
        assert response.status_code == 422 and message in response.text, response.text
        assert response.json()["env_version"] == market_env.ENV_VERSION
    assert client.post(f"/sessions/{sid}/step", json={"action": "HOLD"}).status_code == 404  # not a session
    assert client.post("/batches/nope/reset", json={}).status_code == 404
    for body in [{"n_envs": 0}, {"n_envs": 10**6}, {"encoding": "pickle"}]:
        assert client.post("/batches", json={"task": "easy"} | body).status_code == 422
    text = RemoteBatchMarketEnv(task="easy", n_envs=2, obs_mode="text", seed=0, http=client)
    with pytest.raises(RemoteEnvError, match="list of 2 strings") as refused:
        text.step(["HOLD"])
    assert refused.value.status == 422
    assert client.delete(f"/batches/{sid}").json()["deleted"] is True
    text.close()


def test_a_batch_takes_one_session_slot(make_client):
    client = make_client(max_sessions=1)
    remote = RemoteBatchMarketEnv(task="easy", n_envs=16, seed=0, http=client)
    with pytest.raises(RemoteEnvError, match="limit of 1 sessions"):
        RemoteBatchMarketEnv(task="easy", n_envs=1, seed=0, http=client)
    remote.close()
