"""The prompt builder: compact enough for SmolLM2, the same text the env renders."""

from __future__ import annotations

import pytest

import market_env
from llm_agent.prompts import arrange_observation, build_messages, split_reasoning
from market_env.actions import ACTION_GRAMMAR


@pytest.fixture(scope="module")
def tokenizer():
    from transformers import AutoTokenizer

    from llm_agent.models import ensure_smollm2_cache

    return AutoTokenizer.from_pretrained(ensure_smollm2_cache())


def _prompt_tokens(tokenizer, messages) -> int:
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return len(tokenizer(text, add_special_tokens=False)["input_ids"])


@pytest.mark.parametrize("think", [False, True])
def test_hard_prompt_fits_2000_smollm2_tokens_even_holding_every_stock(tokenizer, think):
    env = market_env.make("hard", split="test", seed=0)
    env.reset()
    env.step("\n".join(f"BUY {name} 0.04" for name in env.names))  # 25 positions: the longest rows
    assert all(env.get_state().shares)
    messages = build_messages(env.render(), "hard", think=think)
    assert _prompt_tokens(tokenizer, messages) <= 2000


def test_user_turn_is_the_env_observation_constant_lines_first_and_the_system_turn_has_cap_and_grammar():
    env = market_env.make("medium", split="val", seed=2)
    observation, _ = env.reset()
    system, user = build_messages(observation, "medium")
    headline, header, *rows, grammar = observation.splitlines()
    assert user == {"role": "user", "content": "\n".join([header, *rows, headline])}
    assert arrange_observation(user["content"]) == user["content"]  # arranging twice changes nothing
    assert "25%" in system["content"] and "Write only the action lines" in system["content"]
    assert ACTION_GRAMMAR in system["content"] and grammar.startswith(ACTION_GRAMMAR.split(":")[0])
    assert "<think>" in build_messages(observation, "medium", think=True)[0]["content"]
    # every day of every episode of a task starts with the same system turn and header: a shared prefix
    other, _ = market_env.make("medium", split="test", seed=9).reset()
    assert build_messages(other, "medium")[1]["content"].startswith(header + "\n")


def test_models_without_a_system_role_get_the_rules_in_the_user_turn():
    (only,) = build_messages("OBS", "easy", use_system_role=False)
    assert only["role"] == "user" and only["content"].endswith("\n\nOBS") and "100%" in only["content"]


@pytest.mark.parametrize(
    "completion, expected",
    [
        ("<think>RSI is low</think>\nBUY TCS 0.5", ("RSI is low", "BUY TCS 0.5")),
        ("RSI is low</think>BUY TCS 0.5", ("RSI is low", "BUY TCS 0.5")),  # template opened the think block
        ("HOLD", ("", "HOLD")),
    ],
)
def test_split_reasoning(completion, expected):
    assert split_reasoning(completion) == expected
