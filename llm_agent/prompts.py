"""The one prompt builder: observation -> chat messages. Evaluation, SFT data and GRPO all call it.

The system message states what never changes within a task: the market rules and the action grammar. The
user message is the environment's text observation, arranged so that its constant part leads: the table
header, the stock rows, then the day's headline (``arrange_observation``; the grammar the observation ends
with is already in the system message). Every prompt of a task therefore starts with the same tokens, which
generation computes once per batch and shares (``llm_agent.generation``: about 3 of 4 prompt tokens of an
easy decision). Models whose chat template wants no system message (DeepSeek-R1 distills: "all instructions
in the user prompt") get the rules prepended to the user message instead.

One format for training and evaluation: SFT data, GRPO prompts and evaluation all build the same
[system, user] messages, and :func:`fit_chat` (applied by ``llm_agent.generation.format_chat``, the SFT
tokenizer and the GRPO trainer's dataset) folds the system message into the user turn for every template
that opens ``<think>`` itself (the R1 distills), decided from the tokenizer, not from a model alias.
:func:`fit_completion` drops a training answer's own ``<think>`` after such a template, so training never
sees ``<think>\n<think>``.
"""

from __future__ import annotations

from typing import Any

from market_env.actions import action_grammar
from market_env.observations import TABLE_HEADER
from market_env.tasks import TaskSpec
from market_env.versions import get_version

THINK_OPEN, THINK_CLOSE = "<think>", "</think>"

RULES = (
    "You are a disciplined equity trader on India's NSE. Each day you see the market at the close and "
    "your portfolio. Orders fill at the next day's open with slippage and Indian delivery costs (about "
    "0.12% to buy; 0.1% plus Rs 15.93 per stock to sell). Long only, whole shares, no leverage; one stock "
    "may hold at most {cap} of the portfolio. Goal: end the episode with more money than you started "
    "with, after all costs; trade when the indicators give a reason, not every day."
)
GRAMMAR = action_grammar()  # the generic statement; each observation's own copy names one of its symbols
THINK_INSTRUCTION = "First reason briefly inside <think>...</think>, then write the action lines."
ACTIONS_ONLY_INSTRUCTION = "Write only the action lines."


def system_prompt(task: TaskSpec, think: bool = False) -> str:
    rules = RULES.format(cap=f"{task.position_cap:.0%}")
    return f"{rules}\n{GRAMMAR}\n{THINK_INSTRUCTION if think else ACTIONS_ONLY_INSTRUCTION}"


def arrange_observation(observation: str) -> str:
    """The observation with its constant lines first: table header, stock rows, then the headline (day,
    cash, value); the trailing grammar is dropped (the system message states it). Text that is not an env
    observation, or is already arranged, comes back unchanged."""
    lines = observation.splitlines()
    if len(lines) < 3 or lines[1] != TABLE_HEADER or not lines[-1].startswith(GRAMMAR.split(":")[0]):
        return observation
    return "\n".join([*lines[1:-1], lines[0]])


def build_messages(
    observation: str,
    task: str | TaskSpec = "easy",
    *,
    think: bool = False,
    use_system_role: bool = True,
    env_version: str | None = None,
) -> list[dict[str, str]]:
    """Chat messages for one decision: the rules and grammar, then the arranged observation as the user
    turn."""
    spec = task if isinstance(task, TaskSpec) else get_version(env_version).task(task)
    system = system_prompt(spec, think)
    observation = arrange_observation(observation)
    if not use_system_role:
        return [{"role": "user", "content": f"{system}\n\n{observation}"}]
    return [{"role": "system", "content": system}, {"role": "user", "content": observation}]


def split_reasoning(completion: str) -> tuple[str, str]:
    """(reasoning, answer) of a completion; text before ``</think>`` is reasoning, also without an opener
    (reasoning models' templates often open the think block in the prompt)."""
    if THINK_CLOSE in completion:
        reasoning, answer = completion.rsplit(THINK_CLOSE, 1)
        return reasoning.replace(THINK_OPEN, "").strip(), answer.strip()
    return "", completion.strip()


def template_opens_think(tokenizer: Any) -> bool:
    """Whether the chat template opens the think block itself (DeepSeek-R1 distills end the generation
    prompt with ``<think>\n``), probed by rendering a one-message chat once per template."""
    key = str(getattr(tokenizer, "chat_template", None))
    if key not in _OPENS_THINK:
        probe = tokenizer.apply_chat_template(
            [{"role": "user", "content": "x"}], tokenize=False, add_generation_prompt=True
        )
        _OPENS_THINK[key] = probe.rstrip().endswith(THINK_OPEN)
    return _OPENS_THINK[key]


_OPENS_THINK: dict[str, bool] = {}  # chat template -> whether it opens <think>


def fit_chat(messages: list[dict[str, str]], tokenizer: Any) -> list[dict[str, str]]:
    """The messages as this model family is prompted: a leading system message folded into the first user
    turn (as ``build_messages(..., use_system_role=False)`` writes it) when the template opens ``<think>``."""
    if len(messages) < 2 or messages[0]["role"] != "system" or messages[1]["role"] != "user":
        return list(messages)
    if not template_opens_think(tokenizer):
        return list(messages)
    system, user, *rest = messages
    return [{"role": "user", "content": f"{system['content']}\n\n{user['content']}"}, *rest]


def fit_completion(completion: str, prompt: str) -> str:
    """A training answer that follows ``prompt``: without its own ``<think>`` when the prompt already ends
    with one (the template opened it), so the model is not taught to write ``<think>`` twice."""
    if prompt.rstrip().endswith(THINK_OPEN) and completion.lstrip().startswith(THINK_OPEN):
        return completion.lstrip()[len(THINK_OPEN) :].lstrip("\n")
    return completion


def fit_prompts(dataset: Any, tokenizer: Any) -> Any:
    """A GRPO prompt dataset (a ``datasets.Dataset`` with a ``prompt`` column of messages) in the model's
    format; unchanged (the same object) for templates that take a system message."""
    if not template_opens_think(tokenizer):
        return dataset
    return dataset.map(lambda row: {"prompt": fit_chat(row["prompt"], tokenizer)})
