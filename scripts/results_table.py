"""Print `evaluate --json` results as the Markdown tables of docs/results.md (every row there reproducible).

    python scripts/results_table.py runs/ppo-hard-v3-test.json [more.json ...] [--vs momentum [--vs rsi]]

One row per result: episodes n, independent windows n_eff, the mean score and the paired differences against
hold and buy-and-hold, each with its overlap-aware 95% interval, and the mean net return. ``--vs AGENT`` adds
the paired difference against another agent (its full name as in the JSON, e.g.
``llm:smollm2-135m@runs/sft/adapter``), found in any of the files: separate `evaluate` runs with the same
task, split, data, seed and episode count play the same episodes, which is checked episode by episode.
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


def same_episodes(a: dict, b: dict) -> bool:
    """Whether two results were played on the same episodes (so their scores pair row by row)."""
    keys = ("task", "split", "data", "env_version", "n")
    episodes = [[(row["start_day"], row["symbols"]) for row in r["per_episode"]] for r in (a, b)]
    return all(a[k] == b[k] for k in keys) and episodes[0] == episodes[1]


def paired_cell(result: dict, agents: dict[str, list[dict]], name: str) -> str:
    """The paired difference against the agent ``name`` played on the same episodes, or "-" when none was."""
    if result["agent"] == name:
        return "-"
    others = [other for other in agents.get(name, []) if same_episodes(result, other)]
    return versus(result, others[0]) if others else "-"


def rows(path: Path, vs: list[str], agents: dict[str, list[dict]]) -> list[str]:
    out = []
    for result in json.loads(path.read_text())["results"]:
        summary = result["summary"]
        extra = "".join(f" {paired_cell(result, agents, name)} |" for name in vs)
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
    parser.add_argument(
        "--vs", action="append", default=[], help="add the paired difference against this agent (repeatable)"
    )
    args = parser.parse_args()
    agents: dict[str, list[dict]] = {}
    for path in args.paths:
        for result in json.loads(path.read_text())["results"]:
            agents.setdefault(result["agent"], []).append(result)
    missing = [name for name in args.vs if name not in agents]
    if missing:
        parser.error(f"--vs {missing[0]!r} is in none of the files; agents there: {', '.join(agents)}")
    extra = "".join(f" vs {name} |" for name in args.vs)
    print(
        "| task | split | data | env | agent | n | n_eff | score | vs hold | vs buy-and-hold | net return |"
        + extra
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|" + "---|" * len(args.vs))
    for path in args.paths:
        print("\n".join(rows(path, args.vs, agents)))


if __name__ == "__main__":
    main()
