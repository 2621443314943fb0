"""The LLM agent of ``evaluate``: each trading day, every episode's observation becomes a chat, all chats go
through one batched :func:`~llm_agent.generation.generate` call, and the completions go back as the actions.

The environment's parser (:func:`market_env.actions.parse_action`) is the one parser: the agent returns
completion text (the answer after ``</think>`` when the model reasons) and the environment counts what does
not parse as an invalid action. The agent parses a sample of decisions with that same parser only to write
transcripts (prompt, completion, parsed action, invalid flag and reason), which ``evaluate`` logs to MLflow.

Names (through :func:`eval.agents.make_agent`): a model name from :mod:`llm_agent.models` (``smollm2-135m``,
``qwen-0.5b``, ``deepseek-7b``, ``llm:<hf-id-or-path>[@<adapter>]``), optionally followed by configuration
flags that make it a configuration of its own in tables and MLflow: ``+think`` (reason first),
``+constrained`` (decode only the action grammar) and ``+t0.7`` (sample at that temperature). The CLI options
``--think``, ``--constrained`` and ``--temperature`` add the same flags. Importing this module registers the
``llm:`` resolver with the agent registry.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, fields
from typing import Any

import numpy as np

from eval.agents import register_prefix
from llm_agent.constrained import action_constraint
from llm_agent.generation import Completion, GenerationConfig, format_chat, generate
from llm_agent.models import LoadedModel, ModelSpec, load_model, parse_model_spec
from llm_agent.prompts import THINK_CLOSE, THINK_OPEN, build_messages, split_reasoning
from market_env.actions import format_action, parse_action
from market_env.observations import TABLE_HEADER, Snapshot
from market_env.tasks import TaskSpec
from market_env.versions import get_version

__all__ = ["LLMAgent", "LLMAgentConfig", "action_text", "infer_task", "make_llm_agent", "observation_symbols"]

ACTION_MAX_NEW_TOKENS = 96  # an answer of a few action lines
THINK_MAX_NEW_TOKENS = 512  # reasoning first, then the answer
_FLAG = re.compile(r"think|constrained|t(?P<temperature>[0-9]*\.?[0-9]+)")


@dataclass
class LLMAgentConfig:
    """How the LLM agent prompts and decodes.

    Attributes:
        model: a model name for :func:`llm_agent.models.parse_model_spec`.
        max_new_tokens: generation budget per decision; default 512 when thinking, else 96.
        batch_size: prompts per forward batch (all episodes of a day go through one generate call).
        temperature: None for greedy decoding (deterministic); > 0 samples at that temperature.
        top_p: nucleus mass when sampling.
        think: ask for ``<think>`` reasoning first; default on for reasoning models (``deepseek-7b``).
        constrained: decode only the action grammar of each episode (:mod:`llm_agent.constrained`).
        load_in_4bit: 4-bit weights (CUDA and bitsandbytes).
        backend: ``"auto"`` (vLLM on a GPU when it is installed, else transformers) or a backend of
            :func:`llm_agent.models.load_model`.
        use_system_role: rules in a system message (default); ``format_chat`` folds it into the user turn for
            templates that open ``<think>`` (DeepSeek-R1 distills want every instruction in the user turn).
        task: the task name or spec for the prompt's rules; default: inferred from the first day's number
            of stocks and episode length (the harness creates the agent before the environment).
        transcripts: how many decisions to keep as transcripts (a seeded sample of episodes x days).
    """

    model: str = "smollm2-135m"
    max_new_tokens: int | None = None
    batch_size: int = 16
    temperature: float | None = None
    top_p: float = 1.0
    think: bool | None = None
    constrained: bool = False
    load_in_4bit: bool = False
    backend: str = "auto"
    use_system_role: bool | None = None
    task: str | TaskSpec | None = None
    transcripts: int = 20

    def __post_init__(self) -> None:
        if self.temperature is not None and self.temperature <= 0:
            raise ValueError(f"temperature must be > 0 (leave it unset for greedy), got {self.temperature}")
        if self.max_new_tokens is not None and self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if self.transcripts < 0:
            raise ValueError(f"transcripts must be >= 0, got {self.transcripts}")


_LOADED: dict[tuple[str, str, bool], LoadedModel] = {}


def _load(spec: ModelSpec, backend: str, load_in_4bit: bool) -> LoadedModel:
    """The model, reused while the same one is asked for (``evaluate`` makes a new agent for every task).

    Only the latest model stays loaded: ``evaluate --agent deepseek-7b llm:deepseek-7b@sft ...`` must not
    hold two 7B models at once on a 16 GB T4.
    """
    if backend == "auto":
        backend = _generation_backend()
    key = (spec.name, backend, load_in_4bit)
    if key not in _LOADED:
        _release_models()
        _LOADED[key] = load_model(spec, backend=backend, load_in_4bit=load_in_4bit)
    return _LOADED[key]


def _release_models() -> None:
    """Drop the loaded models and give their GPU memory back."""
    import gc

    import torch

    _LOADED.clear()
    gc.collect()
    if torch.cuda.is_available():  # pragma: no cover - needs a CUDA GPU, which CI does not have
        torch.cuda.empty_cache()


def _generation_backend() -> str:
    """vLLM on a GPU when it is installed (faster, guided decoding), else transformers."""
    import importlib.util

    import torch

    if torch.cuda.is_available() and importlib.util.find_spec("vllm"):  # pragma: no cover - needs a GPU
        return "vllm"
    return "transformers"


class LLMAgent:
    """An LLM playing every episode of an evaluation, one batched generate call per trading day."""

    obs_mode = "text"

    def __init__(self, config: LLMAgentConfig | None = None, **options: Any) -> None:
        config = config or LLMAgentConfig(**options)
        self.spec = parse_model_spec(config.model)
        self.think = self.spec.reasoning if config.think is None else config.think
        # the rules go in a system message, which format_chat folds into the user turn for templates that
        # open <think> themselves (R1 distills): the same format as the SFT data and the GRPO prompts
        self.use_system_role = True if config.use_system_role is None else config.use_system_role
        self.max_new_tokens = config.max_new_tokens or (
            THINK_MAX_NEW_TOKENS if self.think else ACTION_MAX_NEW_TOKENS
        )
        self.config = config
        self.name = agent_name(self.spec, self.think, config.constrained, config.temperature)
        self.loaded = _load(self.spec, config.backend, config.load_in_4bit)
        self.task: TaskSpec | None = None  # resolved on the first day of each run (see reset)
        self.transcripts: list[dict[str, Any]] = []
        self.last_completions: list[Completion] = []
        self.reset(0, 0)

    def describe(self) -> dict[str, str]:
        decoding = "greedy" if self.config.temperature is None else f"sample T={self.config.temperature:g}"
        return {
            "model": self.spec.model_id_or_path,
            "adapter": self.spec.adapter_path or "",
            "backend": self.loaded.backend,
            "think": str(self.think),
            "constrained": str(self.config.constrained),
            "max_new_tokens": str(self.max_new_tokens),
            "decoding": decoding,
            "batch_size": str(self.config.batch_size),
        }

    def reset(self, n_envs: int, seed: int) -> None:
        self.n_envs, self.seed, self.day = n_envs, seed, 0
        self.task = None  # a reused agent may play another task next: infer its rules again
        self.transcripts = []
        self._sampled: set[tuple[int, int]] | None = None  # (episode, day) pairs to transcribe

    def act(self, observations: list[str], snapshot: Snapshot) -> list[str]:
        """The action text of every episode for this day."""
        task = self._task(snapshot)
        chats = [
            build_messages(obs, task, think=self.think, use_system_role=self.use_system_role)
            for obs in observations
        ]
        symbols = [observation_symbols(obs) for obs in observations]
        constraint = (
            action_constraint(self.loaded, symbols, think=self.think) if self.config.constrained else None
        )
        completions = generate(self.loaded, chats, self._generation_config(), constraint)
        prompts = [format_chat(self.loaded.tokenizer, chat) for chat in chats]
        opened = [prompt.rstrip().endswith(THINK_OPEN) for prompt in prompts]  # template opened <think>
        actions = [action_text(c.text, think) for c, think in zip(completions, opened)]
        self._transcribe(snapshot, prompts, completions, actions, symbols)
        self.last_completions = completions
        self.day += 1
        return actions

    def _task(self, snapshot: Snapshot) -> TaskSpec:
        if self.task is None:
            task = self.config.task
            if isinstance(task, TaskSpec):
                self.task = task
            elif task is not None:
                self.task = get_version().task(task)
            else:
                self.task = infer_task(snapshot.symbols.shape[1], snapshot.n_days)
        return self.task

    def _generation_config(self) -> GenerationConfig:
        sampling = self.config.temperature is not None
        # a different draw every day, the same for every run with this seed
        seed = int(np.random.SeedSequence([self.seed, self.day]).generate_state(1)[0]) if sampling else None
        return GenerationConfig(
            max_new_tokens=self.max_new_tokens,
            do_sample=sampling,
            temperature=self.config.temperature or 1.0,
            top_p=self.config.top_p,
            seed=seed,
            batch_size=self.config.batch_size,
            show_progress=False,  # the harness shows progress per day
        )

    def _transcribe(
        self,
        snapshot: Snapshot,
        prompts: list[str],
        completions: list[Completion],
        actions: list[str],
        symbols: list[tuple[str, ...]],
    ) -> None:
        if self._sampled is None:
            total = len(prompts) * snapshot.n_days
            picks = np.random.default_rng(self.seed).choice(total, min(self.config.transcripts, total), False)
            self._sampled = {(int(p) // snapshot.n_days, int(p) % snapshot.n_days) for p in picks}
        for episode in range(len(prompts)):
            day = int(snapshot.t[episode])
            if (episode, day) not in self._sampled:
                continue
            parsed = parse_action(actions[episode], symbols[episode])
            completion = completions[episode]
            self.transcripts.append({
                "episode": episode, "day": day + 1, "prompt": prompts[episode], "completion": completion.text,
                "action": actions[episode], "parsed": "" if parsed.invalid else format_action(parsed.orders),
                "invalid": parsed.invalid, "reason": parsed.reason,
                "completion_tokens": completion.completion_tokens, "finish_reason": completion.finish_reason,
            })  # fmt: skip


def action_text(completion: str, think_opened_in_prompt: bool = False) -> str:
    """What goes to the environment: the answer after ``</think>`` when there is one, else the completion.

    When the chat template opened the think block in the prompt (DeepSeek-R1 distills) and the completion
    never closed it, the whole completion is reasoning: it goes back with its ``<think>`` so that the parser
    reports an unclosed reasoning block instead of executing orders the model only thought about.
    """
    if THINK_CLOSE in completion:
        return split_reasoning(completion)[1]
    return THINK_OPEN + completion if think_opened_in_prompt else completion


def observation_symbols(observation: str) -> tuple[str, ...]:
    """The episode's symbols, read from the table of a text observation (real or anonymised names)."""
    lines = observation.splitlines()
    if TABLE_HEADER not in lines:
        raise ValueError("not a text observation of market_env: its stock table header is missing")
    rows = lines[lines.index(TABLE_HEADER) + 1 :]
    symbols = []
    for row in rows:
        if "|" not in row:
            break
        symbols.append(row.split("|", 1)[0])
    return tuple(symbols)


def infer_task(n_stocks: int, n_days: int, env_version: str | None = None) -> TaskSpec:
    """The task with this many stocks and decision days (its rules go into the prompt)."""
    tasks = get_version(env_version).tasks.values()
    matches = [t for t in tasks if (t.n_stocks, t.n_days) == (n_stocks, n_days)]
    if len(matches) != 1:
        raise ValueError(
            f"cannot tell the task from {n_stocks} stocks and {n_days} days; pass task= to the LLM agent"
        )
    return matches[0]


def agent_name(spec: ModelSpec, think: bool, constrained: bool, temperature: float | None) -> str:
    """The model name plus the flags that make this a configuration of its own."""
    flags = ["think"] if think and not spec.reasoning else []
    flags += ["constrained"] if constrained else []
    flags += [f"t{temperature:g}"] if temperature is not None else []
    return "+".join([spec.name, *flags])


def split_flags(name: str) -> tuple[str, dict[str, Any]]:
    """``smollm2-135m+think+constrained`` -> (``smollm2-135m``, options); unknown suffixes stay put."""
    options: dict[str, Any] = {}
    while "+" in name:
        base, _, flag = name.rpartition("+")
        match = _FLAG.fullmatch(flag)
        if match is None:
            break
        if match["temperature"]:
            options["temperature"] = float(match["temperature"])
        else:
            options[flag] = True
        name = base
    return name, options


def make_llm_agent(name: str, options: dict[str, Any]) -> LLMAgent:
    """The registry's resolver: a model name with optional flags, and the CLI's generation options."""
    model, flags = split_flags(name)
    valid = {f.name for f in fields(LLMAgentConfig)} - {"model"}
    unknown = set(options) - valid
    if unknown:
        raise ValueError(f"unknown LLM agent options {sorted(unknown)}; valid: {', '.join(sorted(valid))}")
    return LLMAgent(LLMAgentConfig(model=model, **(flags | options)))


register_prefix("llm:", make_llm_agent)
