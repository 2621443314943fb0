"""``training.grpo.level_projection``: an update projected off the actions' level directions.

The property the edge-market design relies on: after a projected step, each action's mean log-probability
over the step's states does not move (to first order), while the step may still change how the states
differ. Checked on the real SmolLM2 with a LoRA and real edge-market prompts.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from training.grpo.level_projection import (
    WORDS,
    UpdateProjector,
    first_word_token_ids,
    level_directions,
    project_out,
)

finite = st.floats(-10, 10, allow_nan=False, width=32)


@settings(max_examples=60, deadline=None)
@given(directions=arrays(np.float32, (2, 6), elements=finite), update=arrays(np.float32, 6, elements=finite))
@example(  # a zero direction before a real one: an unpivoted QR dropped both (found by CI)
    directions=np.array([[0, 0, 0, 0, 0, 0], [1, 0, 0, 0, 0, 0]], np.float32), update=np.ones(6, np.float32)
)
def test_the_projected_update_is_orthogonal_to_every_direction_and_projecting_twice_changes_nothing(
    directions, update
):
    import torch

    rows = torch.from_numpy(np.concatenate([directions, directions[:1]]))  # a dependent row as well
    kept, share = project_out(torch.from_numpy(update), rows)
    scale = float(rows.norm() * torch.from_numpy(update).norm()) + 1e-6
    assert float((rows @ kept).abs().max()) <= 1e-4 * scale
    assert 0.0 <= share <= 1.0 + 1e-6
    again, _ = project_out(kept, rows)
    assert torch.allclose(again, kept, atol=1e-4 * (float(kept.norm()) + 1e-6))


def test_an_update_already_orthogonal_to_the_directions_is_kept_whole():
    import torch

    kept, share = project_out(torch.tensor([0.0, 0.0, 3.0]), torch.tensor([[1.0, 0.0, 0.0], [1.0, 1.0, 0.0]]))
    assert kept.tolist() == [0.0, 0.0, 3.0] and share == 0.0


@pytest.fixture(scope="module")
def policy():
    """SmolLM2 with a randomly initialised LoRA, and two real edge-market prompts (tokens, mask)."""
    import torch
    from peft import LoraConfig, get_peft_model

    from llm_agent.generation import format_chat
    from llm_agent.models import load_model
    from training.grpo.prompts import PromptSetConfig, collect_rows

    loaded = load_model("smollm2-135m", for_training=True)
    torch.manual_seed(0)
    lora = LoraConfig(
        r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False, task_type="CAUSAL_LM"
    )
    model = get_peft_model(loaded.model, lora)
    model.eval()  # no dropout: the same weights give the same log-probabilities
    tokenizer = loaded.tokenizer
    config = PromptSetConfig(task="easy", episodes=2, stride=10, experts=("rsi",), think=False,
                             data="synthetic:edge")  # fmt: skip
    rows = collect_rows(config)[:3]
    prompts = [tokenizer(format_chat(tokenizer, r["prompt"]), add_special_tokens=False)["input_ids"][-96:]
               for r in rows]  # fmt: skip
    width = max(map(len, prompts))
    ids = torch.full((len(prompts), width), tokenizer.pad_token_id)
    mask = torch.zeros_like(ids)
    for i, prompt in enumerate(prompts):  # left-padded, as TRL lays out prompts
        ids[i, width - len(prompt) :], mask[i, width - len(prompt) :] = torch.tensor(prompt), 1
    return model, tokenizer, ids, mask


def test_the_three_words_start_with_distinct_tokens_that_decode_to_their_starts(policy):
    _, tokenizer, _, _ = policy
    ids = first_word_token_ids(tokenizer)
    assert len(set(ids)) == 3
    assert all(word.startswith(tokenizer.decode([i]).strip()) for word, i in zip(WORDS, ids))


def mean_word_log_probs(model, ids, mask, word_ids):
    import torch

    with torch.no_grad():
        logits = model(input_ids=ids, attention_mask=mask).logits[:, -1, word_ids].float()
    return logits.log_softmax(dim=-1)


def test_a_projected_step_that_raises_buy_on_one_state_leaves_the_states_mean_levels_unmoved(policy):
    """A step that raises log P(BUY) on the first state only: unprojected, it raises the mean over the
    states (the transfer the probe measured); projected, every word's mean stays put to first order while
    the states' log-probabilities still move apart."""
    import torch

    model, tokenizer, ids, mask = policy
    word_ids = first_word_token_ids(tokenizer)
    params = [p for p in model.parameters() if p.requires_grad]
    start = [p.detach().clone() for p in params]
    before = mean_word_log_probs(model, ids, mask, word_ids)

    def step(projected: bool) -> torch.Tensor:
        with torch.no_grad():
            for p, s in zip(params, start):
                p.copy_(s)
        optimizer = torch.optim.SGD(params, lr=2e-3)
        projector = UpdateProjector(params)
        if projected:
            projector.attach(optimizer)
            projector.add_directions(level_directions(model, ids, mask, word_ids))
        optimizer.zero_grad()
        logits = model(input_ids=ids[:1], attention_mask=mask[:1]).logits[0, -1, word_ids].float()
        (-logits.log_softmax(dim=-1)[0]).backward()  # raise log P(BUY) on the first state
        optimizer.step()
        return mean_word_log_probs(model, ids, mask, word_ids) - before

    plain, projected = step(projected=False), step(projected=True)
    assert plain[:, 0].mean() > 0.01, "the plain step raises the mean log P(BUY) over the states"
    assert projected.mean(dim=0).abs().max() < 0.1 * plain[:, 0].mean()
    assert projected[:, 0].std() > 0.1 * plain[:, 0].std(), "the states still move apart"
