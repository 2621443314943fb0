"""``training.grpo.shared_prompt``: each prompt computed once gives TRL's log-probs, entropies and gradients.

The reference is TRL's own ``GRPOTrainer._get_per_token_logps_and_entropies`` on the real SmolLM2 with a
LoRA, on a batch laid out as TRL lays out a step: prompts of different lengths left-padded, completions
of different lengths right-padded after their end token, rows shuffled (TRL shuffles before it splits a
step into micro-batches).
"""

from __future__ import annotations

import inspect
from contextlib import nullcontext
from types import SimpleNamespace

import pytest

from training.grpo.prompts import PromptSetConfig, collect_rows
from training.grpo.shared_prompt import shared_prompt_logps

TEMPERATURE = 0.7


@pytest.fixture(scope="module")
def policy():
    """SmolLM2 with a randomly initialised LoRA (both matrices non-zero, so every LoRA weight gets a
    gradient), patched with TRL's fused LM head as ``GRPOTrainer`` patches the model it trains."""
    import torch
    from peft import LoraConfig, get_peft_model
    from trl.trainer.utils import add_fused_lm_head

    from llm_agent.models import load_model

    loaded = load_model("smollm2-135m", for_training=True)
    add_fused_lm_head(loaded.model, temperature=TEMPERATURE, outputs=("log_probs", "entropy"))
    torch.manual_seed(0)
    lora = LoraConfig(
        r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False, task_type="CAUSAL_LM"
    )
    return get_peft_model(loaded.model, lora), loaded.tokenizer


def trl_step_batch(tokenizer, completions_per_prompt: int = 3):
    """(input_ids, attention_mask, logits_to_keep): 2 prompts x 3 completions, as TRL concatenates them."""
    import torch

    from llm_agent.generation import format_chat

    rows = collect_rows(PromptSetConfig(task="easy", episodes=2, stride=10, experts=("rsi",)))[:2]
    chats = [format_chat(tokenizer, r["prompt"]) for r in rows]
    prompts = [tokenizer(chat, add_special_tokens=False)["input_ids"] for chat in chats]
    # the prompts' last 160 and 120 tokens: real tokens, a third of the cost, and the groups' left padding
    # differs
    prompts = [prompts[0][-160:], prompts[1][-120:]]
    answers = ["HOLD", f"BUY {rows[0]['symbols'][0]} 0.5", "SELL"]
    completions = [tokenizer(a + tokenizer.eos_token, add_special_tokens=False)["input_ids"] for a in answers]
    width, keep = max(map(len, prompts)), max(map(len, completions))
    input_ids = torch.full((len(prompts) * completions_per_prompt, width + keep), tokenizer.pad_token_id)
    attention_mask = torch.zeros_like(input_ids)
    for p, prompt in enumerate(prompts):
        for c, completion in enumerate(completions[:completions_per_prompt]):
            r = p * completions_per_prompt + c
            input_ids[r, width - len(prompt) : width] = torch.tensor(prompt)
            input_ids[r, width : width + len(completion)] = torch.tensor(completion)
            attention_mask[r, width - len(prompt) : width + len(completion)] = 1
    order = torch.randperm(len(input_ids), generator=torch.Generator().manual_seed(1))
    return input_ids[order], attention_mask[order], keep


def lora_gradients(model, log_probs, mask) -> dict:
    model.zero_grad()
    (log_probs * mask).sum().backward()
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}


def test_each_prompt_once_gives_trls_log_probs_entropies_and_lora_gradients(policy):
    import torch
    from trl import GRPOTrainer

    model, tokenizer = policy
    input_ids, attention_mask, keep = trl_step_batch(tokenizer)
    mask = attention_mask[:, -keep:].float()
    trl_self = SimpleNamespace(accelerator=SimpleNamespace(autocast=nullcontext))
    trl_forward = inspect.unwrap(GRPOTrainer._get_per_token_logps_and_entropies)  # without TRL's profiler
    trl_logps, trl_entropies, _ = trl_forward(
        trl_self, model, input_ids, attention_mask, keep, compute_entropy=True
    )
    trl_grads = lora_gradients(model, trl_logps, mask)

    logps, entropies = shared_prompt_logps(
        model, input_ids, attention_mask, keep, temperature=TEMPERATURE, compute_entropy=True
    )
    grads = lora_gradients(model, logps, mask)

    assert logps.shape == trl_logps.shape == (6, keep)
    real = mask.bool()  # positions after a completion's end are padding: no one reads them
    assert torch.allclose(logps[real], trl_logps[real], atol=2e-4)
    assert torch.allclose(entropies[real], trl_entropies[real], atol=2e-3)
    assert trl_grads.keys() == grads.keys() and len(grads) == 4 * 30  # A and B of q and v, 30 layers
    for name, grad in grads.items():
        assert grad.abs().max() > 0, name
        assert torch.allclose(grad, trl_grads[name], rtol=1e-3, atol=1e-4 * trl_grads[name].abs().max()), name


def test_a_one_token_completion_needs_only_the_prompt_pass(policy):
    import torch

    model, tokenizer = policy
    input_ids, attention_mask, keep = trl_step_batch(tokenizer, completions_per_prompt=1)
    input_ids, attention_mask = input_ids[:, : -keep + 1], attention_mask[:, : -keep + 1]
    with torch.no_grad():
        logps, entropies = shared_prompt_logps(model, input_ids, attention_mask, 1, TEMPERATURE)
        full = model(input_ids=input_ids, attention_mask=attention_mask).logits[:, -2] / TEMPERATURE
    expected = full.log_softmax(-1).gather(-1, input_ids[:, -1:])
    assert entropies is None and torch.allclose(logps, expected, atol=2e-4)
