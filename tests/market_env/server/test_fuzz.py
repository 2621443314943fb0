"""Fuzzed requests: random JSON (and non-JSON) bodies for every endpoint never get a 5xx, and every error body
is JSON that carries the versions. Strings include lone surrogates (hypothesis' default text leaves them out,
which hid a 500 in the 422 handler), NUL and other control characters; bodies include deep nesting, huge
numbers, invalid UTF-8 and sizes around the body limit."""

from __future__ import annotations

import json
from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient
from hypothesis import given, settings
from hypothesis import strategies as st

from market_env.server.app import create_app
from market_env.server.sessions import ServerConfig

CREATE_FIELDS = ["task", "split", "obs_mode", "env_version", "seed", "anonymize"]
NAMES = ["easy", "medium", "hard", "train", "val", "test", "text", "numeric", "1.0.0", "2.0.0"]
# surrogates (Cs), NUL and controls (Cc), format characters (Cf), letters, digits: each may break an encoder
hostile_text = st.text(st.characters(codec=None, categories=["Cs", "Cc", "Cf", "Lu", "Nd"]), max_size=20)
scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(max_size=20)
    | hostile_text
    | st.sampled_from(NAMES)
)  # st.floats() includes NaN and infinities, which Python's json writes and reads
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=30) | st.dictionaries(st.text(max_size=8), inner, max_size=5),
    max_leaves=40,
)
# near-valid bodies reach the env (each field valid or random), random dicts probe the schema
near_valid = st.fixed_dictionaries(
    {},
    optional={
        "task": st.sampled_from(["easy", "medium", "hard"]) | scalars,
        "split": st.sampled_from(["train", "val", "test"]) | scalars,
        "obs_mode": st.sampled_from(["text", "numeric"]) | scalars,
        "env_version": st.sampled_from(["1.0.0", "2.0.0"]) | scalars,
        "seed": st.integers(0, 2**64) | scalars,
        "anonymize": st.booleans() | scalars,
    },
)
create_bodies = near_valid | st.dictionaries(
    st.sampled_from(CREATE_FIELDS) | st.text(max_size=8), json_values, max_size=6
)
huge = st.integers(min_value=-(10**400), max_value=10**400)  # beyond float: refused, not a crash
actions = (
    st.text(max_size=200)
    | hostile_text
    | st.lists(st.floats(), min_size=10, max_size=10)  # the medium task's length: reaches the numeric env
    | st.lists(st.floats() | huge, max_size=30)
    | json_values
)
reset_bodies = st.dictionaries(
    st.sampled_from(["seed", "start_date", "symbols"]) | st.text(max_size=6),
    json_values | st.dates().map(str),
    max_size=3,
)


@pytest.fixture(scope="module")
def fuzz_client() -> TestClient:
    with TestClient(create_app(ServerConfig(max_sessions=8)), raise_server_exceptions=False) as client:
        yield client


def send(client: TestClient, method: str, path: str, body) -> int:
    content = body if isinstance(body, bytes) else json.dumps(body)  # ensure_ascii: surrogates as \\udXXX
    response = client.request(method, path, content=content, headers={"content-type": "application/json"})
    assert response.status_code < 500, (path, body, response.text)
    if response.status_code >= 400:  # every error is JSON naming itself and the versions
        error = response.json()
        assert error["error"] and error["detail"] and error["env_version"], response.text
    return response.status_code


@settings(max_examples=150, deadline=None)
@given(body=create_bodies | json_values | st.binary(max_size=40))
def test_fuzzed_session_creation_never_gets_a_5xx(fuzz_client, body):
    if send(fuzz_client, "POST", "/sessions", body) == 201:
        for session_id in list(fuzz_client.app.state.sessions._sessions):
            fuzz_client.delete(f"/sessions/{session_id}")


@pytest.fixture(scope="module")
def open_sessions(fuzz_client) -> list[str]:
    bodies = [
        {"task": "medium", "obs_mode": "text", "seed": 0},
        {"task": "medium", "obs_mode": "numeric", "seed": 0},
    ]
    return [fuzz_client.post("/sessions", json=body).json()["session_id"] for body in bodies]


@settings(max_examples=200, deadline=None)
@given(
    body=st.fixed_dictionaries({"action": actions}) | json_values | st.binary(max_size=40),
    which=st.sampled_from([0, 1]),
)
def test_fuzzed_steps_never_get_a_5xx(fuzz_client, open_sessions, body, which):
    session_id = open_sessions[which]
    if send(fuzz_client, "POST", f"/sessions/{session_id}/step", body) == 409:  # finished: start again
        assert send(fuzz_client, "POST", f"/sessions/{session_id}/reset", {}) == 200


@settings(max_examples=100, deadline=None)
@given(body=reset_bodies | json_values, which=st.sampled_from([0, 1]), path=st.text(max_size=10))
def test_fuzzed_resets_and_session_ids_never_get_a_5xx(fuzz_client, open_sessions, body, which, path):
    send(fuzz_client, "POST", f"/sessions/{open_sessions[which]}/reset", body)
    send(fuzz_client, "POST", f"/sessions/{quote(path, safe='')}/step", {"action": "HOLD"})  # any id: 404
    send(fuzz_client, "GET", f"/sessions/{open_sessions[which]}/state", b"")


def nested(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


HOSTILE_BODIES = [
    b'{"task": "\\ud800"}',  # a lone surrogate in a refused field: once a 500 from the 422 handler
    b'{"task": "\\udfff\\ud800", "split": "\\u0000"}',  # reversed pair and NUL
    b'{"seed": "\\ud800"}',  # a surrogate where an integer belongs
    b'{"task": ' + nested(100_000) + b"}",  # deeper than Python's JSON parser recurses
    nested(3_000),  # nested, not an object at all
    b'{"seed": 1' + b"0" * 5_000 + b"}",  # past Python's int-from-string digit limit
    b'{"seed": 1e999}',  # an infinite float
    b"\xff\xfe\x00",  # not UTF-8
    b"\x00" * 100,  # NUL bytes
    b'{"task": "expert"' + b" " * 4_000_000 + b"}",  # 4 MB of whitespace: under the body limit, parsed
    b'{"task": ["easy"], "split": {"a": 1}, "anonymize": [], "obs_mode": 3}',  # every field the wrong type
]


@pytest.mark.parametrize("body", HOSTILE_BODIES, ids=range(len(HOSTILE_BODIES)))
def test_hostile_bodies_on_every_endpoint_get_a_4xx(fuzz_client, open_sessions, body):
    text, numeric = open_sessions
    batch = fuzz_client.post("/batches", json={"task": "medium", "n_envs": 2, "seed": 0})
    assert batch.status_code == 201, batch.text
    bid = batch.json()["session_id"]
    paths = ["/sessions", f"/sessions/{text}/reset", f"/sessions/{text}/step", f"/sessions/{numeric}/step",
             "/batches", f"/batches/{bid}/reset", f"/batches/{bid}/step"]  # fmt: skip
    for path in paths:
        assert 400 <= send(fuzz_client, "POST", path, body) < 500
    assert fuzz_client.delete(f"/batches/{bid}").status_code == 200


@pytest.mark.parametrize(
    "action",
    ["\ud800", "BUY \udc00 0.5", "HOLD\x00", "<think>\ud83d</think>SELL X\u202e 1"],  # surrogates, NUL, bidi
)
def test_hostile_text_actions_are_invalid_holds_and_the_reply_encodes(fuzz_client, open_sessions, action):
    text = open_sessions[0]
    fuzz_client.post(f"/sessions/{text}/reset", json={})
    response = fuzz_client.post(f"/sessions/{text}/step", content=json.dumps({"action": action}),
                                headers={"content-type": "application/json"})  # fmt: skip
    assert response.status_code == 200 and response.json()["info"]["invalid_action"] is not None


@settings(max_examples=60, deadline=None)
@given(body=st.fixed_dictionaries({"actions": st.lists(actions, max_size=4) | actions}) | json_values)
def test_fuzzed_batch_steps_never_get_a_5xx(fuzz_client, body):
    batch = fuzz_client.post(
        "/batches", json={"task": "medium", "n_envs": 2, "seed": 0, "obs_mode": "numeric"}
    )
    bid = batch.json()["session_id"]
    send(fuzz_client, "POST", f"/batches/{bid}/step", body)
    fuzz_client.delete(f"/batches/{bid}")
