"""``nifty-demo``: play one short episode per task with a simple rule and print what happens.

A first look at the environment: the text observation an LLM sees, a few actions, and the final grade.
"""

from __future__ import annotations

import argparse

import market_env


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--split", default="test", choices=["train", "val", "test"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--version", default=None, help="env version (default: the newest)")
    return parser


def oversold_rule(info: dict, env: market_env.MarketEnv) -> str:
    """Buy a little of every stock whose RSI is under 35, sell what is over 65 (a toy, not a strategy)."""
    features = env.panel.features[env.market.sim.day[0], env.market.sim.symbols[0]]
    rsi = features[:, env.panel.feature_names.index("rsi")]
    orders = [f"BUY {name} 0.1" for name, value in zip(env.names, rsi) if value < 35]
    orders += [
        f"SELL {name} 1" for name, value in zip(env.names, rsi) if value > 65 and info["positions"].get(name)
    ]
    return "\n".join(orders) or "HOLD"


def play(task: str, args: argparse.Namespace) -> dict:
    env = market_env.make(task, split=args.split, version=args.version, seed=args.seed)
    observation, info = env.reset()
    if task == "easy":
        print(observation, end="\n\n")
    info |= {"positions": {}}
    done = False
    while not done:
        _, _, done, _, info = env.step(oversold_rule(info, env))
    return info["grade"]


def main(argv: list[str] | None = None) -> None:
    args = make_parser().parse_args(argv)
    for task in market_env.TASK_NAMES:
        grade = play(task, args)
        metrics = grade["metrics"]
        print(
            f"{task:<6} {grade['start_date']}..{grade['end_date']}  score {grade['score']:.3f}  "
            f"return {metrics['total_return']:+.2%}  buy-and-hold {metrics['benchmark_return']:+.2%}  "
            f"max drawdown {metrics['max_drawdown']:.2%}  "
            f"(env {grade['env_version']}, task {grade['task_version']})"
        )


if __name__ == "__main__":
    main()
