"""The one prompt builder: observation -> chat messages. Evaluation, SFT data and GRPO all call it.

The user message is the environment's text observation (which ends with the action grammar); the system
message states the market rules that the observation does not repeat every day. Models whose chat template
wants no system message (DeepSeek-R1 distills: "all instructions in the user prompt") get the rules
prepended to the user message instead.
"""

from __future__ import annotations

from market_env.tasks import TaskSpec
from market_env.versions import get_version

THINK_OPEN, THINK_CLOSE = "<think>", "</think>"

RULES = (
    "You are a disciplined equity trader on India's NSE. Each day you see the market at the close and "
    "your portfolio. Orders fill at the next day's open with slippage and Indian delivery costs (about "
    "0.12% to buy; 0.1% plus Rs 15.93 per stock to sell). Long only, whole shares, no leverage; one stock "
    "may hold at most {cap} of the portfolio. You are scored on risk-adjusted return over the whole "
    "episode, net of costs: trade when the indicators give a reason, not every day."
)
THINK_INSTRUCTION = "First reason briefly inside <think>...</think>, then write the action lines."
ACTIONS_ONLY_INSTRUCTION = "Write only the action lines."


def system_prompt(task: TaskSpec, think: bool = False) -> str:
    rules = RULES.format(cap=f"{task.position_cap:.0%}")
    return f"{rules} {THINK_INSTRUCTION if think else ACTIONS_ONLY_INSTRUCTION}"


def build_messages(
    observation: str,
    task: str | TaskSpec = "easy",
    *,
    think: bool = False,
    use_system_role: bool = True,
    env_version: str | None = None,
) -> list[dict[str, str]]:
    """Chat messages for one decision: the rules, then the observation as the user turn."""
    spec = task if isinstance(task, TaskSpec) else get_version(env_version).task(task)
    system = system_prompt(spec, think)
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
