"""``train-sft`` and ``train-grpo`` under ``accelerate launch``: ranks, one MLflow run, configs, vLLM modes.

The slow tests launch two real processes on the CPU (torchrun through ``accelerate launch --config_file
ddp.yaml``; the trainers ask for the CPU, so torch.distributed runs on gloo) with the real SmolLM2-135M, and
compare them with one process trained on the same global batch. Budget on 2 busy cores: about 2-3 minutes
each. ``accelerate launch --cpu --num_processes 2`` is not used: without MPI it starts one process only.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import mlflow
import pytest

from training import distributed
from training.distributed import (
    accelerate_config,
    accelerate_configs,
    is_main_process,
    main_process_mlflow,
    main_process_run,
    process_index,
    world_size,
)
from training.grpo import trainer as grpo
from training.profiles import PROFILES
from training.sft import trainer as sft

REPO = Path(__file__).resolve().parents[2]
ACCELERATE = Path(sys.executable).with_name("accelerate")
LAUNCH_TIMEOUT = 900  # seconds: generous, the test machine's 2 cores are shared


# ------------------------------------------------------------------------------------------------ ranks
@pytest.mark.parametrize(
    ("env", "rank", "size", "main"),
    [
        ({}, 0, 1, True),  # a plain `train-sft`: one process, the main one
        ({"RANK": "0", "WORLD_SIZE": "2"}, 0, 2, True),  # rank 0 of a DDP launch does the one-off writes
        ({"RANK": "1", "WORLD_SIZE": "2"}, 1, 2, False),  # the other ranks do not
        ({"RANK": "", "WORLD_SIZE": "x"}, 0, 1, True),  # unparsable values: treated as not distributed
    ],
)
def test_rank_helpers_read_the_launchers_environment(monkeypatch, env, rank, size, main):
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert (process_index(), world_size(), is_main_process()) == (rank, size, main)


def test_launcher_names_single_ddp_and_deepspeed(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    monkeypatch.delenv("ACCELERATE_USE_DEEPSPEED", raising=False)
    assert distributed.run_params() == {"world_size": 1, "launcher": "single"}
    monkeypatch.setenv("WORLD_SIZE", "8")
    assert distributed.launcher() == "ddp"
    monkeypatch.setenv("ACCELERATE_USE_DEEPSPEED", "true")  # what accelerate's DeepSpeed launcher sets
    assert distributed.run_params() == {"world_size": 8, "launcher": "deepspeed"}


def test_only_the_main_process_opens_an_mlflow_run_and_writes_meta(monkeypatch, tmp_path):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    with main_process_run("nifty-rl-test", "rank 1") as run:
        main_process_mlflow.log_params({"x": 1})  # would open a second run without the guard
        main_process_mlflow.log_metric("y", 2.0)
        assert run is None and mlflow.active_run() is None
    assert not distributed.write_meta(tmp_path / "r1", a=1).exists()
    monkeypatch.setenv("RANK", "0")
    with main_process_run("nifty-rl-test", "rank 0") as run:
        main_process_mlflow.log_params({"x": 1})
        assert mlflow.active_run().info.run_id == run.info.run_id
    assert json.loads(distributed.write_meta(tmp_path / "r0", a=1).read_text())["a"] == 1
    runs = mlflow.search_runs(experiment_names=["nifty-rl-test"])
    assert len(runs) == 1
    assert runs.iloc[0]["params.world_size"] == "2" and runs.iloc[0]["params.x"] == "1"


def test_the_gpu_loader_puts_each_process_on_its_own_gpu(monkeypatch):
    import torch

    from llm_agent.models import _gpu_kwargs

    monkeypatch.delenv("LOCAL_RANK", raising=False)
    assert _gpu_kwargs("cuda", torch.float16, False)["device_map"] == {"": "cuda"}  # one process
    monkeypatch.setenv("LOCAL_RANK", "1")  # the second process of a 2xT4 DDP launch
    assert _gpu_kwargs("cuda", torch.float16, False)["device_map"] == {"": "cuda:1"}
    assert _gpu_kwargs("cuda:0", torch.float16, False)["device_map"] == {"": "cuda:0"}  # explicit: kept


# ------------------------------------------------------------------------------------ accelerate configs
def test_shipped_accelerate_configs_load_with_accelerate():
    from accelerate.commands.config.config_args import load_config_from_file

    loaded = {name: load_config_from_file(str(path)) for name, path in accelerate_configs().items()}
    assert set(loaded) == {"ddp", "zero2", "zero3"}
    assert loaded["ddp"].distributed_type == "MULTI_GPU"
    for name, stage in (("zero2", 2), ("zero3", 3)):
        assert loaded[name].distributed_type == "DEEPSPEED"
        # batch sizes, accumulation and clipping are left to the Trainer ("auto"): never pinned here
        assert loaded[name].deepspeed_config["zero_stage"] == stage
        assert "gradient_accumulation_steps" not in loaded[name].deepspeed_config
    assert loaded["zero3"].deepspeed_config["zero3_save_16bit_model"] is True  # a usable saved adapter


def test_configs_are_package_data_and_listed_by_name(capsys):
    package = REPO / "training" / "accelerate_configs"
    assert (package / "__init__.py").is_file()  # a package, so setuptools ships its data
    assert '"*" = ["*.yaml"' in (REPO / "pyproject.toml").read_text()  # [tool.setuptools.package-data]
    assert accelerate_config("zero2").parent == package
    with pytest.raises(KeyError, match="shipped: ddp, zero2, zero3"):
        accelerate_config("zero4")
    assert distributed.main() == 0 and "zero3" in capsys.readouterr().out


# --------------------------------------------------------------------------------------------- vLLM modes
def _grpo_args(*extra: str) -> grpo.GRPORunConfig:
    return grpo.config_from_args(grpo.make_parser().parse_args(list(extra)))


def test_server_mode_builds_trls_server_config():
    config = _grpo_args(
        "--vllm-mode", "server", "--vllm-server-host", "10.0.0.7", "--vllm-server-port", "8123"
    )
    assert config.use_vllm  # server mode is vLLM generation: no separate --use-vllm needed
    built = grpo.grpo_config(config, PROFILES["cpu"], grpo.GRPO_SIZES["cpu"], on_gpu=False)
    assert (built.use_vllm, built.vllm_mode) == (True, "server")
    assert (built.vllm_server_host, built.vllm_server_port) == ("10.0.0.7", 8123)
    assert built.vllm_server_base_url is None  # else TRL would ignore host and port


def test_colocate_stays_the_default_with_its_memory_share():
    config = _grpo_args("--use-vllm")
    built = grpo.grpo_config(config, PROFILES["t4"], grpo.GRPO_SIZES["t4"], on_gpu=False)
    assert (built.use_vllm, built.vllm_mode) == (True, "colocate")
    assert built.vllm_gpu_memory_utilization == config.vllm_gpu_memory_utilization
    assert (
        built.vllm_max_model_length == PROFILES["t4"].max_length + grpo.GRPO_SIZES["t4"].max_completion_length
    )
    assert not _grpo_args().use_vllm  # no vLLM unless asked


@pytest.mark.parametrize("mode", ["colocate", "server"])
def test_vllm_fields_exist_in_the_oldest_supported_trl(mode):
    oldest = json.loads((REPO / "tests" / "training" / "config_fields_oldest.json").read_text())
    kwargs = distributed.vllm_config_kwargs(True, mode, "127.0.0.1", 8000, 0.35, 2048)
    assert set(kwargs) <= set(oldest["GRPOConfig"])  # the Kaggle stack's TRL knows each one


def test_an_unknown_vllm_mode_is_refused():
    with pytest.raises(ValueError, match="colocate, server"):
        distributed.vllm_config_kwargs(True, "remote", "127.0.0.1", 8000, 0.35, 2048)


def test_server_mode_without_vllm_fails_with_an_install_hint(tmp_path, capsys):
    pytest.importorskip("torch")
    if distributed.missing_vllm_message("server") is None:
        pytest.skip("vllm is installed here")
    argv = ["--vllm-mode", "server", "--prompt-episodes", "1", "--prompt-stride", "20", "--experts", "rsi",
            "--output-dir", str(tmp_path / "out"), "--max-steps", "1"]  # fmt: skip
    assert grpo.main(argv) == 2
    err = capsys.readouterr().err
    assert "needs the package 'vllm'" in err and "trl vllm-serve" in err and "pip install" in err


# -------------------------------------------------------------------------------- two processes on gloo
def launch(module: str, args: list[str], processes: int = 2) -> subprocess.CompletedProcess:
    """``accelerate launch --config_file ddp.yaml --num_processes N -m <module> ...`` on the CPU."""
    command = [str(ACCELERATE), "launch", "--config_file", str(accelerate_config("ddp")),
               "--num_processes", str(processes), "-m", module, *args]  # fmt: skip
    env = os.environ | {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=LAUNCH_TIMEOUT)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def logged(checkpoint: Path, key: str) -> dict[int, float]:
    """``key`` per step from a checkpoint's ``trainer_state.json`` (full precision, unlike the console)."""
    history = json.loads((checkpoint / "trainer_state.json").read_text())["log_history"]
    return {entry["step"]: entry[key] for entry in history if key in entry}


def runs_by_world_size(experiment: str) -> dict[str, list]:
    runs = mlflow.search_runs(experiment_names=[experiment])
    return {size: list(group["run_id"]) for size, group in runs.groupby("params.world_size")}


@pytest.fixture(scope="module")
def sft_data(tmp_path_factory) -> Path:
    """8 real easy-task chats: the RSI rule's answers to 2 days of 4 train episodes."""
    import market_env
    from eval.agents import RSIAgent
    from eval.harness import numeric_to_text
    from llm_agent.prompts import build_messages

    env = market_env.make_batch("easy", n_envs=4, split="train", obs_mode="text", seed=0)
    observations, _ = env.reset(seed=0)
    agent, rows = RSIAgent(), []
    agent.reset(4, 0)
    for _ in range(2):
        actions = numeric_to_text(agent.act(observations, env.market.snapshot()), env.names)
        for observation, action in zip(observations, actions):
            messages = build_messages(observation, "easy", think=True)
            messages.append({"role": "assistant", "content": f"<think>RSI rule.</think>\n{action}"})
            rows.append({"messages": messages, "meta": {"task": "easy"}})
        observations, *_ = env.step(actions)
    data = tmp_path_factory.mktemp("sft-data")
    (data / "train.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    return data


@pytest.mark.slow
def test_sft_on_two_processes_matches_one_and_resumes_across_world_sizes(sft_data, tmp_path):
    common = ["--data", str(sft_data), "--task", "easy", "--max-steps", "3", "--profile", "cpu",
              "--batch-size", "1", "--lora-r", "8", "--lora-alpha", "16", "--eval-examples", "0",
              "--save-steps", "1", "--logging-steps", "1"]  # fmt: skip
    single, ddp = tmp_path / "single", tmp_path / "ddp"
    # the same global batch of 2: one process accumulating 2 micro-batches, or 2 processes with 1 each
    assert sft.main([*common, "--gradient-accumulation-steps", "2", "--output-dir", str(single)]) == 0
    launch("training.sft", [*common, "--gradient-accumulation-steps", "1", "--output-dir", str(ddp)])

    one, two = logged(single / "checkpoint-3", "loss"), logged(ddp / "checkpoint-3", "loss")
    assert sorted(two) == [1, 2, 3] and all(math.isfinite(v) for v in two.values())
    for step in (1, 2, 3):  # the same examples per step, the same averaged gradient, the same weights
        assert two[step] == pytest.approx(one[step], rel=1e-4, abs=1e-5)
    # written once: one adapter per checkpoint, each process's RNG state beside it, one meta.json
    assert sorted(p.name for p in (ddp / "checkpoint-3").glob("rng_state*")) == ["rng_state_0.pth",
                                                                              "rng_state_1.pth"]  # fmt: skip
    assert json.loads((ddp / "adapter" / "meta.json").read_text())["global_step"] == 3
    runs = runs_by_world_size(sft.SFT_EXPERIMENT)
    assert {size: len(ids) for size, ids in runs.items()} == {"1": 1, "2": 1}  # one run for the 2 processes
    assert mlflow.get_run(runs["2"][0]).data.metrics["loss"] == pytest.approx(two[3], rel=1e-4)

    # --resume across world sizes: the 1-process run "killed" after step 2 continues on 2 processes
    resumed = tmp_path / "resumed"
    shutil.copytree(single, resumed, ignore=shutil.ignore_patterns("checkpoint-3", "adapter"))
    launch("training.sft", [*common, "--gradient-accumulation-steps", "1", "--output-dir", str(resumed),
                            "--resume"])  # fmt: skip
    again = logged(resumed / "checkpoint-3", "loss")
    assert again[3] == pytest.approx(one[3], rel=1e-4, abs=1e-5)  # the same weights, optimizer and data


@pytest.mark.slow
def test_grpo_on_two_processes_logs_once_and_resumes_on_one(tmp_path):
    common = ["--task", "easy", "--prompt-episodes", "1", "--prompt-stride", "10", "--experts", "rsi",
              "--profile", "cpu", "--num-generations", "2", "--max-completion-length", "4",
              "--eval-episodes", "0", "--save-steps", "1"]  # fmt: skip
    single, ddp = tmp_path / "single", tmp_path / "ddp"
    # 2 prompts x 2 completions per step: one process accumulating 2 groups, or one group per process
    assert (
        grpo.main([*common, "--max-steps", "1", "--prompts-per-step", "2", "--output-dir", str(single)]) == 0
    )
    launch(
        "training.grpo", [*common, "--max-steps", "2", "--prompts-per-step", "1", "--output-dir", str(ddp)]
    )

    one = {key: logged(single / "checkpoint-1", key)[1] for key in ("loss", "num_tokens", "reward")}
    two = {key: logged(ddp / "checkpoint-2", key)[1] for key in ("loss", "num_tokens", "reward")}
    # the same prompts in step 1 (every completion runs to the 4-token limit, so the token count is fixed by
    # the prompts); the loss matches because the zero-shot model's answers are all invalid, hence equal
    # rewards and zero advantages. A non-zero GRPO loss cannot match: TRL seeds sampling per process.
    assert two["num_tokens"] == one["num_tokens"]
    assert two["reward"] == pytest.approx(one["reward"]) and two["loss"] == pytest.approx(one["loss"])
    assert (ddp / "final" / "adapter_model.safetensors").is_file()
    runs = runs_by_world_size(grpo.GRPO_EXPERIMENT)
    assert {size: len(ids) for size, ids in runs.items()} == {"1": 1, "2": 1}

    # --resume across world sizes: the 2-process checkpoint continues in one process
    assert grpo.main([*common, "--max-steps", "3", "--prompts-per-step", "2", "--output-dir", str(ddp),
                      "--resume"]) == 0  # fmt: skip
    assert sorted(logged(ddp / "checkpoint-3", "loss")) == [1, 2, 3]
    params = [mlflow.get_run(i).data.params for i in runs_by_world_size(grpo.GRPO_EXPERIMENT)["1"]]
    assert sorted(p["resumed_from"].rsplit("/", 1)[-1] for p in params) == ["", "checkpoint-2"]
