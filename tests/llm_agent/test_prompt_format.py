"""One prompt format for training and evaluation, for every model family (issue 17, finding 6).

The DeepSeek-R1 distills' chat template opens the think block itself (the generation prompt ends with
``<｜Assistant｜><think>\\n``) and DeepSeek asks for every instruction in the user turn. R1_LIKE_TEMPLATE
below reproduces those two behaviours of that template (the system text placed before the first user turn, the
opened ``<think>``); it is set on the real SmolLM2 tokenizer, so no download is needed.
"""

from __future__ import annotations

import copy

import pytest

from llm_agent.generation import format_chat
from llm_agent.prompts import build_messages, fit_chat, fit_completion, fit_prompts, template_opens_think
from training.sft.trainer import tokenize_chat

R1_LIKE_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}{% if m['role'] == 'system' %}{{ m['content'] }}{% endif %}"
    "{% endfor %}{% for m in messages %}{% if m['role'] == 'user' %}{{ '<｜User｜>' + m['content'] }}"
    "{% elif m['role'] == 'assistant' %}{{ '<｜Assistant｜>' + m['content'] + eos_token }}{% endif %}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<｜Assistant｜><think>\\n' }}{% endif %}"
)


@pytest.fixture(scope="module")
def smollm2():
    from transformers import AutoTokenizer

    from llm_agent.models import ensure_smollm2_cache

    return AutoTokenizer.from_pretrained(ensure_smollm2_cache())


@pytest.fixture(scope="module")
def r1_like(smollm2):
    tokenizer = copy.deepcopy(smollm2)
    tokenizer.chat_template = R1_LIKE_TEMPLATE
    return tokenizer


def test_only_templates_that_open_think_are_r1_like(smollm2, r1_like):
    assert not template_opens_think(smollm2)
    assert template_opens_think(r1_like)


def test_a_system_message_is_kept_for_chat_models_and_folded_for_r1_like_ones(smollm2, r1_like):
    messages = build_messages("OBS", "easy", think=True)
    assert fit_chat(messages, smollm2) == messages
    # folded exactly as build_messages(use_system_role=False) writes it: one format, whoever builds it
    assert fit_chat(messages, r1_like) == build_messages("OBS", "easy", think=True, use_system_role=False)
    prompt = format_chat(r1_like, messages)
    assert prompt.count("You are a disciplined") == 1 and prompt.index("<｜User｜>") < prompt.index("You are")


def test_sft_never_trains_a_second_think_after_a_template_that_opened_one(smollm2, r1_like):
    chat = [
        *build_messages("OBS", "easy", think=True),
        {"role": "assistant", "content": "<think>RSI 28</think>\nHOLD"},
    ]
    for tokenizer, opener_in_answer in ((r1_like, False), (smollm2, True)):
        row = tokenize_chat(chat, tokenizer)
        text = tokenizer.decode(row["input_ids"])
        assert text[text.index("OBS") :].count("<think>") == 1  # after the observation: one opener
        answer = tokenizer.decode([t for t, m in zip(row["input_ids"], row["completion_mask"]) if m])
        assert answer.startswith("<think>") is opener_in_answer and "RSI 28</think>\nHOLD" in answer


@pytest.mark.parametrize(
    "completion, prompt, expected",
    [
        ("<think>a</think>HOLD", "...<｜Assistant｜><think>\n", "a</think>HOLD"),  # the template opened it
        ("<think>a</think>HOLD", "...<|im_start|>assistant\n", "<think>a</think>HOLD"),  # it did not
        ("HOLD", "...<think>\n", "HOLD"),  # an answer without reasoning stays as it is
    ],
)
def test_fit_completion(completion, prompt, expected):
    assert fit_completion(completion, prompt) == expected


def test_grpo_prompt_rows_get_the_same_fold(smollm2, r1_like):
    from datasets import Dataset

    rows = Dataset.from_list([{"prompt": build_messages("OBS", "easy", think=True), "state": "s"}])
    assert fit_prompts(rows, smollm2) is rows
    folded = fit_prompts(rows, r1_like)
    assert folded[0]["prompt"] == build_messages("OBS", "easy", think=True, use_system_role=False)
    assert folded[0]["state"] == "s"
