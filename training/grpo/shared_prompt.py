"""GRPO's training forward pass with each prompt computed once for all the completions that share it.

TRL scores a step's completions by running every row, prompt and completion together, forward and backward:
a group of 8 answers to one 400-token prompt runs that prompt 8 times for answers of 3-16 tokens, and that
pass is most of a CPU step (docs/grpo.md). Here each distinct prompt among the rows runs once, with
gradient; its key/value cache is indexed out to the rows that share it, and only the completions run per
row. The result is the same function of the weights (the cache's backward sums the rows' contributions, as
the repeated prompt's would): ``tests/training/grpo/test_shared_prompt.py`` checks the log-probabilities,
the entropies and the LoRA gradients against TRL's own forward.

The cost: the completions' logits are materialised (rows x completion tokens x vocabulary, in float32), where
TRL's fused head works in tiles. That is small for the CPU runs this serves (64 rows x 16 tokens x 49,152:
200 MB) and is why GPU profiles keep TRL's forward unless asked (``train-grpo --share-prompts``).
"""

from __future__ import annotations

from typing import Any

from llm_agent.generation import cache_keyword


def shared_prompt_logps(
    model: Any,
    input_ids: Any,
    attention_mask: Any,
    logits_to_keep: int,
    temperature: float = 1.0,
    compute_entropy: bool = False,
) -> tuple[Any, Any] | None:
    """(per-token log-probabilities, entropies or None) of the last ``logits_to_keep`` tokens of each row,
    as TRL's ``GRPOTrainer._get_per_token_logps_and_entropies`` returns them, each distinct prompt (the
    columns before those tokens, with their mask) computed once. None when the model filled no cache
    (gradient checkpointing in training mode): the caller falls back to TRL's forward.
    """
    import torch
    from transformers import DynamicCache

    prompt_width = input_ids.shape[1] - logits_to_keep
    prompt_ids, prompt_mask = input_ids[:, :prompt_width], attention_mask[:, :prompt_width]
    prompt_rows = torch.cat([prompt_ids, prompt_mask], dim=1)
    distinct, row_prompt = torch.unique(prompt_rows, dim=0, return_inverse=True)  # row -> its prompt
    cache = DynamicCache(config=model.config)
    keyword = cache_keyword(model)
    prompts = model(
        input_ids=distinct[:, :prompt_width],
        attention_mask=distinct[:, prompt_width:],
        use_cache=True,
        logits_to_keep=1,  # the prompt's last position predicts the first completion token
        **{keyword: cache},
    )
    if cache.get_seq_length() != prompt_width:
        return None
    logits = [prompts.logits[row_prompt, -1:].float()]
    if logits_to_keep > 1:  # the completion's last token predicts nothing that is scored
        cache.batch_select_indices(row_prompt)
        completions = model(
            input_ids=input_ids[:, prompt_width:-1],
            attention_mask=attention_mask[:, :-1],
            use_cache=True,
            **{keyword: cache},
        )
        logits.append(completions.logits.float())
    log_probs = (torch.cat(logits, dim=1) / temperature).log_softmax(dim=-1)
    token_log_probs = log_probs.gather(-1, input_ids[:, prompt_width:, None]).squeeze(-1)
    entropies = -(log_probs.exp() * log_probs).sum(dim=-1) if compute_entropy else None
    return token_log_probs, entropies
