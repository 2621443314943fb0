"""Running ``train-sft`` and ``train-grpo`` under ``accelerate launch`` (DDP, DeepSpeed), and vLLM generation.

Every launched process runs the same command. The Trainer shards the data and syncs the gradients; what is
left to us is the bookkeeping that must happen once: the MLflow run, ``meta.json`` files and the adapters
we save ourselves (the Trainer already writes its checkpoints from the main process only). This module
answers "which process am I" and gives the main-process-only versions of those writes.

Rank and world size come from the launcher's environment (``RANK``, ``LOCAL_RANK``, ``WORLD_SIZE``, set by
torchrun, ``accelerate launch`` and the DeepSpeed launcher), not from ``accelerate.PartialState()``: calling
that before the Trainer exists would initialise accelerate's shared state early, and on a CPU machine it
would do so without ``cpu=True`` and pick no distributed backend at all (``DistributedType.NO``).

Commands, configs and what was verified where: ``docs/scaling.md``. Configs shipped in the package:
``training/accelerate_configs/`` (``python -m training.distributed`` lists their paths).
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

CONFIG_DIR = Path(__file__).resolve().parent / "accelerate_configs"
VLLM_MODES = ("colocate", "server")


# ------------------------------------------------------------------------------------------------ ranks
def _env_int(*names: str, default: int) -> int:
    for name in names:
        value = os.environ.get(name, "").strip()
        if value.isdigit():
            return int(value)
    return default


def world_size() -> int:
    """Processes in this training run (1 when not launched by a distributed launcher)."""
    return _env_int("WORLD_SIZE", default=1)


def process_index() -> int:
    """This process's global rank (0 on the main process and when not launched distributed)."""
    return _env_int("RANK", default=0)


def local_process_index() -> int:
    """This process's rank on its own machine: the index of the GPU it owns."""
    return _env_int("LOCAL_RANK", default=0)


def is_main_process() -> bool:
    """Whether this process does the run's one-off writes (MLflow, meta.json, saved adapters)."""
    return process_index() == 0


def run_params() -> dict[str, Any]:
    """What a tracked run records about its launch: the world size and the launcher."""
    return {"world_size": world_size(), "launcher": launcher()}


def launcher() -> str:
    """How the processes were started: ``single``, ``deepspeed`` (accelerate's DeepSpeed launcher) or
    ``ddp`` (``accelerate launch`` or ``torchrun``)."""
    if world_size() == 1:
        return "single"
    return "deepspeed" if os.environ.get("ACCELERATE_USE_DEEPSPEED", "").lower() == "true" else "ddp"


# ------------------------------------------------------------------------------------- one-off writes
@contextlib.contextmanager
def main_process_run(experiment: str, run_name: str) -> Iterator[Any]:
    """An MLflow run on the main process (with :func:`run_params` logged), nothing on the others.

    The other processes get ``None`` and no active run, so MLflow calls guarded by ``mlflow.active_run()``
    (and transformers' MLflow callback, which logs from world process zero only) stay silent there; direct
    calls go through :data:`main_process_mlflow`.
    """
    if not is_main_process():
        yield None
        return
    import mlflow

    from eval.tracking import start_run

    with start_run(experiment, run_name) as run:
        mlflow.log_params(run_params())
        yield run


class _MainProcessMlflow:
    """``mlflow`` on the main process; on the others every attribute is a function that does nothing.

    Without it, a ``mlflow.log_params`` on a process with no active run would open a second run.
    """

    def __getattr__(self, name: str) -> Any:
        if is_main_process():
            import mlflow

            return getattr(mlflow, name)
        return _do_nothing


def _do_nothing(*args: Any, **kwargs: Any) -> None:
    return None


main_process_mlflow = _MainProcessMlflow()


def write_meta(directory: str | Path, **fields: Any) -> Path:
    """:func:`eval.tracking.write_meta` on the main process only; every process gets the path back."""
    from eval.tracking import write_meta as write

    return write(directory, **fields) if is_main_process() else Path(directory) / "meta.json"


# ------------------------------------------------------------------------------------ accelerate configs
def accelerate_configs() -> dict[str, Path]:
    """The shipped ``accelerate launch --config_file`` files by name (``ddp``, ``zero2``, ...)."""
    return {path.stem: path for path in sorted(CONFIG_DIR.glob("*.yaml"))}


def accelerate_config(name: str) -> Path:
    """The path of one shipped config; an unknown name gets an error listing the valid ones."""
    configs = accelerate_configs()
    if name not in configs:
        raise KeyError(f"no accelerate config {name!r}; shipped: {', '.join(configs)}")
    return configs[name]


# ------------------------------------------------------------------------------------------ vLLM modes
def vllm_config_kwargs(
    use_vllm: bool,
    mode: str,
    host: str,
    port: int,
    gpu_memory_utilization: float,
    max_model_length: int,
) -> dict[str, Any]:
    """The vLLM fields of TRL's ``GRPOConfig``.

    ``colocate``: vLLM runs inside each training process and shares its GPU (the single-GPU option), so it
    gets a memory share and a context limit. ``server``: generation runs on a separate ``trl vllm-serve``
    process on its own GPU(s); the trainer sends prompts to ``host:port`` and pushes its weights there after
    each step. The server sizes its own memory, so the colocate-only fields are left at TRL's defaults.
    """
    if mode not in VLLM_MODES:
        raise ValueError(f"vllm mode {mode!r} is not one of {', '.join(VLLM_MODES)}")
    kwargs: dict[str, Any] = {"use_vllm": use_vllm, "vllm_mode": mode}
    if mode == "server":
        return kwargs | {"vllm_server_host": host, "vllm_server_port": port}
    # explicit: TRL's default share (0.3) is set for big GPUs, and without a limit vLLM sizes its KV cache for
    # the model's whole context; prompt (< profile.max_length) plus completion is all a step needs
    return kwargs | {"vllm_gpu_memory_utilization": gpu_memory_utilization,
                     "vllm_max_model_length": max_model_length}  # fmt: skip


def missing_vllm_message(mode: str) -> str | None:
    """Why ``--use-vllm`` cannot run here (vLLM not installed), or None when it is installed."""
    if importlib.util.find_spec("vllm") is not None:
        return None
    from llm_agent.models import GPU_EXTRA_HINT

    where = (
        "the training processes need it too (TRL's client pushes the weights to the server through vLLM's "
        "communicator), as does the `trl vllm-serve` process"
        if mode == "server"
        else "it runs inside the training process"
    )
    return (
        f"--use-vllm (vllm mode {mode}) needs the package 'vllm'; {where}. Install it with {GPU_EXTRA_HINT}"
    )


def main(argv: list[str] | None = None) -> int:
    """``python -m training.distributed``: the shipped accelerate configs and their paths."""
    for name, path in accelerate_configs().items():
        print(f"{name:14s} {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
