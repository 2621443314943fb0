"""scripts/results_table.py, which prints the published rows: agents of separate `evaluate` runs pair when
they played the same episodes (and only then), with the same interval as one run's own comparison."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest

from eval.cli import main as evaluate
from eval.stats import paired_difference

SCRIPT = Path(__file__).parents[2] / "scripts" / "results_table.py"


def _table_module():
    spec = importlib.util.spec_from_file_location("results_table", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _evaluate(tmp_path: Path, name: str, agents: list[str], seed: int) -> Path:
    out = tmp_path / f"{name}.json"
    argv = ["--agent", *agents, "--task", "easy", "--split", "val", "--episodes", "12", "--seed", str(seed)]
    argv += ["--json", str(out), "--no-mlflow", "--no-plots", "--quiet", "--out-dir", str(tmp_path / "runs")]
    assert evaluate(argv) == 0
    return out


def _scores(path: Path, agent: str) -> np.ndarray:
    result = next(r for r in json.loads(path.read_text())["results"] if r["agent"] == agent)
    return np.array([row["score"] for row in result["per_episode"]])


def test_agents_of_separate_runs_pair_only_on_the_same_episodes(tmp_path, monkeypatch, capsys):
    rules = _evaluate(tmp_path, "rules", ["momentum"], seed=0)
    same = _evaluate(tmp_path, "same", ["rsi"], seed=0)
    other = _evaluate(tmp_path, "other", ["rsi"], seed=50)  # other episodes: must not pair
    module = _table_module()
    monkeypatch.setattr(sys, "argv", ["results_table.py", str(rules), str(same), "--vs", "momentum"])
    module.main()
    lines = capsys.readouterr().out.splitlines()
    rsi_row = next(line for line in lines if "| rsi |" in line)
    starts = np.array([r["start_day"] for r in json.loads(rules.read_text())["results"][0]["per_episode"]])
    expected = paired_difference(_scores(same, "rsi"), _scores(rules, "momentum"), starts=starts, window=20)
    assert rsi_row.endswith(f" {module.interval(expected.as_dict())} |")
    monkeypatch.setattr(sys, "argv", ["results_table.py", str(rules), str(other), "--vs", "momentum"])
    module.main()
    assert next(line for line in capsys.readouterr().out.splitlines() if "| rsi |" in line).endswith(" - |")
    monkeypatch.setattr(sys, "argv", ["results_table.py", str(rules), "--vs", "ppo:none"])
    with pytest.raises(SystemExit):
        module.main()
    assert "'ppo:none' is in none of the files" in capsys.readouterr().err
