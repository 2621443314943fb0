"""Training the LLM trading agent: expert rollouts and SFT data, LoRA/QLoRA SFT, GRPO on the environment's
score (and PPO on numeric observations).

Console scripts: ``make-sft-data``, ``train-sft``, ``train-grpo``, ``train-ppo``. Each module imports its
heavy libraries (torch, transformers, trl, peft) inside ``main``, so importing the package is cheap.
"""
