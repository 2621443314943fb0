"""What PPO runs in torch and SB3: the batch env as an SB3 ``VecEnv``, observation statistics shared across
stocks, and a permutation-equivariant actor-critic that serves any number of stocks.

The numeric observation (``market_env.observations``) is K x 10 market features stock by stock, then the 3
portfolio features feature by feature (K weights, K unrealised P&Ls, K held flags), then 3 globals. The
policy reads it as K rows of 13 stock features + the 3 globals and treats every row alike:

    x_k = normalise([stock_k, globals])       (16 values; statistics shared by every stock)
    e_k = embed(x_k)                          same MLP for every stock
    z_k = mix([e_k, mean_j e_j])              each stock sees the pooled portfolio context
    action mean_k = head(actor(z_k))          one Box action per stock, head initialised near 0 (hold)
    value = value_net(critic(mean_k z_k))     the critic reads the pooled context

No weight depends on K or on a stock's slot, so permuting the stocks permutes the actions, and a model
trained on 10 stocks acts on 25. One log-std is shared by every stock for the same reason.
"""

from __future__ import annotations

import sys
from functools import partial
from typing import Any

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.distributions import DiagGaussianDistribution
from stable_baselines3.common.logger import KVWriter
from stable_baselines3.common.policies import ActorCriticPolicy
from stable_baselines3.common.running_mean_std import RunningMeanStd
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
from stable_baselines3.common.vec_env import VecEnv
from torch import nn

from market_env.batch import BatchMarketEnv
from market_env.observations import GLOBAL_FEATURES, MARKET_FEATURES, STOCK_FEATURES

# SB3 pickles the policy class by its import path into model.zip: runs saved before this module moved name
# ``training.ppo_policy.StockPolicy``. Every loader here imports this module first, so the old name resolves.
sys.modules.setdefault("training.ppo_policy", sys.modules[__name__])

N_MARKET, N_STOCK, N_GLOBAL = len(MARKET_FEATURES), len(STOCK_FEATURES), len(GLOBAL_FEATURES)
ROW_SIZE = N_STOCK + N_GLOBAL  # what the shared encoder reads per stock


def n_stocks_of(obs_size: int) -> int:
    """K from the length of a numeric observation (K * 13 + 3); a clear error for anything else."""
    k, rest = divmod(obs_size - N_GLOBAL, N_STOCK)
    if k < 1 or rest:
        raise ValueError(
            f"a numeric market observation has K * {N_STOCK} + {N_GLOBAL} values, got {obs_size}: "
            "make the env with obs_mode='numeric'"
        )
    return k


def stock_rows(obs: th.Tensor) -> th.Tensor:
    """(B, D) observations -> (B, K, 16): each stock's 13 features then the 3 globals.

    The torch twin of ``market_env.observations.split_observation`` (a test holds them equal).
    """
    k = n_stocks_of(obs.shape[-1])
    market = obs[:, : k * N_MARKET].reshape(-1, k, N_MARKET)
    portfolio = obs[:, k * N_MARKET : k * N_STOCK].reshape(-1, N_STOCK - N_MARKET, k).transpose(1, 2)
    globals_ = obs[:, k * N_STOCK :].unsqueeze(1).expand(-1, k, -1)
    return th.cat([market, portfolio, globals_], dim=-1)


class SharedNormalizer:
    """Running mean/variance of each stock feature pooled over every stock (and of each global).

    Pooling over stocks keeps the statistics independent of K and of slot order. ``update=False`` freezes
    them (evaluation). Saved as JSON beside the model.
    """

    def __init__(self, clip: float = 10.0, epsilon: float = 1e-8) -> None:
        self.stock, self.globals = RunningMeanStd(shape=(N_STOCK,)), RunningMeanStd(shape=(N_GLOBAL,))
        self.clip, self.epsilon = clip, epsilon

    def update(self, obs: np.ndarray) -> None:
        k = n_stocks_of(obs.shape[-1])
        market = obs[:, : k * N_MARKET].reshape(-1, k, N_MARKET)
        portfolio = obs[:, k * N_MARKET : k * N_STOCK].reshape(-1, N_STOCK - N_MARKET, k).swapaxes(1, 2)
        self.stock.update(np.concatenate([market, portfolio], axis=-1).reshape(-1, N_STOCK))
        self.globals.update(obs[:, k * N_STOCK :])

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        """Normalised copy of (B, D) observations, same layout, float32."""
        k = n_stocks_of(obs.shape[-1])
        mean = self._in_layout(self.stock.mean, self.globals.mean, k)
        var = self._in_layout(self.stock.var, self.globals.var, k)
        scaled = (obs - mean) / np.sqrt(var + self.epsilon)
        return np.clip(scaled, -self.clip, self.clip).astype(np.float32)

    @staticmethod
    def _in_layout(per_stock: np.ndarray, per_global: np.ndarray, k: int) -> np.ndarray:
        """Per-feature values laid out like an observation: market stock-major, portfolio feature-major."""
        market, portfolio = np.tile(per_stock[:N_MARKET], k), np.repeat(per_stock[N_MARKET:], k)
        return np.concatenate([market, portfolio, per_global])

    def to_dict(self) -> dict[str, Any]:
        return {
            "stock_features": list(STOCK_FEATURES), "global_features": list(GLOBAL_FEATURES),
            "stock_mean": self.stock.mean.tolist(), "stock_var": self.stock.var.tolist(),
            "stock_count": self.stock.count, "global_mean": self.globals.mean.tolist(),
            "global_var": self.globals.var.tolist(), "global_count": self.globals.count,
            "clip": self.clip, "epsilon": self.epsilon,
        }  # fmt: skip

    @classmethod
    def from_dict(cls, stats: dict[str, Any]) -> SharedNormalizer:
        if stats.get("stock_features") != list(STOCK_FEATURES):
            raise ValueError(
                f"normalisation statistics are for features {stats.get('stock_features')}, this env has "
                f"{list(STOCK_FEATURES)}: retrain with train-ppo"
            )
        normalizer = cls(float(stats["clip"]), float(stats["epsilon"]))
        for rms, prefix in ((normalizer.stock, "stock"), (normalizer.globals, "global")):
            rms.mean = np.asarray(stats[f"{prefix}_mean"], dtype=np.float64)
            rms.var = np.asarray(stats[f"{prefix}_var"], dtype=np.float64)
            rms.count = float(stats[f"{prefix}_count"])
        return normalizer


class MarketVecEnv(VecEnv):
    """SB3 ``VecEnv`` over ``BatchMarketEnv``: the batch's n_envs episodes are SB3's parallel envs.

    Observations are normalised with ``normalizer`` (updated while ``training``). A finished episode puts
    ``{"episode": {"r": final score, "l": days}}`` in its info, so SB3 logs ``rollout/ep_rew_mean`` as
    the mean final score. The batch autoresets in the same step and never truncates, so there is no
    ``terminal_observation``: SB3 reads it only to bootstrap truncated episodes, which never happen here.
    """

    def __init__(self, batch: BatchMarketEnv, normalizer: SharedNormalizer, training: bool = True) -> None:
        if batch.market.obs_mode != "numeric":
            raise ValueError("PPO acts on numeric observations: make the batch with obs_mode='numeric'")
        self.batch, self.normalizer, self.training = batch, normalizer, training
        self._actions: np.ndarray | None = None
        super().__init__(batch.num_envs, batch.single_observation_space, batch.single_action_space)

    def _normalised(self, obs: np.ndarray) -> np.ndarray:
        if self.training:
            self.normalizer.update(obs)
        return self.normalizer(obs)

    def reset(self) -> np.ndarray:
        seed = self._seeds[0]  # SB3 seeds env i with seed + i, as the batch seeds its slot i
        obs, _ = self.batch.reset(seed=seed)
        self._reset_seeds()
        return self._normalised(obs)

    def step_async(self, actions: np.ndarray) -> None:
        self._actions = actions

    def step_wait(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[dict]]:
        obs, rewards, done, _, infos = self.batch.step(self._actions)
        out: list[dict] = [{} for _ in range(self.num_envs)]
        for i in np.flatnonzero(done):
            grade = infos["grade"][i]
            out[i] = {"episode": {"r": grade["score"], "l": self.batch.market.task.n_days, "t": 0.0}}
        return self._normalised(obs), rewards.astype(np.float32), done.copy(), out

    def close(self) -> None:
        self.batch.close()

    def get_attr(self, attr_name: str, indices: Any = None) -> list[Any]:
        return [getattr(self.batch, attr_name)] * len(list(self._get_indices(indices)))

    def set_attr(self, attr_name: str, value: Any, indices: Any = None) -> None:
        setattr(self.batch, attr_name, value)

    def env_method(self, method_name: str, *args: Any, indices: Any = None, **kwargs: Any) -> list[Any]:
        raise NotImplementedError("the market batch env steps all episodes together; call it directly")

    def env_is_wrapped(self, wrapper_class: type, indices: Any = None) -> list[bool]:
        return [False] * len(list(self._get_indices(indices)))


class StockEncoder(BaseFeaturesExtractor):
    """Observations (B, D) -> contextualised per-stock embeddings, flattened (B, K * hidden)."""

    def __init__(self, observation_space: spaces.Box, hidden: int = 64) -> None:
        super().__init__(observation_space, features_dim=n_stocks_of(observation_space.shape[0]) * hidden)
        self.hidden = hidden
        self.embed = nn.Sequential(
            nn.Linear(ROW_SIZE, hidden), nn.Tanh(), nn.Linear(hidden, hidden), nn.Tanh()
        )
        self.mix = nn.Sequential(nn.Linear(2 * hidden, hidden), nn.Tanh())

    def forward(self, obs: th.Tensor) -> th.Tensor:
        embedded = self.embed(stock_rows(obs))
        context = embedded.mean(dim=1, keepdim=True).expand_as(embedded)
        return self.mix(th.cat([embedded, context], dim=-1)).flatten(1)


class StockHeads(nn.Module):
    """SB3's ``mlp_extractor``: per-stock actor latents (B, K * hidden) and a pooled critic latent."""

    def __init__(self, hidden: int) -> None:
        super().__init__()
        self.hidden = self.latent_dim_pi = self.latent_dim_vf = hidden
        self.actor = nn.Sequential(nn.Linear(hidden, hidden), nn.Tanh())
        self.critic = nn.Sequential(nn.Linear(hidden, hidden), nn.Tanh())

    def forward(self, features: th.Tensor) -> tuple[th.Tensor, th.Tensor]:
        return self.forward_actor(features), self.forward_critic(features)

    def forward_actor(self, features: th.Tensor) -> th.Tensor:
        return self.actor(features.reshape(features.shape[0], -1, self.hidden)).flatten(1)

    def forward_critic(self, features: th.Tensor) -> th.Tensor:
        return self.critic(features.reshape(features.shape[0], -1, self.hidden).mean(dim=1))


class PerStockHead(nn.Module):
    """The same linear map from each stock's latent to its action mean: (B, K * hidden) -> (B, K)."""

    def __init__(self, hidden: int) -> None:
        super().__init__()
        self.hidden, self.linear = hidden, nn.Linear(hidden, 1)

    def forward(self, latent: th.Tensor) -> th.Tensor:
        return self.linear(latent.reshape(latent.shape[0], -1, self.hidden)).squeeze(-1)


class StockPolicy(ActorCriticPolicy):
    """SB3 actor-critic with the per-stock encoder and heads; a Gaussian with one log-std for all stocks.

    SB3's ``forward``, ``evaluate_actions`` and ``predict_values`` run unchanged on these modules; only
    ``_build`` differs, because SB3's default action net and log-std have one entry per action slot.
    """

    def __init__(self, *args: Any, hidden: int = 64, **kwargs: Any) -> None:
        self.hidden = hidden
        kwargs["features_extractor_class"] = StockEncoder
        kwargs["features_extractor_kwargs"] = {"hidden": hidden}
        super().__init__(*args, **kwargs)

    def _get_constructor_parameters(self) -> dict[str, Any]:
        return super()._get_constructor_parameters() | {"hidden": self.hidden}

    def _build_mlp_extractor(self) -> None:
        self.mlp_extractor = StockHeads(self.hidden)

    def _build(self, lr_schedule: Any) -> None:
        if not isinstance(self.action_dist, DiagGaussianDistribution):
            raise ValueError("StockPolicy needs a Box action space and use_sde=False")
        self._build_mlp_extractor()
        self.action_net = PerStockHead(self.hidden)
        self.log_std = nn.Parameter(th.full((1,), float(self.log_std_init)))
        self.value_net = nn.Linear(self.hidden, 1)
        # SB3's gains: sqrt(2) for hidden layers, 1 for the value and 0.01 for the action head, whose
        # output then starts within +-0.1 of 0, the hold dead-zone of the numeric action
        gains = {self.features_extractor: np.sqrt(2), self.mlp_extractor: np.sqrt(2), self.action_net: 0.01,
                 self.value_net: 1.0}  # fmt: skip
        for module, gain in gains.items():
            module.apply(partial(self.init_weights, gain=gain))
        self.optimizer = self.optimizer_class(self.parameters(), lr=lr_schedule(1), **self.optimizer_kwargs)

    def action_means(self, obs: th.Tensor) -> th.Tensor:
        """Deterministic actions (B, K) for normalised observations of any K (SB3's ``predict`` insists on
        the training K, so agents call this)."""
        return self.get_distribution(obs).get_actions(deterministic=True)


class MLflowWriter(KVWriter):
    """Sends SB3's logger values (train/approx_kl, rollout/ep_rew_mean, ...) to the active MLflow run."""

    def write(self, key_values: dict[str, Any], key_excluded: dict[str, Any], step: int = 0) -> None:
        import mlflow

        numbers = {key: float(v) for key, v in key_values.items() if isinstance(v, (int, float, np.number))}
        if numbers and mlflow.active_run() is not None:
            mlflow.log_metrics(numbers, step=step)

    def close(self) -> None:
        """Nothing to close: the caller owns the MLflow run."""
