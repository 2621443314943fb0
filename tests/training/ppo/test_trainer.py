"""PPO baseline: a permutation-equivariant policy serving any K, checkpoints, the ppo: agent, the CLI."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
from dataclasses import replace

import mlflow
import numpy as np
import pytest
import torch as th
from hypothesis import given, settings
from hypothesis import strategies as st

import market_env
from data import load_prices
from eval import cli, harness, tracking
from eval.agents import make_agent
from market_env.actions import NUMERIC_DEADZONE
from market_env.observations import split_observation
from market_env.versions import ENV_VERSION
from training.ppo import trainer as ppo
from training.ppo.policy import MarketVecEnv, SharedNormalizer, n_stocks_of, stock_rows

TINY = {"n_envs": 4, "n_steps": 40, "batch_size": 80, "n_epochs": 2, "hidden": 16, "eval_episodes": 4}


def observations(task: str, n_envs: int = 6, days: int = 5, seed: int = 0) -> np.ndarray:
    """Real numeric observations a few days after buying every other stock: the portfolio block is filled."""
    batch = market_env.make_batch(task, n_envs=n_envs, split="train", obs_mode="numeric", seed=seed)
    obs, _ = batch.reset()
    every_other = (np.arange(batch.market.task.n_stocks) % 2 == 0) * np.ones((n_envs, 1))
    for day in range(days):
        obs, *_ = batch.step(every_other if day == 0 else 0.0 * every_other)
    return obs


def permute_stocks(obs: np.ndarray, order: np.ndarray) -> np.ndarray:
    """The same observation with its stocks listed in ``order`` (both blocks, layout unchanged)."""
    k = len(order)
    market = obs[:, : k * 10].reshape(-1, k, 10)[:, order].reshape(len(obs), -1)
    portfolio = obs[:, k * 10 : k * 13].reshape(-1, 3, k)[:, :, order].reshape(len(obs), -1)
    return np.concatenate([market, portfolio, obs[:, k * 13 :]], axis=1)


@pytest.fixture(scope="module")
def medium_model(tmp_path_factory):
    """A tiny real training run on the medium task (K = 10): 320 steps, val selection, checkpoints."""
    out = tmp_path_factory.mktemp("ppo") / "medium"
    config = ppo.PPOConfig(task="medium", timesteps=320, eval_every=160, **TINY)
    initial = ppo.build_model(config)[0].policy.state_dict()
    summary = ppo.train(config, out, progress=False, log_mlflow=False)
    return out, summary, initial


@pytest.fixture(scope="module")
def scrambled_agent(medium_model):
    """The trained medium agent with every weight redrawn large, so its actions differ across stocks."""
    agent = ppo.load_agent(medium_model[0])
    th.manual_seed(0)
    with th.no_grad():
        for parameter in agent.policy.parameters():
            parameter.normal_(0.0, 0.7)
    return agent


def test_torch_reshape_matches_the_env_layout():
    obs = observations("hard")
    per_stock, globals_ = split_observation(obs, 25)
    rows = stock_rows(th.as_tensor(obs)).numpy()
    np.testing.assert_array_equal(rows[..., :13], per_stock)
    np.testing.assert_array_equal(rows[..., 13:], np.broadcast_to(globals_[:, None], (6, 25, 3)))


def test_every_observation_feature_carries_information():
    """No zero placeholders: each of the 13 stock and 3 global features varies across real steps."""
    steps = np.concatenate([observations("hard", n_envs=8, days=days) for days in (1, 6)])
    per_stock, globals_ = split_observation(steps, 25)
    assert (per_stock.reshape(-1, 13).std(axis=0) > 0).all()
    assert (globals_.std(axis=0) > 0).all()


@settings(max_examples=25, deadline=None)
@given(order=st.permutations(range(25)))
def test_permuting_stocks_permutes_the_actions_and_keeps_the_value(scrambled_agent, order):
    order = np.array(order)
    obs = observations("hard", n_envs=3)
    actions, permuted = scrambled_agent.act(obs), scrambled_agent.act(permute_stocks(obs, order))
    np.testing.assert_allclose(permuted, actions[:, order], atol=1e-5)
    assert actions.std() > 0.05  # the check would catch a policy that ignores the stock
    policy, normalizer = scrambled_agent.policy, scrambled_agent.normalizer
    with th.no_grad():
        values = [
            policy.predict_values(th.as_tensor(normalizer(x))) for x in (obs, permute_stocks(obs, order))
        ]
    np.testing.assert_allclose(values[0].numpy(), values[1].numpy(), atol=1e-5)


def test_normaliser_statistics_are_shared_across_stocks_and_round_trip():
    obs = observations("medium")
    normalizer, permuted = SharedNormalizer(), SharedNormalizer()
    normalizer.update(obs)
    permuted.update(permute_stocks(obs, np.arange(10)[::-1].copy()))
    np.testing.assert_allclose(normalizer.stock.mean, permuted.stock.mean, rtol=1e-5)  # float32 sum order
    assert normalizer.stock.mean.shape == (13,)  # one statistic per feature, whatever K is
    restored = SharedNormalizer.from_dict(json.loads(json.dumps(normalizer.to_dict())))
    np.testing.assert_array_equal(restored(obs), normalizer(obs))
    with pytest.raises(ValueError, match="retrain with train-ppo"):
        SharedNormalizer.from_dict(normalizer.to_dict() | {"stock_features": ["close"]})


def test_initial_policy_holds():
    model, _, normalizer = ppo.build_model(ppo.PPOConfig(task="hard", **TINY))
    agent = ppo.PPOAgent("ppo", model.policy, normalizer)
    actions = agent.act(observations("hard", n_envs=16))
    assert actions.shape == (16, 25) and np.abs(actions).max() < NUMERIC_DEADZONE


def test_training_learns_selects_on_val_and_writes_its_record(medium_model):
    out, _, initial = medium_model
    trained = ppo.load_agent(out / "last").policy.state_dict()
    assert any(not th.equal(initial[name], trained[name]) for name in initial)  # learning happened
    assert [p["timesteps"] for p in ppo_curve(out)] == [0, 160, 320]
    best = max(ppo_curve(out), key=lambda p: p["val_score"])
    assert json.loads((out / "best" / "meta.json").read_text())["timesteps"] == best["timesteps"]
    meta = json.loads((out / "meta.json").read_text())
    assert meta["data_sha256"] == load_prices()[1] and meta["env_version"] == ENV_VERSION
    assert meta["task"] == "medium" and meta["config"]["n_envs"] == 4 and "git_commit" in meta
    assert json.loads((out / "best" / "config.json").read_text())["hidden"] == 16
    assert (out / "learning_curve.png").stat().st_size > 0


def ppo_curve(out) -> list[dict]:
    import pandas as pd

    return pd.read_csv(out / "learning_curve.csv").to_dict("records")


def test_save_load_round_trip_gives_identical_actions(medium_model, tmp_path):
    out = medium_model[0]
    copy = tmp_path / "copied"
    shutil.copytree(out / "best", copy)
    obs = observations("medium")
    np.testing.assert_array_equal(ppo.load_agent(out).act(obs), ppo.load_agent(copy).act(obs))


def test_a_checkpoint_saved_before_the_layout_move_still_loads(medium_model, tmp_path):
    """Runs saved before issue 16 name the pickled policy class ``training.ppo_policy.StockPolicy``."""
    import base64
    import zipfile

    old = tmp_path / "old"
    shutil.copytree(medium_model[0] / "best", old)
    with zipfile.ZipFile(old / "model.zip") as archive:
        files = {name: archive.read(name) for name in archive.namelist()}
    data = json.loads(files["data"])
    pickled = base64.b64decode(data["policy_class"][":serialized:"])
    assert b"training.ppo.policy" in pickled  # same length as the old name: the pickle stays well formed
    renamed = pickled.replace(b"training.ppo.policy", b"training.ppo_policy")
    data["policy_class"][":serialized:"] = base64.b64encode(renamed).decode()
    files["data"] = json.dumps(data).encode()
    with zipfile.ZipFile(old / "model.zip", "w") as archive:
        for name, content in files.items():
            archive.writestr(name, content)
    obs = observations("medium")
    np.testing.assert_array_equal(ppo.load_agent(old).act(obs), ppo.load_agent(medium_model[0]).act(obs))


def test_model_trained_on_ten_stocks_acts_on_twenty_five(medium_model):
    agent = make_agent(f"ppo:{medium_model[0]}")
    actions = agent.act(observations("hard"))
    assert actions.shape == (6, 25) and np.isfinite(actions).all() and np.abs(actions).max() <= 1
    config = harness.EvalConfig(task="hard", split="val", episodes=4, seed=0)
    result = harness.run_evaluation(agent, config, progress=False)
    assert len(result.episodes) == 4 and result.model == str(medium_model[0] / "best")


def test_ppo_agent_evaluates_through_the_evaluate_cli(medium_model, tmp_path):
    out = tmp_path / "eval.json"
    name = f"ppo:{medium_model[0]}"
    args = ["--agent", name, "hold", "--task", "medium", "--episodes", "4", "--split", "val", "--quiet",
            "--env-version", "1.0.0", "2.0.0", "--json", str(out), "--out-dir", str(tmp_path)]  # fmt: skip
    assert cli.main(args) == 0
    results = json.loads(out.read_text())["results"]
    ours = [r for r in results if r["agent"] == name]  # the table's row order is the CLI's business
    assert [r["env_version"] for r in ours] == ["1.0.0", "2.0.0"]
    assert ours[0]["model"].endswith("best") and ours[0]["obs_mode"] == "numeric"


def test_train_ppo_cli_logs_an_mlflow_run(tmp_path, capsys):
    out = tmp_path / "run"
    args = ["--task", "easy", "--timesteps", "80", "--output-dir", str(out), "--eval-every", "80",
            "--n-envs", "2", "--n-steps", "20", "--batch-size", "40", "--hidden", "8", "--eval-episodes", "2",
            "--no-progress"]  # fmt: skip
    assert ppo.main(args) == 0
    assert "best val score" in capsys.readouterr().out
    run = mlflow.get_run(json.loads((out / "meta.json").read_text())["mlflow_run_id"])
    assert (
        run.data.params["env_version"] == ENV_VERSION and run.data.params["data_sha256"] == load_prices()[1]
    )
    assert run.data.params["task_version"] == "1.0.0"
    assert {"val_score", "best_val_score", "train/value_loss"} <= set(run.data.metrics)
    artifacts = {a.path for a in mlflow.MlflowClient().list_artifacts(run.info.run_id)}
    assert {"learning_curve.png", "meta.json", "best"} <= artifacts


def test_train_ppo_on_synthetic_data_records_it_and_selects_on_the_same_data(tmp_path, capsys):
    """--data synthetic:edge: trained and val-selected on the synthetic market, and recorded as such."""
    out = tmp_path / "edge"
    args = ["--task", "easy", "--timesteps", "40", "--output-dir", str(out), "--eval-every", "40", "--n-envs",
            "2", "--n-steps", "20", "--batch-size", "40", "--hidden", "8", "--eval-episodes", "6",
            "--no-progress", "--data", "synthetic:edge"]  # fmt: skip
    assert ppo.main(args) == 0
    assert "--data synthetic:edge" in capsys.readouterr().out  # the next command plays the same data
    edge = ppo.training_panel("synthetic:edge")
    meta = json.loads((out / "meta.json").read_text())
    assert meta["data"] == "synthetic:edge" and meta["data_sha256"] == edge.sha256 != load_prices()[1]
    assert json.loads((out / "best" / "config.json").read_text())["data"] == "synthetic:edge"
    params = mlflow.get_run(meta["mlflow_run_id"]).data.params
    assert params["data"] == "synthetic:edge" and params["data_sha256"] == edge.sha256
    # the selection episodes were the synthetic market's: buy-and-hold's val score there is reproduced
    val = harness.EvalConfig(task="easy", split="val", episodes=6, seed=ppo.PPOConfig.eval_seed, data=edge)
    expected = harness.run_evaluation(make_agent("buy-and-hold"), val, False).values("score").mean()
    assert meta["baselines_val"]["buy-and-hold"] == pytest.approx(expected, abs=1e-12)
    real = harness.run_evaluation(make_agent("buy-and-hold"), replace(val, data=None), False)
    assert real.values("score").mean() != pytest.approx(expected, abs=1e-6)  # the check can tell them apart


def test_bad_data_is_refused_before_anything_is_written(tmp_path, capsys):
    out = tmp_path / "never"
    assert ppo.main(["--data", "synthetic:nope", "--output-dir", str(out), "--no-mlflow"]) == 2
    assert "unknown synthetic market 'nope'" in capsys.readouterr().err and not out.exists()


def test_bad_paths_get_a_clear_error(tmp_path, capsys):
    missing = tmp_path / "nothing"
    assert cli.main(["--agent", f"ppo:{missing}", "--task", "easy", "--episodes", "2", "--no-mlflow"]) == 2
    assert "no PPO checkpoint at" in capsys.readouterr().out
    with pytest.raises(ValueError, match="needs a path"):
        make_agent("ppo:")
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "model.zip").write_text("not a zip")
    with pytest.raises(FileNotFoundError, match=r"no normalization\.json"):
        ppo.load_agent(broken)
    (broken / "normalization.json").write_text("{}")
    with pytest.raises(ValueError, match="is not a train-ppo model"):
        ppo.load_agent(broken)


@pytest.mark.parametrize(
    "size",
    [
        0,  # empty
        3,  # globals only, no stock
        30,  # neither K * 13 + 3 nor anything else this env renders
    ],
)
def test_observation_sizes_that_are_not_numeric_market_observations_are_rejected(size):
    with pytest.raises(ValueError, match="obs_mode='numeric'"):
        n_stocks_of(size)


def test_bad_settings_are_refused(tmp_path, capsys):
    with pytest.raises(ValueError, match="n_envs must be >= 1"):
        ppo.PPOConfig(n_envs=0)
    # an explicit 0 is refused, not read as "unset" (that once trained the default 600k steps)
    assert ppo.main(["--timesteps", "0", "--no-mlflow", "--output-dir", str(tmp_path / "run")]) == 2
    assert "timesteps must be >= 1, got 0" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()
    text = market_env.make_batch("easy", n_envs=2, obs_mode="text")
    with pytest.raises(ValueError, match="numeric observations"):
        MarketVecEnv(text, SharedNormalizer())


def test_vec_env_adapter_reports_final_scores_and_honours_seeds():
    batch = market_env.make_batch("easy", n_envs=3, obs_mode="numeric")
    venv = MarketVecEnv(batch, SharedNormalizer(), training=False)
    venv.seed(5)
    first = venv.reset()
    reference, _ = market_env.make_batch("easy", n_envs=3, obs_mode="numeric", seed=5).reset()
    np.testing.assert_array_equal(first, SharedNormalizer()(reference))
    for _ in range(20):
        _, rewards, dones, infos = venv.step(np.zeros((3, 1), dtype=np.float32))
    assert dones.all() and rewards.dtype == np.float32
    assert all(0 <= info["episode"]["r"] <= 1 and info["episode"]["l"] == 20 for info in infos)


# ------------------------------------------------------------------ run directories, resume, interruptions
CLI_TINY = ["--task", "easy", "--n-envs", "2", "--n-steps", "20", "--batch-size", "40", "--hidden", "8",
            "--eval-episodes", "2", "--no-progress"]  # fmt: skip


def test_rerunning_into_a_run_directory_is_refused_and_says_both_options(medium_model, capsys):
    out = medium_model[0]
    before = (out / "best" / "model.zip").read_bytes()
    assert ppo.main([*CLI_TINY, "--timesteps", "40", "--output-dir", str(out), "--no-mlflow"]) == 2
    message = capsys.readouterr().err
    assert f"{out} already holds a train-ppo run (last checkpoint at 320 steps, best val score" in message
    assert "pass --resume to continue it" in message and "--overwrite to replace it" in message
    assert (out / "best" / "model.zip").read_bytes() == before  # untouched


def test_overwrite_replaces_only_train_ppos_outputs_and_the_flags_are_checked(tmp_path):
    for name in ("best", "last", ".last.staging"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "model.zip").write_text("old")
    (tmp_path / "meta.json").write_text("{}")
    (tmp_path / "notes.txt").write_text("the user's own file")
    with pytest.raises(ppo.RunDirectoryError, match="already holds a train-ppo run; pass --resume"):
        ppo.prepare_output_dir(tmp_path)
    with pytest.raises(ppo.RunDirectoryError, match="exclude each other"):
        ppo.prepare_output_dir(tmp_path, resume=True, overwrite=True)
    with pytest.raises(ppo.RunDirectoryError, match=r"nothing to resume .* holds no complete checkpoint"):
        ppo.prepare_output_dir(tmp_path, resume=True)  # last/ has only a model.zip
    assert ppo.prepare_output_dir(tmp_path, overwrite=True) is None
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


def test_resume_and_overwrite_cannot_be_given_together_on_the_command_line(capsys):
    with pytest.raises(SystemExit):
        ppo.main([*CLI_TINY, "--resume", "--overwrite"])
    assert "not allowed with argument" in capsys.readouterr().err


@pytest.fixture
def checkpoint(medium_model, tmp_path):
    """A copy of the medium run's best checkpoint and its loaded model."""
    from stable_baselines3 import PPO

    copy = tmp_path / "ckpt"
    shutil.copytree(medium_model[0] / "best", copy)
    return copy, PPO.load(copy / "model.zip", device="cpu")


class ExplodingNormalizer:
    """Fails as the second file of a save is written: the save dies with model.zip already on disk."""

    def to_dict(self) -> dict:
        raise OSError("disk full (simulated)")


def test_a_save_interrupted_after_its_first_file_leaves_the_previous_checkpoint(checkpoint):
    directory, model = checkpoint
    files = {p.name: p.read_bytes() for p in directory.iterdir()}
    config = ppo.PPOConfig(task="medium", **TINY)
    with pytest.raises(OSError, match="disk full"):
        ppo.save_checkpoint(directory, model, ExplodingNormalizer(), config, timesteps=999)
    assert (directory.parent / ".ckpt.staging" / "model.zip").is_file()  # it did die mid-save
    assert {p.name: p.read_bytes() for p in directory.iterdir()} == files
    assert ppo.checkpoint_dir(directory) == directory and ppo.load_agent(directory).meta["timesteps"] != 999
    normalizer = ppo.load_agent(directory).normalizer
    ppo.save_checkpoint(directory, model, normalizer, config, timesteps=999)  # the next save cleans up
    assert json.loads((directory / "meta.json").read_text())["timesteps"] == 999
    assert sorted(p.name for p in directory.parent.iterdir()) == ["ckpt"]


def test_a_save_interrupted_between_its_renames_is_found_and_restored(checkpoint, monkeypatch):
    directory, model = checkpoint
    timesteps = json.loads((directory / "meta.json").read_text())["timesteps"]
    real_replace, calls = ppo.os.replace, []

    def dies_on_the_second_rename(src, dst):
        calls.append(dst)
        if len(calls) == 2:
            raise KeyboardInterrupt  # Ctrl-C between "old -> retired" and "staging -> name"
        real_replace(src, dst)

    monkeypatch.setattr(ppo.os, "replace", dies_on_the_second_rename)
    with pytest.raises(KeyboardInterrupt):
        ppo.save_checkpoint(
            directory, model, ppo.load_agent(directory).normalizer, ppo.PPOConfig(), timesteps=1
        )
    monkeypatch.setattr(ppo.os, "replace", real_replace)
    assert not directory.exists()
    assert ppo.load_agent(directory).meta["timesteps"] == timesteps  # loading finds the retired checkpoint
    ppo.restore_checkpoint(directory)
    assert json.loads((directory / "meta.json").read_text())["timesteps"] == timesteps


KILL_LOOP = """
import json, os, random, signal, sys, time, zipfile
from pathlib import Path
from stable_baselines3 import PPO
from training.ppo import trainer as ppo
source, out, kills = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
model = PPO.load(source / "model.zip", device="cpu")
normalizer, config = ppo.load_agent(source).normalizer, ppo.PPOConfig(task="medium")
ppo.save_checkpoint(out, model, normalizer, config, timesteps=0)
rng, intact = random.Random(0), 0
for kill in range(kills):
    child = os.fork()
    if child == 0:  # saves checkpoint after checkpoint until it is killed
        step = 1
        while True:
            model.num_timesteps = step
            ppo.save_checkpoint(out, model, normalizer, config, timesteps=step)
            step += 1
    time.sleep(rng.uniform(0.05, 0.4))
    os.kill(child, signal.SIGKILL)
    killed = os.WIFSIGNALED(os.waitpid(child, 0)[1])  # not an exit: the saves never failed on their own
    found = ppo.checkpoint_dir(out)
    meta = json.loads((found / "meta.json").read_text())
    with zipfile.ZipFile(found / "model.zip") as archive:
        in_model = json.loads(archive.read("data"))["num_timesteps"]
    json.loads((found / "normalization.json").read_text())
    intact += killed and ppo.is_complete(found) and meta["timesteps"] == in_model
    ppo.restore_checkpoint(out)
print(f"intact {intact} of {kills}")
"""


def test_checkpoints_survive_kill_9_in_the_middle_of_saving(medium_model, tmp_path):
    """A process saving in a loop is SIGKILLed at random moments: each time one whole checkpoint is left,
    its model.zip and meta.json from the same save."""
    kills = 8
    source, out = medium_model[0] / "best", tmp_path / "last"
    done = subprocess.run([sys.executable, "-c", KILL_LOOP, str(source), str(out), str(kills)],
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"intact {kills} of {kills}" in done.stdout


def test_resume_continues_the_step_count_curve_and_normaliser(medium_model, tmp_path):
    out = tmp_path / "resumed"
    shutil.copytree(medium_model[0], out)
    before = ppo.load_agent(out / "last")
    config = ppo.PPOConfig(task="medium", timesteps=480, eval_every=160, **TINY)
    summary = ppo.train(config, out, progress=False, log_mlflow=False, resume=True)
    assert summary["timesteps"] == 480  # 320 done + one rollout of 4 x 40
    assert [p["timesteps"] for p in ppo_curve(out)] == [0, 160, 320, 480]
    after = ppo.load_agent(out / "last")
    assert after.meta["timesteps"] == 480 and after.normalizer.stock.count > before.normalizer.stock.count
    assert any(not th.equal(a, b) for a, b in zip(before.policy.state_dict().values(),
                                                   after.policy.state_dict().values()))  # fmt: skip


def test_a_sigterm_ends_the_mlflow_run_killed_and_resume_finishes_it(tmp_path):
    out = tmp_path / "run"
    args = [sys.executable, "-m", "training.ppo", *CLI_TINY, "--timesteps", "100000", "--eval-every", "40",
            "--output-dir", str(out)]  # fmt: skip
    process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        seen = [process.stdout.readline() for _ in range(2)]  # step 0 and step 40: last/ exists
        assert seen[1].startswith("step"), seen
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=120)
    finally:
        process.kill()
    assert process.returncode == 128 + signal.SIGTERM, err[-2000:]
    assert "the MLflow run ended KILLED" in err and "train-ppo --resume" in err
    run_id = json.loads((out / "last" / "meta.json").read_text())["mlflow_run_id"]
    mlflow.set_tracking_uri(tracking.tracking_uri())  # the store the subprocess logged to
    assert mlflow.get_run(run_id).info.status == "KILLED"
    steps = json.loads((out / "last" / "meta.json").read_text())["timesteps"]
    assert ppo.main([*CLI_TINY, "--resume", "--timesteps", str(steps + 40), "--output-dir", str(out)]) == 0
    run = mlflow.get_run(run_id)
    assert run.info.status == "FINISHED" and run.data.tags["resumed_at"] == str(steps)
    assert json.loads((out / "meta.json").read_text())["timesteps"] == steps + 40


def test_a_run_that_raises_ends_failed(tmp_path, monkeypatch):
    def broken(config):
        raise RuntimeError("baselines failed (simulated)")

    monkeypatch.setattr(ppo, "baseline_scores", broken)
    config = ppo.PPOConfig(task="easy", timesteps=40, eval_every=40, n_envs=2, n_steps=20, batch_size=40,
                           hidden=8, eval_episodes=2)  # fmt: skip
    with pytest.raises(RuntimeError, match="simulated"):
        ppo.train(config, tmp_path / "run", progress=False)
    (run,) = mlflow.search_runs(experiment_names=[ppo.EXPERIMENT], output_format="list")
    assert run.info.status == "FAILED"
