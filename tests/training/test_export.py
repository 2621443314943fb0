"""Shipping an adapter: fp16 weights half the size, the same model behaviour, provenance in meta.json, and
clear refusals. A real LoRA on the real SmolLM2 is saved, exported and loaded back through the loader."""

from __future__ import annotations

import json

import pytest
import torch
from peft import LoraConfig, get_peft_model
from safetensors.torch import load_file

from llm_agent.models import load_model
from training.export import AdapterExportError, export_adapter, main


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A LoRA whose B matrices are random (init_lora_weights=False), so it changes the model's logits."""
    torch.manual_seed(0)
    loaded = load_model("smollm2-135m")
    config = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    model = get_peft_model(loaded.model, config)
    directory = tmp_path_factory.mktemp("adapter") / "final"
    model.save_pretrained(str(directory))
    (directory / "meta.json").write_text(json.dumps({"step": 60, "task": "easy"}))
    (directory / "tokenizer.json").write_text("{}")  # training writes a tokenizer copy; shipping drops it
    return directory


def _logits(name: str, text: str = "BUY SYNA 1") -> torch.Tensor:
    loaded = load_model(name)
    ids = loaded.tokenizer(text, return_tensors="pt").input_ids
    with torch.no_grad():
        return loaded.model(ids).logits[0].float()


def test_the_shipped_adapter_is_fp16_half_the_size_and_behaves_like_the_trained_one(trained, tmp_path):
    target = tmp_path / "shipped"
    meta = export_adapter(trained, target)
    assert sorted(p.name for p in target.iterdir()) == ["adapter_config.json", "adapter_model.safetensors",
                                                        "meta.json"]  # fmt: skip
    weights = load_file(str(target / "adapter_model.safetensors"))
    assert weights and all(w.dtype == torch.float16 for w in weights.values())
    size, source_size = ((d / "adapter_model.safetensors").stat().st_size for d in (target, trained))
    assert size < 0.55 * source_size
    shipped, original = _logits(f"llm:smollm2-135m@{target}"), _logits(f"llm:smollm2-135m@{trained}")
    base = _logits("smollm2-135m")
    assert (original - base).abs().max() > 0.1  # the adapter matters ...
    assert (shipped - original).abs().max() < 0.05  # ... and survives the rounding
    assert meta["step"] == 60 and meta["export"]["dtype"] == "float16"
    assert json.loads((target / "meta.json").read_text())["export"]["parameters"] == sum(
        w.numel() for w in weights.values()
    )


def test_bad_sources_and_occupied_targets_are_refused_with_the_reason(trained, tmp_path, capsys):
    with pytest.raises(AdapterExportError, match=r"adapter_model\.safetensors, adapter_config\.json missing"):
        export_adapter(tmp_path, tmp_path / "out")
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "keep.txt").write_text("mine")
    with pytest.raises(SystemExit) as exit_:
        main([str(trained), str(tmp_path / "taken")])
    assert exit_.value.code == 2 and "not empty" in capsys.readouterr().err
    assert (tmp_path / "taken" / "keep.txt").read_text() == "mine"  # nothing lost
    assert main([str(trained), str(tmp_path / "new")]) == 0
    assert "MB" in capsys.readouterr().out
