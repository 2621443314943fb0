"""Stage 1, supervised fine-tuning: expert rollouts (``experts``) with grounded ``<think>`` traces (``think``)
become chat examples (``data``: ``make-sft-data``), and TRL's SFTTrainer trains a LoRA adapter on them
(``trainer``: ``train-sft``, also ``python -m training.sft``)."""
