"""Request and response bodies of the environment server (Pydantic v2), and how env values become JSON.

Names (task, split, observation mode, env version) are checked against the same registries the in-process
env uses, so an unknown one is a 422 whose message lists the valid names. Every response carries the
``env_version`` and ``task_version`` it was produced under; bodies that belong to no session (health,
metadata) carry the default ``env_version`` and the ``task_versions`` of its tasks.
"""

from __future__ import annotations

import base64
import datetime
import math
from dataclasses import asdict, is_dataclass
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from data.splits import SPLITS
from market_env.market import OBS_MODES
from market_env.versions import ENV_VERSION, ENV_VERSIONS

# A request larger than this is refused (422) before it reaches the parser: the in-process action space is
# Text(8192); the HTTP limit is looser so a long <think> block still arrives and is judged by the grammar.
MAX_TEXT_ACTION_CHARS = 65_536
MAX_NUMERIC_ACTION_VALUES = 1_024
MAX_BATCH_ENVS = 4_096  # slots of one batch session; its step body holds one action per slot
Observation = str | list[float]
ENCODINGS = ("json", "base64")  # how a batch session sends its numeric observations


def _check(kind: str, value: str, valid: list[str]) -> str:
    if value not in valid:
        raise ValueError(f"unknown {kind} {value!r}; expected one of: {', '.join(valid)}")
    return value


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CreateSessionRequest(_Strict):
    """``POST /sessions``: what ``market_env.make`` takes, minus the data (the server's panel)."""

    task: str = Field("easy", description="easy | medium | hard", examples=["hard"])
    split: str = Field("train", description="train | val | test", examples=["test"])
    obs_mode: str = Field("text", description="text | numeric")
    env_version: str | None = Field(None, description=f"default: {ENV_VERSION}")
    seed: int | None = Field(None, ge=0, lt=2**63, description="seed of the first episode")
    anonymize: bool = Field(False, description="STOCK_A.. names, no dates, prices rescaled to 100")

    @field_validator("task")
    @classmethod
    def _known_task(cls, value: str) -> str:
        return _check("task", value, sorted({t for v in ENV_VERSIONS.values() for t in v.tasks}))

    @field_validator("split")
    @classmethod
    def _known_split(cls, value: str) -> str:
        return _check("split", value, sorted(SPLITS))

    @field_validator("obs_mode")
    @classmethod
    def _known_obs_mode(cls, value: str) -> str:
        return _check("observation mode", value, list(OBS_MODES))

    @field_validator("env_version")
    @classmethod
    def _known_version(cls, value: str | None) -> str | None:
        return value if value is None else _check("env version", value, sorted(ENV_VERSIONS))

    @model_validator(mode="after")
    def _task_in_version(self) -> CreateSessionRequest:
        tasks = ENV_VERSIONS[self.env_version or ENV_VERSION].tasks
        _check(f"task for env version {self.env_version or ENV_VERSION}", self.task, sorted(tasks))
        return self


class ResetRequest(_Strict):
    """``POST /sessions/{id}/reset``: a seed, or an explicit episode (start_date and symbols together)."""

    seed: int | None = Field(None, ge=0, lt=2**63)
    start_date: str | None = Field(None, max_length=32, examples=["2025-03-03"])
    symbols: list[str] | None = Field(None, max_length=64, examples=[["RELIANCE"]])

    @model_validator(mode="after")
    def _both_or_neither(self) -> ResetRequest:
        if (self.start_date is None) != (self.symbols is None):
            raise ValueError("an explicit episode needs both start_date and symbols; give both or neither")
        return self

    @field_validator("start_date")
    @classmethod
    def _iso_date(cls, value: str | None) -> str | None:
        # checked here, so "NaT", "" or "soon" is a 422 naming the field, not an error deep in the data layer
        if value is None:
            return value
        try:
            return datetime.date.fromisoformat(value).isoformat()
        except ValueError:
            raise ValueError(f"start_date must be a calendar date as YYYY-MM-DD, got {value!r}") from None

    def options(self) -> dict[str, Any] | None:
        if self.start_date is None:
            return None
        return {"start_date": self.start_date, "symbols": self.symbols}


class StepRequest(_Strict):
    """``POST /sessions/{id}/step``: text (any string; malformed is a HOLD flagged in info) or K floats."""

    action: str | list[float] = Field(
        ..., examples=["BUY RELIANCE 0.5\nHOLD", [0.5, -0.3, 0.0]], description="text or numeric action"
    )

    @field_validator("action")
    @classmethod
    def _bounded(cls, value: str | list[float]) -> str | list[float]:
        limit = MAX_TEXT_ACTION_CHARS if isinstance(value, str) else MAX_NUMERIC_ACTION_VALUES
        if len(value) > limit:
            raise ValueError(f"action too long: {len(value)} > {limit}; send a shorter action")
        return value


class CreateBatchRequest(CreateSessionRequest):
    """``POST /batches``: one ``market_env.make_batch`` of ``n_envs`` slots stepped together (rollouts).

    ``encoding="base64"`` sends numeric observations as raw little-endian float32 (``EncodedArray``): the
    same bits as in-process, at a tenth of the JSON cost; text observations are always strings.
    """

    n_envs: int = Field(64, ge=1, le=MAX_BATCH_ENVS, description="episodes stepped by every request")
    encoding: str = Field("json", description="json | base64: how numeric observations travel")

    @field_validator("encoding")
    @classmethod
    def _known_encoding(cls, value: str) -> str:
        return _check("encoding", value, list(ENCODINGS))


class EncodedArray(_Strict):
    """An array as base64 of its raw little-endian bytes: ``dtype`` float32 or float64, C-order ``shape``."""

    dtype: str = Field(..., pattern="^(float32|float64)$")
    shape: list[int] = Field(..., max_length=2)
    data: str = Field(..., max_length=64 * 2**20)  # the body-size limit is the real bound

    def decode(self) -> np.ndarray:
        try:
            raw = base64.b64decode(self.data, validate=True)
            return np.frombuffer(raw, dtype=np.dtype(self.dtype).newbyteorder("<")).reshape(self.shape)
        except ValueError as error:  # bad base64, or a byte count that does not fit the shape
            raise ValueError(f"cannot decode the {self.dtype} array of shape {self.shape}: {error}") from None

    @classmethod
    def encode(cls, values: np.ndarray) -> dict[str, Any]:
        values = np.ascontiguousarray(values, dtype=values.dtype.newbyteorder("<"))
        data = base64.b64encode(values.tobytes()).decode("ascii")
        return {"dtype": values.dtype.name, "shape": list(values.shape), "data": data}


class BatchResetRequest(_Strict):
    """``POST /batches/{id}/reset``: slot i plays the episode ``make(...).reset(seed=seed + i)`` plays."""

    seed: int | None = Field(None, ge=0, lt=2**63 - MAX_BATCH_ENVS)


class BatchStepRequest(_Strict):
    """``POST /batches/{id}/step``: one action per slot: n_envs strings or lists of K floats, or encoded."""

    actions: list[str] | list[list[float]] | EncodedArray = Field(..., description="one action per slot")

    @field_validator("actions")
    @classmethod
    def _bounded(cls, value: Any) -> Any:
        if isinstance(value, list):
            if len(value) > MAX_BATCH_ENVS:
                raise ValueError(f"{len(value)} actions > {MAX_BATCH_ENVS}, the most slots a batch has")
            limit = (
                MAX_TEXT_ACTION_CHARS if value and isinstance(value[0], str) else MAX_NUMERIC_ACTION_VALUES
            )
            if any(len(action) > limit for action in value):
                raise ValueError(f"an action is longer than {limit}; send shorter actions")
        return value


class SpaceSpec(BaseModel):
    """A Gymnasium space, enough to rebuild it: ``Box`` (shape, low, high, dtype) or ``Text``."""

    type: str
    shape: list[int] | None = None
    low: float | None = None
    high: float | None = None
    dtype: str | None = None
    min_length: int | None = None
    max_length: int | None = None
    charset: str | None = None


class Versioned(BaseModel):
    env_version: str
    task_version: str


class SessionResponse(Versioned):
    session_id: str
    task: str
    split: str
    obs_mode: str
    anonymize: bool
    observation: Observation
    info: dict[str, Any]
    observation_space: SpaceSpec
    action_space: SpaceSpec


class ResetResponse(Versioned):
    session_id: str
    observation: Observation
    info: dict[str, Any]


class StepResponse(Versioned):
    session_id: str
    observation: Observation
    reward: float
    terminated: bool
    truncated: bool
    info: dict[str, Any]


class StateResponse(Versioned):
    session_id: str
    t: int = Field(description="decisions taken this episode")
    n_days: int
    nav: float
    cash: float
    positions: dict[str, int | float] = Field(description="shares held (rescaled units when anonymised)")
    done: bool
    state: dict[str, Any] | None = Field(
        description="market_env.EpisodeState as a dict, enough to fork it exactly; null when anonymised (it "
        "names the real start day and stocks)"
    )


class DeleteResponse(Versioned):
    session_id: str
    deleted: bool


class ErrorResponse(BaseModel):
    """An error: ``task_version`` when it concerns a session, else the default version's ``task_versions``."""

    detail: str
    error: str
    env_version: str
    task_version: str | None = None
    task_versions: dict[str, str] | None = None


class HealthResponse(BaseModel):
    status: str
    env_version: str
    task_versions: dict[str, str]
    active_sessions: int
    max_sessions: int


def jsonable(value: Any) -> Any:
    """Plain JSON types: numpy scalars and arrays unwrapped, dataclasses as dicts, non-finite floats None."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        if all(type(v) is str for v in value):  # names: the bulk of a batch's infos, 25 x 64 a step
            return list(value)
        return [jsonable(v) for v in value]
    if isinstance(value, bool | int | str) or value is None:
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, np.ndarray):
        return jsonable(value.tolist())
    if isinstance(value, np.generic):
        return jsonable(value.item())
    if is_dataclass(value) and not isinstance(value, type):
        return jsonable(asdict(value))
    return str(value)


# ------------------------------------------------------------------------------------------------ metadata
API_VERSION = "1.0.0"  # of this HTTP protocol; the env's rules are versioned separately (env_version)
NUMERIC_ACTION = (
    "a list of K floats in [-1, 1], one per stock in the episode's order: a_k > 0.1 buys (a_k - 0.1) / 0.9 "
    "of the cash, a_k < -0.1 sells (-a_k - 0.1) / 0.9 of the shares, otherwise hold; non-finite values hold"
)


TEXT_OBSERVATION = "a string: day and date, portfolio, a table of stocks with indicators, then the grammar"


def default_versions() -> dict[str, Any]:
    version = ENV_VERSIONS[ENV_VERSION]
    return {"env_version": ENV_VERSION, "task_versions": {n: t.version for n, t in version.tasks.items()}}


def describe_versions() -> dict[str, Any]:
    from market_env.grader import GRADERS

    versions = {
        name: {
            "grader_version": v.grader,
            "notes": v.notes,
            "rules": jsonable(v.rules),
            "tasks": {task: jsonable(spec) for task, spec in v.tasks.items()},
        }
        for name, v in ENV_VERSIONS.items()
    }
    graders = {name: {"weights": g.weights, "description": g.description} for name, g in GRADERS.items()}
    return {"env_versions": versions, "graders": graders}


def describe(max_sessions: int, idle_timeout_s: float, active_sessions: int) -> dict[str, Any]:
    """The ``GET /metadata`` body: everything a remote client needs to pick a task and talk to it."""
    from market_env.actions import ACTION_GRAMMAR
    from market_env.observations import CLIP, GLOBAL_FEATURES, STOCK_FEATURES

    numeric = {"size": "K * 13 + 3", "stock_features": list(STOCK_FEATURES),
               "global_features": list(GLOBAL_FEATURES), "clip": CLIP}  # fmt: skip
    limits = {"max_sessions": max_sessions, "idle_timeout_s": idle_timeout_s,
              "active_sessions": active_sessions, "max_text_action_chars": MAX_TEXT_ACTION_CHARS}  # fmt: skip
    return {
        "name": "nifty-rl",
        "api_version": API_VERSION,
        **default_versions(),
        "default_env_version": ENV_VERSION,
        **describe_versions(),
        "splits": {name: {"start": s.start, "end": s.end} for name, s in SPLITS.items()},
        "obs_modes": list(OBS_MODES),
        "observation": {"text": TEXT_OBSERVATION, "numeric": numeric},
        "action_grammar": ACTION_GRAMMAR,
        "numeric_action": NUMERIC_ACTION,
        "limits": limits,
    }
