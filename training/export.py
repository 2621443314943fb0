"""Ship a trained LoRA adapter: its weights in fp16, its config and its ``meta.json``, nothing else.

A published row must be reproducible without retraining: ``evaluate --agent llm:smollm2-135m@<shipped>``.
Training writes fp32 weights plus checkpoints, a tokenizer copy and trainer state (about 23 MB for an
r=16 SmolLM2-135M adapter); the model needs only the LoRA matrices, and fp16 halves them (9.8 MB). The
base model supplies the tokenizer. Rounding to fp16 can move a greedy decision whose two best tokens
were within about 1e-3 of each other, so a published row is measured on the shipped files themselves.

Run: ``python -m training.export runs/edge/grpo-credit/final adapters/edge-grpo-credit``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path
from typing import Any

WEIGHTS, CONFIG, META = "adapter_model.safetensors", "adapter_config.json", "meta.json"


class AdapterExportError(ValueError):
    """The source is not a PEFT adapter directory, or the target would overwrite something."""


def export_adapter(source: Path, target: Path, dtype: str = "float16") -> dict[str, Any]:
    """Write ``source``'s LoRA weights cast to ``dtype``, its config and its meta (plus provenance) to
    ``target``; returns the meta written. ``target`` must not exist yet or be empty."""
    import torch
    from safetensors.torch import load_file, save_file

    missing = [name for name in (WEIGHTS, CONFIG) if not (source / name).is_file()]
    if missing:
        raise AdapterExportError(f"{source} is not a PEFT adapter directory: {', '.join(missing)} missing")
    if target.exists() and any(target.iterdir()):
        raise AdapterExportError(f"{target} exists and is not empty; choose a new folder")
    weights = load_file(str(source / WEIGHTS))
    cast = getattr(torch, dtype)
    weights = {k: v.to(cast) if v.is_floating_point() else v for k, v in weights.items()}
    target.mkdir(parents=True, exist_ok=True)
    save_file(weights, str(target / WEIGHTS), metadata={"format": "pt"})
    config = json.loads((source / CONFIG).read_text())
    config["inference_mode"] = True
    (target / CONFIG).write_text(json.dumps(config, indent=2) + "\n")
    meta = json.loads((source / META).read_text()) if (source / META).is_file() else {}
    meta["export"] = {
        "source": str(source),
        "source_sha256": _sha256(source / WEIGHTS),
        "dtype": dtype,
        "sha256": _sha256(target / WEIGHTS),
        "parameters": sum(v.numel() for v in weights.values()),
    }
    (target / META).write_text(json.dumps(meta, indent=2, default=str) + "\n")
    return meta


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.export", description=__doc__.splitlines()[0])
    parser.add_argument("source", type=Path, help="adapter directory written by train-sft or train-grpo")
    parser.add_argument("target", type=Path, help="new folder for the shipped files")
    parser.add_argument("--dtype", default="float16", choices=("float16", "bfloat16", "float32"))
    args = parser.parse_args(argv)
    try:
        meta = export_adapter(args.source, args.target, args.dtype)
    except AdapterExportError as err:
        parser.exit(2, f"export: {err}\n")
    size = (args.target / WEIGHTS).stat().st_size
    print(f"{args.target}: {meta['export']['parameters']:,} parameters in {args.dtype}, {size / 1e6:.1f} MB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
