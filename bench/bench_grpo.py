"""Seconds per GRPO optimizer step on the CPU: the real ``train-grpo`` run, timed step by step.

Run: ``OMP_NUM_THREADS=1 python bench/bench_grpo.py`` (``--beta 0.04`` for the old KL default,
``--threads 2``, ``--no-share-prompts`` for TRL's own training pass, ``--prompts-per-step 8 --data
synthetic:edge`` for the shape of the edge experiment's design 3, ``--adapter runs/sft-easy/adapter`` to
start from an SFT adapter, ``--no-think`` when that adapter answers with the action lines alone,
``--json out.json``).

One step: one easy-task prompt (a train state of the RSI agent), ``--num-generations`` completions of at
most ``--max-completion-length`` tokens sampled, scored by the env reward, then the policy's
forward/backward (and with ``beta > 0`` the frozen reference's forward). Reported: the median and range
of the step times after the first (which pays for warm-up), the machine's load average while it ran (other
jobs share the cores: say so beside any number), torch's thread count, and the command line.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bench_grpo", description=__doc__.splitlines()[0])
    add = parser.add_argument
    add("--steps", type=int, default=4, help="optimizer steps (the first is not counted)")
    add("--num-generations", type=int, default=8)
    add("--max-completion-length", type=int, default=64)
    add("--beta", type=float, default=0.0, help="KL coefficient (> 0 adds the reference model's pass)")
    add("--prompts-per-step", type=int, default=1, help="groups per optimizer step")
    add("--data", help="market data: NIFTY (default), synthetic:edge")
    add(
        "--share-prompts",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="each prompt computed once in the training pass (train-grpo's CPU default)",
    )
    add("--threads", type=int, default=1, help="torch threads (1 when another job shares the machine)")
    add("--adapter", help="LoRA adapter to start from (default: a new LoRA on the base model)")
    add("--model", default="smollm2-135m")
    add(
        "--no-think",
        dest="think",
        action="store_false",
        help="prompts ask for actions only (an adapter trained by make-sft-data --no-think)",
    )
    add("--json", type=Path, help="also write the numbers here")
    return parser


def step_timer() -> Any:
    """A TrainerCallback that records the wall seconds of every optimizer step."""
    from transformers import TrainerCallback

    class StepTimer(TrainerCallback):
        def __init__(self) -> None:
            self.seconds: list[float] = []
            self._start = 0.0

        def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            self._start = time.perf_counter()

        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            self.seconds.append(time.perf_counter() - self._start)

    return StepTimer()


def run(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    from training.grpo.trainer import GRPORunConfig, train

    torch.set_num_threads(args.threads)
    timer = step_timer()
    with tempfile.TemporaryDirectory() as tmp:
        os.environ.setdefault("MLFLOW_TRACKING_URI", f"sqlite:///{tmp}/mlflow.db")
        config = GRPORunConfig(
            model=args.model, adapter=args.adapter, task="easy", max_steps=args.steps,
            output_dir=f"{tmp}/grpo", num_generations=args.num_generations, profile="cpu",
            save_steps=10_000, eval_every=0, eval_episodes=0, prompt_episodes=4, experts=("rsi",),
            beta=args.beta, max_completion_length=args.max_completion_length,
            prompts_per_step=args.prompts_per_step, think=args.think, data=args.data,
            share_prompts=args.share_prompts,
        )  # fmt: skip
        load_before = os.getloadavg()[0]
        train(config, callbacks=[timer])
        load_after = os.getloadavg()[0]
    timed = timer.seconds[1:] or timer.seconds
    return {
        "step_seconds_median": round(statistics.median(timed), 2),
        "step_seconds_min": round(min(timed), 2),
        "step_seconds_max": round(max(timed), 2),
        "first_step_seconds": round(timer.seconds[0], 2),
        "steps_timed": len(timed),
        "beta": args.beta,
        "num_generations": args.num_generations,
        "prompts_per_step": args.prompts_per_step,
        "share_prompts": args.share_prompts,
        "data": args.data or "nifty",
        "max_completion_length": args.max_completion_length,
        "think": args.think,
        "torch_threads": torch.get_num_threads(),
        "load_average_1min": [round(load_before, 2), round(load_after, 2)],
        "cpus": os.cpu_count(),
        "machine": platform.processor() or platform.machine(),
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
    }


def main(argv: list[str] | None = None) -> int:
    args = make_parser().parse_args(argv)
    result = run(args)
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
