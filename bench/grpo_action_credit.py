"""What GRPO's reward pays each action on its prompt states: the credit of a fixed answer, per kind of state.

Run: ``python bench/grpo_action_credit.py --data synthetic:edge``. The prompt set is that of ``train-grpo``'s
defaults (64 train episodes played by the rsi and random agents, every day); the reward is that of
``--continuation hold --baseline hold`` (the episode's score when what the decision left is kept to the
end, minus the same with HOLD). For every state it scores ``BUY <SYM> 1`` and ``SELL <SYM> 1`` exactly
(the fork is deterministic) and reports the mean credit by state: flat or holding, and the sign of the
5-day change the prompt shows (the edge market's regime signal). A policy that cannot yet tell the states
apart sees the pooled mean.
"""

from __future__ import annotations

import argparse

import numpy as np

from training.grpo.prompts import PromptSetConfig, collect_rows
from training.grpo.rewards import EnvScoreReward, RewardConfig, momentum_up
from training.sft.think import table_cells


def credits(rows: list[dict], answer: str, config: RewardConfig) -> np.ndarray:
    reward = EnvScoreReward(config)
    completions = [answer.format(symbol=row["symbols"][0]) for row in rows]
    kwargs = {key: [row[key] for row in rows] for key in ("state", "state_hash", "continuation")}
    return np.array(reward([row["prompt"] for row in rows], completions, **kwargs))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="synthetic:edge")
    parser.add_argument("--episodes", type=int, default=64)
    parser.add_argument("--continuation", default="hold", help="as train-grpo's (hold, exit, rsi)")
    parser.add_argument("--exit-days", type=int, default=5, help="with --continuation exit")
    args = parser.parse_args(argv)
    rows = collect_rows(PromptSetConfig("easy", args.episodes, data=args.data, think=False))
    config = RewardConfig(
        "easy",
        continuation=args.continuation,
        baseline="hold",
        num_generations=1,
        data=args.data,
        exit_days=args.exit_days,
    )
    cells = [next(iter(table_cells(row["prompt"][-1]["content"]).values())) for row in rows]
    up = np.array([bool(momentum_up(row["prompt"])) for row in rows])
    held = np.array([c["position"] != "-" for c in cells])
    print(f"{len(rows)} states ({held.sum()} holding); mean credit against HOLD, +0.01 = +1% net")
    print("| answer | state | states | mean credit | share > 0 |\n|---|---|---|---|---|")
    for answer, where in (("BUY {symbol} 1", ~held), ("SELL {symbol} 1", held)):
        credit = credits(rows, answer, config)
        for name, mask in (("all", where), ("5d > 0", where & up), ("5d <= 0", where & ~up)):
            c = credit[mask]
            kind = "flat" if answer.startswith("BUY") else "holding"
            share = f"{np.mean(c > 0):.0%}"
            print(f"| {answer.split()[0]} | {kind}, {name} | {mask.sum()} | {c.mean():+.4f} | {share} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
