"""The evaluate command end to end: table, JSON, MLflow runs, compare across env versions."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import mlflow
import pandas as pd
import pytest
from rich.console import Console

from data import load_prices
from eval import cli, harness, stats, tracking
from market_env.versions import ENV_VERSION


def test_evaluate_rsi_hard_writes_json_and_an_mlflow_run(tmp_path, capsys):
    out = tmp_path / "out.json"
    code = cli.main(["--agent", "rsi", "--task", "hard", "--episodes", "20", "--json", str(out),
                     "--out-dir", str(tmp_path / "plots"), "--quiet"])  # fmt: skip
    assert code == 0
    printed = capsys.readouterr().out
    assert "hard task, test split, n = 20 paired episodes, n_eff = " in printed and "rsi" in printed
    results = json.loads(out.read_text())["results"]
    assert [r["agent"] for r in results] == ["hold", "buy-and-hold", "random", "rsi"]  # baselines added
    result = results[-1]
    assert result["n"] == 20 and 1 <= result["n_eff"] < 20 and result["window_days"] == 40
    assert set(result["vs_buy-and-hold"]["score"]) == {"mean", "ci_low", "ci_high", "n", "n_eff"}
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
    assert run.data.params["env_version"] == ENV_VERSION and run.data.params["task_version"] == "1.0.0"
    assert run.data.params["data"] == "embedded" and run.data.metrics["n_episodes"] == 20
    assert run.data.params["data_sha256"] == load_prices()[1]
    assert {"score", "score_ci_low", "score_vs_hold", "score_vs_buy_and_hold", "n_eff"} <= set(
        run.data.metrics
    )
    artifacts = {a.path for a in mlflow.MlflowClient().list_artifacts(run.info.run_id)}
    assert {"hard_equity.png", "hard_scores.png", f"hard_rsi_env{ENV_VERSION}_episodes.csv"} <= artifacts


def test_agents_with_the_same_seed_see_identical_episodes_and_versions_compare(tmp_path, capsys):
    out = tmp_path / "out.json"
    args = ["--agent", "hold", "buy-and-hold", "--task", "easy", "--episodes", "8", "--seed", "3", "--quiet",
            "--env-version", "1.0.0", "2.0.0", "--json", str(out), "--out-dir", str(tmp_path)]  # fmt: skip
    assert cli.main(args) == 0
    results = json.loads(out.read_text())["results"]
    assert [(r["agent"], r["env_version"]) for r in results] == [
        ("hold", "1.0.0"), ("hold", "2.0.0"), ("buy-and-hold", "1.0.0"), ("buy-and-hold", "2.0.0"),
        ("random", "1.0.0"), ("random", "2.0.0"),
    ]  # fmt: skip
    episodes = {r["agent"]: [(e["start_date"], e["symbols"]) for e in r["per_episode"]] for r in results}
    assert episodes["hold"] == episodes["buy-and-hold"]
    hold_v1 = results[0]["summary"]["score"]
    assert hold_v1["mean"] == hold_v1["ci_low"] == hold_v1["ci_high"] == 0.3
    capsys.readouterr()
    assert cli.main(["--compare"]) == 0
    table = capsys.readouterr().out
    assert "easy task" in table and "env 1.0.0" in table and "env 2.0.0" in table
    assert "buy-and-hold" in table and "0.300" in table


def test_compare_refuses_runs_on_different_data(tmp_path, capsys):
    prices, _ = load_prices()
    mine = tmp_path / "mine.csv"
    prices[prices["symbol"].isin(["TCS", "INFY", "ITC"])].to_csv(mine, index=False)
    common = ["--agent", "hold", "--task", "easy", "--episodes", "2", "--out-dir", str(tmp_path), "--quiet",
              "--no-baselines"]  # fmt: skip
    assert cli.main(common) == 0
    assert cli.main([*common, "--data", str(mine)]) == 0
    capsys.readouterr()
    assert cli.main(["--compare"]) == 2
    assert "refusing to compare runs on different data sets" in capsys.readouterr().out


def test_compare_shows_one_split_at_a_time(tmp_path, capsys):
    common = ["--task", "easy", "--episodes", "2", "--out-dir", str(tmp_path), "--quiet", "--no-plots",
              "--no-baselines"]  # fmt: skip
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
        (["--agent", "trend-follower"], "unknown agent 'trend-follower'"),
        # rich markup would swallow bracketed text (issue 20): the list keeps its [@<adapter>]
        (["--agent", "trend-follower"], "llm:<hf-id-or-path>[@<adapter>]"),
        (["--agent", "rsi", "--data", "/nonexistent.csv"], "does not exist"),
    ],
)
def test_bad_requests_exit_2_with_a_clear_message(args, message, capsys, tmp_path):
    assert cli.main([*args, "--no-mlflow", "--out-dir", str(tmp_path), "--quiet"]) == 2
    assert message in capsys.readouterr().out
    assert not any(tmp_path.iterdir())  # a refused request leaves no run folder behind


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
    folder = tmp_path / done.stdout.split("outputs: ")[1].split("/ (")[0].split("/")[-1]
    assert len(rows) == 3 and (folder / "medium_scores.png").exists() and (folder / "results.json").exists()


def test_compare_shows_every_env_version_side_by_side(tmp_path, capsys):
    common = ["--agent", "hold", "--task", "easy", "--episodes", "3", "--out-dir", str(tmp_path), "--quiet"]
    assert cli.main([*common, "--no-plots", "--env-version", "1.0.0", "2.0.0", "3.0.0"]) == 0
    capsys.readouterr()
    assert cli.main(["--compare"]) == 0
    table = capsys.readouterr().out
    assert all(f"env {v}" in table for v in ("1.0.0", "2.0.0", "3.0.0"))


def test_compare_never_puts_unlike_runs_in_one_cell(tmp_path, capsys):
    common = ["--agent", "rsi", "--task", "easy", "--out-dir", str(tmp_path), "--quiet", "--no-plots",
              "--no-baselines"]  # fmt: skip
    assert cli.main([*common, "--episodes", "4"]) == 0
    assert cli.main([*common, "--episodes", "2"]) == 0
    assert cli.main([*common, "--episodes", "4", "--anonymize"]) == 0
    capsys.readouterr()
    assert cli.main(["--compare", "--agent", "rsi"]) == 0
    table = capsys.readouterr().out
    runs = tracking.load_runs()
    rsi = runs[runs["params.agent"] == "rsi"]
    means = {f"{m:.3f}" for m in rsi["metrics.score"]}
    assert len(rsi) == 3 and all(mean in table for mean in means)  # three rows, none hidden behind another
    assert "4 ep" in table and "2 ep" in table and "anon" in table


def test_tables_fit_80_columns_without_cutting_a_cell(tmp_path):
    config = harness.EvalConfig(task="hard", split="test", episodes=6, seed=0)
    from eval.agents import make_agent

    played = {
        n: harness.run_evaluation(make_agent(n), config, False) for n in ("hold", "buy-and-hold", "rsi")
    }
    played["rsi"].agent = "llm:HuggingFaceTB/SmolLM2-135M-Instruct@runs/sft-easy/adapter+think"
    entries = [cli._entry(r, played["hold"], played["buy-and-hold"], 0) for r in played.values()]
    console = Console(width=80, record=True)
    cli.print_table(console, "hard", entries)
    text = console.export_text()
    assert "…" not in text and max(len(line) for line in text.splitlines()) <= 80
    assert "adapter+think" in text.replace("\n", "").replace("│", "").replace(" ", "")


def test_each_run_writes_its_own_folder_and_says_where(tmp_path, capsys):
    common = ["--task", "easy", "--episodes", "2", "--out-dir", str(tmp_path), "--no-mlflow", "--quiet"]
    assert cli.main(["--agent", "rsi", "hold", *common, "--run-name", "main job"]) == 0
    first = tmp_path / "main_job"
    plots = (first / "easy_equity.png").read_bytes()
    assert cli.main(["--agent", "hold", *common, "--run-name", "main job"]) == 0  # same name: a new folder
    assert f"outputs: {tmp_path / 'main_job-2'}/" in capsys.readouterr().out
    assert (first / "easy_equity.png").read_bytes() == plots
    assert json.loads((first / "results.json").read_text())["results"][-1]["agent"] == "rsi"


def test_an_mlflow_failure_keeps_the_results(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "nowhere://tracking")  # no such backend: MLflow raises
    monkeypatch.setattr(tracking, "SETUP_ATTEMPTS", 1)
    out = tmp_path / "o.json"
    args = ["--agent", "hold", "--task", "easy", "--episodes", "2", "--json", str(out), "--no-plots",
            "--out-dir", str(tmp_path / "runs"), "--quiet"]  # fmt: skip
    assert cli.main(args) == 0  # the evaluation succeeded and is saved; tracking is a warning
    assert "warning: MLflow logging failed" in capsys.readouterr().out
    assert json.loads(out.read_text())["results"][0]["mlflow_run_id"] is None


def test_three_concurrent_evaluations_on_a_fresh_database_log_every_run(tmp_path):
    database = tmp_path / "fresh.db"
    env = os.environ | {"MLFLOW_TRACKING_URI": f"sqlite:///{database}", "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "eval.cli", "--agent", "hold", "--no-baselines", "--task", "easy",
               "--episodes", "2", "--no-plots", "--quiet", "--out-dir", str(tmp_path)]  # fmt: skip
    processes = [
        subprocess.Popen(
            [*command, "--seed", str(seed)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        for seed in range(3)
    ]
    # generous: three interpreters starting at once on a loaded 2-core machine took over 120 s (a CI run
    # beside two evaluations); the test is about the database, not the speed
    outputs = [p.communicate(timeout=600) for p in processes]
    assert [p.returncode for p in processes] == [0, 0, 0], outputs
    assert all(b"1 run(s) logged" in out for out, _ in outputs), outputs
    runs = mlflow.MlflowClient(f"sqlite:///{database}").search_runs(
        [
            mlflow.MlflowClient(f"sqlite:///{database}")
            .get_experiment_by_name(tracking.EVAL_EXPERIMENT)
            .experiment_id
        ]
    )
    assert sorted(r.data.params["seed"] for r in runs) == ["0", "1", "2"]


def test_synthetic_data_is_recorded_and_keeps_compare_cells_apart(tmp_path, capsys):
    out = tmp_path / "o.json"
    common = ["--agent", "hold", "--no-baselines", "--task", "easy", "--episodes", "2", "--no-plots",
              "--quiet", "--out-dir", str(tmp_path)]  # fmt: skip
    assert cli.main([*common, "--data", "synthetic:martingale", "--json", str(out)]) == 0
    result = json.loads(out.read_text())["results"][0]
    assert result["data"] == "synthetic:martingale" and result["data_sha256"] != load_prices()[1]
    assert cli.main(common) == 0
    capsys.readouterr()
    assert cli.main(["--compare"]) == 2  # two data sets: refused unless filtered
    assert cli.main(["--compare", "--data", "synthetic:martingale"]) == 0
    assert "synthetic:" in capsys.readouterr().out  # the row says which data it was played on


def test_the_default_episodes_say_how_precise_they_are(tmp_path, capsys):
    assert set(cli.DEFAULT_EPISODES) == {"easy", "medium", "hard"}
    wide = stats.Estimate(0.01, -0.05, 0.07, 50, 7.0)
    assert "7 independent windows" in stats.precision_warning(wide)
