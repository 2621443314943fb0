"""``make-sft-data``: expert rollouts on the train split -> chat SFT examples with grounded ``<think>``.

Each expert of ``training.sft.experts`` plays batches of episodes (``market_env.make_batch``, text mode,
slot i seeded ``episode_seed``); every decision is a candidate example: the prompt is
``llm_agent.prompts.build_messages(observation, task, think=True)`` (what the LLM agent sees), the answer is
``<think>trace</think>`` plus the expert's action lines (``training.sft.think``).

Selection, per task:

- Filtered behaviour cloning (default on, ``--no-filter`` turns it off): only decisions from episodes whose
  final grade beats the hold agent's grade on the same episode. Holding never trades, so its NAV is the
  start cash every day and its grade (not constant under grader 2.0.0, which measures the return against
  equal-weight buy-and-hold) is ``grade_episodes`` of that flat NAV with the episode's benchmark return.
- The action mix must not collapse: HOLD-only answers are at most ``max_hold_share`` (50%) of the examples.
  Trades and holds are each shared evenly among the experts; an expert that trades rarely (the RSI rule on
  one stock) stops after ``max_rounds`` batches and the others fill its share.
- Examples are sampled without replacement from the candidates with a seeded generator, then shuffled.

Writes ``train.jsonl`` (train split), ``val.jsonl`` (val split, the same recipe), ``data_card.md`` and
``meta.json`` (counts, mix, seed, versions, sha256s, the run record). Same arguments, same bytes.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

TASKS = ("easy", "medium", "hard")
SPLITS = ("train", "val")
# Episodes per batch: enough parallel episodes that rendering text is a few vectorised steps, small
# enough that a batch's observations stay a few tens of MB.
ROUND_EPISODES = {"easy": 2048, "medium": 256, "hard": 128}
MIN_ROUND_EPISODES = 16


@dataclass(frozen=True)
class SFTDataConfig:
    """What ``make-sft-data`` builds. The defaults are the published set (7,000 train + 500 val examples)."""

    seed: int = 0
    easy: int = 4000  # single-stock examples
    portfolio: int = 3000  # medium + hard examples
    medium_share: float = 0.6  # of the portfolio examples; the rest are hard
    val_examples: int = 500  # from the val split, tasks in the same proportions
    filter_beats_hold: bool = True  # keep only decisions of episodes whose grade beats hold's
    max_hold_share: float = 0.5  # HOLD-only answers at most this share of each task's examples
    max_rounds: int = 4  # batches per (task, expert) before a rarely trading expert gives up its share
    experts: tuple[str, ...] = ("rsi", "trend", "bollinger")
    env_version: str | None = None  # default: ENV_VERSION (3.0.0)
    data: str | None = None  # market data spec (``data.synthetic.resolve_data``); None: the real panel
    report_episodes: int = 200  # val episodes per (task, expert) of the card's score table; 0: no table
    think: bool = True  # answers open with a grounded <think> trace; False: the action lines alone

    def quotas(self, split: str) -> dict[str, int]:
        medium = round(self.portfolio * self.medium_share)
        train = {"easy": self.easy, "medium": medium, "hard": self.portfolio - medium}
        if split == "train":
            return train
        return _proportional(self.val_examples, train)


def _proportional(total: int, weights: dict[str, int]) -> dict[str, int]:
    """``total`` split in proportion to ``weights`` (largest remainder, so the parts add up to ``total``)."""
    norm = sum(weights.values()) or 1
    exact = {key: total * w / norm for key, w in weights.items()}
    parts = {key: math.floor(x) for key, x in exact.items()}
    for key in sorted(exact, key=lambda k: parts[k] - exact[k])[: total - sum(parts.values())]:
        parts[key] += 1
    return parts


def even_split(total: int, supplies: Sequence[int]) -> list[int]:
    """Share ``total`` as evenly as possible among parties that can give at most ``supplies[j]`` each.

    Water-filling: the smallest supplies are served first, each with an equal share of what is left, so a
    party gets less than another's share only when it has nothing more to give.
    """
    take, left = [0] * len(supplies), total
    order = sorted(range(len(supplies)), key=lambda j: supplies[j])
    for rank, j in enumerate(order):
        take[j] = min(supplies[j], left // (len(order) - rank))
        left -= take[j]
    return take


@dataclass
class Rollout:
    """One batch of episodes played by one expert: per step the observations and the expert's signals."""

    first_seed: int
    names: list[tuple[str, ...]]
    observations: list[list[str]] = field(default_factory=list)  # [step][episode]
    days: list[np.ndarray] = field(default_factory=list)  # [step] (B,) calendar index of the decision close
    signals: list[Any] = field(default_factory=list)  # [step] training.sft.experts.Signals
    trades: list[np.ndarray] = field(default_factory=list)  # [step] (B,) whether the episode trades
    scores: np.ndarray = field(default_factory=lambda: np.zeros(0))
    hold_scores: np.ndarray = field(default_factory=lambda: np.zeros(0))

    def kept(self, filter_beats_hold: bool) -> np.ndarray:
        return self.scores > self.hold_scores if filter_beats_hold else np.ones(len(self.scores), bool)


def play(env: Any, expert: Any, first_seed: int) -> Rollout:
    """One episode per slot of ``env`` played by ``expert``; slot i plays the episode seeded first_seed+i."""
    from market_env.actions import format_action

    observations, _ = env.reset(seed=first_seed)
    rollout = Rollout(first_seed, list(env.names))
    for _ in range(env.market.task.n_days):
        snapshot = env.market.snapshot()
        signals = expert.signals(snapshot)
        trades = signals.trades()
        actions = ["HOLD"] * env.num_envs
        for i in np.flatnonzero(trades):
            actions[i] = format_action(signals.decision(int(i), rollout.names[i]).orders)
        rollout.observations.append(observations)
        rollout.days.append(snapshot.day.copy())
        rollout.signals.append(signals)
        rollout.trades.append(trades)
        observations, _, _, _, infos = env.step(actions)
    rollout.scores = np.array([grade["score"] for grade in infos["grade"]])
    rollout.hold_scores = hold_scores(env, infos["grade"])
    return rollout


def hold_scores(env: Any, grades: list[dict]) -> np.ndarray:
    """The hold agent's score on the same finished episodes: a flat NAV, no trades, no costs."""
    from market_env.grader import grade_episodes

    n, n_days = len(grades), env.market.task.n_days
    benchmark = np.array([grade["metrics"]["benchmark_return"] for grade in grades])
    flat = np.full((n, n_days + 1), env.market.sim.start_cash)
    held = grade_episodes(flat, np.zeros(n, int), np.zeros(n), benchmark, env.market.version.grader)
    return np.array([grade["score"] for grade in held])


@dataclass
class ExpertPool:
    """The rollouts of one expert on one task and split, and its candidate decisions (rollout, step, slot)."""

    expert: Any
    env: Any
    base_seed: int
    round_size: int
    rollouts: list[Rollout] = field(default_factory=list)
    trades: list[tuple[int, int, int]] = field(default_factory=list)
    holds: list[tuple[int, int, int]] = field(default_factory=list)
    episodes: int = 0
    episodes_kept: int = 0

    def play_round(self, filter_beats_hold: bool, seen: set[str]) -> None:
        """Play a batch; its decisions become candidates unless their prompt is in ``seen`` (then added)."""
        r = len(self.rollouts)
        rollout = play(self.env, self.expert, self.base_seed + r * self.round_size)
        kept = rollout.kept(filter_beats_hold)
        for step, (observations, trades) in enumerate(zip(rollout.observations, rollout.trades)):
            for i in range(len(kept)):
                # a prompt seen before (an episode drawn twice) would make a duplicate or conflicting example
                if not kept[i] or observations[i] in seen:
                    observations[i] = ""  # never an example: free its text
                    continue
                seen.add(observations[i])
                (self.trades if trades[i] else self.holds).append((r, step, i))
        self.rollouts.append(rollout)
        self.episodes += len(kept)
        self.episodes_kept += int(kept.sum())


def allocate(
    pools: list[ExpertPool], quota: int, max_hold_share: float | None
) -> tuple[list[int], list[int]]:
    """(trades, holds) per pool: at most ``max_hold_share`` holds, each side shared evenly among pools.

    ``max_hold_share=None`` keeps the natural HOLD rate: holds take the share they have among the
    candidates, so the data set holds as often as the expert does.
    """
    trade_supply, hold_supply = [len(p.trades) for p in pools], [len(p.holds) for p in pools]
    if max_hold_share is None:
        candidates = sum(trade_supply) + sum(hold_supply)
        max_hold_share = sum(hold_supply) / candidates if candidates else 0.0
        if max_hold_share >= 1.0:  # an expert that never trades: all its examples are holds
            return [0] * len(pools), even_split(quota, hold_supply)
    holds = even_split(math.floor(quota * max_hold_share), hold_supply)
    trades = even_split(quota - sum(holds), trade_supply)
    # too few trades: fewer holds too, so they stay at most max_hold_share of what is written
    hold_cap = (
        math.floor(sum(trades) * max_hold_share / (1.0 - max_hold_share)) if max_hold_share < 1 else quota
    )
    if sum(holds) > hold_cap:
        holds = even_split(hold_cap, hold_supply)
    return trades, holds


def collect_task(
    task: str, split: str, quota: int, config: SFTDataConfig, on_progress: Callable[[int], None]
) -> tuple[list[dict], dict[str, Any]]:
    """The examples of one task and split, and what it took (episodes played and kept per expert)."""
    import market_env
    from training.sft.experts import make_expert

    task_index, split_index = TASKS.index(task), SPLITS.index(split)
    round_size = min(
        ROUND_EPISODES[task], max(MIN_ROUND_EPISODES, 2 * math.ceil(quota / len(config.experts)))
    )
    # one env for every expert: a reset re-seeds every slot, and building a text batch env is not free
    env = market_env.make_batch(
        task, n_envs=round_size, split=split, obs_mode="text", version=config.env_version, **_data(config)
    )
    pools = []
    for e, name in enumerate(config.experts):
        base = ((config.seed * 10 + split_index) * 10 + task_index) * 10_000_000 + e * 1_000_000
        pools.append(ExpertPool(make_expert(name), env, base, round_size))
    seen: set[str] = set()
    for pool in pools:  # natural rate: it is measured on a first batch of each expert
        if config.max_hold_share is None:
            pool.play_round(config.filter_beats_hold, seen)
    while True:
        trades, holds = allocate(pools, quota, config.max_hold_share)
        on_progress(sum(trades) + sum(holds))
        if sum(trades) + sum(holds) == quota:
            break
        # play another batch with the pools whose candidates of the short side are all used
        share = config.max_hold_share if config.max_hold_share is not None else natural_hold_share(pools)
        holds_short = sum(holds) < math.floor(quota * share)
        trades_short = sum(trades) < quota - sum(holds)
        short = [
            p
            for p, t, h in zip(pools, trades, holds)
            if len(p.rollouts) < config.max_rounds
            and ((trades_short and t == len(p.trades)) or (holds_short and h == len(p.holds)))
        ]
        if not short:
            break
        for pool in short:
            pool.play_round(config.filter_beats_hold, seen)
    examples = []
    for e, (pool, n_trades, n_holds) in enumerate(zip(pools, trades, holds)):
        rng = np.random.default_rng([config.seed, split_index, task_index, e])
        chosen = _sample(pool.trades, n_trades, rng) + _sample(pool.holds, n_holds, rng)
        examples += [_example(pool, task, split, where, rng, config.think) for where in sorted(chosen)]
    stats = {
        pool.expert.name: {"episodes": pool.episodes, "episodes_kept": pool.episodes_kept,
                           "trade_candidates": len(pool.trades), "hold_candidates": len(pool.holds)}
        for pool in pools
    }  # fmt: skip
    return examples, stats


def natural_hold_share(pools: list[ExpertPool]) -> float:
    """The share of HOLD-only decisions among the candidates the experts produced."""
    holds = sum(len(p.holds) for p in pools)
    return holds / max(holds + sum(len(p.trades) for p in pools), 1)


def _data(config: SFTDataConfig) -> dict[str, Any]:
    """The ``data=`` keyword of ``market_env.make_batch`` for ``config.data`` (nothing for the real panel)."""
    from data.synthetic import resolve_data

    return {"data": resolve_data(config.data)} if config.data else {}


def _sample(items: list, n: int, rng: np.random.Generator) -> list:
    return [items[j] for j in rng.choice(len(items), size=n, replace=False)] if n else []


def _example(
    pool: ExpertPool,
    task: str,
    split: str,
    where: tuple[int, int, int],
    rng: np.random.Generator,
    think: bool = True,
) -> dict:
    from llm_agent.prompts import build_messages
    from market_env.actions import format_action
    from training.sft.think import assistant_message

    r, step, i = where
    rollout, market = pool.rollouts[r], pool.env.market
    decision = rollout.signals[step].decision(i, rollout.names[i])
    observation = rollout.observations[step][i]
    messages = build_messages(observation, market.task, think=think)
    # Without a trace the answer is the action lines alone: a few tokens to generate instead of ~40, which is
    # what makes CPU-scale GRPO and evaluation affordable.
    answer = assistant_message(decision, observation, rng) if think else format_action(decision.orders)
    messages.append({"role": "assistant", "content": answer})
    meta = {
        "task": task, "split": split, "date": market.panel.iso_date(int(rollout.days[step][i])),
        "episode_seed": rollout.first_seed + i, "expert": pool.expert.name,
        "actions": format_action(decision.orders).splitlines(), "hold": decision.is_hold,
    }  # fmt: skip
    return {"messages": messages, "meta": meta}


# ------------------------------------------------------------------------------------------------ report
def expert_report(config: SFTDataConfig, split: str = "val") -> dict[str, dict[str, dict[str, float]]]:
    """Each expert's mean score against hold and buy-and-hold on the same ``report_episodes`` episodes.

    Is the teacher worth imitating? An expert that does not beat buy-and-hold teaches a policy that does
    not either. Per task and expert: the mean scores and the paired mean differences with a normal 95%
    half-width (episodes overlap in time, so read it as a lower bound of the uncertainty).
    """
    import market_env
    from eval.agents import BuyAndHoldAgent
    from eval.harness import numeric_to_text
    from training.sft.experts import make_expert

    report: dict[str, dict[str, dict[str, float]]] = {}
    n, seed = config.report_episodes, 7_000_000 + config.seed
    for task, quota in config.quotas("train").items():
        if quota <= 0 or n <= 0:
            continue
        env = market_env.make_batch(task, n_envs=n, split=split, obs_mode="text", version=config.env_version,
                                    **_data(config))  # fmt: skip
        bah = _play_agent(env, BuyAndHoldAgent(), seed, numeric_to_text)
        for name in config.experts:
            rollout = play(env, make_expert(name), seed)
            report.setdefault(task, {})[name] = {
                "episodes": n, "expert": float(rollout.scores.mean()),
                "hold": float(rollout.hold_scores.mean()), "buy_and_hold": float(bah.mean()),
                **_paired("vs_hold", rollout.scores - rollout.hold_scores),
                **_paired("vs_buy_and_hold", rollout.scores - bah),
            }  # fmt: skip
    return report


def _play_agent(env: Any, agent: Any, seed: int, to_text: Callable) -> np.ndarray:
    """Scores of a numeric rule agent on the episodes ``play`` gives the same seed."""
    observations, _ = env.reset(seed=seed)
    agent.reset(env.num_envs, seed)
    for _ in range(env.market.task.n_days):
        actions = to_text(agent.act(observations, env.market.snapshot()), env.names)
        observations, _, _, _, infos = env.step(actions)
    return np.array([grade["score"] for grade in infos["grade"]])


def _paired(name: str, diff: np.ndarray) -> dict[str, float]:
    half = 1.96 * float(diff.std(ddof=1)) / math.sqrt(len(diff)) if len(diff) > 1 else float("nan")
    return {name: float(diff.mean()), f"{name}_half_width": half}


def report_lines(report: dict[str, dict[str, dict[str, float]]]) -> list[str]:
    """The card's table of :func:`expert_report`."""
    if not report:
        return []
    lines = [
        "",
        "Each expert on val episodes (mean score; paired differences +- a normal 95% half-width, which "
        "ignores the overlap of episodes in time):",
        "",
        "| task | expert | episodes | expert | hold | buy-and-hold | expert - hold | expert - buy-and-hold |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for task, experts in report.items():
        for name, r in experts.items():
            lines.append(
                f"| {task} | {name} | {r['episodes']} | {r['expert']:.3f} | {r['hold']:.3f} | "
                f"{r['buy_and_hold']:.3f} | {r['vs_hold']:+.3f} +- {r['vs_hold_half_width']:.3f} | "
                f"{r['vs_buy_and_hold']:+.3f} +- {r['vs_buy_and_hold_half_width']:.3f} |"
            )
    return lines


# ------------------------------------------------------------------------------------------------ output
def action_types(examples: list[dict]) -> dict[str, int]:
    """Examples with at least one BUY, with at least one SELL, and HOLD-only ones."""
    counts = Counter()
    for example in examples:
        sides = {line.split()[0] for line in example["meta"]["actions"]}
        counts.update(sides & {"BUY", "SELL"} or {"HOLD"})
    return {side: counts[side] for side in ("BUY", "SELL", "HOLD")}


def summarize(examples: list[dict]) -> dict[str, Any]:
    """Counts per task, per expert and per action type, and the action mix."""
    n = len(examples)
    groups: dict[str, dict[str, list]] = {}
    for example in examples:
        groups.setdefault(example["meta"]["task"], {}).setdefault(example["meta"]["expert"], []).append(
            example
        )
    return {
        "examples": n,
        "per_task": dict(Counter(e["meta"]["task"] for e in examples)),
        "per_expert": dict(Counter(e["meta"]["expert"] for e in examples)),
        "per_action": action_types(examples),
        "per_task_expert": {
            task: {expert: {"examples": len(rows)} | action_types(rows) for expert, rows in experts.items()}
            for task, experts in groups.items()
        },
        "hold_share": sum(e["meta"]["hold"] for e in examples) / n if n else 0.0,
        "orders": dict(Counter(line.split()[0] for e in examples for line in e["meta"]["actions"])),
        "mean_assistant_chars": float(np.mean([len(e["messages"][-1]["content"]) for e in examples]))
        if n
        else 0.0,
        "max_assistant_chars": max((len(e["messages"][-1]["content"]) for e in examples), default=0),
    }


def write_jsonl(path: Path, examples: list[dict]) -> str:
    """Write one JSON object per line; returns the file's sha256."""
    text = "".join(json.dumps(example, ensure_ascii=False) + "\n" for example in examples)
    path.write_text(text, encoding="utf-8")
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def data_card(record: dict[str, Any]) -> str:
    """A markdown card of the data set: what it holds and how it was made."""
    tasks = ", ".join(f"{task} {v}" for task, v in record["task_versions"].items())
    kept = "only decisions from episodes whose grade beats hold's" if record["filter_beats_hold"] else "off"
    share = record["max_hold_share"]
    holds = "the experts' natural rate" if share is None else f"at most {share:.0%} per task"
    lines = [
        "# SFT data card",
        "",
        f"Made by `make-sft-data` with seed {record['seed']}, env {record['env_version']} (grader "
        f"{record['grader_version']}; tasks {tasks}), price data sha256 `{record['data_sha256']}`.",
        f"Filter: {kept}; HOLD-only answers: {holds}. Experts: {', '.join(record['experts'])}. "
        f"Market: {record.get('data') or 'NIFTY (real)'}.",
        "",
        "| split | file | examples | easy | medium | hard | BUY | SELL | HOLD-only | HOLD share | sha256 |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for split, s in record["splits"].items():
        a, t = s["per_action"], s["per_task"]
        lines.append(
            f"| {split} | {s['file']} | {s['examples']} | {t.get('easy', 0)} | {t.get('medium', 0)} | "
            f"{t.get('hard', 0)} | {a['BUY']} | {a['SELL']} | {a['HOLD']} | {s['hold_share']:.1%} | "
            f"`{s['sha256'][:12]}` |"
        )
    lines += [
        "",
        "BUY / SELL count examples with at least one such order (an answer may hold both); HOLD-only answers "
        "have none.",
        "",
        "| split | task | expert | examples | BUY | SELL | HOLD-only | episodes played | episodes kept |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for split, s in record["splits"].items():
        for task, experts in s["rollouts"].items():
            for expert, r in experts.items():
                c = (
                    s["per_task_expert"]
                    .get(task, {})
                    .get(expert, {"examples": 0, "BUY": 0, "SELL": 0, "HOLD": 0})
                )
                lines.append(
                    f"| {split} | {task} | {expert} | {c['examples']} | {c['BUY']} | {c['SELL']} | "
                    f"{c['HOLD']} | {r['episodes']} | {r['episodes_kept']} |"
                )
    lines += report_lines(record.get("expert_report", {}))
    lines += [
        "",
        'Each line of a file: `{"messages": [system, user, assistant], "meta": {task, split, date, '
        "episode_seed, expert, actions, hold}}`; the assistant turn is "
        + (
            "`<think>...</think>` then the action lines."
            if record["config"].get("think", True)
            else "the action lines alone (no `<think>`; evaluate without `--think`)."
        ),
        "",
    ]
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------------ CLI
def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="make-sft-data",
        description="Expert rollouts on the train split -> chat SFT data with grounded <think> traces.",
    )
    defaults = SFTDataConfig()
    parser.add_argument("--out", required=True, type=Path, help="output directory")
    parser.add_argument(
        "--seed", type=int, default=defaults.seed, help="seeds episodes, sampling and wording"
    )
    parser.add_argument("--easy", type=int, default=defaults.easy, help="single-stock train examples")
    parser.add_argument(
        "--portfolio", type=int, default=defaults.portfolio, help="medium + hard train examples"
    )
    parser.add_argument(
        "--medium-share", type=float, default=defaults.medium_share, help="medium share of --portfolio"
    )
    parser.add_argument(
        "--val-examples", type=int, default=defaults.val_examples, help="examples from the val split"
    )
    parser.add_argument(
        "--no-filter", action="store_true", help="keep decisions of episodes that do not beat hold too"
    )
    parser.add_argument(
        "--max-hold-share",
        type=_hold_share,
        default=defaults.max_hold_share,
        help="cap on HOLD-only answers, or 'natural': hold as often as the expert does",
    )
    parser.add_argument(
        "--experts",
        nargs="+",
        default=list(defaults.experts),
        help="experts to imitate: one data set each, in <out>/<expert>/ (unless --mix)",
    )
    parser.add_argument(
        "--mix",
        action="store_true",
        help="blend the experts into one data set (their answers to one prompt may contradict)",
    )
    parser.add_argument(
        "--control", action="store_true", help="also write the unfiltered control set in <out>/control/"
    )
    parser.add_argument("--data", help="market data: NIFTY (default), synthetic:edge, synthetic:martingale")
    parser.add_argument(
        "--report-episodes",
        type=int,
        default=defaults.report_episodes,
        help="val episodes per expert for the card's score table against hold and buy-and-hold (0: none)",
    )
    parser.add_argument("--env-version", default=None, help="env version (default: 3.0.0)")
    parser.add_argument(
        "--no-think",
        dest="think",
        action="store_false",
        help="answers are the action lines alone (prompts ask for actions only); evaluate without --think",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser


def _hold_share(text: str) -> float | None:
    return None if text == "natural" else float(text)


def config_from_args(args: argparse.Namespace) -> SFTDataConfig:
    for name in ("easy", "portfolio", "val_examples"):
        if getattr(args, name) < 0:
            raise SystemExit(
                f"make-sft-data: --{name.replace('_', '-')} must be >= 0, got {getattr(args, name)}"
            )
    natural = args.max_hold_share is None
    if not 0.0 <= args.medium_share <= 1.0 or not (natural or 0.0 <= args.max_hold_share < 1.0):
        raise SystemExit("make-sft-data: --medium-share must be in [0, 1] and --max-hold-share in [0, 1)")
    from training.sft.experts import EXPERTS

    unknown = [name for name in args.experts if name not in EXPERTS]
    if unknown:
        raise SystemExit(
            f"make-sft-data: unknown expert(s) {unknown}; expected some of: {', '.join(EXPERTS)}"
        )
    return SFTDataConfig(
        seed=args.seed, easy=args.easy, portfolio=args.portfolio, medium_share=args.medium_share,
        val_examples=args.val_examples, filter_beats_hold=not args.no_filter,
        max_hold_share=args.max_hold_share, experts=tuple(dict.fromkeys(args.experts)),  # each once
        env_version=args.env_version, data=args.data, report_episodes=args.report_episodes,
        think=args.think,
    )  # fmt: skip


def build(config: SFTDataConfig, out: Path, progress: bool = True) -> dict[str, Any]:
    """Make the data set in ``out``; returns the record written to ``meta.json``."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from eval.tracking import write_meta
    from market_env.versions import get_version
    from training.sft.experts import EXPERTS

    start = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    version = get_version(config.env_version)
    splits: dict[str, Any] = {}
    bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                   disable=not progress, transient=True)  # fmt: skip
    with bar:
        for split in SPLITS:
            quotas = {task: n for task, n in config.quotas(split).items() if n > 0}
            job = bar.add_task(f"{split} examples", total=sum(quotas.values()))
            examples, rollouts = [], {}
            for task, quota in quotas.items():
                bar.update(job, description=f"{split} {task}")
                found, rollouts[task] = collect_task(
                    task, split, quota, config, _progress(bar, job, len(examples))
                )
                examples += found
            np.random.default_rng([config.seed, SPLITS.index(split), 99]).shuffle(examples)
            name = f"{split}.jsonl"
            summary = summarize(examples)
            splits[split] = {"file": name, "sha256": write_jsonl(out / name, examples), "quotas": quotas,
                             "rollouts": rollouts} | summary  # fmt: skip
    panel_sha = _panel_sha256()
    record = {
        "seed": config.seed, "env_version": version.version, "grader_version": version.grader,
        "task_versions": {task: version.task(task).version for task in TASKS}, "data_sha256": panel_sha,
        "filter_beats_hold": config.filter_beats_hold, "max_hold_share": config.max_hold_share,
        "experts": {name: (EXPERTS[name].__doc__ or "").strip() for name in config.experts},
        "config": asdict(config), "splits": splits, "data": config.data,
        "expert_report": expert_report(config),
    }  # fmt: skip
    (out / "data_card.md").write_text(data_card(record), encoding="utf-8")
    write_meta(out, **record, seconds=round(time.perf_counter() - start, 1))
    return record


def _progress(bar: Any, job: Any, done: int) -> Callable[[int], None]:
    """Callback that shows ``done`` examples of earlier tasks plus ``n`` found for the current one."""
    return lambda n: bar.update(job, completed=done + n)


def _panel_sha256() -> str:
    from data.panel import load_panel

    return load_panel().sha256


def main(argv: list[str] | None = None) -> int:
    args = make_parser().parse_args(argv)
    config = config_from_args(args)
    start = time.perf_counter()
    jobs = data_sets(config, args.out, mix=args.mix, control=args.control)
    for job_config, out in jobs:
        record = build(job_config, out, progress=not args.no_progress)
        prefix = f"{out}: " if len(jobs) > 1 else ""
        for split, s in record["splits"].items():
            a = s["per_action"]
            print(
                f"{prefix}{split}: {s['examples']} examples -> {out / s['file']} (BUY {a['BUY']}, "
                f"SELL {a['SELL']}, HOLD-only {a['HOLD']} = {s['hold_share']:.1%})"
            )
            if s["examples"] < sum(s["quotas"].values()):
                asked = sum(s["quotas"].values())
                print(
                    f"warning: {split} has {s['examples']} of the {asked} examples asked for: the experts "
                    "traded too rarely within their episode budget (see the card's per-expert table)"
                )
        print(f"card: {out / 'data_card.md'}")
    print(f"{time.perf_counter() - start:.1f} s")
    return 0


def data_sets(config: SFTDataConfig, out: Path, mix: bool, control: bool) -> list[tuple[SFTDataConfig, Path]]:
    """What to build: one data set per expert (``<out>/<expert>``; ``out`` itself for a single expert or
    with ``mix``), each with its unfiltered control (``.../control``) when asked."""
    from dataclasses import replace

    if mix or len(config.experts) == 1:
        sets = [(config, out)]
    else:
        sets = [(replace(config, experts=(name,)), out / name) for name in config.experts]
    if control:
        sets += [(replace(c, filter_beats_hold=False), o / "control") for c, o in sets]
    return sets


if __name__ == "__main__":
    raise SystemExit(main())
