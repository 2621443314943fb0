"""``evaluate --workers``: sharded episodes merge into the rows, JSON and MLflow runs of one process."""

from __future__ import annotations

import json

import mlflow
import pytest
from hypothesis import given
from hypothesis import strategies as st

from eval import cli, tracking
from eval.harness import EvalConfig
from eval.parallel import Shards, merge, play_shard, shard_bounds


@given(episodes=st.integers(1, 500), workers=st.integers(1, 64))
def test_shards_are_contiguous_nonempty_and_cover_every_episode_once(episodes, workers):
    bounds = shard_bounds(episodes, workers)
    assert len(bounds) == min(episodes, workers) and all(count >= 1 for _, count in bounds)
    covered = [e for first, count in bounds for e in range(first, first + count)]
    assert covered == list(range(episodes))
    sizes = [count for _, count in bounds]
    assert max(sizes) - min(sizes) <= 1  # balanced


def test_bad_worker_counts_are_refused(capsys):
    with pytest.raises(ValueError, match="workers must be >= 1"):
        shard_bounds(5, 0)
    with pytest.raises(ValueError, match="workers must be >= 1"):
        Shards(0)
    with pytest.raises(SystemExit):
        cli.main(["--agent", "rsi", "--workers", "0"])
    assert "--workers must be >= 1" in capsys.readouterr().err


def test_shards_merged_in_process_equal_the_whole_run():
    """The merge itself, without processes: two shards of a run give the whole run's rows."""
    config = EvalConfig(task="medium", split="val", episodes=5, seed=3)
    whole = play_shard("random", {}, config, 0, 5)
    parts = [play_shard("random", {}, config, first, count) for first, count in shard_bounds(5, 2)]
    merged = merge(parts, config, 0.0)
    assert merged.episodes == whole.episodes and merged.config == config
    assert [row["episode"] for row in merged.episodes] == list(range(5))
    with pytest.raises(RuntimeError, match="shards disagree on agent"):
        merge([parts[0], play_shard("hold", {}, config, 2, 3)], config, 0.0)


def test_two_workers_give_byte_identical_rows_one_json_and_one_mlflow_run_per_result(tmp_path):
    """Rule agents (the baselines, rsi, momentum) on 7 episodes: N = 2 against one process, same seed."""
    outputs = {}
    for workers in (1, 2):
        out = tmp_path / f"workers{workers}.json"
        args = ["--agent", "rsi", "momentum", "--task", "medium", "--split", "val", "--episodes", "7",
                "--seed", "4", "--workers", str(workers), "--json", str(out), "--out-dir", str(tmp_path),
                "--quiet", "--no-plots"]  # fmt: skip
        assert cli.main(args) == 0
        outputs[workers] = json.loads(out.read_text())["results"]
    single, sharded = outputs[1], outputs[2]
    assert [r["agent"] for r in sharded] == ["hold", "buy-and-hold", "random", "rsi", "momentum"]
    for one, two in zip(single, sharded):
        assert json.dumps(two["per_episode"]) == json.dumps(one["per_episode"])  # byte-identical rows
        assert two["summary"] == one["summary"] and two["vs_hold"] == one["vs_hold"]
        assert two["episodes"] == 7 and two["seed"] == 4
        run = mlflow.get_run(two["mlflow_run_id"])
        assert run.data.params["episodes"] == "7" and run.data.metrics["n_episodes"] == 7
    assert len(tracking.load_runs()) == 2 * len(single)  # one run per result per invocation, not per worker
