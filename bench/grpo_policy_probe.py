"""Does a policy tell the edge market's regimes apart? Its first-word probabilities by regime, and a probe.

Run: ``python bench/grpo_policy_probe.py runs/h16/sft-edge/adapter runs/h16b/grpo-exit/checkpoint-30``
(any LoRA adapters of smollm2-135m trained with ``--no-think``; ``--episodes`` val episodes of the easy task
on ``--data``, every day, reached by the rsi and random agents).

For every state it runs the policy once on the prompt and reads the probability of the answer's first word:
``BUY``, ``SELL`` or ``HOLD`` (renormalised over the three; a no-think answer starts with one of them). The
table gives the mean P(BUY) on flat states and P(SELL) on holding states, split by the sign of the 5-day
change the prompt shows (the regime signal: ``momentum`` buys where it is up), and the share of states where
the greedy first word is BUY / SELL. A policy that has learnt the edge buys where the change is up and not
where it is down; one that has not shows the same P(BUY) on both.

The probe: a ridge classifier on the prompt's last hidden state, fitted on the first half of the episodes,
predicting the sign of the 5-day change on the second half. High accuracy means the information is in the
representation a LoRA update can read; it says nothing about whether the policy uses it.

``--transfer``: how much of an update that raises BUY where the trend is up also raises it where it is down.
One normalised gradient step (``--transfer-step``, in LoRA parameter space) raises log P(BUY) on the flat
up-states of the first half of the episodes; the table gives the change of log P(BUY) on the held-out flat
states of the second half, up and down, and their ratio. A ratio near 1 means the update moves BUY in both
regimes alike (what GRPO's per-state credit mostly does to this policy); near 0, it parts them.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

WORDS = ("BUY", "SELL", "HOLD")


def load_policy(adapter: str | None, trainable: bool = False):
    """smollm2-135m in float32 with the LoRA adapter (``None``: the base model); trainable for --transfer."""
    from llm_agent.models import load_model, parse_model_spec

    spec = parse_model_spec("smollm2-135m")
    spec = replace(spec, adapter_path=adapter) if adapter else spec
    loaded = load_model(spec, dtype="float32", for_training=trainable)
    loaded.model.eval()  # no dropout: the same prompt gives the same probabilities
    return loaded.tokenizer, loaded.model


def first_words(tokenizer, model, row: dict, hidden: bool = False):
    """Log-probabilities of the answer's first word (BUY, SELL, HOLD, renormalised over the three), and
    the prompt's last hidden state when asked."""
    import torch

    from llm_agent.generation import format_chat

    text = format_chat(tokenizer, row["prompt"])
    prompt_ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    answers = [tokenizer(text + word, add_special_tokens=False)["input_ids"] for word in WORDS]
    firsts = [ids[len(prompt_ids)] for ids in answers]
    out = model(torch.tensor([prompt_ids]), output_hidden_states=hidden)
    logp = torch.log_softmax(out.logits[0, -1].float()[firsts], dim=-1)
    return (logp, out.hidden_states[-1][0, -1].float()) if hidden else logp


def policy_readout(adapter: str | None, rows: list[dict]) -> tuple[np.ndarray, np.ndarray]:
    """(n, 3) first-word probabilities (BUY, SELL, HOLD) and (n, d) last hidden states of each prompt."""
    import torch

    tokenizer, model = load_policy(adapter)
    probs, hidden = [], []
    with torch.inference_mode():
        for row in rows:
            logp, state = first_words(tokenizer, model, row, hidden=True)
            probs.append(logp.exp().numpy())
            hidden.append(state.numpy())
    return np.array(probs), np.array(hidden)


def buy_transfer(adapter: str | None, rows: list[dict], step: float) -> tuple[float, float, float]:
    """Change of mean log P(BUY) on (trained up-states, held-out up-states, held-out down-states) after one
    normalised gradient step that raises log P(BUY) on the trained ones (the flat up-states of the first
    half of the episodes; held out: the flat states of the second half)."""
    import torch

    tokenizer, model = load_policy(adapter, trainable=True)
    params = [p for p in model.parameters() if p.requires_grad]
    trained, held_up, held_down = (rows_where(rows, kind) for kind in ("trained", "held_up", "held_down"))
    if not (trained and held_up and held_down):
        raise SystemExit("--transfer needs flat up- and down-states in both halves: raise --episodes")

    def mean_buy(group: list[dict]) -> float:
        with torch.inference_mode():
            return float(np.mean([first_words(tokenizer, model, row)[0].item() for row in group]))

    before = [mean_buy(group) for group in (trained, held_up, held_down)]
    for row in trained:  # gradient of the mean log P(BUY) over the trained states
        (-first_words(tokenizer, model, row)[0] / len(trained)).backward()
    norm = torch.sqrt(sum((p.grad**2).sum() for p in params))
    with torch.no_grad():
        for p in params:
            p -= step * p.grad / norm
    after = [mean_buy(group) for group in (trained, held_up, held_down)]
    return tuple(a - b for a, b in zip(after, before))  # type: ignore[return-value]


def rows_where(rows: list[dict], kind: str) -> list[dict]:
    """The flat states of ``buy_transfer``'s three groups (``row["up"]``, ``row["held"]`` set by main)."""
    half = np.median([row["episode"] for row in rows])
    first = {"trained": True, "held_up": False, "held_down": False}[kind]
    up = kind != "held_down"
    return [r for r in rows if not r["held"] and r["up"] == up and (r["episode"] < half) == first]


def probe_accuracy(hidden: np.ndarray, up: np.ndarray, episode: np.ndarray, ridge: float = 1.0) -> float:
    """Held-out accuracy of a ridge classifier on the hidden states: first half of the episodes -> second."""
    train = episode < np.median(episode)
    mean, std = hidden[train].mean(axis=0), hidden[train].std(axis=0) + 1e-6
    x = (hidden - mean) / std
    y = np.where(up, 1.0, -1.0)
    a = x[train]
    w = np.linalg.solve(a.T @ a + ridge * len(a) * np.eye(a.shape[1]), a.T @ (y[train] - y[train].mean()))
    predicted = x[~train] @ w + y[train].mean() > 0
    return float(np.mean(predicted == up[~train]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="grpo_policy_probe", description=__doc__.splitlines()[0])
    parser.add_argument("adapters", nargs="+", help="LoRA adapter folders ('base' for no adapter)")
    parser.add_argument("--data", default="synthetic:edge")
    parser.add_argument("--episodes", type=int, default=20, help="val episodes (20 states each)")
    parser.add_argument("--env-version", default=None, help="env version of the prompts (default: 3.0.0)")
    parser.add_argument("--transfer", action="store_true", help="also measure how a BUY update transfers")
    parser.add_argument("--transfer-step", type=float, default=0.05, help="its step (LoRA parameter norm)")
    args = parser.parse_args(argv)

    from training.grpo.prompts import PromptSetConfig, collect_rows
    from training.grpo.rewards import momentum_up
    from training.sft.think import table_cells

    config = PromptSetConfig(
        "easy", args.episodes, seed=0, think=False, split="val", data=args.data, env_version=args.env_version
    )
    rows = collect_rows(config)
    up = np.array([bool(momentum_up(row["prompt"])) for row in rows])
    cells = [next(iter(table_cells(row["prompt"][-1]["content"]).values())) for row in rows]
    held = np.array([c["position"] != "-" for c in cells])
    episode = np.array([row["episode"] for row in rows])
    print(f"{len(rows)} val states of {args.episodes} episodes: {held.sum()} holding, {up.sum()} with 5d > 0")
    print(
        "| adapter | P(BUY) flat, 5d > 0 | P(BUY) flat, 5d <= 0 | P(SELL) holding, 5d > 0 | "
        "P(SELL) holding, 5d <= 0 | greedy BUY, 5d > 0 / <= 0 | greedy SELL | probe accuracy |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for adapter in args.adapters:
        probs, hidden = policy_readout(None if adapter == "base" else adapter, rows)
        greedy = probs.argmax(axis=1)
        cells_out = [
            f"{probs[~held & up, 0].mean():.2f}", f"{probs[~held & ~up, 0].mean():.2f}",
            f"{probs[held & up, 1].mean():.2f}", f"{probs[held & ~up, 1].mean():.2f}",
            f"{np.mean(greedy[up] == 0):.0%} / {np.mean(greedy[~up] == 0):.0%}",
            f"{np.mean(greedy == 1):.0%}",
            f"{probe_accuracy(hidden, up, episode):.0%}",
        ]  # fmt: skip
        print(f"| {adapter} | " + " | ".join(cells_out) + " |")
    if args.transfer:
        for row, row_up, row_held in zip(rows, up, held):
            row["up"], row["held"] = bool(row_up), bool(row_held)
        print("\n| adapter | d log P(BUY) trained up | held-out up | held-out down | down / up |")
        print("|---|---|---|---|---|")
        for adapter in args.adapters:
            d_trained, d_up, d_down = buy_transfer(
                None if adapter == "base" else adapter, rows, args.transfer_step
            )
            print(f"| {adapter} | {d_trained:+.3f} | {d_up:+.3f} | {d_down:+.3f} | {d_down / d_up:.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
