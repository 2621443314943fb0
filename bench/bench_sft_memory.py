"""Where ``train-sft``'s memory goes: the process's resident set size (RSS) by phase of a short run.

Run: ``OMP_NUM_THREADS=1 python bench/bench_sft_memory.py --data <make-sft-data dir> --task easy``
(``--json out.json`` keeps the numbers; any further ``train-sft`` flag can follow ``--``).

A sampler thread reads the RSS every 20 ms; the table shows, for each phase, the RSS when it ended and the
peak inside it. Phases: imports, model load, data, trainer construction, each training micro-batch
(forward + backward), each optimizer step, the val pass and saving. ``tracemalloc`` cannot see torch's
allocations, hence RSS. ``resource``'s ``ru_maxrss`` (what ``/usr/bin/time -v`` prints as "Maximum resident
set size") is reported as a cross-check of the sampler.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import psutil

GB = 1e9


class RssSampler:
    """Samples this process's RSS in a thread; :meth:`mark` closes a phase and records its end and peak."""

    def __init__(self, interval_s: float = 0.02) -> None:
        self._process = psutil.Process()
        self._interval_s = interval_s
        self._peak = self._rss()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.phases: list[dict[str, Any]] = []
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _rss(self) -> int:
        return self._process.memory_info().rss

    def _run(self) -> None:
        while not self._stop.wait(self._interval_s):
            rss = self._rss()
            with self._lock:
                self._peak = max(self._peak, rss)

    def mark(self, phase: str) -> None:
        """End ``phase``: record the RSS now and the peak since the previous mark."""
        rss = self._rss()
        with self._lock:
            peak, self._peak = max(self._peak, rss), rss
        self.phases.append({"phase": phase, "rss_gb": round(rss / GB, 3), "peak_gb": round(peak / GB, 3)})

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def phase_callback(sampler: RssSampler) -> Any:
    """A TrainerCallback that closes a phase at each point of the Trainer's loop."""
    from transformers import TrainerCallback

    class Phases(TrainerCallback):
        def __init__(self) -> None:
            self.micro = 0

        def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            sampler.mark("trainer built, train() set up")

        def on_substep_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            self.micro += 1
            sampler.mark(f"step {state.global_step + 1} micro-batch {self.micro} (fwd+bwd)")

        def on_pre_optimizer_step(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            self.micro += 1  # the last micro-batch of a step ends here, not in on_substep_end
            sampler.mark(f"step {state.global_step + 1} micro-batch {self.micro} (fwd+bwd)")

        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            self.micro = 0
            sampler.mark(f"step {state.global_step} optimizer + log")

        def on_evaluate(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            sampler.mark(f"val pass after step {state.global_step}")

        def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            sampler.mark(f"checkpoint-{state.global_step} saved")

    return Phases()


def instrument_load(sft: Any, sampler: RssSampler) -> None:
    """Close a phase right after the model load and after the data are tokenised (wraps two sft functions)."""
    load, build = sft.load_for_training, sft.build_dataset

    def load_for_training(*args: Any, **kwargs: Any) -> Any:
        loaded = load(*args, **kwargs)
        sampler.mark("model loaded")
        return loaded

    def build_dataset(*args: Any, **kwargs: Any) -> Any:
        result = build(*args, **kwargs)
        sampler.mark(f"dataset tokenised ({len(result[0])} examples)")
        return result

    sft.load_for_training, sft.build_dataset = load_for_training, build_dataset


def run(train_sft_args: Sequence[str]) -> dict[str, Any]:
    """Run ``train-sft`` in this process with the phase marks; returns the phase table and the peaks."""
    sampler = RssSampler()
    from training.sft import trainer as sft

    sampler.mark("imports")
    instrument_load(sft, sampler)
    config = sft.SFTRunConfig(**vars(sft.make_parser().parse_args(train_sft_args)))
    result = sft.train(config, callbacks=[phase_callback(sampler)])
    sampler.mark("final val loss, adapter saved")
    sampler.stop()
    return {
        "args": list(train_sft_args),
        "phases": sampler.phases,
        "peak_gb": max(p["peak_gb"] for p in sampler.phases),
        "ru_maxrss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / GB, 3),
        "losses": result.losses,
        "eval_loss": result.eval_loss,
        "seconds": round(result.seconds, 1),
    }


def print_table(report: dict[str, Any]) -> None:
    print(f"{'phase':<44} {'RSS at end':>10} {'peak in it':>10}")
    for phase in report["phases"]:
        print(f"{phase['phase']:<44} {phase['rss_gb']:>9.2f}G {phase['peak_gb']:>9.2f}G")
    print(f"peak RSS {report['peak_gb']:.2f} GB (ru_maxrss {report['ru_maxrss_gb']:.2f} GB)")
    print(f"losses {report['losses']}, val loss {report['eval_loss']}, {report['seconds']} s")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="a make-sft-data directory (train.jsonl, val.jsonl)")
    parser.add_argument("--task", default="easy")
    parser.add_argument("--max-steps", type=int, default=2)
    parser.add_argument("--json", type=Path, help="write the report here too")
    parser.add_argument("rest", nargs="*", help="more train-sft flags, after --")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-sft-memory-") as out:
        train_args = [
            "--data", args.data, "--task", args.task, "--max-steps", str(args.max_steps),
            "--output-dir", out, "--save-steps", str(args.max_steps), "--logging-steps", "1", *args.rest,
        ]  # fmt: skip
        report = run(train_args)
    print_table(report)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
