"""Request limits against a REAL uvicorn server on 127.0.0.1 (raw sockets where a client misbehaves): body
size, stalled requests, idle connections, the bearer token, the per-client quota, and a slow session not
blocking the others."""

from __future__ import annotations

import socket
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from market_env.server import RemoteEnvError, RemoteMarketEnv
from market_env.server.app import config_from_args, create_app, make_parser, serving
from market_env.server.sessions import ServerConfig

TIMEOUT_S = 1.0  # request and keep-alive deadlines of the guarded server: short, so the tests are quick


@pytest.fixture(scope="module")
def guarded() -> str:
    config = ServerConfig(max_body_bytes=4096, request_timeout_s=TIMEOUT_S, keepalive_timeout_s=TIMEOUT_S)
    with serving(config) as url:
        yield url


def raw(url: str) -> socket.socket:
    host, port = url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=10)
    return sock


def read_all(sock: socket.socket, limit_s: float) -> tuple[bytes, float]:
    """Everything the server sends until it closes the connection; and how long that took."""
    begin, chunks = time.monotonic(), []
    sock.settimeout(limit_s)
    while True:
        chunk = sock.recv(65536)  # a timeout here raises: the server failed to close within the limit
        if not chunk:
            return b"".join(chunks), time.monotonic() - begin
        chunks.append(chunk)


def test_an_oversized_body_is_refused_with_413_before_it_is_sent(guarded):
    with raw(guarded) as sock:
        # announces 50 MB and sends none of it: the answer comes at once, so nothing was read or buffered
        sock.sendall(b"POST /sessions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 50000000\r\n\r\n")  # fmt: skip
        reply, took = read_all(sock, 5.0)
    assert reply.startswith(b"HTTP/1.1 413") and b"limit of 4096 bytes" in reply and took < TIMEOUT_S
    response = httpx.post(
        f"{guarded}/sessions", content=b" " * 5000, headers={"content-type": "application/json"}
    )
    assert response.status_code == 413 and response.json()["error"] == "body_too_large"


def test_a_chunked_body_is_cut_off_at_the_limit(guarded):
    def chunks():
        for _ in range(100):  # 100 kB in all, without a Content-Length
            yield b"x" * 1024

    response = httpx.post(
        f"{guarded}/sessions", content=chunks(), headers={"content-type": "application/json"}
    )
    assert response.status_code == 413 and "over this server's limit" in response.json()["detail"]


@pytest.mark.parametrize(
    "sent",
    [
        b"",  # connects and says nothing
        b"POST /sessions HTTP/1.1\r\nHost: x\r\n",  # headers that never end
        b'POST /sessions HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{"task"',  # a body that stalls
    ],
)
def test_a_stalled_request_is_dropped_within_the_request_timeout(guarded, sent):
    with raw(guarded) as sock:
        sock.sendall(sent)
        _, took = read_all(sock, 10 * TIMEOUT_S)
    assert TIMEOUT_S * 0.8 < took < TIMEOUT_S + 2.0


def test_many_stalled_connections_are_all_dropped_and_the_server_still_answers(guarded):
    socks = [raw(guarded) for _ in range(50)]
    for sock in socks:
        sock.sendall(b"POST /sessions HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n{")
    assert httpx.get(f"{guarded}/health", timeout=5).status_code == 200  # served while they stall
    for sock in socks:
        _, took = read_all(sock, 10 * TIMEOUT_S)
        assert took < TIMEOUT_S + 2.0
        sock.close()


def test_an_idle_keepalive_connection_is_closed_and_a_busy_one_is_not(guarded):
    with raw(guarded) as sock:
        for _ in range(3):  # requests closer together than the timeout keep one connection alive
            sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
            reply = sock.recv(65536)
            while not reply.endswith(b"}"):  # headers and body may come in separate packets
                reply += sock.recv(65536)
            assert reply.startswith(b"HTTP/1.1 200")
            time.sleep(TIMEOUT_S / 3)
        _, took = read_all(sock, 10 * TIMEOUT_S)
    assert took < TIMEOUT_S + 2.0


def test_the_bearer_token_guards_every_endpoint_but_health():
    with serving(ServerConfig(token="s3cret")) as url:
        assert httpx.get(f"{url}/health").status_code == 200  # liveness stays open
        for token in [None, "wrong", "S3CRET"]:
            headers = {"authorization": f"Bearer {token}"} if token else {}
            response = httpx.post(f"{url}/sessions", json={"task": "easy"}, headers=headers)
            assert response.status_code == 401 and response.headers["www-authenticate"] == "Bearer"
            assert "bearer token" in response.json()["detail"]
        assert httpx.get(f"{url}/metadata").status_code == 401
        with pytest.raises(RemoteEnvError, match="bearer token"):
            RemoteMarketEnv(url, task="easy")
        env = RemoteMarketEnv(url, task="easy", seed=0, token="s3cret")
        env.reset()
        assert env.step("HOLD")[1] is not None
        env.close()


def test_each_client_address_has_a_session_quota(make_client):
    client = make_client(max_sessions=8, max_sessions_per_client=2)
    ids = [client.post("/sessions", json={"task": "easy"}).json()["session_id"] for _ in range(2)]
    refused = client.post("/sessions", json={"task": "easy"})
    assert refused.status_code == 429 and refused.json()["error"] == "client_session_limit"
    assert "holds 2 sessions" in refused.json()["detail"]
    assert client.post("/batches", json={"task": "easy", "n_envs": 2}).status_code == 429  # batches count
    client.delete(f"/sessions/{ids[0]}")
    assert client.post("/sessions", json={"task": "easy"}).status_code == 201


def test_a_slow_session_does_not_hold_up_the_others():
    """A step that takes 1.5 s (planted in one session) runs in the thread pool; others step meanwhile."""
    app = create_app(ServerConfig())
    with serving(app=app) as url:
        slow, fast = (RemoteMarketEnv(url, task="easy", seed=i) for i in range(2))
        slow.reset(), fast.reset()
        env = app.state.sessions.get(slow.session_id).env
        original = env.step

        def sleepy(action):
            time.sleep(1.5)
            return original(action)

        env.step = sleepy
        with ThreadPoolExecutor(2) as pool:
            pending = pool.submit(slow.step, "HOLD")
            time.sleep(0.2)  # the slow step is in progress
            begin = time.monotonic()
            for _ in range(5):
                fast.step("HOLD")
            took = time.monotonic() - begin
            assert not pending.done()
            pending.result(timeout=30)
        assert took < 1.0, f"5 steps of another session took {took:.2f} s behind a slow one"
        slow.close(), fast.close()


def test_binding_beyond_loopback_requires_a_token(monkeypatch):
    with pytest.raises(
        SystemExit, match=r"--host 0\.0\.0\.0 serves beyond this machine: give a secret with --token"
    ):
        config_from_args(make_parser().parse_args(["--host", "0.0.0.0"]))
    assert config_from_args(make_parser().parse_args(["--host", "0.0.0.0", "--token", "t"])).token == "t"
    monkeypatch.setenv("NIFTY_RL_TOKEN", "from-env")
    assert config_from_args(make_parser().parse_args(["--host", "0.0.0.0"])).token == "from-env"
    for flags in (["--max-body-bytes", "10"], ["--request-timeout", "0"], ["--max-sessions-per-client", "0"]):
        with pytest.raises(SystemExit):
            config_from_args(make_parser().parse_args(flags))
