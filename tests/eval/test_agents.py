"""Rule agents act on what the observation shows, and the registry resolves names."""

from __future__ import annotations

import numpy as np
import pytest

import market_env
from eval.agents import RSIAgent, UnknownAgentError, buy_action, feature, make_agent, sell_action
from market_env.actions import numeric_to_fractions


@pytest.mark.parametrize("fraction", [0.01, 0.25, 1 / 3, 1.0])
def test_action_encoding_round_trips_through_the_env_mapping(fraction):
    sell, buy, _ = numeric_to_fractions(np.array([buy_action(fraction), sell_action(fraction)]))
    assert buy[0] == pytest.approx(fraction) and sell[1] == pytest.approx(fraction)
    assert buy[1] == 0 and sell[0] == 0


def test_unknown_agent_lists_the_valid_names():
    with pytest.raises(UnknownAgentError, match=r"hold, buy-and-hold, random, rsi, ppo:<path>"):
        make_agent("momentum")


def test_rsi_agent_follows_its_documented_rules():
    batch = market_env.make_batch("hard", n_envs=64, split="train", seed=0)
    batch.reset()
    agent = RSIAgent()
    agent.reset(64, 0)
    bought_somewhere = False
    for _ in range(20):
        snapshot = batch.market.snapshot()
        actions = agent.act(None, snapshot)
        rsi, trend = feature(snapshot, "rsi"), feature(snapshot, "trend")
        held = snapshot.shares > 0
        expect_buy = ~held & (rsi < 30) & (trend >= -0.02)
        with np.errstate(divide="ignore", invalid="ignore"):
            down = np.where(held, snapshot.close / snapshot.avg_cost - 1, 0) < -0.05
        expect_sell = held & ((rsi > 70) | down)
        np.testing.assert_array_equal(actions > 0.1, expect_buy)
        np.testing.assert_array_equal(actions < -0.1, expect_sell)
        np.testing.assert_allclose(actions[expect_sell], -1.0)
        bought_somewhere |= expect_buy.any()
        batch.step(actions)
    assert bought_somewhere  # the rule fired at least once in 64 x 20 days


def test_random_agent_is_reproducible_from_its_seed():
    batch = market_env.make_batch("medium", n_envs=4, split="train", seed=0)
    batch.reset()
    first, second = make_agent("random"), make_agent("random")
    first.reset(4, 123)
    second.reset(4, 123)
    snapshot = batch.market.snapshot()
    np.testing.assert_array_equal(first.act(None, snapshot), second.act(None, snapshot))
