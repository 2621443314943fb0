"""``evaluate --workers N``: one agent's paired episodes sharded over N processes, merged into one result.

Why a merged run equals a single-process one, row for row: episode i of a run is the one seeded
``seed + i`` whatever batch it sits in (``market_env.make_batch``'s contract), and every rule agent acts
per episode (``random`` draws from a generator seeded with its episode's seed). So worker w plays the
contiguous block of episodes ``[start_w, start_w + count_w)`` as a run seeded ``seed + start_w``, its
rows are renumbered by ``start_w``, and the blocks are concatenated in order. The merged
:class:`~eval.harness.EvalResult` then goes to the same table, JSON and ONE MLflow run per (agent, task,
env version) as an unsharded one: logging stays in the parent process.

Workers are started with ``spawn`` (never ``fork``: the parent may hold threads, a torch runtime or an
MLflow connection) and with ``OMP_NUM_THREADS``, ``MKL_NUM_THREADS``, ``OPENBLAS_NUM_THREADS`` and
``NUMBA_NUM_THREADS`` at 1, since N processes already share the cores. Each worker builds its own agent
and env from the agent's name. For an LLM agent that means N copies of the model (N times its memory,
on the one GPU when there is one); greedy decoding then matches an unsharded run up to the batch-size
dependence of the kernels, and sampled decoding (``--temperature``) draws differently per shard.

When it pays: for model-backed agents (LLMs, PPO), whose decisions cost far more than a spawn. Rule agents
play a whole run in well under a second, so the workers' start-up (seconds of imports each) dominates:
``evaluate --agent rsi momentum --task hard --episodes 200 --no-mlflow --no-plots`` took 5.6 s in one
process and 13.5 s with ``--workers 2`` on the shared 2-core dev box, with identical rows.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import time
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

from eval.harness import EvalConfig, EvalResult, run_evaluation

SINGLE_THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS")


def shard_bounds(episodes: int, workers: int) -> list[tuple[int, int]]:
    """(first episode, episode count) per worker: contiguous blocks as equal as possible, none empty."""
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    n = min(workers, episodes)
    sizes = [episodes // n + (1 if w < episodes % n else 0) for w in range(n)]
    starts = [sum(sizes[:w]) for w in range(n)]
    return list(zip(starts, sizes))


def play_shard(name: str, options: dict[str, Any], config: EvalConfig, start: int, count: int) -> EvalResult:
    """Episodes ``start .. start + count - 1`` of ``config``'s run, numbered as in the whole run."""
    from eval.agents import make_agent

    shard = replace(config, seed=config.seed + start, episodes=count)
    result = run_evaluation(make_agent(name, **options), shard, progress=False)
    for row in [*result.episodes, *result.transcripts]:
        if "episode" in row:
            row["episode"] += start
    result.config = replace(shard, data=None)  # the price table need not travel back to the parent
    return result


def merge(parts: list[EvalResult], config: EvalConfig, seconds: float) -> EvalResult:
    """One result from the shards (in episode order), as an unsharded run with ``config`` reports it."""
    first = parts[0]
    for part in parts[1:]:
        for key in ("agent", "env_version", "task_version", "grader_version", "data_sha256", "obs_mode"):
            if getattr(part, key) != getattr(first, key):
                raise RuntimeError(f"shards disagree on {key}: {getattr(first, key)} vs {getattr(part, key)}")
    return replace(
        first, config=config, seconds=seconds,
        episodes=[row for part in parts for row in part.episodes],
        transcripts=[row for part in parts for row in part.transcripts],
    )  # fmt: skip


@contextlib.contextmanager
def single_threaded_children() -> Iterator[None]:
    """Thread-count variables at 1 while worker processes start (spawned children copy the environment)."""
    saved = {name: os.environ.get(name) for name in SINGLE_THREAD_VARIABLES}
    os.environ.update(dict.fromkeys(SINGLE_THREAD_VARIABLES, "1"))
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


class Shards:
    """Worker processes kept for a whole ``evaluate`` call (each spawn costs seconds of imports), or none
    when ``workers`` is 1: then :meth:`run` plays in this process, exactly as ``run_evaluation``."""

    def __init__(self, workers: int) -> None:
        if workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        self.workers, self.pool = workers, None

    def __enter__(self) -> Shards:
        if self.workers > 1:
            with single_threaded_children():
                self.pool = multiprocessing.get_context("spawn").Pool(self.workers)
        return self

    def __exit__(self, kind: object, *rest: object) -> None:
        if self.pool is not None:
            if kind is None:  # let workers finish cleanly; on an error stop them at once
                self.pool.close()
            else:
                self.pool.terminate()
            self.pool.join()
            self.pool = None

    def run(
        self, name: str, options: dict[str, Any], config: EvalConfig, progress: bool = True
    ) -> EvalResult:
        """Agent ``name`` on ``config``'s episodes: sharded over the workers, merged in episode order."""
        if self.pool is None:
            from eval.agents import make_agent

            return run_evaluation(make_agent(name, **options), config, progress)
        start = time.perf_counter()
        jobs = [
            (name, options, config, first, count)
            for first, count in shard_bounds(config.episodes, self.workers)
        ]
        parts = self.pool.starmap(play_shard, jobs)
        return merge(parts, config, time.perf_counter() - start)
