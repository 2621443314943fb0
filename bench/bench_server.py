"""Server load benchmark: N concurrent sessions each play full episodes over HTTP on loopback.

Run: ``python bench/bench_server.py`` (64 sessions, one hard episode each, half text and half numeric, the
server in its own process). ``--server thread`` runs uvicorn inside this process instead; ``--json out.json``
keeps the numbers. Reports throughput (steps/s over all sessions, from the moment every session starts
stepping until the last one ends) and the p50/p99 latency of one ``step`` call as the client sees it
(request, env step, response, JSON decode). Also checks that session N + 1 is refused with 429.
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

from market_env.server import RemoteEnvError, RemoteMarketEnv

ROOT = Path(__file__).resolve().parents[1]


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sessions", type=int, default=64)
    parser.add_argument("--episodes", type=int, default=1, help="episodes per session")
    parser.add_argument("--task", default="hard", choices=["easy", "medium", "hard"])
    parser.add_argument("--obs-mode", default="mixed", choices=["mixed", "text", "numeric"])
    parser.add_argument("--server", default="process", choices=["process", "thread"])
    parser.add_argument("--json", type=Path, default=None, help="write the numbers here")
    return parser


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc): what a step costs, however busy the host."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextlib.contextmanager
def server_process(max_sessions: int) -> Iterator[tuple[str, int]]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    command = [sys.executable, "-m", "market_env.server.app", "--port", str(port), "--log-level", "warning",
               "--max-sessions", str(max_sessions)]  # fmt: skip
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
        "sessions": args.sessions, "task": args.task, "obs_mode": args.obs_mode, "server": args.server,
        "episodes": args.sessions * args.episodes, "steps": int(latencies.size), "wall_s": wall,
        "steps_per_s": latencies.size / wall, "p50_ms": float(np.percentile(latencies, 50) * 1e3),
        "p99_ms": float(np.percentile(latencies, 99) * 1e3), "mean_ms": float(latencies.mean() * 1e3),
        "extra_session_status": refused, "cpus": os.cpu_count(), "load_average_1m": os.getloadavg()[0],
        # CPU per step (includes each episode's reset): with the server in a thread, both are the same process
        "server_cpu_ms_per_step": server_cpu / latencies.size * 1e3,
        "client_cpu_ms_per_step": client_cpu / latencies.size * 1e3,
    }  # fmt: skip


def main(argv: list[str] | None = None) -> dict:
    args = make_parser().parse_args(argv)
    context = server_process if args.server == "process" else server_thread
    with context(args.sessions) as (url, pid):
        result = run(args, url, pid)
    print(
        f"{result['sessions']} sessions x {args.episodes} {args.task} episode(s), {args.obs_mode} actions, "
        f"server in a {args.server}, {result['cpus']} CPUs\n"
        f"  steps {result['steps']} in {result['wall_s']:.2f} s: {result['steps_per_s']:.0f} steps/s\n"
        f"  step latency p50 {result['p50_ms']:.1f} ms, p99 {result['p99_ms']:.1f} ms, "
        f"mean {result['mean_ms']:.1f} ms\n"
        f"  CPU per step: server {result['server_cpu_ms_per_step']:.2f} ms, "
        f"client {result['client_cpu_ms_per_step']:.2f} ms; load average {result['load_average_1m']:.1f}\n"
        f"  session {result['sessions'] + 1}: HTTP {result['extra_session_status']}"
    )
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
