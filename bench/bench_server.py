"""Server load benchmark: N concurrent episodes over HTTP on loopback, per-request sessions and batches.

Run: ``python bench/bench_server.py`` (64 hard numeric episodes, the server in its own process), two ways:

- ``per-request`` (the session API): 64 sessions, one thread each, one HTTP request per env step.
- ``batch`` (the rollout backend): one batch session of 64 slots; one request steps all 64 episodes
  (``RemoteBatchMarketEnv``, observations as base64 float32). Its results are compared with the in-process
  ``make_batch`` run on the same seed and actions (``parity``).

``--mode per-request|batch|both``, ``--obs-mode numeric|text|mixed`` (mixed: per-request only),
``--server thread`` runs uvicorn inside this process; ``--json out.json`` keeps the numbers. Reports
throughput (env steps/s over all episodes, from the moment every one starts stepping until the last ends)
and the p50/p99 latency of one ``step`` call as the client sees it (request, env step(s), response,
decode). Also checks that session N + 1 is refused with 429 (per-request mode).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np

import market_env
from market_env.server import RemoteBatchMarketEnv, RemoteEnvError, RemoteMarketEnv

ROOT = Path(__file__).resolve().parents[1]


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sessions", type=int, default=64)
    parser.add_argument("--episodes", type=int, default=1, help="episodes per session")
    parser.add_argument("--task", default="hard", choices=["easy", "medium", "hard"])
    parser.add_argument("--obs-mode", default="numeric", choices=["mixed", "text", "numeric"])
    parser.add_argument("--mode", default="both", choices=["per-request", "batch", "both"])
    parser.add_argument("--server", default="process", choices=["process", "thread"])
    parser.add_argument("--json", type=Path, default=None, help="write the numbers here")
    return parser


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc): what a step costs, however busy the host."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextlib.contextmanager
def server_process(max_sessions: int, flags: list[str] | None = None) -> Iterator[tuple[str, int]]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    command = [sys.executable, "-m", "market_env.server.app", "--port", str(port), "--log-level", "warning",
               "--max-sessions", str(max_sessions), *(flags or [])]  # fmt: skip
    env = os.environ | {"PYTHONPATH": str(ROOT)}
    server = subprocess.Popen(command, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                httpx.get(f"{url}/health", timeout=2)
                break
            except httpx.TransportError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("the server did not start") from None
                time.sleep(0.1)
        yield url, server.pid
    finally:
        server.terminate()
        server.wait(timeout=30)


@contextlib.contextmanager
def server_thread(max_sessions: int) -> Iterator[tuple[str, int]]:
    from market_env.server.app import serving
    from market_env.server.sessions import ServerConfig

    with serving(ServerConfig(max_sessions=max_sessions)) as url:
        yield url, os.getpid()


def random_action(rng: np.random.Generator, env: RemoteMarketEnv) -> str | list[float]:
    if env.obs_mode == "numeric":
        return rng.uniform(-1.0, 1.0, len(env.names)).tolist()
    buy, sell = rng.choice(env.names), rng.choice(env.names)
    return f"BUY {buy} {rng.uniform(0.05, 0.6):.3f}\nSELL {sell} {rng.uniform(0.1, 1):.2f}"


def play(env: RemoteMarketEnv, seed: int, episodes: int, start: threading.Barrier) -> list[float]:
    """Latencies of every step call; bounded by the episode length, so it stops by itself."""
    rng = np.random.default_rng(seed)
    latencies: list[float] = []
    start.wait(timeout=120)
    for _ in range(episodes):
        env.reset()
        for _ in range(1_000):
            action = random_action(rng, env)
            begin = time.perf_counter()
            *_, terminated, truncated, _ = env.step(action)
            latencies.append(time.perf_counter() - begin)
            if terminated or truncated:
                break
    return latencies


def batch_actions(rng: np.random.Generator, benv: RemoteBatchMarketEnv, names: list) -> np.ndarray | list:
    n_stocks = benv.single_action_space.shape[0] if benv.obs_mode == "numeric" else 0
    if benv.obs_mode == "numeric":
        return rng.uniform(-1.0, 1.0, (benv.num_envs, n_stocks))
    return [f"BUY {rng.choice(n)} {rng.uniform(0.05, 0.6):.3f}\nSELL {rng.choice(n)} 0.5" for n in names]


def run_batch(args: argparse.Namespace, url: str, server_pid: int) -> dict:
    """One batch session of ``--sessions`` slots plays ``--episodes`` episodes per slot; then parity."""
    obs_mode = "text" if args.obs_mode == "text" else "numeric"
    benv = RemoteBatchMarketEnv(url, task=args.task, n_envs=args.sessions, obs_mode=obs_mode, seed=0)
    _, infos = benv.reset()
    n_days = market_env.make(args.task).market.task.n_days
    rng, sent, transcript, latencies = np.random.default_rng(0), [], [], []
    server_cpu, client_cpu = process_cpu_seconds(server_pid), time.process_time()
    begin = time.perf_counter()
    for _ in range(n_days * args.episodes):
        actions = batch_actions(rng, benv, infos["symbols"])
        start = time.perf_counter()
        obs, reward, terminated, _, infos = benv.step(actions)
        latencies.append(time.perf_counter() - start)
        sent.append(actions)
        transcript.append((obs, reward, terminated))
    wall = time.perf_counter() - begin
    server_cpu, client_cpu = process_cpu_seconds(server_pid) - server_cpu, time.process_time() - client_cpu
    benv.close()
    steps = len(latencies) * args.sessions
    lat = np.asarray(latencies)
    return {
        "mode": "batch", "sessions": args.sessions, "task": args.task, "obs_mode": obs_mode,
        "server": args.server, "episodes": args.sessions * args.episodes, "steps": steps,
        "requests": lat.size,
        "wall_s": wall, "steps_per_s": steps / wall, "p50_ms": float(np.percentile(lat, 50) * 1e3),
        "p99_ms": float(np.percentile(lat, 99) * 1e3), "mean_ms": float(lat.mean() * 1e3),
        "extra_session_status": None, "cpus": os.cpu_count(), "load_average_1m": os.getloadavg()[0],
        "server_cpu_ms_per_step": server_cpu / steps * 1e3,
        "client_cpu_ms_per_step": client_cpu / steps * 1e3,
        "parity": batch_parity(args, obs_mode, sent, transcript),
    }  # fmt: skip


def batch_parity(args: argparse.Namespace, obs_mode: str, sent: list, transcript: list) -> bool:
    """Whether the in-process ``make_batch`` gives the same observations, rewards and ends, bit for bit."""
    local = market_env.make_batch(args.task, args.sessions, obs_mode=obs_mode, seed=0)
    local.reset()
    for actions, (obs, reward, terminated) in zip(sent, transcript):
        l_obs, l_reward, l_terminated, _, _ = local.step(actions)
        same_obs = np.array_equal(l_obs, obs) if obs_mode == "numeric" else l_obs == obs
        if not (same_obs and np.array_equal(l_reward, reward) and np.array_equal(l_terminated, terminated)):
            return False
    return True


def run(args: argparse.Namespace, url: str, server_pid: int) -> dict:
    mixed = args.obs_mode == "mixed"
    modes = [("text", "numeric")[i % 2] if mixed else args.obs_mode for i in range(args.sessions)]
    envs = [RemoteMarketEnv(url, task=args.task, obs_mode=mode, seed=i) for i, mode in enumerate(modes)]
    try:
        RemoteMarketEnv(url, task=args.task)
        refused = None
    except RemoteEnvError as error:
        refused = error.status
    start = threading.Barrier(args.sessions + 1)
    with ThreadPoolExecutor(args.sessions) as pool:
        futures = [pool.submit(play, env, i, args.episodes, start) for i, env in enumerate(envs)]
        start.wait(timeout=120)
        server_cpu, client_cpu = process_cpu_seconds(server_pid), time.process_time()
        begin = time.perf_counter()
        latencies = np.concatenate([future.result() for future in futures])
        wall = time.perf_counter() - begin
        server_cpu = process_cpu_seconds(server_pid) - server_cpu
        client_cpu = time.process_time() - client_cpu
    for env in envs:
        env.close()
    return {
        "mode": "per-request", "sessions": args.sessions, "task": args.task, "obs_mode": args.obs_mode,
        "server": args.server,
        "episodes": args.sessions * args.episodes, "steps": int(latencies.size), "wall_s": wall,
        "steps_per_s": latencies.size / wall, "p50_ms": float(np.percentile(latencies, 50) * 1e3),
        "p99_ms": float(np.percentile(latencies, 99) * 1e3), "mean_ms": float(latencies.mean() * 1e3),
        "extra_session_status": refused, "cpus": os.cpu_count(), "load_average_1m": os.getloadavg()[0],
        # CPU per step (includes each episode's reset): with the server in a thread, both are the same process
        "server_cpu_ms_per_step": server_cpu / latencies.size * 1e3,
        "client_cpu_ms_per_step": client_cpu / latencies.size * 1e3,
    }  # fmt: skip


def report(result: dict, episodes: int) -> str:
    unit = "request (64 env steps)" if result["mode"] == "batch" else "step"
    lines = [
        f"{result['mode']}: {result['sessions']} x {episodes} {result['task']} episode(s), "
        f"{result['obs_mode']} "
        f"actions, server in a {result['server']}, {result['cpus']} CPUs",
        f"  env steps {result['steps']} in {result['wall_s']:.2f} s: {result['steps_per_s']:.0f} steps/s",
        f"  latency per {unit}: p50 {result['p50_ms']:.1f} ms, p99 {result['p99_ms']:.1f} ms, "
        f"mean {result['mean_ms']:.1f} ms",
        f"  CPU per env step: server {result['server_cpu_ms_per_step']:.3f} ms, "
        f"client {result['client_cpu_ms_per_step']:.3f} ms; load average {result['load_average_1m']:.1f}",
    ]
    if result["mode"] == "batch":
        lines.append(f"  parity with in-process make_batch: {result['parity']}")
    else:
        lines.append(f"  session {result['sessions'] + 1}: HTTP {result['extra_session_status']}")
    return "\n".join(lines).replace("(64 env", f"({result['sessions']} env")


def main(argv: list[str] | None = None) -> list[dict]:
    args = make_parser().parse_args(argv)
    if args.obs_mode == "mixed" and args.mode != "per-request":
        raise SystemExit("--obs-mode mixed is for --mode per-request; a batch has one observation mode")
    context = server_process if args.server == "process" else server_thread
    runners = {"per-request": [run], "batch": [run_batch], "both": [run, run_batch]}[args.mode]
    results = []
    for runner in runners:
        with context(args.sessions) as (url, pid):  # a fresh server for each: neither warms the other
            results.append(runner(args, url, pid))
        print(report(results[-1], args.episodes), flush=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    main()
