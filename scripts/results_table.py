"""Print `evaluate --json` results as the Markdown tables of docs/results.md (every row there reproducible).

    python scripts/results_table.py runs/ppo-hard-v3-test.json [more.json ...] [--vs momentum]

One row per result: episodes n, independent windows n_eff, the mean score and the paired differences against
hold and buy-and-hold, each with its overlap-aware 95% interval, and the mean net return. ``--vs AGENT`` adds
the paired difference against another agent of the same file (same episodes), with the same interval.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from eval.stats import paired_difference


def interval(estimate: dict, fmt: str = "{:+.3f}") -> str:
    if estimate["ci_low"] == estimate["ci_high"]:
        return fmt.format(estimate["mean"])
    low, high = fmt.format(estimate["ci_low"]), fmt.format(estimate["ci_high"])
    return f"{fmt.format(estimate['mean'])} [{low}, {high}]"


def versus(result: dict, other: dict) -> str:
    scores = [np.array([row["score"] for row in r["per_episode"]]) for r in (result, other)]
    starts = np.array([row["start_day"] for row in result["per_episode"]])
    return interval(paired_difference(*scores, starts=starts, window=result["window_days"]).as_dict())


def rows(path: Path, vs: str | None) -> list[str]:
    out = []
    results = json.loads(path.read_text())["results"]
    by_agent = {result["agent"]: result for result in results}
    for result in results:
        summary = result["summary"]
        extra = f" {versus(result, by_agent[vs])} |" if vs else ""
        out.append(
            f"| {result['task']} | {result['split']} | {result['data']} | {result['env_version']} "
            f"| {result['agent']} | {result['n']} | {result['n_eff']:.1f} "
            f"| {interval(summary['score'], '{:.3f}')} | {interval(result['vs_hold']['score'])} "
            f"| {interval(result['vs_buy-and-hold']['score'])} | {summary['total_return']['mean']:+.2%} |"
            + extra
        )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="+", type=Path)
    parser.add_argument("--vs", help="add the paired difference against this agent of each file")
    args = parser.parse_args()
    extra = f" vs {args.vs} |" if args.vs else ""
    print(
        "| task | split | data | env | agent | n | n_eff | score | vs hold | vs buy-and-hold | net return |"
        + extra
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|" + ("---|" if args.vs else ""))
    for path in args.paths:
        print("\n".join(rows(path, args.vs)))


if __name__ == "__main__":
    main()
