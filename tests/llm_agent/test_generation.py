"""Batched generation with the real SmolLM2: batching, stop strings, seeds and timing bookkeeping."""

from __future__ import annotations

import pytest
import torch
from conftest import CHATS
from hypothesis import given
from hypothesis import strategies as st

import market_env
from llm_agent.generation import (
    MIN_SHARED_TOKENS,
    Completion,
    GenerationConfig,
    GenerationStats,
    _first_prefix_with_stop,
    format_chat,
    generate,
    shared_prefix_length,
)
from llm_agent.models import LoadedModel
from llm_agent.prompts import build_messages


def test_a_batch_of_chats_gets_one_completion_each_in_order(smollm2: LoadedModel) -> None:
    config = GenerationConfig(max_new_tokens=12)
    completions = generate(smollm2, CHATS[:3], config)
    assert len(completions) == 3
    for completion in completions:
        assert completion.text.strip()
        assert completion.prompt_tokens > 0
        assert 0 < completion.completion_tokens == len(completion.token_ids) <= 12
        assert completion.seconds > 0
        assert completion.finish_reason in ("stop", "length")
    lengths = [c.prompt_tokens for c in completions]
    assert lengths[1] > lengths[0] > lengths[2]  # results come back in input order, not sorted by length
    assert "Paris" in completions[0].text  # the first chat's answer, not another's


@pytest.mark.slow
@pytest.mark.parametrize(
    "batch_size",
    [
        4,  # all four chats in one left-padded batch
        3,  # two chunks of different sizes (and a progress bar)
    ],
)
def test_batched_greedy_equals_one_by_one(smollm2: LoadedModel, batch_size: int) -> None:
    config = GenerationConfig(max_new_tokens=16, batch_size=batch_size)
    batched = generate(smollm2, CHATS, config)
    one_by_one = [generate(smollm2, [chat], config)[0] for chat in CHATS]
    assert [c.token_ids for c in batched] == [c.token_ids for c in one_by_one]
    assert [c.text for c in batched] == [c.text for c in one_by_one]
    assert [c.prompt_tokens for c in batched] == [c.prompt_tokens for c in one_by_one]


def test_prompts_of_one_task_share_most_tokens_and_decode_as_one_by_one(smollm2: LoadedModel) -> None:
    observations, _ = market_env.make_batch("easy", n_envs=4, obs_mode="text", seed=11, split="val").reset()
    chats = [build_messages(observation, "easy") for observation in observations]
    encoded = [smollm2.tokenizer(format_chat(smollm2.tokenizer, c), add_special_tokens=False)["input_ids"]
               for c in chats]  # fmt: skip
    # the system turn and the table header lead every easy prompt: computed once per batch
    assert shared_prefix_length(encoded) > 0.6 * min(map(len, encoded))
    config = GenerationConfig(max_new_tokens=6, batch_size=4)
    batched = generate(smollm2, chats, config)
    one_by_one = [generate(smollm2, [chat], config)[0] for chat in chats]
    assert [c.token_ids for c in batched] == [c.token_ids for c in one_by_one]
    assert [c.prompt_tokens for c in batched] == [len(row) for row in encoded]


@given(
    prefix=st.lists(st.integers(0, 3), max_size=2 * MIN_SHARED_TOKENS),
    tails=st.lists(st.lists(st.integers(0, 3), min_size=1, max_size=4), min_size=1, max_size=4),
)
def test_shared_prefix_is_common_to_all_rows_and_leaves_each_a_token(prefix, tails) -> None:
    rows = [prefix + tail for tail in tails]
    n = shared_prefix_length(rows)
    assert all(row[:n] == rows[0][:n] for row in rows)
    shortest = min(map(len, rows))
    if len(rows) == 1 or shortest - 1 < MIN_SHARED_TOKENS:
        assert n == 0  # nothing to share, or each row would be left without a token of its own
    elif n == 0:  # a short common run is not worth a forward pass
        assert any(len({row[k] for row in rows}) > 1 for k in range(MIN_SHARED_TOKENS))
    else:  # as long as possible: the rows differ right after it, or the shortest keeps just one token
        assert MIN_SHARED_TOKENS <= n <= shortest - 1
        assert n == shortest - 1 or len({row[n] for row in rows}) > 1


def test_stop_strings_truncate_the_completion(smollm2: LoadedModel) -> None:
    chat = CHATS[:1]
    full = generate(smollm2, chat, GenerationConfig(max_new_tokens=16))[0]
    assert full.text.startswith("The capital of France is"), full.text  # the stop string below must occur
    kept = generate(smollm2, chat, GenerationConfig(max_new_tokens=16, stop_strings=[" is", "nowhere"]))[0]
    assert kept.text == "The capital of France is"
    assert kept.finish_reason == "stop"
    assert kept.completion_tokens < full.completion_tokens
    assert kept.token_ids == full.token_ids[: kept.completion_tokens]  # counts stop at the stop string
    dropped = generate(
        smollm2, chat, GenerationConfig(max_new_tokens=16, stop_strings=[" is"], keep_stop_string=False)
    )
    assert dropped[0].text == "The capital of France"


@pytest.mark.parametrize(
    ("stop", "prefix"),
    [
        ("Paris", "The capital of France is Paris"),  # a whole word token
        ("Par", "The capital of France is Paris"),  # a stop string ending inside a token: count that token
        ("The", "The"),  # in the first token
    ],
)
def test_the_stop_token_is_the_first_whose_text_holds_the_stop_string(
    smollm2: LoadedModel, stop: str, prefix: str
) -> None:
    tokenizer = smollm2.tokenizer
    ids = tokenizer("The capital of France is Paris. It is a big city.", add_special_tokens=False)[
        "input_ids"
    ]
    n = _first_prefix_with_stop(tokenizer, ids, [stop])
    assert tokenizer.decode(ids[:n]) == prefix


def test_max_new_tokens_ends_with_finish_reason_length(smollm2: LoadedModel) -> None:
    [completion] = generate(smollm2, CHATS[3:], GenerationConfig(max_new_tokens=3))
    assert (completion.completion_tokens, completion.finish_reason) == (3, "length")


def test_sampling_is_reproducible_with_a_seed_and_leaves_the_global_rng_alone(smollm2: LoadedModel) -> None:
    def sample(seed: int) -> list[str]:
        config = GenerationConfig(max_new_tokens=10, do_sample=True, temperature=1.0, top_k=50, seed=seed)
        return [c.text for c in generate(smollm2, CHATS[2:4], config)]

    rng_state = torch.get_rng_state()
    first = sample(1)
    assert torch.equal(torch.get_rng_state(), rng_state)
    assert sample(1) == first
    assert any(
        sample(seed) != first for seed in (2, 3)
    )  # 10 sampled tokens from 2 chats: equal by chance is rare


def test_an_empty_batch_generates_nothing(smollm2: LoadedModel) -> None:
    assert generate(smollm2, []) == []


def test_stats_add_up_tokens_and_seconds() -> None:
    completions = [Completion("a", 10, 4, 0.5), Completion("b", 20, 6, 1.5)]
    stats = GenerationStats.from_completions(completions)
    assert (stats.completions, stats.prompt_tokens, stats.completion_tokens, stats.seconds) == (
        2,
        30,
        10,
        2.0,
    )
    assert stats.tokens_per_second == 5.0
    assert stats.completions_per_second == 1.0
    assert GenerationStats.from_completions([]).tokens_per_second == 0.0


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_new_tokens": 0},
        {"batch_size": 0},
        {"do_sample": True, "temperature": 0.0},  # greedy is do_sample=False, not temperature 0
        {"top_p": 0.0},
        {"top_k": -1},
        {"stop_strings": "</answer>"},  # a bare string would be read as a list of characters
        {"stop_strings": [""]},  # an empty stop string would stop at once
    ],
)
def test_invalid_configs_are_rejected(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        GenerationConfig(**kwargs)
