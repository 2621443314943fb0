"""Sessions of the environment server: one ``MarketEnv`` each, a cap on how many, idle ones reaped.

Isolation: every session owns its env (simulator, random generator, renderer); what they share is the
market panel and the caches built from it, which are never written after loading. A session's env is
only touched under that session's lock, so two requests to one session never interleave even where calls
come from several threads (a thread-pool server, or this manager used directly); the app's handlers run
on the event loop, where the locks are never contended. The registry has its own lock for
create/get/delete/reap.

Reaping is lazy: every registry operation first drops sessions idle for longer than ``idle_timeout_s``
(a session busy in a step is never reaped). A slot freed by delete or reaping is reusable at once.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

import market_env
from market_env.env import MarketEnv
from market_env.market import PriceData
from market_env.server.models import CreateSessionRequest, jsonable

logger = logging.getLogger(__name__)


class SessionError(Exception):
    """Base of the errors the server turns into 4xx responses; ``status`` and ``code`` say which."""

    status = 400
    code = "bad_request"

    def __init__(self, message: str, session: Session | None = None) -> None:
        super().__init__(message)
        self.session = session


class SessionNotFound(SessionError):
    status, code = 404, "session_not_found"


class SessionLimitReached(SessionError):
    status, code = 429, "session_limit"


class EpisodeFinished(SessionError):
    status, code = 409, "episode_finished"


class StepFailed(SessionError):
    status, code = 409, "step_failed"


class ResetFailed(SessionError):
    status, code = 400, "reset_failed"


class InvalidRequest(SessionError):
    status, code = 422, "invalid_request"


@dataclass
class ServerConfig:
    """How the server runs; every field is also a ``serve-env`` flag."""

    max_sessions: int = 64  # concurrent sessions; one more is refused with 429
    idle_timeout_s: float = 600.0  # a session untouched this long is deleted
    data: PriceData = None  # prices: a CSV/parquet path; default the embedded NIFTY 100 set


@dataclass
class Session:
    id: str
    request: CreateSessionRequest
    env: MarketEnv
    last_used: float
    lock: threading.Lock = field(default_factory=threading.Lock)
    done: bool = False  # the episode ended (or a step failed): step answers 409 until a reset
    steps: int = 0

    @property
    def versions(self) -> dict[str, str]:
        market = self.env.market
        return {"env_version": market.version.version, "task_version": market.task.version}


class SessionManager:
    def __init__(self, config: ServerConfig, clock: Callable[[], float] = time.monotonic) -> None:
        self.config, self.clock = config, clock
        self._sessions: dict[str, Session] = {}
        self._lock = threading.Lock()
        self._panel_lock = threading.Lock()
        self._panel: Any = None

    @property
    def panel(self):
        """The market panel, loaded once (immutable, shared read-only by every session)."""
        with self._panel_lock:
            if self._panel is None:
                from data import load_panel

                self._panel = load_panel(self.config.data)
            return self._panel

    def __len__(self) -> int:
        with self._lock:
            self._reap()
            return len(self._sessions)

    # ------------------------------------------------------------------------------- registry
    def create(self, request: CreateSessionRequest) -> tuple[Session, Any, dict]:
        """A new session, already reset; raises ``SessionLimitReached`` when every slot is taken."""
        with self._lock:
            self._reap()
            self._check_room()
        r = request
        try:
            env = market_env.make(r.task, r.split, r.obs_mode, r.env_version, r.seed, self.panel, r.anonymize)
            observation, info = env.reset()
        except (market_env.MarketEnvError, ValueError) as error:  # e.g. no episode fits this data's split
            raise InvalidRequest(str(error)) from error
        session = Session(uuid.uuid4().hex, request, env, self.clock())
        with self._lock:
            self._reap()
            self._check_room()  # checked again: other creates may have filled the slots meanwhile
            self._sessions[session.id] = session
        logger.info("session %s created: %s", session.id, request.model_dump())
        return session, observation, info

    def _check_room(self) -> None:
        limit = self.config.max_sessions
        if len(self._sessions) >= limit:
            raise SessionLimitReached(
                f"the server is at its limit of {limit} sessions; delete finished ones (DELETE "
                f"/sessions/{{id}}) or retry once idle ones expire ({self.config.idle_timeout_s:g} s idle)"
            )

    def get(self, session_id: str) -> Session:
        with self._lock:
            self._reap()
            session = self._sessions.get(session_id)
            if session is not None:
                session.last_used = self.clock()  # so it cannot be reaped between this and its use
        if session is None:
            raise SessionNotFound(
                f"no session {session_id!r}: it never existed, was deleted or expired after "
                f"{self.config.idle_timeout_s:g} s idle; create one with POST /sessions"
            )
        return session

    def delete(self, session_id: str) -> Session:
        session = self.get(session_id)
        with self._lock:
            self._sessions.pop(session_id, None)
        session.env.close()
        logger.info("session %s deleted", session_id)
        return session

    def _reap(self) -> None:
        """Drop idle sessions; the caller holds ``self._lock``."""
        deadline = self.clock() - self.config.idle_timeout_s
        idle = [s for s in self._sessions.values() if s.last_used < deadline and not s.lock.locked()]
        for session in idle:
            del self._sessions[session.id]
            session.env.close()
            logger.info("session %s reaped after %g s idle", session.id, self.config.idle_timeout_s)

    # ------------------------------------------------------------------------- episode calls
    def reset(self, session: Session, seed: int | None, options: dict | None) -> tuple[Any, dict]:
        with session.lock:
            try:
                observation, info = session.env.reset(seed=seed, options=options)
            except (market_env.MarketEnvError, ValueError, LookupError) as error:  # a bad explicit episode
                raise InvalidRequest(f"cannot reset to that episode: {error}", session) from error
            except Exception as error:
                logger.exception("session %s: reset failed", session.id)
                raise ResetFailed(f"reset failed ({type(error).__name__}: {error})", session) from error
            session.done, session.steps, session.last_used = False, 0, self.clock()
            return observation, info

    def step(self, session: Session, action: str | list[float]) -> tuple[Any, float, bool, bool, dict]:
        with session.lock:
            session.last_used = self.clock()
            if session.done:
                raise EpisodeFinished(
                    f"the episode of session {session.id} has ended after {session.steps} steps; "
                    f"POST /sessions/{session.id}/reset to start a new one",
                    session,
                )
            action = self._check_action(session, action)
            try:
                result = session.env.step(action)
            except Exception as error:
                logger.exception("session %s: step %d failed", session.id, session.steps + 1)
                session.done = True  # its state may be half-updated: only a reset may follow
                raise StepFailed(
                    f"step {session.steps + 1} failed ({type(error).__name__}: {error}); the episode is "
                    f"abandoned, POST /sessions/{session.id}/reset to start a new one",
                    session,
                ) from error
            session.steps += 1
            session.done = bool(result[2] or result[3])
            session.last_used = self.clock()
            return result

    @staticmethod
    def _check_action(session: Session, action: str | list[float]) -> Any:
        if session.request.obs_mode == "text":
            if not isinstance(action, str):
                raise InvalidRequest("this session takes text actions; send a string such as 'HOLD'", session)
            return action
        n_stocks = session.env.market.task.n_stocks
        if isinstance(action, str) or len(action) != n_stocks:
            got = "a string" if isinstance(action, str) else f"{len(action)} values"
            raise InvalidRequest(
                f"this numeric {session.request.task} session takes a list of {n_stocks} floats in [-1, 1], "
                f"got {got}",
                session,
            )
        return np.asarray(action, dtype=np.float64)

    def state(self, session: Session) -> dict[str, Any]:
        with session.lock:
            session.last_used = self.clock()
            env, sim = session.env, session.env.market.sim
            t = int(sim.t[0])
            return {
                "t": t,
                "n_days": env.market.task.n_days,
                "nav": float(sim.nav[0, t]),
                "cash": float(sim.cash[0]),
                "positions": dict(zip(env.names, sim.shares[0].astype(np.int64).tolist())),
                "done": session.done,
                "state": jsonable(env.get_state()),
            }
