"""The evaluate command end to end: table, JSON, MLflow runs, compare across env versions."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import mlflow
import pandas as pd
import pytest

from data import load_prices
from eval import cli


def test_evaluate_rsi_hard_writes_json_and_an_mlflow_run(tmp_path, capsys):
    out = tmp_path / "out.json"
    code = cli.main(["--agent", "rsi", "--task", "hard", "--episodes", "20", "--json", str(out),
                     "--out-dir", str(tmp_path / "plots"), "--quiet"])  # fmt: skip
    assert code == 0
    printed = capsys.readouterr().out
    assert "hard task, test split, 20 paired episodes" in printed and "rsi" in printed
    result = json.loads(out.read_text())["results"][0]
    assert result["agent"] == "rsi" and result["episodes"] == 20 and len(result["per_episode"]) == 20
    assert set(result["summary"]) >= {
        "score",
        "total_return",
        "sharpe",
        "max_drawdown",
        "activity",
        "invalid_rate",
    }
    assert 0 <= result["summary"]["score"]["ci_low"] <= result["summary"]["score"]["mean"] <= 1
    run = mlflow.get_run(result["mlflow_run_id"])
    assert run.data.params["env_version"] == "2.0.0" and run.data.params["task_version"] == "1.0.0"
    assert run.data.params["data_sha256"] == load_prices()[1]
    assert {"score", "score_ci_low", "score_vs_hold"} <= set(run.data.metrics)
    artifacts = {a.path for a in mlflow.MlflowClient().list_artifacts(run.info.run_id)}
    assert {"hard_equity.png", "hard_scores.png", "hard_rsi_env2.0.0_episodes.csv"} <= artifacts


def test_agents_with_the_same_seed_see_identical_episodes_and_versions_compare(tmp_path, capsys):
    out = tmp_path / "out.json"
    args = ["--agent", "hold", "buy-and-hold", "--task", "easy", "--episodes", "8", "--seed", "3", "--quiet",
            "--env-version", "1.0.0", "2.0.0", "--json", str(out), "--out-dir", str(tmp_path)]  # fmt: skip
    assert cli.main(args) == 0
    results = json.loads(out.read_text())["results"]
    assert [(r["agent"], r["env_version"]) for r in results] == [
        ("hold", "1.0.0"), ("hold", "2.0.0"), ("buy-and-hold", "1.0.0"), ("buy-and-hold", "2.0.0")
    ]  # fmt: skip
    episodes = {r["agent"]: [(e["start_date"], e["symbols"]) for e in r["per_episode"]] for r in results}
    assert episodes["hold"] == episodes["buy-and-hold"]
    hold_v1 = results[0]["summary"]["score"]
    assert hold_v1["mean"] == hold_v1["ci_low"] == hold_v1["ci_high"] == 0.3
    capsys.readouterr()
    assert cli.main(["--compare"]) == 0
    table = capsys.readouterr().out
    assert "easy env 1.0.0" in table and "easy env 2.0.0" in table
    assert "buy-and-hold" in table and "0.300" in table


def test_compare_refuses_runs_on_different_data(tmp_path, capsys):
    prices, _ = load_prices()
    mine = tmp_path / "mine.csv"
    prices[prices["symbol"].isin(["TCS", "INFY", "ITC"])].to_csv(mine, index=False)
    common = ["--agent", "hold", "--task", "easy", "--episodes", "2", "--out-dir", str(tmp_path), "--quiet"]
    assert cli.main(common) == 0
    assert cli.main([*common, "--data", str(mine)]) == 0
    capsys.readouterr()
    assert cli.main(["--compare"]) == 2
    assert "refusing to compare runs on different data sets" in capsys.readouterr().out


def test_compare_shows_one_split_at_a_time(tmp_path, capsys):
    common = ["--task", "easy", "--episodes", "2", "--out-dir", str(tmp_path), "--quiet", "--no-plots"]
    assert cli.main(["--agent", "hold", "--split", "val", *common]) == 0
    assert cli.main(["--agent", "rsi", "--split", "test", *common]) == 0
    capsys.readouterr()
    assert cli.main(["--compare"]) == 0  # the default split: test
    out = capsys.readouterr().out
    assert "test split" in out and "rsi" in out and "hold" not in out
    assert cli.main(["--compare", "--split", "val"]) == 0
    out = capsys.readouterr().out
    assert "val split" in out and "hold" in out and "rsi" not in out
    assert cli.main(["--compare", "--split", "train"]) == 1
    assert "no evaluation runs on the train split" in capsys.readouterr().out


def test_compare_without_runs_says_what_to_do(capsys):
    assert cli.main(["--compare"]) == 1
    assert "evaluate --agent" in capsys.readouterr().out


@pytest.mark.parametrize(
    "args, message",
    [
        (["--agent", "momentum"], "unknown agent 'momentum'"),
        (["--agent", "rsi", "--data", "/nonexistent.csv"], "does not exist"),
    ],
)
def test_bad_requests_exit_2_with_a_clear_message(args, message, capsys, tmp_path):
    assert cli.main([*args, "--no-mlflow", "--out-dir", str(tmp_path), "--quiet"]) == 2
    assert message in capsys.readouterr().out


def test_missing_agent_is_a_usage_error():
    with pytest.raises(SystemExit) as exit_info:
        cli.main([])
    assert exit_info.value.code == 2


def test_the_console_script_runs_from_a_fresh_process(tmp_path):
    out = tmp_path / "o.json"
    command = [sys.executable, "-m", "eval.cli", "--agent", "buy-and-hold", "--task", "medium",
               "--episodes", "3", "--no-mlflow", "--json", str(out), "--out-dir", str(tmp_path)]  # fmt: skip
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=120, env=os.environ | {"COLUMNS": "200"}
    )
    assert done.returncode == 0, done.stderr
    rows = pd.DataFrame(json.loads(out.read_text())["results"][0]["per_episode"])
    assert len(rows) == 3 and (tmp_path / "medium_scores.png").exists()
