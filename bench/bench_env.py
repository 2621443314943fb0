"""Environment throughput: steps/s per task and mode, single env and batch API, reset cost, text rendering.

Run: ``python bench/bench_env.py`` (add ``--quick`` for a short run, ``--json out.json`` to keep the numbers).
Actions are random valid ones (numeric: uniform in [-1, 1], so most steps trade; text: two orders a step).
Memory: the process's resident set size before and after many episodes, to show it stays flat.
"""

from __future__ import annotations

import argparse
import gc
import json
import resource
import time
import tracemalloc

import numpy as np

import market_env
from market_env.observations import render_text


def _text_actions(env: market_env.MarketEnv, n: int) -> list[str]:
    rng = np.random.default_rng(0)
    names = env.names
    return [
        f"BUY {names[rng.integers(len(names))]} {rng.uniform(0.05, 0.5):.2f}\n"
        f"SELL {names[rng.integers(len(names))]} {rng.uniform(0.1, 1):.2f}"
        for _ in range(n)
    ]


def single_env_steps_per_second(task: str, obs_mode: str, seconds: float) -> float:
    env = market_env.make(task, obs_mode=obs_mode, seed=0)
    env.reset()
    n_stocks = env.market.task.n_stocks
    numeric = np.random.default_rng(0).uniform(-1, 1, (4096, n_stocks)).astype(np.float32)
    text = _text_actions(env, 4096)  # symbols of the first episode: later episodes see invalid orders too
    steps, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        action = numeric[steps % 4096] if obs_mode == "numeric" else text[steps % 4096]
        _, _, done, _, _ = env.step(action)
        steps += 1
        if done:
            env.reset()
    return steps / (time.perf_counter() - start)


def batch_steps_per_second(task: str, n_envs: int, seconds: float, obs_mode: str = "numeric") -> float:
    batch = market_env.make_batch(task, n_envs=n_envs, obs_mode=obs_mode, seed=0)
    batch.reset()
    n_stocks = batch.market.task.n_stocks
    actions = np.random.default_rng(0).uniform(-1, 1, (64, n_envs, n_stocks))
    calls, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        batch.step(actions[calls % 64])
        calls += 1
    return calls * n_envs / (time.perf_counter() - start)


def reset_microseconds(task: str, repeats: int = 2000) -> float:
    env = market_env.make(task, obs_mode="numeric", seed=0)
    start = time.perf_counter()
    for _ in range(repeats):
        env.reset()
    return (time.perf_counter() - start) / repeats * 1e6


def text_render_microseconds_per_stock(task: str, repeats: int = 300) -> float:
    env = market_env.make(task, seed=0)
    env.reset()
    snapshot = env.market.snapshot()
    start = time.perf_counter()
    for _ in range(repeats):
        render_text(snapshot, 0, env.names, anonymize=False)
    return (time.perf_counter() - start) / repeats / env.market.task.n_stocks * 1e6


def memory_growth(episodes: int) -> dict[str, float]:
    """Python heap and RSS growth over many hard episodes on one env (flat = no leak)."""
    env = market_env.make("hard", obs_mode="numeric", seed=0)
    env.reset()
    actions = np.random.default_rng(0).uniform(-1, 1, (40, 25)).astype(np.float32)

    def play(n: int) -> None:
        for _ in range(n):
            env.reset()
            for action in actions:
                env.step(action)

    play(200)  # warm caches (the first ~1,000 episodes fill lookup caches by some 50-80 KiB, then flat)
    tracemalloc.start()
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    gc.collect()  # count what is kept, not cyclic garbage that is merely not yet collected
    heap_before, _ = tracemalloc.get_traced_memory()
    play(episodes)
    gc.collect()
    heap_after, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    rss_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"episodes": episodes, "heap_growth_kib": (heap_after - heap_before) / 1024,
            "max_rss_growth_kib": float(rss_after - rss_before)}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="0.3 s per figure instead of 2 s")
    parser.add_argument("--json", help="write the figures to this file")
    args = parser.parse_args()
    seconds = 0.3 if args.quick else 2.0
    results: dict = {"single": {}, "batch": {}, "reset_us": {}, "text_render_us_per_stock": {}}
    print(f"{'task':<7}{'mode':<8}{'single env':>12}{'batch 256':>12}{'batch 1024':>13}{'reset':>10}")
    for task in market_env.TASK_NAMES:
        for obs_mode in ("numeric", "text"):
            single = single_env_steps_per_second(task, obs_mode, seconds)
            results["single"][f"{task}/{obs_mode}"] = single
            batch = {}
            if obs_mode == "numeric":
                batch = {n: batch_steps_per_second(task, n, seconds) for n in (256, 1024)}
                results["batch"][task] = batch
            reset = reset_microseconds(task) if obs_mode == "numeric" else None
            if reset is not None:
                results["reset_us"][task] = reset
            print(
                f"{task:<7}{obs_mode:<8}{single:>12,.0f}"
                + (f"{batch[256]:>12,.0f}{batch[1024]:>13,.0f}{reset:>8.0f}us" if batch else "")
            )
        results["text_render_us_per_stock"][task] = text_render_microseconds_per_stock(task)
    per_stock = results["text_render_us_per_stock"]
    print("text rendering, us per stock:", {task: round(us, 1) for task, us in per_stock.items()})
    results["memory"] = memory_growth(100 if args.quick else 5000)
    print("memory over episodes:", results["memory"])
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(results, handle, indent=2)


if __name__ == "__main__":
    main()
