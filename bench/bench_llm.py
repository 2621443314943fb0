"""LLM decision throughput on CPU: the same decisions batched across episodes vs one episode at a time.

Run: ``python bench/bench_llm.py`` (add ``--quick`` for a short run, ``--json out.json`` to keep the numbers).
The decisions: ``--episodes`` easy-task test-split episodes x ``--days`` trading days, each decided by the
LLM agent of ``evaluate`` (greedy). Every day, the agent first acts on all episodes' observations in one call
(``--batch-size`` prompts per forward batch), then on each episode's observation alone; both see the same
observations, so greedy decoding must give the same actions (checked). The episodes then hold to the next
day. Free text and constrained decoding (``+constrained``) are measured alike. Reports decisions (actions)
per second, generated tokens per second and prompt tokens per second, all over wall time.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from dataclasses import dataclass, field

import market_env
from market_env.actions import parse_action


@dataclass
class Tally:
    """Decisions, tokens and wall seconds of one (decoding, batching) cell."""

    decisions: int = 0
    invalid: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    seconds: float = 0.0
    actions: list[str] = field(default_factory=list)

    def add(self, agent, observations: list[str], snapshot, symbols: list[tuple[str, ...]]) -> None:
        started = time.perf_counter()
        actions = agent.act(observations, snapshot)
        self.seconds += time.perf_counter() - started
        self.decisions += len(actions)
        self.invalid += sum(parse_action(a, s).invalid for a, s in zip(actions, symbols))
        self.prompt_tokens += sum(c.prompt_tokens for c in agent.last_completions)
        self.completion_tokens += sum(c.completion_tokens for c in agent.last_completions)
        self.actions += actions

    def figures(self) -> dict[str, float]:
        return {
            "decisions": self.decisions,
            "seconds": self.seconds,
            "decisions_per_second": self.decisions / self.seconds,
            "completion_tokens": self.completion_tokens,
            "tokens_per_second": self.completion_tokens / self.seconds,
            "prompt_tokens_per_second": self.prompt_tokens / self.seconds,
            "mean_completion_tokens": self.completion_tokens / self.decisions,
            "invalid_rate": self.invalid / self.decisions,
        }


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="smollm2-135m", help="an LLM agent name of evaluate")
    parser.add_argument("--task", default="easy", choices=market_env.TASK_NAMES)
    parser.add_argument("--episodes", type=int, default=16, help="episodes decided together each day")
    parser.add_argument("--days", type=int, default=2, help="trading days (decisions per episode)")
    parser.add_argument("--max-new-tokens", type=int, default=32, help="generation budget per decision")
    parser.add_argument("--batch-size", type=int, default=16, help="prompts per forward batch when batched")
    parser.add_argument(
        "--decoding", nargs="+", default=["free", "constrained"], choices=["free", "constrained"]
    )
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's own choice)")
    parser.add_argument("--seed", type=int, default=0, help="episode i is the one seeded seed + i")
    parser.add_argument("--quick", action="store_true", help="4 episodes x 1 day, 8 new tokens")
    parser.add_argument("--json", help="write the settings and figures to this file")
    return parser


def run(args: argparse.Namespace) -> dict[str, dict[str, Tally]]:
    from eval.agents import make_agent

    agents = {
        decoding: make_agent(args.model, max_new_tokens=args.max_new_tokens, batch_size=args.batch_size,
                             constrained=decoding == "constrained", transcripts=0)
        for decoding in args.decoding
    }  # fmt: skip
    batch = market_env.make_batch(
        args.task, n_envs=args.episodes, split="test", obs_mode="text", seed=args.seed
    )
    observations, _ = batch.reset()
    for agent in agents.values():  # warm-up: first-call costs (kernels, the constrained vocabulary) aside
        agent.reset(1, args.seed)
        agent.act(observations[:1], batch.market.snapshot(slice(0, 1)))
    tallies = {decoding: {"batched": Tally(), "one at a time": Tally()} for decoding in agents}
    for agent in agents.values():
        agent.reset(args.episodes, args.seed)
    for _ in range(args.days):
        snapshot, symbols = batch.market.snapshot(), batch.names
        for decoding, agent in agents.items():
            tallies[decoding]["batched"].add(agent, observations, snapshot, symbols)
            for i in range(args.episodes):
                single = batch.market.snapshot(slice(i, i + 1))
                tallies[decoding]["one at a time"].add(
                    agent, observations[i : i + 1], single, symbols[i : i + 1]
                )
        observations, *_ = batch.step(["HOLD"] * args.episodes)
    return tallies


def main(argv: list[str] | None = None) -> None:
    args = make_parser().parse_args(argv)
    if args.quick:
        args.episodes, args.days, args.max_new_tokens = 4, 1, 8
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    settings = {
        "command": " ".join(["python", "bench/bench_llm.py", *(sys.argv[1:] if argv is None else argv)]),
        "model": args.model, "task": args.task, "episodes": args.episodes, "days": args.days,
        "max_new_tokens": args.max_new_tokens, "batch_size": args.batch_size, "decoding": "greedy",
        "torch_threads": torch.get_num_threads(), "cpus": os.cpu_count(), "torch": torch.__version__,
        "python": platform.python_version(), "machine": platform.machine(),
    }  # fmt: skip
    print("settings:", ", ".join(f"{k}={v}" for k, v in settings.items() if k != "command"))
    tallies = run(args)
    print(f"{'decoding':<13}{'mode':<15}{'decisions':>10}{'seconds':>9}{'actions/s':>11}{'tokens/s':>10}"
          f"{'prompt tok/s':>14}{'tok/decision':>14}{'invalid':>9}")  # fmt: skip
    results: dict = {"settings": settings, "figures": {}}
    for decoding, cells in tallies.items():
        for mode, tally in cells.items():
            f = tally.figures()
            results["figures"][f"{decoding}/{mode}"] = f
            print(f"{decoding:<13}{mode:<15}{f['decisions']:>10}{f['seconds']:>9.1f}"
                  f"{f['decisions_per_second']:>11.2f}{f['tokens_per_second']:>10.1f}"
                  f"{f['prompt_tokens_per_second']:>14.0f}{f['mean_completion_tokens']:>14.1f}"
                  f"{f['invalid_rate']:>9.0%}")  # fmt: skip
        batched, alone = cells["batched"], cells["one at a time"]
        same = batched.actions == alone.actions
        speedup = alone.seconds / batched.seconds
        results["figures"][f"{decoding}/speedup"] = speedup
        results["figures"][f"{decoding}/same_actions"] = same
        print(
            f"{decoding:<13}batched is {speedup:.2f}x one at a time; same actions: {'yes' if same else 'NO'}"
        )
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(results, handle, indent=2)


if __name__ == "__main__":
    main()
