"""Where a GRPO run writes its adapters and val history.

Its own module so that the trainer (``training.grpo.trainer``) and its monitor (``training.grpo.monitor``)
both import it and neither imports the other.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

BEST_DIR, FINAL_DIR = "best", "final"
VAL_HISTORY = "val_history.json"


def save_adapter(policy: Any, directory: Path, /, **meta: Any) -> Path:
    """Save the trained adapter only (not TRL's frozen ``ref`` copy) with a ``meta.json`` beside it."""
    from eval.tracking import write_meta
    from training.distributed import is_main_process

    if not is_main_process():  # under accelerate launch every process holds the same weights: save once
        return directory
    directory.mkdir(parents=True, exist_ok=True)
    policy.save_pretrained(str(directory), selected_adapters=["default"])
    write_meta(directory, **meta)
    return directory
