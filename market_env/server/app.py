"""``serve-env``: the market environment over HTTP, one isolated ``MarketEnv`` per session (FastAPI).

Endpoints (every body carries ``env_version`` and ``task_version``; the OpenAPI schema is at ``/docs``):

| method and path               | does                                                                 |
|-------------------------------|----------------------------------------------------------------------|
| ``GET /health``               | liveness, default versions, sessions in use                          |
| ``GET /metadata``             | tasks and their specs, env and grader versions, splits, obs modes    |
| ``POST /sessions``            | create {task, split, obs_mode, env_version, seed, anonymize}; reset  |
| ``POST /sessions/{id}/reset`` | new episode: {seed} or an explicit {start_date, symbols}             |
| ``POST /sessions/{id}/step``  | {action: "BUY TCS 0.5"} or {action: [K floats]}                      |
| ``GET /sessions/{id}/state``  | t, nav, cash, positions, done, the exportable ``EpisodeState``        |
| ``DELETE /sessions/{id}``     | free the slot                                                        |
| ``POST /batches``             | a batch session: {..., n_envs, encoding}; n_envs episodes, one slot  |
| ``POST /batches/{id}/reset``  | {seed}: slot i plays ``make(...).reset(seed=seed + i)``              |
| ``POST /batches/{id}/step``   | {actions: one per slot}; finished episodes restart in the same step  |
| ``DELETE /batches/{id}``      | free the batch's slot                                                |

The batch session is the rollout backend: one request steps ``n_envs`` episodes of a ``BatchMarketEnv``
(the same results as in-process), so a remote trainer pays the HTTP round trip once per n_envs steps.

Errors (JSON with ``detail``, ``error`` and the versions): 422 schema violations, unknown names (the message
lists the valid ones) and malformed bodies, 401 a missing token, 404 unknown or expired session, 409 stepping
a finished episode (reset it), 413 a body over the limit, 429 every slot taken or this client's quota used.
A malformed text action is not an HTTP error: as in-process, the step is a HOLD with
``info["invalid_action"]`` true. Handlers run in a thread pool, each session under its own lock, so a slow
request holds up only its own session.

Run: ``serve-env --host 127.0.0.1 --port 8000 [--max-sessions 64] [--idle-timeout 600] [--token T]``, or
point any ASGI server at ``market_env.server.app:app`` (the default config, without the request deadline
of ``GuardedH11Protocol``). One process only: sessions live in memory.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import numpy as np
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from gymnasium import spaces
from starlette.exceptions import HTTPException as StarletteHTTPException

from market_env.server.limits import RequestGuard, protocol_with_timeout
from market_env.server.models import (
    API_VERSION,
    BatchResetRequest,
    BatchStepRequest,
    CreateBatchRequest,
    CreateSessionRequest,
    DeleteResponse,
    EncodedArray,
    ErrorResponse,
    HealthResponse,
    ResetRequest,
    ResetResponse,
    SessionResponse,
    SpaceSpec,
    StateResponse,
    StepRequest,
    StepResponse,
    default_versions,
    describe,
    jsonable,
)
from market_env.server.sessions import ServerConfig, SessionError, SessionManager

logger = logging.getLogger(__name__)
LOG_LEVELS = ["critical", "error", "warning", "info", "debug"]
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorResponse} for code in (401, 404, 409, 413, 429)
}  # documented in the OpenAPI schema
LOOPBACK = ("127.0.0.1", "localhost", "::1")
TOKEN_ENV = "NIFTY_RL_TOKEN"
MAX_ECHO_CHARS = 200  # of a refused input echoed back in a 422: enough to see it, not to amplify it


def space_spec(space: spaces.Space) -> SpaceSpec:
    if isinstance(space, spaces.Box):
        low, high = float(np.min(space.low)), float(np.max(space.high))
        return SpaceSpec(type="Box", shape=list(space.shape), low=low, high=high, dtype=str(space.dtype))
    assert isinstance(space, spaces.Text), space
    charset = "".join(sorted(space.character_set))
    return SpaceSpec(type="Text", min_length=space.min_length, max_length=space.max_length, charset=charset)


def _observation(observation: Any) -> str | list[float]:
    return observation if isinstance(observation, str) else np.asarray(observation).tolist()


class SafeJSONResponse(JSONResponse):
    """JSON that always encodes: ASCII only (a lone surrogate travels as ``\\ud800``), no NaN."""

    def render(self, content: Any) -> bytes:
        return json.dumps(content, ensure_ascii=True, allow_nan=False, separators=(",", ":")).encode()


def _versions(request: Request) -> dict[str, Any]:
    """The versions an error body carries: its session's if the path names a live one, else the defaults."""
    session_id = request.path_params.get("session_id")
    sessions = request.app.state.sessions._sessions
    session = sessions.get(session_id) if isinstance(session_id, str) else None
    return session.versions if session is not None else default_versions()


def _error_response(request: Request, error: SessionError) -> JSONResponse:
    versions = error.session.versions if error.session is not None else default_versions()
    body = ErrorResponse(detail=str(error), error=error.code, **versions)
    return SafeJSONResponse(body.model_dump(exclude_none=True), status_code=error.status)


def _echo(value: Any) -> Any:
    """A refused input, shortened: a 60 kB string is not sent back, nor a deep structure."""
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= MAX_ECHO_CHARS else text[:MAX_ECHO_CHARS] + f"... ({len(text)} chars)"


def _validation_response(request: Request, error: RequestValidationError) -> JSONResponse:
    # FastAPI's own 422 (loc, msg, type), made safe to encode and bounded: the input is echoed shortened,
    # NaN becomes null and a lone surrogate an escape, so no malformed body can turn the reply into a 500
    errors = [
        {"loc": jsonable(e.get("loc", [])), "msg": str(e.get("msg", "")), "type": str(e.get("type", ""))}
        | ({"input": _echo(e["input"])} if "input" in e else {})
        for e in error.errors()[:20]
    ]
    return SafeJSONResponse({"detail": errors, "error": "invalid_request", **_versions(request)}, 422)


def _http_error_response(request: Request, error: StarletteHTTPException) -> JSONResponse:
    # FastAPI's own 400 (a body it cannot parse: too deep, a 5,000-digit number, not UTF-8), 404 (no such
    # route) and 405, in the same shape as every other error
    code = {400: "bad_request", 404: "not_found", 405: "method_not_allowed"}.get(
        error.status_code, "http_error"
    )
    body = {"detail": str(error.detail), "error": code, **_versions(request)}
    return SafeJSONResponse(body, error.status_code, headers=getattr(error, "headers", None))


def _client(request: Request) -> str:
    return request.client.host if request.client else ""


def _encode(observation: Any, encoding: str) -> Any:
    """A batch's observations: text as strings, numeric as nested lists or an ``EncodedArray``."""
    if isinstance(observation, list):
        return observation
    return EncodedArray.encode(observation) if encoding == "base64" else observation.tolist()


def _batch_body(session: Any, status_code: int = 200, **fields: Any) -> Response:
    """A batch response, encoded once by ``json`` (not validated field by field: 20k floats a step)."""
    return SafeJSONResponse({"session_id": session.id, **session.versions, **fields}, status_code)


def create_app(config: ServerConfig | None = None) -> FastAPI:
    """The ASGI app; ``config`` sets the session limit, idle timeout and price data."""
    manager = SessionManager(config or ServerConfig())

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        manager.panel  # noqa: B018 -- load the prices before the first request, not during it
        yield

    app = FastAPI(
        title="nifty-rl market environment",
        version=API_VERSION,
        description=__doc__.split("\n\n")[0],
        lifespan=lifespan,
    )
    app.state.sessions = manager
    app.add_exception_handler(SessionError, _error_response)  # type: ignore[arg-type]
    app.add_exception_handler(RequestValidationError, _validation_response)  # type: ignore[arg-type]
    app.add_exception_handler(StarletteHTTPException, _http_error_response)  # type: ignore[arg-type]
    app.add_middleware(RequestGuard, max_body_bytes=manager.config.max_body_bytes, token=manager.config.token)

    # Handlers are plain ``def``: FastAPI runs them in its thread pool, so a slow step (a 60k-character
    # action, a large batch) holds up only its own session, whose lock keeps its requests in order. That
    # costs ~0.6 ms CPU per request more than running on the event loop; the batch endpoints pay it once
    # per n_envs steps.
    @app.get("/health", response_model=HealthResponse)
    def health() -> HealthResponse:
        return HealthResponse(status="ok", active_sessions=len(manager), **default_versions(),
                              max_sessions=manager.config.max_sessions)  # fmt: skip

    @app.get("/metadata")
    def get_metadata() -> dict[str, Any]:
        config = manager.config
        return describe(config.max_sessions, config.idle_timeout_s, active_sessions=len(manager))

    @app.post("/sessions", response_model=SessionResponse, status_code=201, responses=ERRORS)
    def create_session(body: CreateSessionRequest, request: Request) -> SessionResponse:
        session, observation, info = manager.create(body, _client(request))
        env = session.env
        return SessionResponse(
            session_id=session.id, **session.versions, task=body.task, split=body.split,
            obs_mode=body.obs_mode, anonymize=body.anonymize, observation=_observation(observation),
            info=jsonable(info), observation_space=space_spec(env.observation_space),
            action_space=space_spec(env.action_space),
        )  # fmt: skip

    @app.post("/sessions/{session_id}/reset", response_model=ResetResponse, responses=ERRORS)
    def reset_session(session_id: str, body: ResetRequest | None = None) -> ResetResponse:
        body = body or ResetRequest()
        session = manager.get(session_id)
        observation, info = manager.reset(session, body.seed, body.options())
        return ResetResponse(session_id=session.id, **session.versions, observation=_observation(observation),
                             info=jsonable(info))  # fmt: skip

    @app.post("/sessions/{session_id}/step", response_model=StepResponse, responses=ERRORS)
    def step_session(session_id: str, body: StepRequest) -> StepResponse:
        session = manager.get(session_id)
        observation, reward, terminated, truncated, info = manager.step(session, body.action)
        return StepResponse(
            session_id=session.id, **session.versions, observation=_observation(observation),
            reward=reward, terminated=terminated, truncated=truncated, info=jsonable(info),
        )  # fmt: skip

    @app.get("/sessions/{session_id}/state", response_model=StateResponse, responses=ERRORS)
    def session_state(session_id: str) -> StateResponse:
        session = manager.get(session_id)
        return StateResponse(session_id=session.id, **session.versions, **manager.state(session))

    @app.delete("/sessions/{session_id}", response_model=DeleteResponse, responses=ERRORS)
    def delete_session(session_id: str) -> DeleteResponse:
        session = manager.delete(session_id)
        return DeleteResponse(session_id=session.id, **session.versions, deleted=True)

    add_batch_routes(app, manager)
    return app


def add_batch_routes(app: FastAPI, manager: SessionManager) -> None:
    """``/batches``: many episodes stepped by one request (the rollout backend of a remote trainer)."""

    @app.post("/batches", status_code=201, responses=ERRORS)
    def create_batch(body: CreateBatchRequest, request: Request) -> Response:
        session, observation, infos = manager.create_batch(body, _client(request))
        env = session.env
        return _batch_body(
            session, task=body.task, split=body.split, obs_mode=body.obs_mode, anonymize=body.anonymize,
            n_envs=body.n_envs, encoding=body.encoding, observation=_encode(observation, body.encoding),
            info=jsonable(infos),
            single_observation_space=space_spec(env.single_observation_space).model_dump(),
            single_action_space=space_spec(env.single_action_space).model_dump(), status_code=201,
        )  # fmt: skip

    @app.post("/batches/{session_id}/reset", responses=ERRORS)
    def reset_batch(session_id: str, body: BatchResetRequest | None = None) -> Response:
        session = manager.get(session_id, batch=True)
        observation, infos = manager.reset_batch(session, (body or BatchResetRequest()).seed)
        return _batch_body(session, observation=_encode(observation, session.request.encoding),
                           info=jsonable(infos))  # fmt: skip

    @app.post("/batches/{session_id}/step", responses=ERRORS)
    def step_batch(session_id: str, body: BatchStepRequest) -> Response:
        session = manager.get(session_id, batch=True)
        observation, reward, terminated, truncated, infos = manager.step_batch(session, body.actions)
        return _batch_body(
            session, observation=_encode(observation, session.request.encoding), reward=reward.tolist(),
            terminated=terminated.tolist(), truncated=truncated.tolist(), info=jsonable(infos),
        )  # fmt: skip

    @app.delete("/batches/{session_id}", response_model=DeleteResponse, responses=ERRORS)
    def delete_batch(session_id: str) -> DeleteResponse:
        session = manager.delete(session_id, batch=True)
        return DeleteResponse(session_id=session.id, **session.versions, deleted=True)


app = create_app()  # for ``uvicorn market_env.server.app:app`` and the openenv.yaml manifest


@contextmanager
def serving(
    config: ServerConfig | None = None, host: str = "127.0.0.1", port: int = 0, app: FastAPI | None = None
) -> Iterator[str]:
    """Run a real uvicorn server in a background thread of this process; yields its base URL.

    ``port=0`` takes a free port; ``app`` (from ``create_app(config)``) serves instead of a new one. For
    notebooks, tests and benchmarks; the server stops on exit.
    """
    import socket

    import uvicorn

    # proto must say TCP: asyncio sets TCP_NODELAY only on sockets that do, and without it Nagle's algorithm
    # and delayed ACKs hold every response ~40 ms
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    server = uvicorn.Server(uvicorn_config(config or ServerConfig(), app, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True, name="serve-env")
    thread.start()
    deadline = time.monotonic() + 60.0
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError(f"the server on {host}:{sock.getsockname()[1]} did not start")
        time.sleep(0.01)
    try:
        yield f"http://{host}:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout=30.0)
        sock.close()


def uvicorn_config(config: ServerConfig, app: FastAPI | None = None, **options: Any) -> Any:
    """uvicorn's settings for this server: the request deadline, the idle-connection timeout, h11."""
    import uvicorn

    return uvicorn.Config(app or create_app(config), http=protocol_with_timeout(config.request_timeout_s),
                          timeout_keep_alive=max(1, round(config.keepalive_timeout_s)), ws="none",
                          **options)  # fmt: skip


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="serve-env", description="Serve the market environment over HTTP.")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default loopback only)")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--max-sessions", type=int, default=64, help="concurrent sessions; more get 429")
    parser.add_argument("--idle-timeout", type=float, default=600.0, help="seconds an idle session lives")
    parser.add_argument(
        "--max-sessions-per-client",
        type=int,
        default=None,
        help="sessions one client address may hold (default: --max-sessions); more get 429",
    )
    parser.add_argument("--max-body-bytes", type=int, default=8 * 2**20, help="larger requests get 413")
    parser.add_argument(
        "--request-timeout",
        type=float,
        default=30.0,
        help="seconds for a request's headers and body to arrive, or the connection is dropped",
    )
    parser.add_argument(
        "--keepalive-timeout",
        type=float,
        default=30.0,
        help="seconds an idle connection stays open between requests",
    )
    parser.add_argument("--token", default=os.environ.get(TOKEN_ENV),
                        help=f"require 'Authorization: Bearer TOKEN' (default ${TOKEN_ENV}); "
                             "required when --host is not loopback")  # fmt: skip
    parser.add_argument("--data", default=None, help="price CSV/parquet (default: the embedded NIFTY 100)")
    parser.add_argument("--log-level", default="info", choices=LOG_LEVELS)
    return parser


def config_from_args(args: argparse.Namespace) -> ServerConfig:
    if args.max_sessions < 1 or args.idle_timeout <= 0:
        raise SystemExit("--max-sessions must be >= 1 and --idle-timeout > 0")
    per_client = args.max_sessions_per_client
    if (per_client is not None and per_client < 1) or args.max_body_bytes < 1024:
        raise SystemExit("--max-sessions-per-client must be >= 1 and --max-body-bytes >= 1024")
    if args.request_timeout <= 0 or args.keepalive_timeout <= 0:
        raise SystemExit("--request-timeout and --keepalive-timeout must be > 0 seconds")
    if args.host not in LOOPBACK and not args.token:
        raise SystemExit(
            f"--host {args.host} serves beyond this machine: give a secret with --token (or ${TOKEN_ENV}); "
            "clients send it as 'Authorization: Bearer <token>'"
        )
    return ServerConfig(
        max_sessions=args.max_sessions, idle_timeout_s=args.idle_timeout, data=args.data,
        max_sessions_per_client=args.max_sessions_per_client, max_body_bytes=args.max_body_bytes,
        request_timeout_s=args.request_timeout, keepalive_timeout_s=args.keepalive_timeout,
        token=args.token or None,
    )  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    import uvicorn

    args = make_parser().parse_args(argv)
    config = config_from_args(args)
    logging.basicConfig(level=args.log_level.upper(), format=LOG_FORMAT)
    uvicorn.Server(
        uvicorn_config(config, None, host=args.host, port=args.port, log_level=args.log_level)
    ).run()


if __name__ == "__main__":
    main()
