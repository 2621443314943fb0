"""Hardware profiles: batch size, sequence length, precision and LoRA size that fit a machine.

A profile is a frozen dataclass, so SFT and GRPO read the same numbers and a run's record names exactly what
it trained with. ``--profile auto`` picks one from :func:`llm_agent.models.detect_hardware`: ``cpu`` without a
CUDA GPU, ``a100`` on GPUs with bfloat16 (Ampere and newer), ``t4`` on older GPUs (float16 only).

=======  =====  ======  ========  ============  =========  ====  =========  ================
profile  batch  accum.  max len   lr            LoRA r/α   dtype grad ckpt  typical machine
=======  =====  ======  ========  ============  =========  ====  =========  ================
cpu      2      4       1024      5e-4          16 / 32    fp32* off        2-core laptop/CI
t4       4      4       2560      2e-4          64 / 128   fp16  on         Kaggle/Colab T4
a100     16     1       4096      2e-4          64 / 128   bf16  on         A100/H100
=======  =====  ======  ========  ============  =========  ====  =========  ================

* float32 weights; compute in bf16 autocast where the CPU has AMX or AVX512-BF16 (about 2x faster).

Why these numbers: the hard task's prompt is about 1,700-2,000 SmolLM2 tokens, so the cpu profile's 1024
tokens fit the easy (~450) and medium (~900) examples only; t4 fits every task. The tiny CPU adapter learns
faster with a larger learning rate; r=64 is the usual GPU default (and what GRPO continues from).

Memory on the CPU (peak RSS of ``train-sft --task easy --max-steps 3``, SmolLM2-135M, bf16 autocast):
6.4 GiB with 4 x 2 sequences and TRL's default LM-head tiles, 3.7 GiB with 2 x 4 and 256-token tiles
(phases: bench/bench_sft_memory.py). The frozen fp32 model is 0.5 GB; the rest is the activations kept for
the backward pass (about 0.5 GB per sequence of 470 tokens), memory the allocator keeps after freeing it,
and, with TRL's default tiles, the LM head's tiles of up to 4096 tokens x 32768 logits, which its torch
fallback (no Triton on a CPU) copies about eight times in float32: 2 GB at the peak. Both changes leave
the training loss as it was (the same 8 sequences a step, the same per-token arithmetic).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from llm_agent.models import Hardware

# The attention and MLP projections of Llama/Qwen/Mistral-style blocks (SmolLM2 is a Llama).
LORA_TARGET_MODULES = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@dataclass(frozen=True)
class TrainingProfile:
    """Training settings sized for one kind of machine.

    Attributes:
        name: ``cpu``, ``t4`` or ``a100``.
        batch_size: sequences per device per forward pass.
        gradient_accumulation_steps: forward passes per optimizer step (effective batch = product of both).
        max_length: longest tokenised example (prompt + completion); longer ones are dropped, not truncated,
            because a cut completion would teach answers that never end.
        learning_rate: peak learning rate of the LoRA parameters (cosine decay after a short warm-up).
        lora_r: LoRA rank.
        lora_alpha: LoRA scaling numerator (the update is scaled by alpha / r).
        lora_dropout: dropout on the LoRA input.
        dtype: compute precision, ``float32``, ``float16`` (T4: no bf16) or ``bfloat16``.
        gradient_checkpointing: recompute activations in the backward pass to save memory (slower).
        load_in_4bit: QLoRA: quantise the frozen base to 4-bit NF4 with bitsandbytes (GPU only).
        warmup_ratio: share of the steps spent warming the learning rate up.
        target_modules: the linear layers that get LoRA adapters.
        cpu_bf16_autocast: on a CPU with native bf16 matrix instructions (AMX or AVX512-BF16), compute in
            bf16 autocast over the float32 weights: about 2x faster for SmolLM2-135M LoRA on 2 cores (a
            forward and backward pass of 4 x 470 tokens: 8.4-9.9 s in fp32, 4.8-6.0 s in bf16).
        lm_head_token_chunk: tokens per tile of TRL's fused LM head (its ``TOKEN_CHUNK_SIZE``, 4096 by
            default), or None to leave TRL's. Each tile holds ``tokens x 32768`` logits, copied about eight
            times in float32 by the torch fallback a CPU runs: 2 GB at 4096 tokens, 0.13 GB at 256. Per-token
            results do not depend on it (bit-identical loss) and small tiles are no slower on a CPU.
    """

    name: str
    batch_size: int
    gradient_accumulation_steps: int
    max_length: int
    learning_rate: float
    lora_r: int
    lora_alpha: int
    lora_dropout: float = 0.05
    dtype: str = "float32"
    gradient_checkpointing: bool = False
    load_in_4bit: bool = False
    warmup_ratio: float = 0.05
    target_modules: tuple[str, ...] = field(default=LORA_TARGET_MODULES)
    cpu_bf16_autocast: bool = False
    lm_head_token_chunk: int | None = None

    @property
    def effective_batch_size(self) -> int:
        return self.batch_size * self.gradient_accumulation_steps

    def bf16_autocast(self, on_gpu: bool) -> bool:
        """Whether the trainer should compute in bf16 (the ``bf16`` flag of the TRL configs)."""
        if self.dtype == "bfloat16":
            return True
        return not on_gpu and self.cpu_bf16_autocast and cpu_has_fast_bf16()

    def with_overrides(self, **overrides: Any) -> TrainingProfile:
        """A copy with these fields replaced; ``None`` values (options the user did not set) are ignored."""
        return replace(self, **{k: v for k, v in overrides.items() if v is not None})

    def as_params(self) -> dict[str, Any]:
        """Flat ``profile_*`` params for MLflow and meta.json."""
        return {f"profile_{k}": ",".join(v) if isinstance(v, tuple) else v for k, v in vars(self).items()}


PROFILES: dict[str, TrainingProfile] = {
    profile.name: profile
    for profile in (
        # no LoRA dropout on the CPU: drawing its masks took 30% of a SmolLM2 step there (cProfile)
        TrainingProfile(
            "cpu",
            2,  # x 4 accumulated, not 4 x 2: the same 8 sequences a step at half the activation memory
            4,
            1024,
            5e-4,
            lora_r=16,
            lora_alpha=32,
            lora_dropout=0.0,
            cpu_bf16_autocast=True,
            lm_head_token_chunk=256,
        ),
        TrainingProfile(
            "t4", 4, 4, 2560, 2e-4, lora_r=64, lora_alpha=128, dtype="float16", gradient_checkpointing=True
        ),
        TrainingProfile(
            "a100",
            16,
            1,
            4096,
            2e-4,
            lora_r=64,
            lora_alpha=128,
            dtype="bfloat16",
            gradient_checkpointing=True,
        ),
    )
}


# Measured on this project's 2-core CPU machine (docs/results.md, "Zero-shot against SFT"): smollm2-135m on
# 1,000 easy-task val decisions with --think and 128 new tokens, 16 prompts a batch: 1,936 s zero-shot (every
# answer runs to the budget), 1,371 s with the SFT adapter (answers of about 45 tokens).
CPU_SECONDS_PER_DECISION = {"zero-shot": 1.94, "adapter": 1.37}


def cpu_evaluate_estimate(task: str, episodes: int, zero_shot: int, adapters: int) -> str:
    """How long an ``evaluate`` of SmolLM2 agents takes on the CPU, for the next-command hints.

    ``zero_shot`` and ``adapters`` count the LLM agents of each kind in the command (rule agents take
    seconds); the figure scales the measured seconds per decision by the episodes' decisions.
    """
    from market_env.versions import get_version

    decisions = episodes * get_version().task(task).n_days
    seconds = decisions * (
        zero_shot * CPU_SECONDS_PER_DECISION["zero-shot"] + adapters * CPU_SECONDS_PER_DECISION["adapter"]
    )
    low, high = CPU_SECONDS_PER_DECISION["adapter"], CPU_SECONDS_PER_DECISION["zero-shot"]
    return (
        f"about {seconds / 60:.0f} min on 2 CPU cores for smollm2-135m ({decisions:,} decisions per LLM "
        f"agent at the measured {low:g}-{high:g} s each; a GPU takes a small fraction of that)"
    )


def quiet_checkpointing_alias() -> None:
    """Silence transformers' FutureWarning about the name ``gradient_checkpointing``.

    The configs pass ``gradient_checkpointing`` because the Kaggle stack (transformers<=5.17, pinned by
    unsloth) has no ``activation_checkpointing``; transformers 5.2x renamed it and still reads the old name as
    an alias, warning on every run. The warning says nothing a user can act on, so it is filtered.
    """
    import warnings

    warnings.filterwarnings("ignore", message="`gradient_checkpointing", category=FutureWarning)


def set_lm_head_tiles(profile: TrainingProfile) -> None:
    """Give TRL's fused LM head the profile's tile height (``lm_head_token_chunk``; see its docs).

    TRL reads the module constant ``TOKEN_CHUNK_SIZE`` at every call and offers no option for it; a TRL
    without that kernel (the older Kaggle stack) computes full logits instead and is left as it is.
    """
    if profile.lm_head_token_chunk is None:
        return
    try:
        from trl.kernels import chunked_logprob
    except ImportError:  # pragma: no cover - TRL before its fused LM head
        return
    if hasattr(chunked_logprob, "TOKEN_CHUNK_SIZE"):
        chunked_logprob.TOKEN_CHUNK_SIZE = profile.lm_head_token_chunk


def cpu_has_fast_bf16() -> bool:
    """True where the CPU multiplies bf16 natively (Intel AMX or AVX512-BF16); elsewhere bf16 is emulated
    and slower than float32."""
    import torch

    return bool(torch.cpu._is_amx_tile_supported() or torch.cpu._is_avx512_bf16_supported())


def profile_for(hardware: Hardware) -> TrainingProfile:
    """The profile that fits the machine ``detect_hardware()`` describes."""
    if hardware.device == "cpu":
        return PROFILES["cpu"]
    return PROFILES["a100"] if hardware.bf16_supported else PROFILES["t4"]


def get_profile(name: str, hardware: Hardware | None = None) -> TrainingProfile:
    """Resolve ``auto`` (needs ``hardware``, else detects it) or a profile name.

    Raises:
        ValueError: an unknown name; the message lists the valid ones.
    """
    if name == "auto":
        if hardware is None:
            from llm_agent.models import detect_hardware

            hardware = detect_hardware()
        return profile_for(hardware)
    if name not in PROFILES:
        raise ValueError(f"unknown profile {name!r}; valid profiles: auto, {', '.join(PROFILES)}")
    return PROFILES[name]
