"""GRPO updates that change how the actions differ between states, not their level (``--project-levels``).

Why: ``bench/grpo_policy_probe.py --transfer`` measured that, for the SFT policy on the edge market, one
gradient step that raises log P(BUY) where the 5-day trend is up raises it as much where it is down
(down / up 1.06). Every design of docs/grpo.md then moved the *level* of BUY (to HOLD, or to BUY in both
regimes) and not the gap between regimes; centring the reward per action (design 6) did not centre the
update, since each state's advantage is weighted by p(1 - p) and Adam rescales the step.

So the update itself is projected: after each optimizer step, the change of the trainable weights is
replaced by its part orthogonal to the gradients of the mean log-probability of each answer's first word
(BUY, SELL, HOLD, renormalised over the three) over the step's distinct prompts. To first order, the step
then leaves every action's mean log-probability over its states unchanged and moves only how the states
differ. The projection acts on the update after Adam (projecting the gradient before Adam would not keep
the update orthogonal: Adam's per-weight scaling and momentum turn it back).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

WORDS = ("BUY", "SELL", "HOLD")


def first_word_token_ids(tokenizer: Any) -> list[int]:
    """The token that starts each of ``WORDS`` as the first thing of an assistant answer."""
    from llm_agent.generation import format_chat

    opening = format_chat(tokenizer, [{"role": "user", "content": "?"}])
    width = len(tokenizer(opening, add_special_tokens=False)["input_ids"])
    ids = [tokenizer(opening + word, add_special_tokens=False)["input_ids"][width] for word in WORDS]
    if len(set(ids)) != len(ids):
        raise ValueError(f"{WORDS} do not start with distinct tokens for this tokenizer: {ids}")
    return ids


def level_directions(model: Any, prompt_ids: Any, prompt_mask: Any, word_ids: list[int]) -> Any:
    """(len(word_ids), n_trainable) float32: the gradient, in the trainable weights, of the mean over the
    distinct prompts of each word's first-token log-probability (renormalised over the words)."""
    import torch

    params = [p for p in model.parameters() if p.requires_grad]
    rows = torch.cat([prompt_ids, prompt_mask], dim=1)
    distinct = torch.unique(rows, dim=0)
    width = prompt_ids.shape[1]
    with torch.enable_grad():
        logits = model(input_ids=distinct[:, :width], attention_mask=distinct[:, width:], logits_to_keep=1)
        log_probs = logits.logits[:, -1, word_ids].float().log_softmax(dim=-1).mean(dim=0)
        directions = []
        for k in range(len(word_ids)):
            grads = torch.autograd.grad(log_probs[k], params, retain_graph=k < len(word_ids) - 1,
                                        allow_unused=True)  # fmt: skip
            directions.append(flatten(grads, params))
    return torch.stack(directions)


def flatten(tensors: Any, like: list[Any]) -> Any:
    """One float32 vector from per-parameter tensors (``None``, a parameter without gradient, as zeros)."""
    import torch

    return torch.cat([(t if t is not None else torch.zeros_like(p)).detach().float().flatten()
                      for t, p in zip(tensors, like)])  # fmt: skip


def project_out(update: Any, directions: Any, tolerance: float = 1e-6) -> tuple[Any, float]:
    """(``update`` minus its component in the span of ``directions``' rows, the norm share removed).

    Directions whose share of the span is below ``tolerance`` (relative to the largest) are left out, so
    nearly dependent rows do not blow up the basis."""
    import torch

    # SVD, not QR: an unpivoted QR's diagonal does not reveal rank (a zero row before a nonzero one can zero
    # both diagonal entries and drop a real direction). In float64 a dependent row's singular value is ~1e-16.
    _, singular, rows = torch.linalg.svd(directions.double(), full_matrices=False)
    keep = singular > tolerance * singular.max().clamp_min(torch.finfo(singular.dtype).tiny)
    basis, wide = rows[keep].T, update.double()  # (n, k) orthonormal columns spanning the rows
    removed = basis @ (basis.T @ wide)
    norm = wide.norm()
    share = float(removed.norm() / norm) if norm > 0 else 0.0
    return (wide - removed).to(update.dtype), share


class UpdateProjector:
    """Optimizer step hooks: remember the trainable weights before a step, project the step's change after
    it. ``add_directions`` is called once per micro-batch (the step's level directions are their mean)."""

    def __init__(self, params: list[Any], record: Callable[[float], Any] | None = None) -> None:
        self.params, self.record = params, record
        self.before: list[Any] = []
        self.directions: list[Any] = []

    def add_directions(self, directions: Any) -> None:
        self.directions.append(directions)

    def remember(self, *_: Any) -> None:
        self.before = [p.detach().clone() for p in self.params]

    def project(self, *_: Any) -> None:
        import torch

        if not self.directions or not self.before:
            return
        directions = torch.stack(self.directions).mean(dim=0)
        update = flatten([p - b for p, b in zip(self.params, self.before)], self.params)
        kept, share = project_out(update, directions)
        with torch.no_grad():
            offset = 0
            for p, b in zip(self.params, self.before):
                n = p.numel()
                p.copy_(b + kept[offset : offset + n].view_as(p).to(p.dtype))
                offset += n
        if self.record is not None:
            self.record(share)
        self.directions, self.before = [], []

    def attach(self, optimizer: Any) -> None:
        optimizer.register_step_pre_hook(self.remember)
        optimizer.register_step_post_hook(self.project)
