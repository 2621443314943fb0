"""Stage 2, GRPO on the environment's score: prompts from train-split states (``prompts``), the env-score
reward (``rewards``), the trainer (``trainer``: ``train-grpo``, also ``python -m training.grpo``), its
collapse warning and val selection (``monitor``) and the adapter saving both use (``outputs``). The trainer
and the monitor do not import each other."""
