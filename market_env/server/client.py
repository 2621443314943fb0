"""``RemoteMarketEnv``: a ``gymnasium.Env`` whose episodes run on a ``serve-env`` server.

The arguments of ``market_env.make`` (less ``data``: the server's prices are used), the same spaces,
``reset``/``step`` results and errors: the same seed and actions give the same observations, rewards, info
and grade as in-process (a test checks it).

Against ``serve-env`` running on its default port (the examples need that server, so doctest skips them):

>>> env = RemoteMarketEnv("http://127.0.0.1:8000", task="hard", obs_mode="numeric", seed=0)  # doctest: +SKIP
>>> obs, info = env.reset()  # doctest: +SKIP
>>> obs, reward, terminated, truncated, info = env.step(env.action_space.sample())  # doctest: +SKIP
>>> env.close()  # deletes the session, freeing its slot  # doctest: +SKIP

``RemoteBatchMarketEnv`` is the rollout backend: ``n_envs`` episodes of a server-side ``BatchMarketEnv``
stepped by one request each step, with the results ``market_env.make_batch`` gives in-process.

>>> benv = RemoteBatchMarketEnv("http://127.0.0.1:8000", task="hard", n_envs=64, seed=0)  # doctest: +SKIP
>>> obs, infos = benv.reset()  # doctest: +SKIP
>>> obs, rewards, terminated, truncated, infos = benv.step(np.zeros((64, 25)))  # doctest: +SKIP

A server started with ``--token`` needs ``token=...`` (or ``$NIFTY_RL_TOKEN``).

Errors: stepping a finished episode raises ``market_env.EpisodeFinishedError`` as in-process; any other
refusal raises ``RemoteEnvError`` with the server's status and message: a numeric action of the wrong
length, an unknown name, a full server, and two inputs the in-process env accepts: a text action that is
not a string (in-process an invalid HOLD) or longer than 65,536 characters.
"""

from __future__ import annotations

import base64
import functools
import json
import os
import ssl
from typing import Any

import gymnasium
import httpx
import numpy as np
from gymnasium import spaces

from market_env.errors import EpisodeFinishedError, MarketEnvError
from market_env.simulator import EpisodeState


class RemoteEnvError(MarketEnvError, ValueError):
    """The server refused a request; ``status`` is the HTTP status, ``code`` its error name."""

    def __init__(self, status: int, message: str, code: str = "") -> None:
        super().__init__(f"HTTP {status}: {message}")
        self.status, self.code = status, code


@functools.cache
def _tls_context() -> ssl.SSLContext:
    """One verified TLS context for every client: httpx builds a new one per ``Client``, ~40 ms each."""
    import certifi

    return ssl.create_default_context(cafile=certifi.where())


def _new_http(base_url: str, timeout: float, token: str | None = None) -> httpx.Client:
    token = token or os.environ.get("NIFTY_RL_TOKEN")
    headers = {"authorization": f"Bearer {token}"} if token else {}
    return httpx.Client(base_url=base_url, timeout=timeout, verify=_tls_context(), headers=headers)


def build_space(spec: dict[str, Any]) -> spaces.Space:
    """The Gymnasium space a server's ``SpaceSpec`` describes."""
    if spec["type"] == "Box":
        return spaces.Box(spec["low"], spec["high"], tuple(spec["shape"]), dtype=np.dtype(spec["dtype"]))
    if spec["type"] == "Text":
        return spaces.Text(spec["max_length"], min_length=spec["min_length"], charset=spec["charset"])
    raise RemoteEnvError(200, f"the server described an unknown space type {spec['type']!r}")


def _raise_for(response: httpx.Response) -> dict[str, Any]:
    if response.is_success:
        return response.json()
    try:
        body = response.json()
    except ValueError:
        body = {"detail": response.text}
    detail, code = body.get("detail", body), body.get("error", "")
    if code == "episode_finished":
        raise EpisodeFinishedError(detail)
    raise RemoteEnvError(response.status_code, str(detail), code)


class RemoteMarketEnv(gymnasium.Env):
    metadata = {"render_modes": []}

    def __init__(
        self,
        base_url: str = "http://127.0.0.1:8000",
        task: str = "easy",
        split: str = "train",
        obs_mode: str = "text",
        version: str | None = None,
        seed: int | None = None,
        anonymize: bool = False,
        timeout: float = 60.0,
        http: httpx.Client | None = None,
        token: str | None = None,
    ) -> None:
        self._own_http = http is None
        self._base_url, self._timeout, self._token = base_url, timeout, token
        self._http = http or _new_http(base_url, timeout, token)
        self._create = {"task": task, "split": split, "obs_mode": obs_mode, "env_version": version,
                        "anonymize": anonymize}  # fmt: skip
        self.obs_mode = obs_mode
        self.session_id: str | None = None
        self._pending: tuple[Any, dict] | None = None  # the creation's reset, served by the first reset()
        self._names: tuple[str, ...] = ()
        self._open(seed)

    def _open(self, seed: int | None) -> None:
        if self._own_http and self._http.is_closed:  # reset() after close(): a new connection
            self._http = _new_http(self._base_url, self._timeout, self._token)
        body = _raise_for(self._http.post("/sessions", json=self._create | {"seed": seed}))
        self.session_id = body["session_id"]
        self.env_version, self.task_version = body["env_version"], body["task_version"]
        self.observation_space = build_space(body["observation_space"])
        self.action_space = build_space(body["action_space"])
        self._pending = (self._observation(body["observation"]), body["info"])

    @property
    def names(self) -> tuple[str, ...]:
        """Symbols the agent trades with this episode (STOCK_A.. when anonymised)."""
        return self._names

    def _observation(self, value: str | list[float]) -> Any:
        return value if self.obs_mode == "text" else np.asarray(value, dtype=np.float32)

    def _post(self, path: str, payload: dict[str, Any]) -> dict[str, Any]:
        # encoded here, not by httpx: NaN and inf must reach the server, which treats them as in-process
        content = json.dumps(payload, separators=(",", ":"))
        url, headers = f"/sessions/{self.session_id}/{path}", {"content-type": "application/json"}
        return _raise_for(self._http.post(url, content=content, headers=headers))

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[Any, dict]:
        super().reset(seed=seed)
        if self.session_id is None:  # closed before: start a new session
            self._open(seed)
        if self._pending is not None and seed is None and not options:
            (observation, info), self._pending = self._pending, None
        else:
            self._pending = None
            body = self._post("reset", {"seed": seed} | self._episode(options))
            observation, info = self._observation(body["observation"]), body["info"]
        self._names = tuple(info["symbols"])
        return observation, info

    @staticmethod
    def _episode(options: dict[str, Any] | None) -> dict[str, Any]:
        if not options:
            return {}
        if set(options) != {"start_date", "symbols"}:
            raise ValueError(f"reset options {sorted(options)}: a remote env takes start_date and symbols")
        return {"start_date": str(options["start_date"]), "symbols": list(options["symbols"])}

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict]:
        if self._pending is not None or self.session_id is None:
            raise EpisodeFinishedError("no episode is running; call reset() before step()")
        payload = action if isinstance(action, str) else np.asarray(action, dtype=np.float64).tolist()
        body = self._post("step", {"action": payload})
        observation = self._observation(body["observation"])
        return observation, body["reward"], body["terminated"], body["truncated"], body["info"]

    def state(self) -> dict[str, Any]:
        """The server's view of the session: t, nav, cash, positions, done and the ``EpisodeState``."""
        return _raise_for(self._http.get(f"/sessions/{self.session_id}/state"))

    def get_state(self) -> EpisodeState:
        """The episode's exact position, as ``MarketEnv.get_state`` returns it."""
        fields = self.state()["state"]
        if fields is None:
            raise RemoteEnvError(200, "an anonymised session does not export its state (it names the real "
                                 "stocks and dates); fork anonymised episodes in-process")  # fmt: skip
        return EpisodeState(**{k: tuple(v) if isinstance(v, list) else v for k, v in fields.items()})

    def close(self) -> None:
        """Delete the session (freeing its slot on the server); calling it twice is harmless."""
        if self.session_id is not None:
            response = self._http.delete(f"/sessions/{self.session_id}")
            self.session_id = None
            if response.status_code != 404:  # already expired: nothing to free
                _raise_for(response)
        if self._own_http:
            self._http.close()


def decode_observation(value: Any) -> Any:
    """A batch's observations as sent: strings, nested lists, or an encoded array (dtype, shape, base64)."""
    if isinstance(value, dict):
        raw = base64.b64decode(value["data"])
        return np.frombuffer(raw, dtype=np.dtype(value["dtype"]).newbyteorder("<")).reshape(value["shape"])
    if value and isinstance(value[0], str):
        return list(value)
    return np.asarray(value, dtype=np.float32)


class RemoteBatchMarketEnv:
    """``market_env.make_batch`` on a server: one request steps every slot (same-step autoreset).

    Returns what ``BatchMarketEnv`` returns: observations of shape (n_envs, obs size) (float32) or a list
    of strings; rewards and flags as arrays; infos as JSON (arrays as lists, a finished slot's grade in
    ``infos["grade"][i]``). ``encoding="base64"`` ships numeric observations as raw float32 (fast, exact).
    """

    def __init__(
        self,
        base_url: str = "http://127.0.0.1:8000",
        task: str = "easy",
        n_envs: int = 64,
        split: str = "train",
        obs_mode: str = "numeric",
        version: str | None = None,
        seed: int | None = None,
        anonymize: bool = False,
        encoding: str = "base64",
        timeout: float = 120.0,
        token: str | None = None,
        http: httpx.Client | None = None,
    ) -> None:
        self._own_http = http is None
        self._http = http or _new_http(base_url, timeout, token)
        self.num_envs, self.obs_mode, self.encoding = n_envs, obs_mode, encoding
        create = {"task": task, "n_envs": n_envs, "split": split, "obs_mode": obs_mode,
                  "env_version": version,
                  "seed": seed, "anonymize": anonymize, "encoding": encoding}  # fmt: skip
        body = _raise_for(self._http.post("/batches", json=create))
        self.session_id: str | None = body["session_id"]
        self.env_version, self.task_version = body["env_version"], body["task_version"]
        self.single_observation_space = build_space(body["single_observation_space"])
        self.single_action_space = build_space(body["single_action_space"])
        self._pending: tuple[Any, dict] | None = (decode_observation(body["observation"]), body["info"])

    def reset(self, *, seed: int | None = None) -> tuple[Any, dict]:
        """The creation's episodes on the first call without a seed; else slot i plays seed + i."""
        if self._pending is not None and seed is None:
            (observation, infos), self._pending = self._pending, None
            return observation, infos
        self._pending = None
        body = self._post("reset", {"seed": seed})
        return decode_observation(body["observation"]), body["info"]

    def step(self, actions: Any) -> tuple[Any, np.ndarray, np.ndarray, np.ndarray, dict]:
        self._pending = None
        if self.obs_mode == "text":
            payload: Any = list(actions)
        elif self.encoding == "base64":
            values = np.ascontiguousarray(actions, dtype="<f8")
            payload = {"dtype": "float64", "shape": list(values.shape),
                       "data": base64.b64encode(values.tobytes()).decode("ascii")}  # fmt: skip
        else:
            payload = np.asarray(actions, dtype=np.float64).tolist()
        body = self._post("step", {"actions": payload})
        flags = (np.asarray(body[k], dtype=bool) for k in ("terminated", "truncated"))
        rewards = np.asarray(body["reward"], dtype=np.float64)
        return decode_observation(body["observation"]), rewards, *flags, body["info"]

    def _post(self, path: str, payload: dict[str, Any]) -> dict[str, Any]:
        content = json.dumps(payload, separators=(",", ":"))  # NaN and inf reach the server, as in-process
        headers = {"content-type": "application/json"}
        return _raise_for(
            self._http.post(f"/batches/{self.session_id}/{path}", content=content, headers=headers)
        )

    def close(self) -> None:
        """Delete the batch session (freeing its slot); calling it twice is harmless."""
        if self.session_id is not None:
            response = self._http.delete(f"/batches/{self.session_id}")
            self.session_id = None
            if response.status_code != 404:
                _raise_for(response)
        if self._own_http:
            self._http.close()
