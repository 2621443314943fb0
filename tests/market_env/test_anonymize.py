"""Anonymised mode: nothing an agent receives names the real market, and the market itself is unchanged.

Each test plays the same episodes in the clear and anonymised, checks every returned thing (observations,
reset and step info, batch infos, trades, grades) against the real identity of the episode, and checks that
the NAV paths and scores are identical. The same leak checks run on the clear episode must find the leaks:
that shows the checks can fail.
"""

from __future__ import annotations

import json
import re
from typing import Any

import numpy as np
import pytest

import market_env
from market_env.anonymize import agent_order, to_agent, to_slots
from market_env.observations import format_price

# Stocks priced above Rs 1,500 throughout the window: their real prices print as 4-5 digit integers that
# nothing else in an anonymised observation (rescaled prices near 100, units with a decimal) can print as.
EPISODE = {
    "start_date": "2025-06-02",
    "symbols": ["ABB", "APOLLOHOSP", "ASIANPAINT", "HAL", "INFY", "LT", "M&M", "MARUTI", "TCS", "TITAN"],
}
ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


def _text(obj: Any) -> str:
    """Everything in ``obj`` as one string: floats as repr (all digits), arrays as lists."""
    return json.dumps(obj, default=lambda o: o.tolist() if hasattr(o, "tolist") else str(o))


def _leaks(returned: str, identity: dict, panel) -> list[str]:
    """Real symbols, ISO dates and real prices (as printed or as full floats) found in ``returned``."""
    found = [
        s for s in identity["real_symbols"] if re.search(rf"(?<![\w&-]){re.escape(s)}(?![\w&-])", returned)
    ]
    found += ISO_DATE.findall(returned)[:1]
    start, end = panel.day_index(identity["start_date"]), panel.day_index(identity["end_date"])
    columns = [panel.symbols.index(s) for s in identity["real_symbols"]]
    for prices in (panel.close[start : end + 1, columns], panel.open[start : end + 1, columns]):
        for price in prices.ravel().tolist():
            printed = [repr(price)] + ([format_price(price)] if price >= 1000 else [])
            found += [p for p in printed if re.search(rf"(?<![\d.,]){re.escape(p)}(?![\d.,])", returned)]
    return found


def _play(anonymize: bool, obs_mode: str) -> dict[str, Any]:
    """One medium test episode with the same orders on the same real stocks, whatever they are called."""
    env = market_env.make("medium", split="test", obs_mode=obs_mode, anonymize=anonymize)
    obs, info = env.reset(options=EPISODE)
    identity = env.episode_identity
    shown = {real: name for name, real in identity["names"].items()}  # real symbol -> name the agent uses
    by_real = np.random.default_rng(0).uniform(-1, 1, (30, 10))  # numeric orders, one column per real stock
    returned, navs, rewards, shares = [obs, info], [], [], []
    for t in range(30):
        if obs_mode == "text":
            buy, sell = EPISODE["symbols"][t % 10], EPISODE["symbols"][(t + 4) % 10]
            action = f"BUY {shown[buy]} 0.3\nSELL {shown[sell]} 0.5"
        else:
            action = by_real[t, [EPISODE["symbols"].index(identity["names"][n]) for n in env.names]]
        obs, reward, terminated, _, info = env.step(action)
        returned += [obs, info]
        navs.append(info["nav"])
        rewards.append(reward)
        shares.append(env.market.sim.shares[0].copy())
    assert terminated and not any(i["invalid_action"] for i in returned[3::2])
    return {"env": env, "identity": identity, "returned": returned, "navs": navs, "rewards": rewards,
            "grade": info["grade"], "shares": np.array(shares)}  # fmt: skip


@pytest.mark.parametrize("obs_mode", ["text", "numeric"])
def test_single_env_returns_nothing_real_and_plays_the_same_market(obs_mode):
    clear, anonymous = _play(False, obs_mode), _play(True, obs_mode)
    panel = clear["env"].panel
    assert clear["identity"] == {**anonymous["identity"], "names": clear["identity"]["names"]}
    # the same market: NAV path, rewards, score and the simulator's holdings agree exactly
    assert anonymous["navs"] == clear["navs"] and anonymous["rewards"] == clear["rewards"]
    assert anonymous["grade"]["score"] == clear["grade"]["score"]
    assert anonymous["grade"]["nav"] == clear["grade"]["nav"]
    np.testing.assert_array_equal(anonymous["shares"], clear["shares"])
    assert clear["shares"].any()
    # nothing real in anything returned; the same check finds the leaks of the clear episode
    assert _leaks(_text(anonymous["returned"]), anonymous["identity"], panel) == []
    assert len(_leaks(_text(clear["returned"]), clear["identity"], panel)) > 20
    # no real share count: positions and trades are units (shares x start close / 100)
    real_counts = {int(n) for n in clear["shares"].ravel() if n > 0}
    for info in anonymous["returned"][3::2]:
        held = [v for v in info["positions"].values() if v]
        assert held and not real_counts & set(held)
        assert all(trade["shares"] not in real_counts for trade in info["trades"])
        value = info["cash"] + sum(info["positions"][s] * info["prices"][s] for s in info["positions"])
        assert value == pytest.approx(info["nav"], rel=1e-12)  # units x shown price = the rupee value
        for trade in info["trades"]:
            assert trade["shares"] * trade["price"] == pytest.approx(trade["value"], rel=1e-12)
    if obs_mode == "text":
        positions = [
            line.split("|")[-1] for obs in anonymous["returned"][2::2] for line in obs.splitlines()[2:12]
        ]
        printed = {p.split(" @")[0] for p in positions if p != "-"}
        assert printed and not printed & {str(n) for n in real_counts}


def test_cash_spent_over_units_gives_the_shown_price_not_the_real_one():
    env = market_env.make("medium", split="test", anonymize=True)
    env.reset(options=EPISODE)
    _, _, _, _, info = env.step("BUY STOCK_A 0.5")
    trade = info["trades"][0]
    implied = (1_000_000.0 - info["cash"] - trade["costs"]) / trade["shares"]
    assert implied == pytest.approx(trade["price"], rel=1e-9) and 80 < implied < 125
    real = env.episode_identity["names"]["STOCK_A"]
    assert (
        real in EPISODE["symbols"] and abs(implied - env.panel.close[-1, env.panel.symbols.index(real)]) > 500
    )


@pytest.mark.parametrize("obs_mode", ["text", "numeric"])
def test_batch_returns_nothing_real_across_an_autoreset_and_plays_the_same_market(obs_mode):
    def play(anonymize: bool):
        batch = market_env.make_batch(
            "easy", n_envs=3, split="test", obs_mode=obs_mode, seed=5, anonymize=anonymize
        )
        obs, infos = batch.reset()
        identities, returned, rewards = batch.episode_identities(), [obs, infos], []
        for t in range(21):  # one autoreset: step 20 finishes every slot and starts the next episodes
            if obs_mode == "text":
                actions = [
                    f"BUY {names[0]} 0.5" if t % 3 == 0 else f"SELL {names[0]} 0.5" for names in batch.names
                ]
            else:
                actions = np.full((3, 1), 0.8 if t % 3 == 0 else -0.8)
            obs, reward, done, _, infos = batch.step(actions)
            returned += [obs, infos]
            rewards.append(reward)
            if done.all():
                finished = batch.finished_identities()
                identities += batch.episode_identities()
        return batch, identities, finished, returned, np.array(rewards)

    clear, anonymous = play(False), play(True)
    panel = clear[0].market.panel
    np.testing.assert_array_equal(anonymous[4], clear[4])
    assert [i["start_date"] for i in anonymous[1]] == [i["start_date"] for i in clear[1]]
    assert [i["start_date"] for i in anonymous[2]] == [i["start_date"] for i in clear[1][:3]]
    grades = [g for step in anonymous[3][3::2] for g in step.get("grade", []) if g]
    clear_grades = [g for step in clear[3][3::2] for g in step.get("grade", []) if g]
    assert [g["score"] for g in grades] == [g["score"] for g in clear_grades] and len(grades) == 3
    text = _text(anonymous[3])
    for identity in anonymous[1]:
        assert _leaks(text, identity, panel) == []
    assert any(_leaks(_text(clear[3]), identity, panel) for identity in clear[1])


def test_letters_are_a_seeded_permutation_that_forks_keep():
    start, symbols = np.array([700, 700, 900]), np.array([[3, 10, 42], [3, 10, 42], [3, 10, 42]])
    order = agent_order(start, symbols)
    assert (order[0] == order[1]).all() and sorted(order[2].tolist()) == [0, 1, 2]
    values = np.arange(9.0).reshape(3, 3)
    np.testing.assert_array_equal(to_slots(to_agent(values, order), order), values)
    # a fork into another env keeps the names of the original
    env = market_env.make("medium", split="val", seed=4, anonymize=True)
    env.reset()
    env.step("BUY STOCK_B 0.4")
    other = market_env.make("medium", split="val", seed=9, anonymize=True)
    other.reset()
    other.set_state(env.get_state())
    assert other.episode_identity == env.episode_identity and other.render() == env.render()
