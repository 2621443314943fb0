"""``evaluate``: any agents on the same paired episodes, with 95% intervals, plots, JSON and MLflow runs.

evaluate --agent rsi --task hard
evaluate --agent hold rsi buy-and-hold --task easy medium hard --env-version 1.0.0 2.0.0
evaluate --compare                      # agents x env versions x tasks from the MLflow runs
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from market_env.tasks import TASK_NAMES
from market_env.versions import ENV_VERSION, ENV_VERSIONS

TABLE_METRICS = {
    "score": ("score", "{:.3f}"),
    "total_return": ("return", "{:+.2%}"),
    "sharpe": ("Sharpe", "{:+.2f}"),
    "max_drawdown": ("max DD", "{:.2%}"),
    "activity": ("activity", "{:.2f}"),
    "invalid_rate": ("invalid", "{:.1%}"),
}


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="evaluate",
        description=__doc__.splitlines()[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="agents: hold, buy-and-hold, random, rsi, ppo:<path>, smollm2-135m, qwen-0.5b, deepseek-7b, "
        "llm:<hf-id-or-path>[@<adapter>]",
    )  # fmt: skip
    parser.add_argument("--agent", nargs="+", metavar="NAME", help="one or more agent names")
    parser.add_argument("--task", nargs="+", choices=TASK_NAMES, help="default: hard (compare: every task)")
    parser.add_argument("--split", default="test", choices=["train", "val", "test"])
    parser.add_argument("--episodes", type=int, default=50, help="paired episodes per task (default 50)")
    parser.add_argument("--seed", type=int, default=0, help="episode i is the one seeded seed + i")
    parser.add_argument("--env-version", nargs="+", default=[ENV_VERSION], choices=sorted(ENV_VERSIONS))
    parser.add_argument("--obs-mode", choices=["text", "numeric"], help="default: the agent's own mode")
    parser.add_argument("--anonymize", action="store_true", help="STOCK_A.. names, no dates, prices from 100")
    parser.add_argument("--data", help="your own OHLCV CSV/parquet instead of the embedded NIFTY set")
    parser.add_argument("--json", type=Path, help="write every number and per-episode row to this file")
    parser.add_argument("--out-dir", type=Path, default=Path("eval_output"), help="plots and CSVs")
    parser.add_argument("--no-mlflow", action="store_true", help="do not log MLflow runs")
    parser.add_argument("--no-plots", action="store_true")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument(
        "--compare", action="store_true", help="print agents x env versions x tasks from MLflow"
    )
    llm = parser.add_argument_group("LLM agents")
    llm.add_argument("--max-new-tokens", type=int, help="generation budget per decision")
    llm.add_argument("--batch-size", type=int, help="prompts per forward batch")
    llm.add_argument("--temperature", type=float, help="sample at this temperature (default: greedy)")
    llm.add_argument("--think", action="store_true", help="ask for <think> reasoning before the actions")
    llm.add_argument("--constrained", action="store_true", help="constrain decoding to the action grammar")
    llm.add_argument("--load-in-4bit", action="store_true", help="4-bit weights (CUDA + bitsandbytes)")
    return parser


def agent_options(args: argparse.Namespace) -> dict[str, Any]:
    names = ("max_new_tokens", "batch_size", "temperature", "think", "constrained", "load_in_4bit")
    return {name: getattr(args, name) for name in names if getattr(args, name) not in (None, False)}


def _cell(estimate, fmt: str) -> str:
    """Mean, with the 95% interval on a second line (none when the sample is constant)."""
    if estimate.low == estimate.high:
        return fmt.format(estimate.mean)
    return f"{fmt.format(estimate.mean)}\n[{fmt.format(estimate.low)}, {fmt.format(estimate.high)}]"


def print_table(console: Console, task: str, entries: list[dict]) -> None:
    first = entries[0]["result"]
    table = Table(
        title=f"{task} task, {first.config.split} split, {first.config.episodes} paired episodes "
        f"(mean [95% CI]); data {first.data_sha256[:12]}",
        title_justify="left",
    )
    table.add_column("agent")
    table.add_column("env")
    for _, (header, _) in TABLE_METRICS.items():
        table.add_column(header, justify="right")
    table.add_column("score vs hold", justify="right")
    for entry in entries:
        result, summary, vs_hold = entry["result"], entry["summary"], entry["vs_hold"]
        cells = [_cell(summary[m], fmt) for m, (_, fmt) in TABLE_METRICS.items()]
        table.add_row(result.agent, result.env_version, *cells, _cell(vs_hold["score"], "{:+.3f}"))
    console.print(table)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_")


def write_episode_csv(result, out_dir: Path) -> Path:
    import pandas as pd

    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{result.config.task}_{_slug(result.agent)}_env{result.env_version}_episodes.csv"
    rows = [
        {k: (";".join(v) if k == "symbols" else v) for k, v in row.items() if k != "nav"}
        for row in result.episodes
    ]
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def evaluate_task(task: str, args: argparse.Namespace, console: Console) -> list[dict]:
    """Every agent on this task's paired episodes, under every requested env version."""
    from eval import harness, stats
    from eval.agents import make_agent

    config = harness.EvalConfig(
        task=task, split=args.split, episodes=args.episodes, seed=args.seed, env_version=args.env_version[0],
        obs_mode=args.obs_mode, anonymize=args.anonymize, data=args.data,
    )  # fmt: skip
    hold = harness.run_evaluation(make_agent("hold"), config, progress=False)
    entries = []
    for name in args.agent:
        result = hold if name == "hold" and not args.obs_mode else None
        result = result or harness.run_evaluation(
            make_agent(name, **agent_options(args)), config, not args.quiet
        )
        for version in args.env_version:
            scored = result if version == result.env_version else _in_version(result, config, version, args)
            baseline = hold if version == hold.env_version else harness.rescore(hold, version)
            summary = {m: stats.bootstrap_mean(scored.values(m), args.seed) for m in harness.SUMMARY_METRICS}
            vs_hold = {
                "score": stats.paired_difference(scored.values("score"), baseline.values("score"), args.seed)
            }
            entries.append({"result": scored, "summary": summary, "vs_hold": vs_hold})
    return entries


def _in_version(result, config, version: str, args: argparse.Namespace):
    from dataclasses import replace

    from eval import harness
    from eval.agents import make_agent

    if harness.same_market(result.env_version, version, config.task):
        return harness.rescore(result, version)
    agent = make_agent(result.agent, **agent_options(args))
    return harness.run_evaluation(agent, replace(config, env_version=version), not args.quiet)


def run_evaluate(args: argparse.Namespace, console: Console) -> list[dict]:
    from eval import plots, tracking

    everything = []
    for task in args.task:
        entries = evaluate_task(task, args, console)
        print_table(console, task, entries)
        results = [entry["result"] for entry in entries]
        images = []
        if not args.no_plots:
            args.out_dir.mkdir(parents=True, exist_ok=True)
            images = [plots.equity_curves(results, args.out_dir / f"{task}_equity.png"),
                      plots.score_distribution(results, args.out_dir / f"{task}_scores.png")]  # fmt: skip
            console.print(f"plots: {', '.join(str(p) for p in images)}")
        for entry in entries:
            csv = write_episode_csv(entry["result"], args.out_dir)
            if not args.no_mlflow:
                entry["run_id"] = tracking.log_evaluation(entry["result"], entry["summary"], entry["vs_hold"],
                                                          [csv, *images])  # fmt: skip
        everything.extend(entries)
    if not args.no_mlflow:
        console.print(f"MLflow: {len(everything)} run(s) logged to {tracking.tracking_uri()}")
    return everything


def to_json(entries: list[dict]) -> dict:
    from eval.tracking import run_record

    return {
        "record": run_record(),
        "results": [
            entry["result"].params()
            | {"seconds": entry["result"].seconds, "mlflow_run_id": entry.get("run_id")}
            | {"summary": {m: e.as_dict() for m, e in entry["summary"].items()}}
            | {"vs_hold": {m: e.as_dict() for m, e in entry["vs_hold"].items()}}
            | {"per_episode": entry["result"].episodes, "transcripts": entry["result"].transcripts}
            for entry in entries
        ],
    }


def compare(args: argparse.Namespace, console: Console) -> int:
    """Agents x env versions x tasks from the MLflow runs; refuses to mix data sets."""
    from eval import tracking

    runs = tracking.load_runs()
    if runs.empty:
        console.print("no evaluation runs yet: run `evaluate --agent ...` first")
        return 1
    if args.task:
        runs = runs[runs["params.task"].isin(args.task)]
    if args.agent:
        runs = runs[runs["params.agent"].isin(args.agent)]
    runs = runs[runs["params.split"] == args.split]  # a val score next to a test score would mislead
    if runs.empty:
        console.print(f"no evaluation runs on the {args.split} split: choose another with --split")
        return 1
    shas = sorted(runs["params.data_sha256"].dropna().unique())
    if len(shas) > 1:
        listed = ", ".join(sha[:12] for sha in shas)
        console.print(f"[red]refusing to compare runs on different data sets (sha256 {listed}). "
                      "Filter with --agent/--task or use a fresh MLFLOW_TRACKING_URI.[/red]")  # fmt: skip
        return 2
    keys = ["params.agent", "params.task", "params.env_version"]
    latest = runs.sort_values("start_time").groupby(keys, as_index=False).last()
    versions = sorted(latest["params.env_version"].unique())
    tasks = [t for t in TASK_NAMES if t in set(latest["params.task"])]
    data = shas[0][:12] if shas else "?"
    table = Table(title=f"{args.split} split: score, mean [95% CI], latest run per cell; data {data}")
    table.add_column("agent")
    for task in tasks:
        for version in versions:
            table.add_column(f"{task} env {version}", justify="right")
    for agent in sorted(latest["params.agent"].unique()):
        row = [agent]
        for task in tasks:
            for version in versions:
                cell = latest[(latest["params.agent"] == agent) & (latest["params.task"] == task)
                              & (latest["params.env_version"] == version)]  # fmt: skip
                row.append("-" if cell.empty else _cell_from_run(cell.iloc[0]))
        table.add_row(*row)
    console.print(table)
    return 0


def _cell_from_run(run) -> str:
    mean, low, high = (run[f"metrics.score{s}"] for s in ("", "_ci_low", "_ci_high"))
    return f"{mean:.3f}" if low == high else f"{mean:.3f}\n[{low:.3f}, {high:.3f}]"


def main(argv: list[str] | None = None) -> int:
    parser = make_parser()
    args = parser.parse_args(argv)
    console = Console()
    if not console.is_terminal:
        console = Console(width=160)  # logs and pipes: room for every column
    if args.compare:
        return compare(args, console)
    if not args.agent:
        parser.error("--agent is required (or use --compare)")
    args.task = args.task or ["hard"]
    if args.episodes < 1:
        parser.error("--episodes must be >= 1")
    from eval.agents import UnknownAgentError
    from llm_agent.models import ModelError  # cheap: torch loads only with a model

    try:
        entries = run_evaluate(args, console)
    except (UnknownAgentError, ModelError, ValueError, FileNotFoundError) as error:
        console.print(f"[red]error:[/red] {error}")
        return 2
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(to_json(entries), indent=1, default=str))
        console.print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
