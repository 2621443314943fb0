"""``accelerate launch --config_file`` files for ``train-sft`` and ``train-grpo`` (package data, so an
installed wheel has them too; ``python -m training.distributed`` prints their paths).
Commands: ``docs/scaling.md``.

- ``ddp.yaml``: one process per GPU, data parallel (Kaggle 2xT4 with a 4-bit model, or an 8-GPU node).
- ``zero2.yaml``: DeepSpeed ZeRO-2 (optimizer state and gradients sharded) for 16-bit models on Ampere+.
- ``zero3.yaml``: DeepSpeed ZeRO-3 (the weights sharded too), for models whose 16-bit copy per GPU does
  not fit. Neither ZeRO config takes a 4-bit (bitsandbytes) model: use ``ddp.yaml`` for QLoRA.
"""
