"""Batched chat generation for a :class:`~llm_agent.models.LoadedModel`.

One call generates for many chats at once (all episodes of an evaluation on one trading day): prompts are
rendered with the model's chat template and generated in chunks of ``batch_size``. The token prefix that all
prompts of a chunk share (the system turn and the table header: ``llm_agent.prompts``) is computed once and
its key/value cache shared by the chunk's rows; each row's own tokens follow it, padded in the middle. Greedy
decoding is the default and gives the same tokens batched as one prompt at a time (a test checks it)::

    loaded = load_model("smollm2-135m")
    chats = [[{"role": "user", "content": "Say hi"}]]
    completions = generate(loaded, chats, GenerationConfig(max_new_tokens=8))
    completions[0].text, GenerationStats.from_completions(completions).tokens_per_second
"""

from __future__ import annotations

import copy
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from llm_agent.models import LoadedModel

__all__ = ["Completion", "GenerationConfig", "GenerationStats", "format_chat", "generate"]

Chat = list[dict[str, str]]


@dataclass
class GenerationConfig:
    """How to decode.

    Attributes:
        max_new_tokens: most tokens generated per completion.
        do_sample: False for greedy decoding (deterministic); True to sample with the options below.
        temperature: softmax temperature when sampling (> 0).
        top_p: nucleus sampling mass in (0, 1]; 1.0 disables it.
        top_k: sample among the k most likely tokens; 0 disables it.
        seed: seed for sampling. The same seed, chats and ``batch_size`` give the same text; the global torch
            RNG is left untouched. None samples from the global RNG.
        stop_strings: end a completion at the first of these strings (e.g. ``["</answer>"]``), in addition to
            the model's end-of-turn token.
        keep_stop_string: keep the matched stop string at the end of the text (vLLM's default drops it).
        batch_size: most prompts per forward batch; more chats are generated in several chunks (the vLLM
            backend batches continuously by itself and uses it only to decide whether to show progress).
        show_progress: show a tqdm bar when there is more than one chunk.
    """

    max_new_tokens: int = 256
    do_sample: bool = False
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    seed: int | None = None
    stop_strings: Sequence[str] = field(default_factory=tuple)
    keep_stop_string: bool = True
    batch_size: int = 16
    show_progress: bool = True

    def __post_init__(self) -> None:
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.do_sample and self.temperature <= 0:
            raise ValueError(f"temperature must be > 0 when sampling, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.top_k < 0:
            raise ValueError(f"top_k must be >= 0 (0 = off), got {self.top_k}")
        if isinstance(self.stop_strings, str) or not all(self.stop_strings):
            raise ValueError(f"stop_strings must be a list of non-empty strings, got {self.stop_strings!r}")
        self.stop_strings = tuple(self.stop_strings)


@dataclass(frozen=True)
class Completion:
    """One generated answer.

    Attributes:
        text: the decoded completion (special tokens removed), cut after the first stop string.
        prompt_tokens: tokens in the rendered prompt (without padding).
        completion_tokens: tokens generated, up to and including the one that ended the completion.
        seconds: this completion's share of the wall time of the batch it was generated in (batch time /
            batch size), so the seconds of all completions of a call add up to the call's generation time.
        token_ids: the generated token ids counted in ``completion_tokens``.
        finish_reason: ``"stop"`` (end-of-turn token or stop string) or ``"length"`` (hit max_new_tokens).
    """

    text: str
    prompt_tokens: int
    completion_tokens: int
    seconds: float
    token_ids: tuple[int, ...] = ()
    finish_reason: str = "stop"


@dataclass(frozen=True)
class GenerationStats:
    """Throughput of a set of completions (for benchmarks and logs)."""

    completions: int
    prompt_tokens: int
    completion_tokens: int
    seconds: float

    @classmethod
    def from_completions(cls, completions: Sequence[Completion]) -> GenerationStats:
        return cls(
            len(completions),
            sum(c.prompt_tokens for c in completions),
            sum(c.completion_tokens for c in completions),
            sum(c.seconds for c in completions),
        )

    @property
    def tokens_per_second(self) -> float:
        """Generated tokens per second of wall time."""
        return self.completion_tokens / self.seconds if self.seconds > 0 else 0.0

    @property
    def completions_per_second(self) -> float:
        """Completions (decisions) per second of wall time."""
        return self.completions / self.seconds if self.seconds > 0 else 0.0


def format_chat(tokenizer: Any, messages: Chat) -> str:
    """Render one chat with the model's chat template, ending with the assistant turn's opening (the system
    message folded into the user turn for templates that want none: ``llm_agent.prompts.fit_chat``)."""
    from llm_agent.prompts import fit_chat

    return tokenizer.apply_chat_template(
        fit_chat(list(messages), tokenizer), tokenize=False, add_generation_prompt=True
    )


class DecodingConstraint(Protocol):
    """Restricts what each chat may generate (constrained decoding, :mod:`llm_agent.constrained`)."""

    def logits_processor(self, rows: Sequence[int], max_new_tokens: int) -> Any:
        """A transformers logits processor for a forward batch whose row r is chat ``rows[r]``."""
        ...

    def regex(self, row: int) -> str:
        """The regular expression chat ``row`` must match (vLLM guided decoding)."""
        ...


def generate(
    loaded: LoadedModel,
    messages_batch: Sequence[Chat],
    config: GenerationConfig | None = None,
    constraint: DecodingConstraint | None = None,
) -> list[Completion]:
    """Generate one completion per chat, in the order of ``messages_batch``.

    Chats are sorted by prompt length and cut into chunks of ``config.batch_size`` so that a chunk holds
    similar lengths (little padding); the results come back in the input order. ``constraint`` limits each
    chat's completion (e.g. to the action grammar of its episode).
    """
    config = config or GenerationConfig()
    if not messages_batch:
        return []
    prompts = [format_chat(loaded.tokenizer, chat) for chat in messages_batch]
    if loaded.backend == "vllm":  # pragma: no cover - vLLM needs a CUDA GPU, which CI does not have
        return _generate_vllm(loaded, prompts, config, constraint)
    if loaded.backend == "unsloth":  # pragma: no cover - Unsloth needs a CUDA GPU, which CI does not have
        return _generate_unsloth(loaded, prompts, config, constraint)
    return _generate_transformers(loaded, prompts, config, constraint)


def _generate_unsloth(
    loaded: LoadedModel, prompts: list[str], config: GenerationConfig, constraint: DecodingConstraint | None
) -> list[Completion]:  # pragma: no cover - Unsloth needs a CUDA GPU, which CI does not have
    """Generate in Unsloth's inference mode (its fast decoding path; a model being trained, e.g. GRPO's val
    evaluation, is switched there for the call and back to training mode after)."""
    from unsloth import FastLanguageModel

    # a model with trainable weights is in training (its caller may have set eval() for the evaluation)
    in_training = any(param.requires_grad for param in loaded.model.parameters())
    FastLanguageModel.for_inference(loaded.model)
    try:
        return _generate_transformers(loaded, prompts, config, constraint)
    finally:
        if in_training:
            FastLanguageModel.for_training(loaded.model)


def _generate_transformers(
    loaded: LoadedModel, prompts: list[str], config: GenerationConfig, constraint: DecodingConstraint | None
) -> list[Completion]:
    import torch
    from tqdm.auto import tqdm
    from transformers import LogitsProcessorList

    tokenizer = loaded.tokenizer
    encoded = tokenizer(prompts, add_special_tokens=False)["input_ids"]  # the template holds the specials
    order = sorted(range(len(prompts)), key=lambda i: -len(encoded[i]))
    chunks = [order[i : i + config.batch_size] for i in range(0, len(order), config.batch_size)]
    gen_config = _hf_generation_config(loaded, config)
    device = loaded.device
    # Unsloth's fast decoding path manages its own cache
    run = (
        loaded.model.generate
        if loaded.backend == "unsloth"
        else partial(generate_sharing_prefix, loaded.model)
    )
    results: dict[int, Completion] = {}
    bar = tqdm(
        total=len(prompts), desc="generate", unit="chat", disable=not config.show_progress or len(chunks) < 2
    )
    with torch.inference_mode(), torch.random.fork_rng(devices=_cuda_devices(device)):
        if config.do_sample and config.seed is not None:
            torch.manual_seed(config.seed)
        for chunk in chunks:
            started = time.perf_counter()
            input_ids, attention_mask = _pad_after_prefix(
                [encoded[i] for i in chunk], 0, tokenizer.pad_token_id, device
            )
            processors = [constraint.logits_processor(chunk, config.max_new_tokens)] if constraint else []
            output = run(
                input_ids=input_ids,
                attention_mask=attention_mask,
                generation_config=gen_config,
                tokenizer=tokenizer if config.stop_strings else None,
                logits_processor=LogitsProcessorList(processors),
            )
            new_tokens = output[:, input_ids.shape[1] :].tolist()
            seconds = (time.perf_counter() - started) / len(chunk)
            for i, ids in zip(chunk, new_tokens):
                results[i] = _completion(tokenizer, ids, len(encoded[i]), seconds, gen_config, config)
            bar.update(len(chunk))
    bar.close()
    return [results[i] for i in range(len(prompts))]


def _cuda_devices(device: str) -> list[int]:
    return [int(device.split(":")[1]) if ":" in device else 0] if device.startswith("cuda") else []


MIN_SHARED_TOKENS = 32  # a shorter common prefix is not worth its extra forward pass


def shared_prefix_length(rows: Sequence[Sequence[int]]) -> int:
    """Tokens that every row starts with, at most one less than the shortest row (each row keeps a token of
    its own for generation to feed); 0 when fewer than ``MIN_SHARED_TOKENS`` or a single row."""
    if len(rows) < 2:
        return 0
    limit = min(len(row) for row in rows) - 1
    first = rows[0]
    n = next((k for k in range(limit) if any(row[k] != first[k] for row in rows)), limit)
    return n if n >= MIN_SHARED_TOKENS else 0


def _pad_after_prefix(
    rows: list[list[int]], shared: int, pad_id: int, device: Any, width: int | None = None
) -> tuple[Any, Any]:
    """Token rows in one pad-filled tensor (``width`` columns, default the longest row): the ``shared``
    prefix, padding, then each row's own tokens right-aligned (``shared=0`` is plain left padding). The
    attention mask marks the real tokens; positions come from its running sum, so every real token keeps
    the position it has in its unpadded row."""
    import torch

    width = width or max(len(row) for row in rows)
    input_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(rows), width), dtype=torch.long)
    for r, row in enumerate(rows):
        input_ids[r, :shared] = torch.tensor(row[:shared], dtype=torch.long)
        attention_mask[r, :shared] = 1
        own = len(row) - shared
        input_ids[r, width - own :] = torch.tensor(row[shared:], dtype=torch.long)
        attention_mask[r, width - own :] = 1
    return input_ids.to(device), attention_mask.to(device)


def generate_sharing_prefix(
    model: Any, input_ids: Any, attention_mask: Any, *, generate: Any = None, **options: Any
) -> Any:
    """``model.generate`` (or ``generate``) on left-padded rows, the token prefix that all rows share computed
    once.

    The rows are laid out again as prefix, padding, own tokens at the same width, so the output has the
    shape and the completion columns that plain generation gives; greedy tokens are the same (a test checks
    it). The evaluation's generation and GRPO's (``training.grpo``: a group's completions share their whole
    prompt, all prompts the system turn) both go through here. Text models only (no per-token extras).
    """
    generate = generate or _own_generate(model)
    rows = [ids[mask.bool()].tolist() for ids, mask in zip(input_ids, attention_mask)]
    shared = shared_prefix_length(rows)
    prefix = input_ids.new_tensor([rows[0][:shared]])
    cache = _prefix_cache(model, prefix, len(rows)) if shared else None
    if cache is None:  # nothing shared, or no cache filled (gradient checkpointing in training mode)
        return generate(input_ids=input_ids, attention_mask=attention_mask, **options)
    width = input_ids.shape[1]  # a caller may pad beyond the longest row (TRL's pad_to_multiple_of)
    input_ids, attention_mask = _pad_after_prefix(rows, shared, 0, input_ids.device, width)  # pads are masked
    return generate(
        input_ids=input_ids, attention_mask=attention_mask, **{cache_keyword(model): cache}, **options
    )


def _own_generate(model: Any) -> Any:
    """The model's own ``generate``, also when GRPO has already routed it through here
    (``training.grpo.trainer.share_prompt_prefix``): the policy that refreshes GRPO's states generates with
    the model TRL trains, and sharing the prefix twice would pass the cache twice."""
    generate = model.generate
    if isinstance(generate, partial) and generate.func is generate_sharing_prefix:
        return generate.keywords["generate"]
    return generate


def _prefix_cache(model: Any, prefix_ids: Any, n_rows: int) -> Any:
    """The key/value cache of ``prefix_ids`` (one row), computed once and repeated for ``n_rows`` rows;
    None if the model filled none."""
    from transformers import DynamicCache

    cache = DynamicCache(config=model.config)
    model(input_ids=prefix_ids, use_cache=True, **{cache_keyword(model): cache})
    if cache.get_seq_length() != prefix_ids.shape[1]:
        return None
    cache.batch_repeat_interleave(n_rows)
    return cache


def cache_keyword(model: Any) -> str:
    """``cache`` from transformers 5.25 on, ``past_key_values`` before (the Kaggle stack's 5.17)."""
    import inspect

    base = model.get_base_model() if hasattr(model, "get_base_model") else model  # a PEFT model wraps it
    return "cache" if "cache" in inspect.signature(base.forward).parameters else "past_key_values"


def _hf_generation_config(loaded: LoadedModel, config: GenerationConfig) -> Any:
    """The model's own generation config with our decoding choices on top.

    Starting from the model's config keeps its end-of-turn tokens and options like Qwen's repetition penalty;
    the sampling fields are always overwritten, because hub configs often default to ``do_sample=True``.
    """
    gen = copy.deepcopy(loaded.model.generation_config)
    eos = gen.eos_token_id if isinstance(gen.eos_token_id, list) else [gen.eos_token_id]
    eos_ids = [t for t in dict.fromkeys([*eos, loaded.tokenizer.eos_token_id]) if t is not None]
    sampling = config.do_sample
    gen.update(
        max_new_tokens=config.max_new_tokens,
        max_length=None,
        num_beams=1,
        do_sample=sampling,
        temperature=config.temperature if sampling else None,
        top_p=config.top_p if sampling else None,
        top_k=config.top_k if sampling else None,
        eos_token_id=eos_ids,
        pad_token_id=loaded.tokenizer.pad_token_id,
        stop_strings=list(config.stop_strings) or None,
    )
    return gen


def _completion(
    tokenizer: Any, ids: list[int], prompt_tokens: int, seconds: float, gen: Any, config: GenerationConfig
) -> Completion:
    """Cut the generated row where the completion ended and decode it."""
    eos_ids = set(gen.eos_token_id)
    end = next((k + 1 for k, t in enumerate(ids) if t in eos_ids), None)
    finish = "stop" if end is not None else "length"
    ids = ids[:end] if end is not None else ids
    text = tokenizer.decode(ids, skip_special_tokens=True)
    cut = _first_stop(text, config.stop_strings)
    if cut is not None:
        # generation halts on the token that completes a stop string; find it so the count is exact
        ids = ids[: _first_prefix_with_stop(tokenizer, ids, config.stop_strings)]
        finish = "stop"
        text = text[: cut[1] if config.keep_stop_string else cut[0]]
    return Completion(text, prompt_tokens, len(ids), seconds, tuple(ids), finish)


def _first_stop(text: str, stops: Sequence[str]) -> tuple[int, int] | None:
    """(start, end) of the earliest stop string in ``text``, or None."""
    found = [(text.find(s), text.find(s) + len(s)) for s in stops if s in text]
    return min(found) if found else None


def _first_prefix_with_stop(tokenizer: Any, ids: list[int], stops: Sequence[str]) -> int:
    """Smallest n whose decoded first n tokens contain a stop string (binary search: this is monotone)."""
    lo, hi = 1, len(ids)
    while lo < hi:
        mid = (lo + hi) // 2
        if _first_stop(tokenizer.decode(ids[:mid], skip_special_tokens=True), stops) is None:
            lo = mid + 1
        else:
            hi = mid
    return lo


def _generate_vllm(
    loaded: LoadedModel, prompts: list[str], config: GenerationConfig, constraint: DecodingConstraint | None
) -> list[Completion]:  # pragma: no cover - vLLM needs a CUDA GPU, which CI does not have
    from vllm import SamplingParams
    from vllm.lora.request import LoRARequest

    options = dict(
        max_tokens=config.max_new_tokens,
        temperature=config.temperature if config.do_sample else 0.0,
        top_p=config.top_p if config.do_sample else 1.0,
        top_k=config.top_k if config.do_sample and config.top_k else -1,
        seed=config.seed,
        stop=list(config.stop_strings) or None,
        include_stop_str_in_output=config.keep_stop_string,
    )
    params = SamplingParams(**options)
    if constraint is not None:  # guided decoding: one regex per prompt
        params = [SamplingParams(**options, **_guided(constraint.regex(i))) for i in range(len(prompts))]
    adapter = loaded.spec.adapter_path
    lora = LoRARequest("adapter", 1, adapter) if adapter else None
    started = time.perf_counter()
    # token ids, not strings: vLLM would add a second BOS to templates that already start with one
    tokens = [
        {"prompt_token_ids": ids} for ids in loaded.tokenizer(prompts, add_special_tokens=False)["input_ids"]
    ]
    use_tqdm = config.show_progress and len(prompts) > config.batch_size
    outputs = loaded.model.generate(tokens, params, lora_request=lora, use_tqdm=use_tqdm)
    seconds = (time.perf_counter() - started) / len(prompts)
    return [
        Completion(
            out.outputs[0].text,
            len(out.prompt_token_ids),
            len(out.outputs[0].token_ids),
            seconds,
            tuple(out.outputs[0].token_ids),
            "length" if out.outputs[0].finish_reason == "length" else "stop",
        )
        for out in outputs
    ]


def _guided(regex: str) -> dict[str, Any]:  # pragma: no cover - vLLM needs a CUDA GPU, which CI does not have
    """SamplingParams arguments for guided decoding to ``regex`` (newer vLLM calls it structured outputs)."""
    try:
        from vllm.sampling_params import StructuredOutputsParams
    except ImportError:
        from vllm.sampling_params import GuidedDecodingParams

        return {"guided_decoding": GuidedDecodingParams(regex=regex)}
    return {"structured_outputs": StructuredOutputsParams(regex=regex)}
