"""The classic-RL baseline: Stable-Baselines3 PPO on numeric observations (``trainer``: ``train-ppo``, also
``python -m training.ppo``, and the ``ppo:<path>`` agent) with a per-stock policy (``policy``)."""
