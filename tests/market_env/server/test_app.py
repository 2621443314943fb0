"""The HTTP contract of serve-env through FastAPI's TestClient: versions in every body, status codes for every
kind of bad input, session limits, reaping, and a step that fails without taking the server down."""

from __future__ import annotations

import logging
import subprocess
import sys
import time

import pytest

import market_env
from market_env.server.models import jsonable

HARD_TEXT = {"task": "hard", "split": "test", "obs_mode": "text", "seed": 0}


def create(client, **body) -> dict:
    response = client.post("/sessions", json=body)
    assert response.status_code == 201, response.text
    return response.json()


def test_health_and_metadata_describe_every_version_task_and_the_grammar(client):
    health = client.get("/health").json()
    tasks = {"easy": "1.0.0", "medium": "1.0.0", "hard": "1.0.0"}
    assert health == {"status": "ok", "env_version": market_env.ENV_VERSION, "active_sessions": 0,
                      "max_sessions": 64, "task_versions": tasks}  # fmt: skip
    meta = client.get("/metadata").json()
    assert (
        set(meta["env_versions"]) == set(market_env.ENV_VERSIONS)
        and meta["default_env_version"] == market_env.ENV_VERSION
    )
    hard = meta["env_versions"]["1.0.0"]["tasks"]["hard"]
    assert (hard["n_stocks"], hard["n_days"], hard["position_cap"], hard["version"]) == (
        25,
        40,
        0.15,
        "1.0.0",
    )
    assert meta["env_versions"]["1.0.0"]["grader_version"] == "1.0.0"
    assert set(meta["graders"]) == set(market_env.GRADERS)
    assert meta["obs_modes"] == ["text", "numeric"] and meta["action_grammar"] == market_env.ACTION_GRAMMAR
    assert meta["splits"]["test"] == {"start": "2025-01-01", "end": "2026-04-24"}


@pytest.mark.parametrize("version", sorted(market_env.ENV_VERSIONS))  # each frozen version reports itself
def test_every_session_body_carries_its_env_and_task_version(client, version):
    created = create(client, task="medium", obs_mode="numeric", env_version=version, seed=1)
    sid = created["session_id"]
    bodies = [
        created,
        client.post(f"/sessions/{sid}/reset", json={"seed": 2}).json(),
        client.post(f"/sessions/{sid}/step", json={"action": [0.5] * 10}).json(),
        client.get(f"/sessions/{sid}/state").json(),
        client.delete(f"/sessions/{sid}").json(),
    ]
    for body in bodies:
        assert (body["env_version"], body["task_version"]) == (version, "1.0.0")
    assert bodies[2]["info"]["env_version"] == version and len(bodies[2]["observation"]) == 10 * 13 + 3


@pytest.mark.parametrize(
    ("body", "field", "message"),
    [
        ({"task": "expert"}, "task", "expected one of: easy, hard, medium"),  # unknown task names the three
        ({"split": "future"}, "split", "expected one of: test, train, val"),  # no split past the data
        ({"obs_mode": "image"}, "obs_mode", "expected one of: text, numeric"),
        ({"env_version": "9.9.9"}, "env_version", "expected one of: 1.0.0, 2.0.0"),  # not a frozen version
        ({"seed": -1}, "seed", "greater than or equal to 0"),  # numpy seeds are non-negative
        ({"seed": "abc"}, "seed", "valid integer"),
        ({"anonymize": "maybe"}, "anonymize", "valid boolean"),
        ({"tsak": "hard"}, "tsak", "Extra inputs are not permitted"),  # a typo is refused, not ignored
    ],
)
def test_bad_create_requests_get_422_with_the_field_and_what_is_valid(client, body, field, message):
    response = client.post("/sessions", json=body)
    assert response.status_code == 422
    error = response.json()["detail"][0]
    assert error["loc"] == ["body", field] and message in error["msg"]
    assert client.get("/health").json()["active_sessions"] == 0


def test_unknown_sessions_get_404_on_every_endpoint(client):
    for method, path, body in [
        ("post", "step", {"action": "HOLD"}),
        ("post", "reset", {}),
        ("get", "state", None),
    ]:
        response = client.request(method, f"/sessions/nope/{path}", json=body)
        assert response.status_code == 404 and "POST /sessions" in response.json()["detail"]
    assert client.delete("/sessions/nope").json()["error"] == "session_not_found"


def test_wrong_action_shape_or_kind_gets_422_and_leaves_the_episode_unchanged(client):
    numeric = create(client, task="hard", obs_mode="numeric", seed=0)["session_id"]
    text = create(client, task="hard", obs_mode="text", seed=0)["session_id"]
    cases = [
        (numeric, [0.1] * 24, "list of 25 floats in [-1, 1], got 24 values"),  # one value short
        (numeric, "BUY ABB 0.5", "list of 25 floats in [-1, 1], got a string"),
        (text, [0.1] * 25, "takes text actions"),  # a vector sent to a text session
    ]
    for sid, action, message in cases:
        response = client.post(f"/sessions/{sid}/step", json={"action": action})
        assert response.status_code == 422 and message in response.json()["detail"]
        assert response.json()["env_version"] == market_env.ENV_VERSION
        assert client.get(f"/sessions/{sid}/state").json()["t"] == 0
    response = client.post(f"/sessions/{text}/step", json={"action": "x" * 70_000})
    assert response.status_code == 422 and "action too long" in response.text


def test_malformed_text_is_an_invalid_hold_inside_the_episode_as_in_process(client):
    sid = create(client, **HARD_TEXT)["session_id"]
    local = market_env.make("hard", "test", "text", seed=0)
    local.reset()
    for junk in ["BUY", "SELL NOPE 0.5", "BUY ABB 1.5", "", "\x00\uffff<think>", "HOLD HOLD HOLD 7"]:
        response = client.post(f"/sessions/{sid}/step", json={"action": junk})
        assert response.status_code == 200
        body = response.json()
        obs, reward, _, _, info = local.step(junk)
        assert body["info"]["invalid_action"] == info["invalid_action"] and body["info"]["trades"] == []
        assert (body["observation"], body["reward"], body["info"]) == (obs, reward, jsonable(info))
    assert body["info"]["invalid_action"] and body["info"]["invalid_reason"]


def test_a_finished_episode_answers_409_until_it_is_reset(client):
    sid = create(client, task="easy", obs_mode="text", seed=3)["session_id"]
    local = market_env.make("easy", "train", "text", seed=3)
    local.reset()
    for _ in range(20):
        body = client.post(f"/sessions/{sid}/step", json={"action": "HOLD"}).json()
        *_, info = local.step("HOLD")
    assert body["terminated"] and body["info"]["grade"] == jsonable(info["grade"])
    refused = client.post(f"/sessions/{sid}/step", json={"action": "HOLD"})
    assert refused.status_code == 409 and f"POST /sessions/{sid}/reset" in refused.json()["detail"]
    assert client.get(f"/sessions/{sid}/state").json()["done"] is True
    assert client.post(f"/sessions/{sid}/reset").status_code == 200  # no body: a new episode
    assert client.post(f"/sessions/{sid}/step", json={"action": "HOLD"}).status_code == 200


def test_the_session_limit_answers_429_and_a_deleted_slot_is_reusable(make_client):
    client = make_client(max_sessions=2)
    first, _ = create(client, task="easy")["session_id"], create(client, task="easy")
    refused = client.post("/sessions", json={"task": "easy"})
    assert refused.status_code == 429 and "limit of 2 sessions" in refused.json()["detail"]
    assert client.delete(f"/sessions/{first}").json()["deleted"] is True
    assert client.post("/sessions", json={"task": "easy"}).status_code == 201
    assert client.post(f"/sessions/{first}/step", json={"action": "HOLD"}).status_code == 404


def test_idle_sessions_are_reaped_and_free_their_slot(make_client):
    client = make_client(max_sessions=1, idle_timeout_s=0.3)
    idle = create(client, task="easy")["session_id"]
    assert client.post("/sessions", json={"task": "easy"}).status_code == 429  # still alive
    time.sleep(0.5)
    fresh = create(client, task="easy")["session_id"]
    assert client.get(f"/sessions/{idle}/state").status_code == 404
    # a session in use keeps living: each request renews it
    for _ in range(3):
        time.sleep(0.15)
        assert client.post(f"/sessions/{fresh}/step", json={"action": "HOLD"}).status_code == 200


def test_a_failing_step_is_reported_logged_and_the_server_keeps_serving(client, caplog):
    broken = create(client, **HARD_TEXT)["session_id"]
    healthy = create(client, **HARD_TEXT)["session_id"]
    env = client.app.state.sessions.get(broken).env
    original = env.step
    env.step = lambda action: 1 / 0  # a bug inside the env, planted in this one session only
    with caplog.at_level(logging.ERROR, logger="market_env.server.sessions"):
        response = client.post(f"/sessions/{broken}/step", json={"action": "HOLD"})
    assert response.status_code == 409 and "ZeroDivisionError" in response.json()["detail"]
    assert "step 1 failed" in caplog.text and "Traceback" in caplog.text
    assert client.post(f"/sessions/{healthy}/step", json={"action": "HOLD"}).status_code == 200
    env.step = original
    assert client.post(f"/sessions/{broken}/step", json={"action": "HOLD"}).status_code == 409  # abandoned
    assert client.post(f"/sessions/{broken}/reset", json={"seed": 0}).status_code == 200
    assert client.post(f"/sessions/{broken}/step", json={"action": "HOLD"}).status_code == 200


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"start_date": "2025-03-03"}, "needs both start_date and symbols"),  # half an episode
        # not a date: refused by the request model, naming the field (once a TypeError from the data layer)
        ({"start_date": "someday", "symbols": ["TCS"]}, "start_date must be a calendar date as YYYY-MM-DD"),
        ({"start_date": "NaT", "symbols": ["TCS"]}, "start_date must be a calendar date as YYYY-MM-DD"),
        ({"start_date": "", "symbols": ["TCS"]}, "start_date must be a calendar date as YYYY-MM-DD"),
        (
            {"start_date": "2025-02-30", "symbols": ["TCS"]},
            "start_date must be a calendar date",
        ),  # no such day
        ({"start_date": "2025-02-30", "symbols": ["TCS"]}, '"start_date"'),  # the loc names the field
        ({"start_date": "2025-03-01", "symbols": ["TCS"]}, "cannot reset to that episode"),  # a Saturday
        ({"start_date": "2025-03-03", "symbols": ["TCS", "INFY"]}, "needs 1 distinct symbols"),
        ({"start_date": "2025-03-03", "symbols": ["ACME"]}, "unknown symbol"),
        ({"seed": 1, "options": {}}, "Extra inputs are not permitted"),
    ],
)
def test_bad_reset_requests_get_422_and_the_session_survives(client, body, message):
    sid = create(client, task="easy", split="test", seed=0)["session_id"]
    response = client.post(f"/sessions/{sid}/reset", json=body)
    assert response.status_code == 422 and message in response.text
    assert client.post(f"/sessions/{sid}/step", json={"action": "HOLD"}).status_code == 200


def test_a_task_no_episode_of_the_served_data_fits_is_a_422(make_client, tmp_path):
    """User data with three stocks: easy works, hard (25 stocks) is refused with the reason."""
    from data import load_prices

    prices, _ = load_prices()
    few = prices[prices["symbol"].isin(["INFY", "ITC", "TCS"])]
    path = tmp_path / "three.csv"
    few.assign(date=few["date"].dt.strftime("%Y-%m-%d")).to_csv(path, index=False)
    client = make_client(data=str(path))
    assert client.post("/sessions", json={"task": "easy"}).status_code == 201
    refused = client.post("/sessions", json={"task": "hard"})
    assert refused.status_code == 422 and "no valid hard episode" in refused.json()["detail"]


def test_importing_market_env_or_the_client_loads_no_web_server():
    code = (
        "import sys, market_env, market_env.server.client; "
        "assert not {'fastapi', 'uvicorn', 'starlette'} & set(sys.modules), sorted(sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr


def test_the_openenv_manifest_agrees_with_the_running_server(client):
    import importlib
    from pathlib import Path

    import yaml

    from market_env.server.app import make_parser

    manifest = yaml.safe_load((Path(__file__).parents[3] / "openenv.yaml").read_text())
    module, name = manifest["app"].split(":")
    assert (
        hasattr(importlib.import_module(module), name)
        and manifest["port"] == make_parser().parse_args([]).port
    )
    meta = client.get("/metadata").json()
    assert manifest["env_versions"]["default"] == meta["default_env_version"]
    for version, entry in meta["env_versions"].items():
        assert manifest["env_versions"][version]["grader"] == entry["grader_version"]
        for task, spec in entry["tasks"].items():
            listed = manifest["tasks"][task]
            assert listed["task_version"] == spec["version"]
            assert {k: listed[k] for k in ("n_stocks", "n_days", "position_cap", "slippage_bps")} == {
                k: spec[k] for k in ("n_stocks", "n_days", "position_cap", "slippage_bps")
            }
    assert manifest["splits"] == meta["splits"] and manifest["api_version"] == meta["api_version"]
    assert manifest["limits"]["max_sessions"] == meta["limits"]["max_sessions"]
    paths = {(e["method"], e["path"]) for e in manifest["endpoints"]}
    ours = [
        route
        for route in client.app.routes
        if route.path.startswith(("/health", "/metadata", "/sessions", "/batches"))
    ]
    served = {(method, route.path) for route in ours for method in route.methods}
    assert paths == served


def test_jsonable_turns_env_values_into_strict_json():
    import json
    from dataclasses import dataclass

    import numpy as np

    @dataclass
    class Point:
        x: np.float32
        tags: tuple

    value = {1: np.int64(3), "a": np.array([1.5, np.nan]), "p": Point(np.float32(0.5), ("u", np.bool_(True))),
             "inf": float("inf"), "none": None, "other": {"nested": [np.float64(-np.inf)]},
             "obj": object}  # fmt: skip
    out = jsonable(value)
    assert out == {"1": 3, "a": [1.5, None], "p": {"x": 0.5, "tags": ["u", True]}, "inf": None, "none": None,
                   "other": {"nested": [None]}, "obj": "<class 'object'>"}  # fmt: skip
    json.dumps(out, allow_nan=False)  # what Starlette does: would raise on any NaN left behind
