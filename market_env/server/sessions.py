"""Sessions of the environment server: one ``MarketEnv`` each, a cap on how many, idle ones reaped.

Isolation: every session owns its env (simulator, random generator, renderer); what they share is the
market panel and the caches built from it, which are never written after loading. A session's env is
only touched under that session's lock, so two requests to one session never interleave even where calls
come from several threads (a thread-pool server, or this manager used directly); the app's handlers run
on the event loop, where the locks are never contended. The registry has its own lock for
create/get/delete/reap.

Reaping is lazy: every registry operation first drops sessions idle for longer than ``idle_timeout_s``
(a session busy in a step is never reaped). A slot freed by delete or reaping is reusable at once.

A batch session (``create_batch``) holds one ``BatchMarketEnv`` of n_envs slots and takes one session slot:
its cost per step is one request for n_envs episodes. Each client address may hold at most
``max_sessions_per_client`` sessions, so one client cannot take every slot of a shared server.
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
from market_env.batch import BatchMarketEnv
from market_env.env import MarketEnv
from market_env.market import PriceData
from market_env.server.models import CreateBatchRequest, CreateSessionRequest, EncodedArray, jsonable

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


class ClientQuotaReached(SessionError):
    status, code = 429, "client_session_limit"


@dataclass
class ServerConfig:
    """How the server runs; every field is also a ``serve-env`` flag (the token also ``NIFTY_RL_TOKEN``)."""

    max_sessions: int = 64  # concurrent sessions; one more is refused with 429
    idle_timeout_s: float = 600.0  # a session untouched this long is deleted
    data: PriceData = None  # prices: a CSV/parquet path; default the embedded NIFTY 100 set
    # sessions one client address may hold (429 past it); None: max_sessions. Set it lower on a shared server
    max_sessions_per_client: int | None = None
    max_body_bytes: int = 8 * 2**20  # a larger request is refused with 413 before its body is read
    request_timeout_s: float = 30.0  # a request (headers and body) must arrive within this, or is dropped
    keepalive_timeout_s: float = 30.0  # an idle connection between requests is closed after this
    token: str | None = None  # if set, every request but /health needs ``Authorization: Bearer <token>``

    @property
    def client_quota(self) -> int:
        return self.max_sessions if self.max_sessions_per_client is None else self.max_sessions_per_client


@dataclass
class Session:
    id: str
    request: CreateSessionRequest
    env: MarketEnv | BatchMarketEnv
    last_used: float
    client: str = ""  # the address that created it, for the per-client quota
    lock: threading.Lock = field(default_factory=threading.Lock)
    done: bool = False  # the episode ended (or a step failed): step answers 409 until a reset
    steps: int = 0
    # shares held as the agent sees them (the last step's info): rescaled units when anonymised
    positions: dict[str, Any] = field(default_factory=dict)

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
    def create(self, request: CreateSessionRequest, client: str = "") -> tuple[Session, Any, dict]:
        """A new session, already reset; raises ``SessionLimitReached`` when every slot is taken."""
        r = request
        return self._open(
            request, client, lambda: market_env.make(r.task, r.split, r.obs_mode, r.env_version, r.seed,
                                                     self.panel, r.anonymize)
        )  # fmt: skip

    def create_batch(self, request: CreateBatchRequest, client: str = "") -> tuple[Session, Any, dict]:
        """A new batch session of ``request.n_envs`` slots (one session slot), already reset."""
        r = request
        return self._open(
            request, client, lambda: market_env.make_batch(r.task, r.n_envs, r.split, r.obs_mode,
                                                           r.env_version, r.seed, self.panel, r.anonymize)
        )  # fmt: skip

    def _open(self, request: CreateSessionRequest, client: str, make: Callable[[], Any]) -> tuple:
        with self._lock:
            self._reap()
            self._check_room(client)
        try:
            env = make()
            observation, info = env.reset()
        except (market_env.MarketEnvError, ValueError) as error:  # e.g. no episode fits this data's split
            raise InvalidRequest(str(error)) from error
        session = Session(uuid.uuid4().hex, request, env, self.clock(), client)
        session.positions = dict.fromkeys(getattr(env, "names", ()), 0)
        with self._lock:
            self._reap()
            self._check_room(client)  # checked again: other creates may have filled the slots meanwhile
            self._sessions[session.id] = session
        logger.info("session %s created for %s: %s", session.id, client, request.model_dump())
        return session, observation, info

    def _check_room(self, client: str) -> None:
        limit, idle = self.config.max_sessions, self.config.idle_timeout_s
        if len(self._sessions) >= limit:
            raise SessionLimitReached(
                f"the server is at its limit of {limit} sessions; delete finished ones (DELETE "
                f"/sessions/{{id}}) or retry once idle ones expire ({idle:g} s idle)"
            )
        quota = self.config.client_quota
        if sum(s.client == client for s in self._sessions.values()) >= quota:
            raise ClientQuotaReached(
                f"client {client or '?'} holds {quota} sessions, the most one client may hold; delete "
                f"finished ones (DELETE /sessions/{{id}}) or retry once idle ones expire ({idle:g} s idle)"
            )

    def get(self, session_id: str, batch: bool = False) -> Session:
        """The live session of that id; ``batch`` says which kind the endpoint serves (the other is a 404)."""
        with self._lock:
            self._reap()
            session = self._sessions.get(session_id)
            if session is not None and isinstance(session.env, BatchMarketEnv) != batch:
                session = None
            if session is not None:
                session.last_used = self.clock()  # so it cannot be reaped between this and its use
        if session is None:
            raise SessionNotFound(
                f"no session {session_id!r}: it never existed, was deleted or expired after "
                f"{self.config.idle_timeout_s:g} s idle; create one with POST /sessions"
            )
        return session

    def delete(self, session_id: str, batch: bool = False) -> Session:
        session = self.get(session_id, batch)
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
            session.positions = dict.fromkeys(session.env.names, 0)
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
            session.positions = dict(result[4].get("positions", session.positions))
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
        """Where the episode stands, as the agent may see it.

        The exportable ``EpisodeState`` (real start day, symbol indices and share counts) is given only in
        the clear: an anonymised session gets ``state: null``, so its client cannot learn which stocks and
        dates it trades (fork such an episode in-process, where the env keeps its identity).
        """
        with session.lock:
            session.last_used = self.clock()
            env, sim = session.env, session.env.market.sim
            t = int(sim.t[0])
            return {
                "t": t,
                "n_days": env.market.task.n_days,
                "nav": float(sim.nav[0, t]),
                "cash": float(sim.cash[0]),
                "positions": jsonable(session.positions),
                "done": session.done,
                "state": None if session.request.anonymize else jsonable(env.get_state()),
            }

    # --------------------------------------------------------------------------- batch calls
    def reset_batch(self, session: Session, seed: int | None) -> tuple[Any, dict]:
        with session.lock:
            observation, infos = session.env.reset(seed=seed)
            session.steps, session.last_used = 0, self.clock()
            return observation, infos

    def step_batch(self, session: Session, actions: list | EncodedArray) -> tuple[Any, Any, Any, Any, dict]:
        """Every slot steps once; a finished episode restarts in the same step (its grade in the infos)."""
        with session.lock:
            session.last_used = self.clock()
            actions = self._check_batch_actions(session, actions)
            try:
                result = session.env.step(actions)
            except Exception as error:
                logger.exception("batch session %s: step %d failed", session.id, session.steps + 1)
                raise StepFailed(f"batch step failed ({type(error).__name__}: {error})", session) from error
            session.steps += 1
            session.last_used = self.clock()
            return result

    @staticmethod
    def _check_batch_actions(session: Session, actions: list | EncodedArray) -> Any:
        env, request = session.env, session.request
        n_envs, n_stocks = env.num_envs, env.market.task.n_stocks
        if request.obs_mode == "text":
            if not (
                isinstance(actions, list)
                and len(actions) == n_envs
                and all(isinstance(a, str) for a in actions)
            ):
                raise InvalidRequest(
                    f"this text batch takes a list of {n_envs} strings, one per slot", session
                )
            return actions
        if isinstance(actions, list) and actions and isinstance(actions[0], str):
            raise InvalidRequest(f"this numeric batch takes {n_envs} lists of {n_stocks} floats", session)
        try:
            values = (
                actions.decode()
                if isinstance(actions, EncodedArray)
                else np.asarray(actions, dtype=np.float64)
            )
        except ValueError as error:  # ragged lists, or an encoding that does not fit its shape
            raise InvalidRequest(f"bad actions: {error}", session) from None
        if values.shape != (n_envs, n_stocks):
            raise InvalidRequest(
                f"this numeric {request.task} batch takes actions of shape ({n_envs}, {n_stocks}), "
                f"got {values.shape}",
                session,
            )
        return values
