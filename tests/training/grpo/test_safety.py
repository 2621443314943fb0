"""train-grpo's guards: no ``best/`` from a policy that never wrote a valid action, a warning when a short run
had no learning signal, vLLM with a 4-bit base refused, and the next command with its duration (issue 17
finding 4, issue 20 item 7). The trainer itself is exercised by tests/training/grpo/test_trainer.py."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import pytest

from training.grpo import trainer as grpo
from training.grpo.monitor import CollapseMonitor, ValSelector, all_invalid
from training.profiles import PROFILES


def _entry(step: int, score: float, invalid_rate: float) -> dict:
    return {"step": step, "score": score, "ci_low": score, "ci_high": score, "invalid_rate": invalid_rate,
            "total_return": 0.0}  # fmt: skip


def _selector(tmp_path: Path, resume: bool = False) -> ValSelector:
    config = SimpleNamespace(resume=resume, eval_every=0)
    return ValSelector(None, config, SimpleNamespace(eval_episodes=4), tmp_path, {})


def test_an_all_invalid_policy_is_never_saved_as_best(tmp_path):
    selector = _selector(tmp_path)
    entry = _entry(5, 0.438, invalid_rate=1.0)  # hold's score, earned by never answering
    selector.history.append(entry)  # what ValSelector.evaluate does before recording
    selector._record(None, entry)  # a save would fail: there is no model
    assert selector.best is None and not (tmp_path / grpo.BEST_DIR).exists()
    assert json.loads((tmp_path / grpo.VAL_HISTORY).read_text())[0]["step"] == 5  # still in the history


def test_a_resumed_run_does_not_pick_an_all_invalid_entry_as_its_best(tmp_path):
    history = [_entry(5, 0.6, 1.0), _entry(10, 0.45, 0.2)]
    (tmp_path / grpo.VAL_HISTORY).write_text(json.dumps(history))
    assert _selector(tmp_path, resume=True).best["step"] == 10
    assert all_invalid(history[0]) and not all_invalid(history[1])


def _log(monitor: CollapseMonitor, fracs: list[float]) -> None:
    for step, frac in enumerate(fracs, start=1):
        monitor.on_log(None, SimpleNamespace(global_step=step), None, {"frac_reward_zero_std": frac})
    monitor.on_train_end(None, SimpleNamespace(global_step=len(fracs)), None)


@pytest.mark.parametrize(
    "fracs, warned",
    [
        ([1.0], [1]),  # a 1-step run without signal: warned at its end (the streak rule needs 3 steps)
        ([1.0, 1.0], [2]),
        ([1.0, 0.0], []),  # the last step had signal
        ([1.0, 1.0, 1.0, 1.0], [3]),  # the streak rule warns, once
    ],
)
def test_short_runs_without_learning_signal_are_warned_about(fracs, warned):
    monitor = CollapseMonitor()
    _log(monitor, fracs)
    assert monitor.warnings == warned


def test_vllm_with_a_4bit_base_is_refused_with_the_reason():
    config = grpo.GRPORunConfig(use_vllm=True, load_in_4bit=True)
    with pytest.raises(grpo.GRPOConfigError, match=r"trl#4973"):
        grpo.load_policy(config, PROFILES["t4"].with_overrides(load_in_4bit=True))


def test_next_command_evaluates_best_or_final_and_says_how_long(tmp_path):
    config = grpo.GRPORunConfig(task="easy", output_dir=str(tmp_path))
    result = grpo.GRPOResult(tmp_path, "base", 3, None, [], tmp_path / "curve.png", 1.0)
    hint = grpo.next_command(config, result)
    assert f"llm:smollm2-135m@{tmp_path / 'final'}" in hint and "--think" in hint and "about 23 min" in hint
    best = grpo.next_command(config, grpo.GRPOResult(tmp_path, "base", 3, {"step": 3}, [], tmp_path, 1.0))
    assert f"@{tmp_path / 'best'} " in best and "--data" not in best
    edge = grpo.next_command(replace(config, data="synthetic:edge", think=False), result)
    assert "--data synthetic:edge --task easy" in edge and "--think" not in edge
