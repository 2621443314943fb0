"""Training the LLM trading agent, one subpackage per stage:

- ``training.sft``: expert rollouts and SFT data (``sft.data``, ``make-sft-data``; ``sft.experts``,
  ``sft.think``), then LoRA/QLoRA SFT (``sft.trainer``, ``train-sft``);
- ``training.grpo``: GRPO on the environment's score (``grpo.trainer``, ``train-grpo``; ``grpo.prompts``,
  ``grpo.rewards``, ``grpo.monitor``, ``grpo.outputs``);
- ``training.ppo``: PPO on numeric observations, the classic-RL baseline (``ppo.trainer``, ``train-ppo``;
  ``ppo.policy``).

Shared by the stages: ``profiles`` (hardware profiles), ``distributed`` (multi-GPU bookkeeping) and
``accelerate_configs/``. ``python -m training.sft`` (``.grpo``, ``.ppo``) runs the stage's trainer. Each
module imports its heavy libraries (torch, transformers, trl, peft) inside ``main``, so importing the
package is cheap.
"""
