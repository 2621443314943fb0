"""Bounded loopback soak of ``serve-env``: N requests, hostile ones mixed in; counts 5xx, latency, server RSS.

Run: ``python bench/soak_server.py [--requests 10000] [--workers 8] [--json out.json]``. The server runs in
its own process on 127.0.0.1 with a 1 MiB body limit and a 2 s request deadline. Each worker plays sessions
(create, steps, state, reset, delete) and every fifth request is hostile: a lone surrogate, NUL bytes, a
body nested 100,000 deep, a 5,000-digit number, invalid UTF-8, wrong types, an unknown session, a 2 MiB
body, a batch of 10^8 slots. Besides, ``--stalls`` raw connections send half a request and stall. Reports
the status counts, p50/p99 latency, the server's RSS before and after, and how soon the stalled connections
were dropped. Exits 1 on any 5xx.
"""

from __future__ import annotations

import argparse
import json
import socket
import sys
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_server import server_process

JSON = {"content-type": "application/json"}
HOSTILE = [
    ("POST", "/sessions", b'{"task": "\\ud800"}'),
    ("POST", "/sessions", b'{"task": "easy", "split": "\\u0000\\udfff"}'),
    ("POST", "/sessions", b'{"task": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"),
    ("POST", "/sessions", b'{"seed": 1' + b"0" * 5_000 + b"}"),
    ("POST", "/sessions", b"\xff\xfe\x00garbage"),
    ("POST", "/sessions", b'{"task": ["easy"], "anonymize": {}, "seed": "x"}'),
    ("POST", "/sessions", b'{"task": "easy"' + b" " * (2 * 2**20) + b"}"),  # over the 1 MiB limit
    ("POST", "/sessions/nope/step", b'{"action": "HOLD"}'),
    ("GET", "/sessions/%00%ff/state", b""),
    ("POST", "/batches", b'{"task": "hard", "n_envs": 100000000}'),
]


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


class Tally:
    def __init__(self) -> None:
        self.lock, self.status, self.latencies = threading.Lock(), Counter(), []

    def add(self, status: int, seconds: float) -> None:
        with self.lock:
            self.status[status] += 1
            self.latencies.append(seconds)


def timed(
    tally: Tally, http: httpx.Client, method: str, path: str, body: bytes | None = None, **kw
) -> httpx.Response:
    begin = time.perf_counter()
    response = http.request(method, path, content=body, headers=JSON, **kw)
    tally.add(response.status_code, time.perf_counter() - begin)
    return response


def worker(url: str, index: int, n_requests: int, tally: Tally) -> None:
    """Exactly ``n_requests`` requests: a session's life, with every fifth request hostile."""
    rng = np.random.default_rng(index)
    with httpx.Client(base_url=url, timeout=60) as http:
        sid, done = None, 0
        while done < n_requests:
            done += 1
            if done % 5 == 0:
                method, path, body = HOSTILE[int(rng.integers(len(HOSTILE)))]
                timed(tally, http, method, path, body)
            elif sid is None:
                task = ["easy", "medium", "hard"][int(rng.integers(3))]
                body = {
                    "task": task,
                    "obs_mode": ["text", "numeric"][int(rng.integers(2))],
                    "seed": int(done),
                }
                response = timed(tally, http, "POST", "/sessions", json.dumps(body).encode())
                if response.status_code == 201:
                    created = response.json()
                    sid, mode, names = created["session_id"], created["obs_mode"], created["info"]["symbols"]
            elif rng.random() < 0.03:
                timed(tally, http, "DELETE", f"/sessions/{sid}")
                sid = None
            elif rng.random() < 0.05:
                timed(tally, http, "GET", f"/sessions/{sid}/state")
            else:
                if mode == "text":
                    action = (
                        f"BUY {names[int(rng.integers(len(names)))]} 0.3" if rng.random() < 0.8 else "junk"
                    )
                else:
                    action = rng.uniform(-1, 1, len(names)).tolist()
                response = timed(
                    tally, http, "POST", f"/sessions/{sid}/step", json.dumps({"action": action}).encode()
                )
                if response.status_code == 409:
                    timed(tally, http, "POST", f"/sessions/{sid}/reset", b"{}")
                    done += 1
        if sid is not None:
            http.delete(f"/sessions/{sid}")


def stall(url: str, n: int) -> list[float]:
    """Open ``n`` connections that send half a request; seconds until the server dropped each."""
    host, port = url.removeprefix("http://").split(":")
    socks = []
    for _ in range(n):
        sock = socket.create_connection((host, int(port)), timeout=30)
        sock.sendall(b'POST /sessions HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{"ta')
        socks.append((sock, time.monotonic()))
    dropped = []
    for sock, opened in socks:
        try:
            while sock.recv(4096):
                pass
            dropped.append(time.monotonic() - opened)
        except TimeoutError:
            dropped.append(float("inf"))
        sock.close()
    return dropped


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=10_000)
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--stalls", type=int, default=100, help="half-sent requests left hanging")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    flags = ["--max-body-bytes", str(2**20), "--request-timeout", "2", "--keepalive-timeout", "5"]
    with server_process(64, flags) as (url, pid):
        httpx.post(f"{url}/sessions", json={"task": "hard"}).raise_for_status()  # warm: panels and caches
        rss_before, tally = rss_mib(pid), Tally()
        begin = time.perf_counter()
        with ThreadPoolExecutor(args.workers + 1) as pool:
            stalled = pool.submit(stall, url, args.stalls)
            per_worker = args.requests // args.workers
            futures = [pool.submit(worker, url, i, per_worker, tally) for i in range(args.workers)]
            for future in futures:
                future.result()
            dropped = stalled.result()
        wall = time.perf_counter() - begin
        rss_after = rss_mib(pid)
    lat = np.asarray(tally.latencies)
    result = {
        "requests": int(lat.size), "wall_s": wall, "status": dict(sorted(tally.status.items())),
        "5xx": sum(n for s, n in tally.status.items() if s >= 500),
        "p50_ms": float(np.percentile(lat, 50) * 1e3), "p99_ms": float(np.percentile(lat, 99) * 1e3),
        "rss_before_mib": rss_before, "rss_after_mib": rss_after,
        "stalled": len(dropped), "stalled_dropped_within_s": float(max(dropped)) if dropped else None,
    }  # fmt: skip
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    if result["5xx"]:
        raise SystemExit(1)
    return result


if __name__ == "__main__":
    main()
