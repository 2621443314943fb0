"""The trainer configs build on every stack the project claims, and pass only fields the oldest one knows.

Runs in both CI jobs: on the CPU stack (``scripts/test.sh``: the newest transformers and TRL) and on the
Kaggle stack (``scripts/ci_kaggle_stack.sh``: the versions unsloth pins, ``kaggle/constraints-kaggle.txt``).
The Kaggle notebooks once failed at their first training cell because the configs passed
``activation_checkpointing``, a field transformers 5.17 does not have; the field-list test catches such a
field on the CPU stack too, from a recorded list of the oldest supported versions' fields.
"""

from __future__ import annotations

import dataclasses
import json
import re
from importlib.metadata import version
from pathlib import Path

import pytest
import trl

from training.grpo import trainer as grpo
from training.profiles import PROFILES, cpu_evaluate_estimate
from training.sft import trainer as sft

REPO = Path(__file__).resolve().parents[2]
# SFTConfig / GRPOConfig field names of the oldest supported stack, recorded under it with
# `python tests/training/test_configs.py --record` (in .venv-kaggle, which scripts/ci_kaggle_stack.sh builds)
OLDEST_FIELDS = Path(__file__).with_name("config_fields_oldest.json")

# (profile, on_gpu) pairs a CPU machine can build: bf16 "on a GPU" (a100) is refused by transformers
# without a GPU, so the a100 profile is built the way the CPU path passes it (use_cpu) as well.
BUILDABLE = [("cpu", False), ("t4", False), ("t4", True), ("a100", False)]


def _sft(tmp_path: Path, name: str, on_gpu: bool):
    return sft.sft_config(sft.SFTRunConfig(output_dir=str(tmp_path)), PROFILES[name], on_gpu, has_eval=True)


def _grpo(tmp_path: Path, name: str, on_gpu: bool):
    config = grpo.GRPORunConfig(output_dir=str(tmp_path))
    return grpo.grpo_config(config, PROFILES[name], grpo.GRPO_SIZES[name], on_gpu)


@pytest.mark.parametrize("name, on_gpu", BUILDABLE)
def test_every_profile_builds_its_sft_and_grpo_config(tmp_path, name, on_gpu):
    profile = PROFILES[name]
    for built in (_sft(tmp_path, name, on_gpu), _grpo(tmp_path, name, on_gpu)):
        assert built.gradient_checkpointing is profile.gradient_checkpointing  # not TRL's default (on)
        assert built.fp16 is (profile.dtype == "float16")
    sft_args = _sft(tmp_path, name, on_gpu)
    assert sft_args.prediction_loss_only  # the val pass gathers no logits
    grpo_args = _grpo(tmp_path, name, on_gpu)
    assert grpo_args.vllm_max_model_length == profile.max_length + grpo.GRPO_SIZES[name].max_completion_length
    assert grpo_args.vllm_gpu_memory_utilization == grpo.GRPORunConfig().vllm_gpu_memory_utilization


def _passed_kwargs(monkeypatch, tmp_path: Path) -> dict[str, set[str]]:
    """The keyword arguments the builders pass to SFTConfig and GRPOConfig, over every profile."""
    passed: dict[str, set[str]] = {"SFTConfig": set(), "GRPOConfig": set()}
    for cls_name in passed:
        real = getattr(trl, cls_name)

        def spy(*args, _real=real, _name=cls_name, **kwargs):
            passed[_name] |= set(kwargs)
            return _real(*args, **kwargs)

        monkeypatch.setattr(trl, cls_name, spy)
    for name, on_gpu in BUILDABLE:
        _sft(tmp_path, name, on_gpu)
        _grpo(tmp_path, name, on_gpu)
    return passed


def test_every_field_passed_exists_in_the_oldest_supported_versions(monkeypatch, tmp_path):
    recorded = json.loads(OLDEST_FIELDS.read_text())
    for cls_name, names in _passed_kwargs(monkeypatch, tmp_path).items():
        unknown = names - set(recorded[cls_name])
        assert not unknown, (
            f"{cls_name} gets {sorted(unknown)}, which transformers {recorded['versions']['transformers']} / "
            f"trl {recorded['versions']['trl']} do not have"
        )


def test_the_recorded_fields_are_of_pyprojects_lower_bounds():
    """The record is of the versions pyproject.toml names as its oldest (and the notebooks pin)."""
    recorded = json.loads(OLDEST_FIELDS.read_text())["versions"]
    pyproject = (REPO / "pyproject.toml").read_text()
    pins = (REPO / "kaggle" / "constraints-kaggle.txt").read_text()
    for package in ("transformers", "trl", "datasets", "peft", "accelerate"):
        lower = re.search(rf'"{package}>=([0-9.]+)', pyproject)
        assert lower and recorded[package] == lower.group(1), package
        assert f"{package}=={recorded[package]}\n" in pins, package


def test_the_record_matches_the_installed_fields_when_the_oldest_stack_is_installed():
    recorded = json.loads(OLDEST_FIELDS.read_text())
    if any(version(p) != v for p, v in recorded["versions"].items()):
        pytest.skip("not the oldest stack (scripts/ci_kaggle_stack.sh runs this test there)")
    assert current_fields() == {k: recorded[k] for k in ("SFTConfig", "GRPOConfig")}


def test_next_command_estimate_scales_the_measured_seconds_per_decision():
    # 50 easy episodes = 1,000 decisions; 1.37 s (adapter) + 1.94 s (zero-shot) each: 55 min
    assert cpu_evaluate_estimate("easy", 50, zero_shot=1, adapters=1).startswith("about 55 min")
    assert cpu_evaluate_estimate("hard", 50, zero_shot=0, adapters=1).startswith("about 46 min")  # 2,000


def current_fields() -> dict[str, list[str]]:
    return {
        name: sorted(f.name for f in dataclasses.fields(getattr(trl, name)))
        for name in ("SFTConfig", "GRPOConfig")
    }


if __name__ == "__main__":  # record the field lists of the installed (oldest supported) stack
    import sys

    assert sys.argv[1:] == ["--record"], "usage: python tests/training/test_configs.py --record"
    packages = ("transformers", "trl", "datasets", "peft", "accelerate")
    record = {"versions": {p: version(p) for p in packages}, **current_fields()}
    OLDEST_FIELDS.write_text(json.dumps(record, indent=1) + "\n")
