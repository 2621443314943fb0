"""Reward curves and HOLD / BUY / SELL shares of GRPO runs, side by side, from their ``trainer_state.json``.

Run: ``python bench/grpo_curves.py runs/grpo-edge-A runs/grpo-edge-B --out docs/img/grpo_edge_curves.png``
(each run directory's newest ``checkpoint-N/trainer_state.json`` is read; the label is the directory name).
``--blocks 5`` also prints each run's shares averaged over blocks of 5 steps, as the tables of docs/grpo.md.

The top row is each run's mean reward per step with +- one std of its completions (designs may reward on
different scales: the episode score, or a score difference against HOLD, so each run has its own panel);
with ``--center-actions`` the mean is the reward before centring and the band the std of the centred
rewards; the bottom row is the share of completions that hold, buy, sell or are invalid (``env/*_share``,
logged by ``training.grpo.rewards.EnvScoreReward``; an answer may both buy and sell) and, where the run
logged them, the BUY share on states whose 5-day change is up and down (dashed: the edge market's
conditional rule).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

SHARES = ("hold", "buy", "sell", "invalid")


def log_history(run: Path) -> list[dict]:
    """The step logs of the run's newest checkpoint."""
    checkpoints = sorted(run.glob("checkpoint-*"), key=lambda p: int(p.name.rsplit("-", 1)[1]))
    if not checkpoints:
        raise FileNotFoundError(f"{run} has no checkpoint-N/trainer_state.json")
    state = json.loads((checkpoints[-1] / "trainer_state.json").read_text())
    return [entry for entry in state["log_history"] if "reward" in entry]


BLOCK_COLUMNS = {
    "HOLD": "env/hold_share",
    "BUY": "env/buy_share",
    "SELL": "env/sell_share",
    "BUY where up": "env/buy_up_share",
    "BUY where down": "env/buy_down_share",
    "SELL where up": "env/sell_up_share",
    "SELL where down": "env/sell_down_share",
    "flat groups": "env/zero_std_groups_share",
    "mean credit": "reward",
}
# shown only for runs that log them: the norm share of each update that --project-levels removed
OPTIONAL_COLUMNS = {"update removed": "level_share_removed"}


# the rest are shares: .2f
CELL_FORMATS = {"flat groups": ".0%", "mean credit": "+.3f", "update removed": ".0%"}


def raw_reward(row: dict) -> float:
    """The step's mean reward as the environment scored it (before ``--center-actions`` centred it)."""
    return row.get("env/raw_reward", row["reward"])


def block_table(rows: list[dict], block: int) -> str:
    """A markdown table of the step logs averaged over consecutive blocks of ``block`` steps."""
    logged = {key for row in rows for key in row}
    columns = BLOCK_COLUMNS | {name: key for name, key in OPTIONAL_COLUMNS.items() if key in logged}
    lines = ["| steps | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|"]
    last = max(row["step"] for row in rows)
    for start in range(1, last + 1, block):
        chunk = [row for row in rows if start <= row["step"] < start + block]
        cells = []
        for name, key in columns.items():
            values = [raw_reward(row) if key == "reward" else row[key] for row in chunk if key in row]
            mean = sum(values) / len(values) if values else float("nan")
            cells.append(format(mean, CELL_FORMATS.get(name, ".2f")))
        end = max(row["step"] for row in chunk)
        lines.append(f"| {start}-{end} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(runs: list[Path], out: Path) -> Path:
    import numpy as np

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from eval.plots import plt, save_figure

    figure, axes = plt.subplots(2, len(runs), figsize=(4.2 * len(runs), 6.0), squeeze=False)
    for column, run in enumerate(runs):
        rows = log_history(run)
        steps = np.array([r["step"] for r in rows])
        mean = np.array([raw_reward(r) for r in rows])
        std = np.array([r.get("reward_std", 0.0) for r in rows])
        top, bottom = axes[0][column], axes[1][column]
        top.plot(steps, mean, "o-", label="mean reward")
        top.fill_between(steps, mean - std, mean + std, alpha=0.2, label="+- 1 std")
        top.set_title(run.name, fontsize=10)
        top.set_xlabel("optimizer step")
        top.set_ylabel("reward")
        top.legend(fontsize=8)
        for share in SHARES:
            bottom.plot(steps, [r.get(f"env/{share}_share", np.nan) for r in rows], "o-", label=share)
        for regime, style, label in (("buy_up", "^--", "buy, 5d > 0"), ("buy_down", "v--", "buy, 5d <= 0")):
            values = np.array([r.get(f"env/{regime}_share", np.nan) for r in rows], dtype=float)
            if not np.isnan(values).all():
                bottom.plot(steps, values, style, label=label)
        bottom.set_ylim(-0.02, 1.02)
        bottom.set_xlabel("optimizer step")
        bottom.set_ylabel("share of completions")
        bottom.legend(fontsize=8)
    return save_figure(figure, out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="grpo_curves", description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path, help="train-grpo output directories")
    parser.add_argument("--out", type=Path, required=True, help="PNG to write")
    parser.add_argument("--blocks", type=int, default=0, help="also print shares over blocks of N steps")
    args = parser.parse_args(argv)
    for run in args.runs if args.blocks else []:
        print(f"{run}\n{block_table(log_history(run), args.blocks)}\n")
    print(plot(args.runs, args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
