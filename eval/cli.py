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
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from market_env.tasks import TASK_NAMES
from market_env.versions import ENV_VERSION, ENV_VERSIONS

# Paired episodes per task on the test split, measured (env 3.0.0, buy-and-hold vs hold, overlap-aware 95%
# half-width by episodes 50/100/200/400): easy .048/.033/.023/.019 (16 windows), medium .039/.041/.032/.029
# (10.5 windows), hard .027/.037/.033/.033 (8 windows). Easy reaches +-0.02 at 400; medium and hard plateau
# near +-0.03 from 200 (the split has no more independent windows), where evaluate says so.
DEFAULT_EPISODES = {"easy": 400, "medium": 200, "hard": 200}
BASELINES = ("hold", "buy-and-hold", "random")  # beside every agent, on the same episodes
BENCHMARK = "buy-and-hold"  # what a trader must beat
# Two narrow tables instead of one wide one, so both fit 80 columns: the score and its paired differences,
# then the raw metrics. Each cell is the mean over a +- half-width of its 95% interval.
SCORE_COLUMNS = {"score": ("score", "{:.3f}")}
DIAGNOSTIC_COLUMNS = {
    "total_return": ("return", "{:+.2%}"),
    "sharpe": ("Sharpe", "{:+.2f}"),
    "max_drawdown": ("max DD", "{:.2%}"),
    "activity": ("activity", "{:.2f}"),
    "invalid_rate": ("invalid", "{:.1%}"),
}
TABLE_METRICS = SCORE_COLUMNS | DIAGNOSTIC_COLUMNS


def make_parser() -> argparse.ArgumentParser:
    from eval.agents import agent_names

    parser = argparse.ArgumentParser(
        prog="evaluate",
        description=__doc__.splitlines()[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=f"agents: {', '.join(agent_names())}",  # the registry's list, so help and errors agree
    )
    parser.add_argument("--agent", nargs="+", metavar="NAME", help="one or more agent names")
    parser.add_argument("--task", nargs="+", choices=TASK_NAMES, help="default: hard (compare: every task)")
    parser.add_argument("--split", default="test", choices=["train", "val", "test"])
    parser.add_argument(
        "--episodes", type=int, help=f"paired episodes per task (default: {DEFAULT_EPISODES} per task)"
    )
    parser.add_argument("--seed", type=int, default=0, help="episode i is the one seeded seed + i")
    parser.add_argument("--env-version", nargs="+", default=[ENV_VERSION], choices=sorted(ENV_VERSIONS))
    parser.add_argument("--obs-mode", choices=["text", "numeric"], help="default: the agent's own mode")
    parser.add_argument("--anonymize", action="store_true", help="STOCK_A.. names, no dates, prices from 100")
    parser.add_argument(
        "--data",
        help="your own OHLCV CSV/parquet, or synthetic:martingale / synthetic:edge[:edge=..,seed=..]",
    )
    parser.add_argument(
        "--workers", type=int, default=1,
        help="shard each agent's episodes over N processes (spawned, 1 thread each) and merge them into the "
        "same rows, table, JSON and MLflow run as one process; an LLM agent loads N model copies",
    )  # fmt: skip
    parser.add_argument("--json", type=Path, help="also write every number and per-episode row here")
    parser.add_argument(
        "--out-dir", type=Path, default=Path("eval_output"), help="runs go to <out-dir>/<run name>/"
    )
    parser.add_argument("--run-name", help="the folder of this run's outputs (default: a timestamp)")
    parser.add_argument("--no-mlflow", action="store_true", help="do not log MLflow runs")
    parser.add_argument("--no-plots", action="store_true")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument(
        "--compare", action="store_true", help="print agents x env versions x tasks from MLflow"
    )
    parser.add_argument("--no-baselines", action="store_true", help="do not add hold, buy-and-hold, random")
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
    """Mean, with the half-width of its 95% interval below (none when the sample is constant)."""
    if estimate.low == estimate.high:
        return fmt.format(estimate.mean)
    half = fmt.format(estimate.half_width).lstrip("+")
    return f"{fmt.format(estimate.mean)}\n±{half}"


def print_table(console: Console, task: str, entries: list[dict]) -> None:
    """The score table, then the diagnostics table; both fit 80 columns (long agent names fold)."""
    first = entries[0]["result"]
    windows = entries[0]["summary"]["score"].n_eff
    data = first.config.data_name or "embedded"
    caption = (f"{task} task, {first.config.split} split, n = {len(first.episodes)} paired episodes, n_eff = "
               f"{windows:g} independent {first.window}-day windows; data {data} {first.data_sha256[:12]}; "
               "mean ± 95% half-width, overlap-aware")  # fmt: skip
    scores = _table(caption)
    for header in ("score", "vs hold", f"vs {BENCHMARK}"):
        scores.add_column(header, justify="right", overflow="fold")
    diagnostics = _table(f"{task} task: raw metrics (diagnostics)")
    for header, _ in DIAGNOSTIC_COLUMNS.values():
        diagnostics.add_column(header, justify="right", overflow="fold")
    for entry in entries:
        result, summary = entry["result"], entry["summary"]
        label = (result.agent, result.env_version)
        scores.add_row(*label, _cell(summary["score"], "{:.3f}"), _cell(entry["vs_hold"]["score"], "{:+.3f}"),
                       _cell(entry["vs_benchmark"]["score"], "{:+.3f}"))  # fmt: skip
        diagnostics.add_row(*label, *(_cell(summary[m], fmt) for m, (_, fmt) in DIAGNOSTIC_COLUMNS.items()))
    console.print(scores)
    console.print(diagnostics)


def _table(title: str) -> Table:
    table = Table(title=title, title_justify="left", padding=(0, 1))
    table.add_column("agent", overflow="fold", max_width=24)
    table.add_column("env", overflow="fold")
    return table


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_")


def run_folder(args: argparse.Namespace) -> Path:
    """``<out-dir>/<run name>/``: a new folder per run, so a run never overwrites another's outputs."""
    name = _slug(args.run_name) if args.run_name else time.strftime("%Y%m%d-%H%M%S")
    folder, suffix = args.out_dir / name, 1
    while folder.exists():  # two runs in one second, or a reused --run-name: never overwrite
        suffix += 1
        folder = args.out_dir / f"{name}-{suffix}"
    folder.mkdir(parents=True)
    return folder


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


def agents_to_run(args: argparse.Namespace) -> list[str]:
    """The baselines first (unless --no-baselines), then the requested agents, each once."""
    names = [*(() if args.no_baselines else BASELINES), *args.agent]
    return list(dict.fromkeys(names))


def evaluate_task(task: str, args: argparse.Namespace, console: Console, shards=None) -> list[dict]:
    """Every agent on this task's paired episodes, under every requested env version (played through
    ``shards``, an :class:`eval.parallel.Shards`, when given; else in this process)."""
    from eval import harness

    config = harness.EvalConfig(
        task=task, split=args.split, episodes=args.episodes or DEFAULT_EPISODES[task], seed=args.seed,
        env_version=args.env_version[0], obs_mode=args.obs_mode, anonymize=args.anonymize,
        data=_resolve_data(args.data), data_name=args.data or "",
    )  # fmt: skip
    played: dict[str, object] = {}
    for name in dict.fromkeys(["hold", BENCHMARK, *agents_to_run(args)]):  # the references always play
        played[name] = _play(name, config, args, shards)
    entries = []
    for name in agents_to_run(args):
        for version in args.env_version:
            scored = {
                ref: _in_version(played[ref], config, version, args, shards)
                for ref in {name, "hold", BENCHMARK}
            }
            entries.append(_entry(scored[name], scored["hold"], scored[BENCHMARK], args.seed))
    return entries


def _entry(result, hold, benchmark, seed: int) -> dict:
    from eval import harness, stats

    where = {"starts": result.starts, "window": result.window}
    summary = {m: stats.mean_interval(result.values(m), seed, **where) for m in harness.SUMMARY_METRICS}
    score = result.values("score")
    vs_hold = {"score": stats.paired_difference(score, hold.values("score"), seed, **where)}
    vs_benchmark = {"score": stats.paired_difference(score, benchmark.values("score"), seed, **where)}
    return {"result": result, "summary": summary, "vs_hold": vs_hold, "vs_benchmark": vs_benchmark}


def _resolve_data(spec: str | None):
    """``--data``: a file path, or ``synthetic:<kind>...`` made by ``data.synthetic`` (seeded, cached)."""
    if spec is None:
        return None
    from data.synthetic import resolve_data

    return resolve_data(spec)


def _play(name: str, config, args: argparse.Namespace, shards=None):
    """One agent on ``config``'s episodes, in this process or sharded over the ``--workers`` processes."""
    from eval.parallel import Shards

    rule = name in BASELINES
    options = {} if rule else agent_options(args)
    return (shards or Shards(1)).run(name, options, config, progress=not (args.quiet or rule))


def _in_version(result, config, version: str, args: argparse.Namespace, shards=None):
    from dataclasses import replace

    from eval import harness

    if version == result.env_version:
        return result
    if harness.same_market(result.env_version, version, config.task):
        return harness.rescore(result, version)
    return _play(result.agent, replace(config, env_version=version), args, shards)


def run_evaluate(args: argparse.Namespace, console: Console) -> tuple[list[dict], Path]:
    """Play, print and save every table, plot and CSV under the run's folder (MLflow comes later)."""
    from eval.parallel import Shards

    folder, everything = None, []
    with Shards(args.workers) as shards:  # one set of worker processes for every task and agent
        for task in args.task:
            entries = evaluate_task(task, args, console, shards)
            folder = folder or run_folder(args)  # made once something played: a refused request leaves none
            report_task(task, entries, args, console, folder)
            everything.extend(entries)
    return everything, folder


def report_task(
    task: str, entries: list[dict], args: argparse.Namespace, console: Console, folder: Path
) -> None:
    """Print one task's tables and a precision note; write its plots and per-episode CSVs."""
    from eval import plots, stats

    print_table(console, task, entries)
    # the first agent asked for; an LLM's reported name may carry its flags ("smollm2-135m+think")
    headline = next((e for e in entries if e["result"].agent.startswith(args.agent[0])), entries[-1])
    if warning := stats.precision_warning(headline["vs_benchmark"]["score"]):
        console.print(f"[yellow]note:[/yellow] {escape(args.agent[0])} vs {BENCHMARK}: {escape(warning)}")
    results = [entry["result"] for entry in entries]
    entry_images = []
    if not args.no_plots:
        entry_images = [plots.equity_curves(results, folder / f"{task}_equity.png"),
                        plots.score_distribution(results, folder / f"{task}_scores.png")]  # fmt: skip
    for entry in entries:
        entry["artifacts"] = [write_episode_csv(entry["result"], folder), *entry_images]


def log_to_mlflow(entries: list[dict], console: Console) -> bool:
    """One MLflow run per entry. A tracking failure is a warning: the results are already on disk."""
    from eval import tracking

    try:
        for entry in entries:
            entry["run_id"] = tracking.log_evaluation(entry["result"], entry["summary"], entry["vs_hold"],
                                                      entry["artifacts"], entry["vs_benchmark"])  # fmt: skip
    except Exception as error:  # the evaluation is done and saved; a tracking problem must not lose it
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        console.print(f"[yellow]warning: MLflow logging failed ({escape(first_line)}); the results above "
                      "are saved in the run folder[/yellow]")  # fmt: skip
        return False
    console.print(f"MLflow: {len(entries)} run(s) logged to {tracking.tracking_uri()}", soft_wrap=True)
    return True


def to_json(entries: list[dict]) -> dict:
    from eval.tracking import run_record

    return {
        "record": run_record(),
        "results": [
            entry["result"].params()
            | {"seconds": entry["result"].seconds, "mlflow_run_id": entry.get("run_id")}
            | {
                "n": len(entry["result"].episodes),
                "n_eff": entry["summary"]["score"].as_dict()["n_eff"],
                "window_days": entry["result"].window,
            }
            | {"summary": {m: e.as_dict() for m, e in entry["summary"].items()}}
            | {"vs_hold": {m: e.as_dict() for m, e in entry["vs_hold"].items()}}
            | {f"vs_{BENCHMARK}": {m: e.as_dict() for m, e in entry["vs_benchmark"].items()}}
            | {"per_episode": entry["result"].episodes, "transcripts": entry["result"].transcripts}
            for entry in entries
        ],
    }


def write_json(entries: list[dict], paths: list[Path]) -> None:
    text = json.dumps(to_json(entries), indent=1, default=str)
    for path in paths:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


# A compare cell only holds runs played alike: the same episodes, seed, split, obs mode, anonymisation and
# data. Runs that differ in any of these are separate rows, labelled by what differs.
CELL_IDENTITY = ("episodes", "seed", "obs_mode", "anonymize", "data")


def compare(args: argparse.Namespace, console: Console) -> int:
    """Agents x env versions per task from the MLflow runs; one table per task, runs played alike per row."""
    from eval import tracking

    runs = tracking.load_runs()
    if runs.empty:
        console.print("no evaluation runs yet: run `evaluate --agent ...` first")
        return 1
    if args.task:
        runs = runs[runs["params.task"].isin(args.task)]
    if args.agent:
        runs = runs[runs["params.agent"].isin(args.agent)]
    if args.data:
        runs = runs[runs.get("params.data", "embedded").fillna("embedded") == args.data]
    runs = runs[runs["params.split"] == args.split]  # a val score next to a test score would mislead
    if runs.empty:
        console.print(f"no evaluation runs on the {args.split} split: choose another with --split")
        return 1
    shas = sorted(runs["params.data_sha256"].dropna().unique())
    if len(shas) > 1:
        listed = ", ".join(sha[:12] for sha in shas)
        console.print(f"[red]refusing to compare runs on different data sets (sha256 {listed}). "
                      "Filter with --data, --agent or --task, or use a new tracking URI.[/red]")  # fmt: skip
        return 2
    runs = runs.copy()
    for key in CELL_IDENTITY:  # runs logged before a param existed get its value of the time
        column = f"params.{key}"
        default = {"data": "embedded", "anonymize": "False", "obs_mode": "?"}.get(key, "?")
        runs[column] = runs[column].fillna(default) if column in runs else default
    runs["setup"] = runs.apply(_setup_label, axis=1)
    keys = ["params.agent", "setup", "params.task", "params.env_version"]
    latest = runs.sort_values("start_time").groupby(keys, as_index=False).last()
    versions = sorted(latest["params.env_version"].unique())
    for task in [t for t in TASK_NAMES if t in set(latest["params.task"])]:
        _compare_table(console, args.split, task, latest[latest["params.task"] == task], versions, shas)
    return 0


def _setup_label(run) -> str:
    anonymised = ", anon" if str(run["params.anonymize"]) == "True" else ""
    return (f"{run['params.episodes']} ep, seed {run['params.seed']}, {run['params.obs_mode']}{anonymised}, "
            f"{run['params.data']}")  # fmt: skip


def _compare_table(console: Console, split: str, task: str, latest, versions: list[str], shas) -> None:
    data = shas[0][:12] if shas else "?"
    table = Table(title=f"{task} task, {split} split: score, mean ± 95% half-width, latest run per cell; "
                  f"data {data}; a row = runs played alike (episodes, seed, obs mode, anonymised, data)",
                  title_justify="left")  # fmt: skip
    table.add_column("agent", overflow="fold", max_width=22)
    table.add_column("played as", overflow="fold", max_width=18)
    for version in versions:
        table.add_column(f"env {version}", justify="right", overflow="fold")
    for (agent, setup), rows in latest.groupby(["params.agent", "setup"], sort=True):
        cells = [_cell_from_run(rows[rows["params.env_version"] == v]) for v in versions]
        table.add_row(agent, setup, *cells)
    console.print(table)


def _cell_from_run(cell) -> str:
    if cell.empty:
        return "-"
    run = cell.iloc[0]
    mean, low, high = (run[f"metrics.score{s}"] for s in ("", "_ci_low", "_ci_high"))
    return f"{mean:.3f}" if low == high else f"{mean:.3f}\n±{(high - low) / 2:.3f}"


def main(argv: list[str] | None = None) -> int:
    parser = make_parser()
    args = parser.parse_args(argv)
    console = Console()
    if args.compare:
        return compare(args, console)
    if not args.agent:
        parser.error("--agent is required (or use --compare)")
    args.task = args.task or ["hard"]
    if args.episodes is not None and args.episodes < 1:
        parser.error("--episodes must be >= 1")
    if args.workers < 1:
        parser.error("--workers must be >= 1")
    from eval.agents import UnknownAgentError
    from llm_agent.models import ModelError  # cheap: torch loads only with a model

    try:
        entries, folder = run_evaluate(args, console)
    except (UnknownAgentError, ModelError, ValueError, FileNotFoundError) as error:
        console.print(f"[red]error:[/red] {escape(str(error))}")  # escaped: [@<adapter>] and [gpu] are text
        return 2
    # Results first, to disk, independently of MLflow: a tracking failure loses no evaluation (issue 18).
    write_json(entries, [folder / "results.json", *([args.json] if args.json else [])])
    saved = f"results.json, per-episode CSVs{'' if args.no_plots else ', plots'}"
    console.print(f"outputs: {folder}/ ({saved})", soft_wrap=True, markup=False)  # a path is never broken
    if args.json:
        console.print(f"wrote {args.json}", soft_wrap=True, markup=False)
    if not args.no_mlflow and log_to_mlflow(entries, console):
        write_json(entries, [folder / "results.json", *([args.json] if args.json else [])])  # with run ids
    return 0


if __name__ == "__main__":
    sys.exit(main())
