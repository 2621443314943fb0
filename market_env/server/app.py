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

Errors: 422 schema violations and unknown names (the message lists the valid ones), 404 unknown or expired
session, 409 stepping a finished episode (reset it), 429 every slot taken. A malformed text action is not an
HTTP error: as in-process, the step is a HOLD with ``info["invalid_action"]`` true.

Run: ``serve-env --host 127.0.0.1 --port 8000 [--max-sessions 64] [--idle-timeout 600]``, or point any ASGI
server at ``market_env.server.app:app`` (the default config). One process only: sessions live in memory.
"""

from __future__ import annotations

import argparse
import logging
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import numpy as np
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from gymnasium import spaces

from market_env.server.models import (
    API_VERSION,
    CreateSessionRequest,
    DeleteResponse,
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
    code: {"model": ErrorResponse} for code in (404, 409, 429)
}  # documented in the OpenAPI schema


def space_spec(space: spaces.Space) -> SpaceSpec:
    if isinstance(space, spaces.Box):
        low, high = float(np.min(space.low)), float(np.max(space.high))
        return SpaceSpec(type="Box", shape=list(space.shape), low=low, high=high, dtype=str(space.dtype))
    assert isinstance(space, spaces.Text), space
    charset = "".join(sorted(space.character_set))
    return SpaceSpec(type="Text", min_length=space.min_length, max_length=space.max_length, charset=charset)


def _observation(observation: Any) -> str | list[float]:
    return observation if isinstance(observation, str) else np.asarray(observation).tolist()


def _error_response(request: Request, error: SessionError) -> JSONResponse:
    versions = error.session.versions if error.session is not None else {}
    body = ErrorResponse(detail=str(error), error=error.code, **versions)
    return JSONResponse(body.model_dump(), status_code=error.status)


def _validation_response(request: Request, error: RequestValidationError) -> JSONResponse:
    # FastAPI's own 422, made JSON-safe: a NaN in the echoed input must not turn the reply into a 500
    return JSONResponse({"detail": jsonable(error.errors())}, status_code=422)


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

    # Handlers are ``async def`` with no await inside: each runs start to end on the event loop. A step takes
    # 0.4-1 ms (20 ms for a 60k-character action); as sync handlers in the thread pool the server spent
    # 1.8-2.0 ms CPU per step, on the loop 1.2-1.3 ms (hard task, one client, server CPU time from /proc).
    @app.get("/health", response_model=HealthResponse)
    async def health() -> HealthResponse:
        return HealthResponse(status="ok", active_sessions=len(manager), **default_versions(),
                              max_sessions=manager.config.max_sessions)  # fmt: skip

    @app.get("/metadata")
    async def get_metadata() -> dict[str, Any]:
        config = manager.config
        return describe(config.max_sessions, config.idle_timeout_s, active_sessions=len(manager))

    @app.post("/sessions", response_model=SessionResponse, status_code=201, responses=ERRORS)
    async def create_session(body: CreateSessionRequest) -> SessionResponse:
        session, observation, info = manager.create(body)
        env = session.env
        return SessionResponse(
            session_id=session.id, **session.versions, task=body.task, split=body.split,
            obs_mode=body.obs_mode, anonymize=body.anonymize, observation=_observation(observation),
            info=jsonable(info), observation_space=space_spec(env.observation_space),
            action_space=space_spec(env.action_space),
        )  # fmt: skip

    @app.post("/sessions/{session_id}/reset", response_model=ResetResponse, responses=ERRORS)
    async def reset_session(session_id: str, body: ResetRequest | None = None) -> ResetResponse:
        body = body or ResetRequest()
        session = manager.get(session_id)
        observation, info = manager.reset(session, body.seed, body.options())
        return ResetResponse(session_id=session.id, **session.versions, observation=_observation(observation),
                             info=jsonable(info))  # fmt: skip

    @app.post("/sessions/{session_id}/step", response_model=StepResponse, responses=ERRORS)
    async def step_session(session_id: str, body: StepRequest) -> StepResponse:
        session = manager.get(session_id)
        observation, reward, terminated, truncated, info = manager.step(session, body.action)
        return StepResponse(
            session_id=session.id, **session.versions, observation=_observation(observation),
            reward=reward, terminated=terminated, truncated=truncated, info=jsonable(info),
        )  # fmt: skip

    @app.get("/sessions/{session_id}/state", response_model=StateResponse, responses=ERRORS)
    async def session_state(session_id: str) -> StateResponse:
        session = manager.get(session_id)
        return StateResponse(session_id=session.id, **session.versions, **manager.state(session))

    @app.delete("/sessions/{session_id}", response_model=DeleteResponse, responses=ERRORS)
    async def delete_session(session_id: str) -> DeleteResponse:
        session = manager.delete(session_id)
        return DeleteResponse(session_id=session.id, **session.versions, deleted=True)

    return app


app = create_app()  # for ``uvicorn market_env.server.app:app`` and the openenv.yaml manifest


@contextmanager
def serving(config: ServerConfig | None = None, host: str = "127.0.0.1", port: int = 0) -> Iterator[str]:
    """Run a real uvicorn server in a background thread of this process; yields its base URL.

    ``port=0`` takes a free port. For notebooks, tests and benchmarks; the server stops on exit.
    """
    import socket

    import uvicorn

    # proto must say TCP: asyncio sets TCP_NODELAY only on sockets that do, and without it Nagle's algorithm
    # and delayed ACKs hold every response ~40 ms
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    server = uvicorn.Server(uvicorn.Config(create_app(config), log_level="warning", timeout_keep_alive=30))
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


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="serve-env", description="Serve the market environment over HTTP.")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default loopback only)")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--max-sessions", type=int, default=64, help="concurrent sessions; more get 429")
    parser.add_argument("--idle-timeout", type=float, default=600.0, help="seconds an idle session lives")
    parser.add_argument("--data", default=None, help="price CSV/parquet (default: the embedded NIFTY 100)")
    parser.add_argument("--log-level", default="info", choices=LOG_LEVELS)
    return parser


def config_from_args(args: argparse.Namespace) -> ServerConfig:
    if args.max_sessions < 1 or args.idle_timeout <= 0:
        raise SystemExit("--max-sessions must be >= 1 and --idle-timeout > 0")
    return ServerConfig(max_sessions=args.max_sessions, idle_timeout_s=args.idle_timeout, data=args.data)


def main(argv: list[str] | None = None) -> None:
    import uvicorn

    args = make_parser().parse_args(argv)
    config = config_from_args(args)
    logging.basicConfig(level=args.log_level.upper(), format=LOG_FORMAT)
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        logger.warning("binding %s: no authentication, whoever reaches it can use it", args.host)
    uvicorn.run(create_app(config), host=args.host, port=args.port, log_level=args.log_level)


if __name__ == "__main__":
    main()
