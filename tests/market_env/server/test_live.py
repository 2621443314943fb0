"""Against REAL uvicorn servers on 127.0.0.1: ``serve-env`` in a child process plays 64 concurrent hard
episodes and refuses the 65th session; the Gymnasium checker passes through the client."""

from __future__ import annotations

import threading
import warnings
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import market_env
from market_env.server import RemoteEnvError, RemoteMarketEnv
from market_env.server.app import config_from_args, make_parser
from market_env.server.models import jsonable

N_SESSIONS = 64


def run_episode(env: RemoteMarketEnv, seed: int, actions, barrier: threading.Barrier) -> tuple[list, dict]:
    """One full episode with random actions; bounded: at most n_days + 1 steps, then it stops by itself."""
    rng = np.random.default_rng(seed)
    _, info = env.reset()
    barrier.wait(timeout=60)  # every session steps at the same time
    sent = []
    for _ in range(41):
        action = actions(rng, env.names, env.obs_mode)
        sent.append(action)
        *_, terminated, truncated, info = env.step(action)
        if terminated or truncated:
            return sent, info
    raise AssertionError("a hard episode ran past its 40 days")


def replay(seed: int, obs_mode: str, sent: list) -> dict:
    env = market_env.make("hard", "train", obs_mode, seed=seed)
    env.reset()
    for action in sent:
        *_, info = env.step(action)
    return info


def test_64_concurrent_hard_episodes_complete_isolated_and_the_65th_is_refused(serve_env, actions):
    """Against ``serve-env`` started as a user would (its defaults: loopback, 64 sessions)."""
    with serve_env() as url:
        modes = ["text" if i % 2 == 0 else "numeric" for i in range(N_SESSIONS)]
        envs = [RemoteMarketEnv(url, task="hard", split="train", obs_mode=mode, seed=100 + i)
                for i, mode in enumerate(modes)]  # fmt: skip
        with pytest.raises(RemoteEnvError, match="limit of 64 sessions") as refused:
            RemoteMarketEnv(url, task="hard")
        assert refused.value.status == 429
        barrier = threading.Barrier(N_SESSIONS)
        with ThreadPoolExecutor(N_SESSIONS) as pool:
            futures = [pool.submit(run_episode, env, 100 + i, actions, barrier) for i, env in enumerate(envs)]
            results = [future.result(timeout=120) for future in futures]
        states = [env.state() for env in envs]
        for env in envs:
            env.close()
        with httpx.Client(base_url=url) as http:
            assert http.get("/health").json()["active_sessions"] == 0
            assert http.post("/sessions", json={"task": "hard"}).status_code == 201  # slots are free again
    # isolation: every session's grade and book equal an in-process replay of its own seed and actions
    for i, ((sent, info), state) in enumerate(zip(results, states)):
        local = replay(100 + i, modes[i], sent)
        assert info["grade"] == jsonable(local["grade"]), f"session {i}"
        assert state["positions"] == local["positions"] and state["done"] and state["t"] == 40
    assert len({info["grade"]["score"] for _, info in results}) > N_SESSIONS // 2  # different episodes


@pytest.mark.parametrize("obs_mode", ["text", "numeric"])  # both action and observation spaces
def test_the_client_passes_check_env_against_a_real_server(live_url, obs_mode):
    env = RemoteMarketEnv(live_url, task="medium", split="val", obs_mode=obs_mode, seed=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_env(env, skip_render_check=True)
    env.close()
    obs, info = env.reset(seed=1)  # after close: a new connection and a new session
    assert env.observation_space.contains(obs) and info["split"] == "val"
    env.close()


def test_serve_env_arguments_default_to_loopback_and_refuse_nonsense(capsys):
    args = make_parser().parse_args([])
    assert (args.host, args.port, args.max_sessions, args.idle_timeout) == ("127.0.0.1", 8000, 64, 600.0)
    assert config_from_args(make_parser().parse_args(["--max-sessions", "8"])).max_sessions == 8
    with pytest.raises(SystemExit, match="--max-sessions must be >= 1"):
        config_from_args(make_parser().parse_args(["--max-sessions", "0"]))
    with pytest.raises(SystemExit):
        make_parser().parse_args(["--help"])
    assert "loopback" in capsys.readouterr().out
