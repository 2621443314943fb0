"""Plots people would rather look at than read: equity curves and score distributions (PNG)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; no display on servers and CI
import matplotlib.pyplot as plt
import numpy as np


def equity_curves(results: Sequence, path: Path, n_episodes: int = 4) -> Path:
    """NAV / start cash of the first episodes, one panel per episode, one line per agent.

    Env versions that only regrade the same trades share one curve, so each agent is drawn once.
    """
    results = list({result.agent: result for result in reversed(results)}.values())[::-1]
    n = min(n_episodes, len(results[0].episodes))
    figure, axes = plt.subplots(1, n, figsize=(4.2 * n, 3.4), sharey=True, squeeze=False)
    for j, axis in enumerate(axes[0]):
        episode = results[0].episodes[j]
        for result in results:
            nav = np.asarray(result.episodes[j]["nav"])
            axis.plot(nav / nav[0], label=_wrap(result.agent, 40), linewidth=1.4)
        axis.axhline(1.0, color="grey", linewidth=0.6, linestyle=":")
        axis.set_title(f"{episode['start_date']} ({len(episode['symbols'])} stocks)", fontsize=9)
        axis.set_xlabel("day")
    axes[0][0].set_ylabel("NAV / start cash")
    axes[0][-1].legend(fontsize=8)
    figure.suptitle(f"{results[0].config.task}: equity curves, same episodes for every agent", fontsize=10)
    return save_figure(figure, path)


def score_distribution(results: Sequence, path: Path) -> Path:
    """Per-episode scores per agent: a box with every episode drawn as a point."""
    figure, axis = plt.subplots(figsize=(1.6 + 1.3 * len(results), 3.6))
    scores = [result.values("score") for result in results]
    axis.boxplot(scores, showmeans=True)
    rng = np.random.default_rng(0)
    for i, values in enumerate(scores, start=1):
        axis.scatter(i + rng.uniform(-0.12, 0.12, len(values)), values, s=8, alpha=0.5)
    labels = [f"{_wrap(r.agent)}\nenv {r.env_version}" for r in results]
    axis.set_xticks(range(1, len(results) + 1), labels, fontsize=8)
    axis.set_ylabel("score (0..1)")
    axis.set_title(f"{results[0].config.task}: score per episode ({len(scores[0])} episodes)", fontsize=10)
    return save_figure(figure, path)


def save_figure(figure: plt.Figure, path: Path) -> Path:
    """Lay the figure out, write it as a PNG (creating the folder) and free it; every plot ends here."""
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def _wrap(name: str, width: int = 16) -> str:
    """Agent names such as ``llm:smollm2-135m@runs/sft-easy/adapter+think`` over several short lines, broken
    after ``:``, ``@`` and ``/`` and before ``+``, so that neighbouring tick labels do not overlap."""
    lines = [""]
    for part in filter(None, re.findall(r"\+?[^:@/+]*[:@/]?", name)):
        if lines[-1] and len(lines[-1]) + len(part) > width:
            lines.append("")
        lines[-1] += part
    return "\n".join(lines)
