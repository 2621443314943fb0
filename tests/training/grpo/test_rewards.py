"""The GRPO reward: env-scored decisions at forked states, the format term, the group check, never raising."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import market_env
from data.synthetic import resolve_data
from eval.agents import MomentumAgent, RSIAgent
from eval.harness import numeric_to_text
from training.grpo.prompts import (
    PromptSetConfig,
    build_prompt_dataset,
    collect_rows,
    state_from_json,
    state_hash,
    state_to_json,
)
from training.grpo.rewards import (
    EnvScoreReward,
    GroupMismatchError,
    RewardConfig,
    center_by_action,
    check_groups,
    completion_text,
    group_advantages,
    momentum_up,
    regime_shares,
)

G = 4


@pytest.fixture(scope="module")
def rows() -> list[dict]:
    """Real states of 6 easy train episodes, every 4th decision, reached by the RSI and random agents."""
    return collect_rows(PromptSetConfig(task="easy", episodes=6, seed=3, stride=4))


@pytest.fixture(scope="module")
def reward() -> EnvScoreReward:
    return EnvScoreReward(RewardConfig(task="easy", num_generations=G))


def held_rows(rows: list[dict]) -> list[dict]:
    return [row for row in rows if json.loads(row["state"])["shares"][0] > 0]


def single_env_score(row: dict, first_action: str, continuation: str = "hold") -> float:
    """Independent reference: one ``market_env.make`` env restored with ``set_state``, stepped to the end."""
    env = market_env.make(row["task"], split="train", obs_mode="text", version=row["env_version"])
    env.reset(seed=0)
    env.set_state(state_from_json(row["state"]))
    action, agent = first_action, RSIAgent()
    while True:
        _, _, terminated, _, info = env.step(action)
        if terminated:
            return info["grade"]["score"]
        if continuation == "hold":
            action = "HOLD"
        else:
            action = numeric_to_text(agent.act(None, env.market.snapshot()), [env.names])[0]


def score(reward: EnvScoreReward, row: dict, completions: list) -> list[float]:
    """Reward of ``completions`` (one group, all from ``row``), as TRL would call it."""
    n = len(completions)
    return reward(
        [row["prompt"]] * n, completions, state=[row["state"]] * n, state_hash=[row["state_hash"]] * n
    )


def test_prompt_set_rows_carry_their_state_and_a_reproducible_hash(rows):
    assert len(rows) == 6 * 5  # 6 episodes x decisions 0, 4, 8, 12, 16
    assert {row["expert"] for row in rows} == {"rsi", "random"}
    assert held_rows(rows), "the random agent reaches states with an open position"
    for row in rows:
        state = state_from_json(row["state"])
        assert state_to_json(state) == row["state"]
        assert row["state_hash"] == state_hash(row["state"], "easy", market_env.ENV_VERSION)
        assert row["prompt"][-1]["content"].splitlines()[-1].startswith(f"Day {state.t + 1} of 20")
    assert len({row["state_hash"] for row in rows}) == len(rows)
    # the hash names the version and task too: the same state under another grader is another state
    assert state_hash(rows[0]["state"], "easy", "1.0.0") != rows[0]["state_hash"]
    assert collect_rows(PromptSetConfig(task="easy", episodes=6, seed=3, stride=4)) == rows


def test_prompt_dataset_is_conversational_with_state_columns():
    dataset = build_prompt_dataset(PromptSetConfig(task="easy", episodes=2, stride=10, experts=("rsi",)))
    assert len(dataset) == 4
    assert {"prompt", "state", "state_hash", "task", "env_version"} <= set(dataset.column_names)
    assert [m["role"] for m in dataset[0]["prompt"]] == ["system", "user"]


@pytest.mark.parametrize(
    "completion",
    [
        "HOLD",  # the plain answer
        "<think>RSI is neutral, nothing to do.</think>\nHOLD",  # reasoning first, as SFT teaches
        [{"role": "assistant", "content": "HOLD - no signal"}],  # TRL's conversational completion format
    ],
)
def test_hold_reward_equals_the_hold_continuation_score(rows, reward, completion):
    for row in [rows[0], rows[-1], *held_rows(rows)[:2]]:  # first day, late day, open positions
        expected = single_env_score(row, "HOLD")
        assert score(reward, row, [completion] * G) == [expected] * G


def test_orders_are_scored_like_the_single_env_plays_them(rows, reward):
    row = held_rows(rows)[0]
    symbol = row["symbols"][0]
    texts = [f"BUY {symbol} 0.5", f"SELL {symbol} 1", f"SELL {symbol} 0.3", "HOLD"]
    assert score(reward, row, texts) == [single_env_score(row, text) for text in texts]
    assert len(set(score(reward, row, texts))) > 1, "different decisions at one state get different rewards"


def test_rsi_continuation_plays_the_rsi_rule_after_the_decision(rows):
    rsi = EnvScoreReward(RewardConfig(task="easy", continuation="rsi", num_generations=2))
    for row in (rows[0], held_rows(rows)[0]):
        symbol = row["symbols"][0]
        got = score(rsi, row, ["HOLD", f"BUY {symbol} 1"])
        assert got == [single_env_score(row, "HOLD", "rsi"), single_env_score(row, f"BUY {symbol} 1", "rsi")]


orders = st.builds(
    lambda side, fraction, think: (
        (f"<think>{think}</think>\n" if think else "") + f"{side} {{sym}} {fraction}"
    ),
    st.sampled_from(["BUY", "SELL", "buy", "Sell"]),
    st.floats(min_value=1e-4, max_value=1.0, allow_nan=False).map(
        lambda x: f"{x:.4f}".rstrip("0").rstrip(".")
    ),
    st.sampled_from(["", "RSI 28 is oversold."]),
)


@settings(max_examples=40, deadline=None)
@given(
    row_index=st.integers(0, 29),
    valid=st.lists(st.one_of(orders, st.just("HOLD")), min_size=3, max_size=3),
    invalid=st.sampled_from(
        ["", "I would buy some.", "BUY", "BUY {sym} 1.5", "BUY {sym} 0.5\nSELL {sym} 0.5"]
    ),
)
def test_an_invalid_completion_scores_below_every_valid_one(rows, reward, row_index, valid, invalid):
    row = rows[row_index]
    texts = [text.replace("{sym}", row["symbols"][0]) for text in [*valid, invalid]]
    rewards = score(reward, row, texts)
    assert rewards[-1] == reward.config.invalid_reward
    assert min(rewards[:-1]) >= 0.0 > rewards[-1]
    assert reward.last_stats.invalid == 0.25


@settings(max_examples=60, deadline=None)
@given(texts=st.lists(st.text(max_size=300), min_size=G, max_size=G))
def test_the_reward_never_raises_on_garbage_text(rows, reward, texts):
    rewards = score(reward, rows[1], texts)
    assert len(rewards) == G and all(np.isfinite(rewards))
    assert all(r == reward.config.invalid_reward or r >= 0.0 for r in rewards)


@pytest.mark.parametrize(
    "completions",
    [
        [None, 3, {"content": 1}, [{"role": "assistant", "content": None}]],  # not text at all
        [[], [[]], b"HOLD", object()],  # empty and odd containers
    ],
)
def test_non_text_completions_are_invalid_not_errors(rows, reward, completions):
    assert score(reward, rows[0], completions) == [reward.config.invalid_reward] * G


def test_missing_state_columns_are_logged_and_scored_invalid(rows, reward, caplog):
    assert reward([None] * G, ["HOLD"] * G) == [reward.config.invalid_reward] * G
    assert reward.last_stats.failed == 1.0
    assert "reward failed" in caplog.text


def test_a_group_shares_one_state_hash(rows):
    # TRL's sampler repeats each prompt num_generations times in a row: every group is one state
    hashes = [row["state_hash"] for row in rows[:3] for _ in range(G)]
    assert check_groups(hashes, G).tolist() == [True, True, True]
    mixed = hashes.copy()
    mixed[5] = hashes[0]  # one completion of the second group came from another state
    assert check_groups(mixed, G).tolist() == [True, False, True]
    with pytest.raises(GroupMismatchError, match="groups of 4"):
        check_groups(hashes[:-1], G)


def test_a_mismatched_group_is_detected_and_carries_no_signal(rows, reward, caplog):
    first, second = rows[0], held_rows(rows)[0]
    group_rows = [first] * G + [first, second, first, first]
    texts = ["HOLD", f"BUY {first['symbols'][0]} 1"] * G
    rewards = reward(
        [r["prompt"] for r in group_rows],
        texts,
        state=[r["state"] for r in group_rows],
        state_hash=[r["state_hash"] for r in group_rows],
    )
    assert len(set(rewards[:G])) == 2  # the good group is scored
    assert rewards[G:] == [reward.config.invalid_reward] * G  # flat: zero advantage, no gradient
    assert reward.last_stats.failed == 0.5
    assert "mix states" in caplog.text


def test_a_state_that_does_not_match_its_hash_is_rejected(rows, reward, caplog):
    row = rows[0]
    tampered = json.loads(row["state"]) | {"cash": 2_000_000.0}
    state = json.dumps(tampered, sort_keys=True, separators=(",", ":"))
    rewards = reward([None] * G, ["HOLD"] * G, state=[state] * G, state_hash=[row["state_hash"]] * G)
    assert rewards == [reward.config.invalid_reward] * G
    assert "does not match" in caplog.text


def test_completion_text_reads_strings_and_message_lists():
    assert completion_text("HOLD") == "HOLD"
    assert completion_text([{"role": "assistant", "content": "SELL X 1"}]) == "SELL X 1"
    assert completion_text(None) == ""


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("continuation", "ppo", "unknown continuation"),  # only documented continuations
        ("baseline", "rsi", "unknown baseline"),  # only HOLD is a decision to compare against
        ("invalid_reward", 0.0, "must be < 0"),  # 0 is a possible valid score: no format margin
        ("num_generations", 0, "num_generations"),  # a group needs a completion
    ],
)
def test_reward_config_rejects_bad_values(field, value, message):
    with pytest.raises(ValueError, match=message):
        RewardConfig(**{field: value})


def test_stats_report_hold_and_invalid_shares(rows, reward):
    symbol = rows[0]["symbols"][0]
    logged: dict[str, float] = {}
    texts = ["HOLD", "HOLD", f"BUY {symbol} 0.5", "nonsense"]
    reward(
        [None] * G,
        texts,
        state=[rows[0]["state"]] * G,
        state_hash=[rows[0]["state_hash"]] * G,
        log_metric=logged.__setitem__,
    )
    stats = reward.last_stats
    assert (stats.hold, stats.invalid, stats.failed, stats.zero_std_groups) == (0.5, 0.25, 0.0, 0.0)
    assert (stats.buy, stats.sell) == (0.25, 0.0)
    assert logged == {
        "env/invalid_share": 0.25,
        "env/hold_share": 0.5,
        "env/buy_share": 0.25,
        "env/sell_share": 0.0,
        "env/failed_share": 0.0,
        "env/zero_std_groups_share": 0.0,
    }


# ---------------------------------------------------------------------------------------- advantages
def test_batch_and_no_scaling_keep_the_magnitude_that_group_scaling_erases():
    rewards = [0.4, 0.5, 0.4, 0.5, 0.1, 0.9, 0.1, 0.9]  # two groups of 4: a small and a large gap
    group = group_advantages(rewards, 4, "group")
    # TRL's default: both groups become the same +-0.87 pattern, the size of the gap is gone
    np.testing.assert_allclose(group[:4], group[4:], atol=2e-3)  # equal but for the 1e-4 in the divisor
    for scale in ("batch", "none"):
        adv = group_advantages(rewards, 4, scale)
        assert not np.allclose(adv[:4], adv[4:], atol=0.05)
        np.testing.assert_allclose(adv[4:] / adv[:4], 8.0)  # gap 0.8 vs 0.1: eight times the push
    np.testing.assert_allclose(group_advantages(rewards, 4, "none"), [-0.05, 0.05] * 2 + [-0.4, 0.4] * 2)


@settings(max_examples=50, deadline=None)
@given(
    level=st.floats(-1, 1),
    other=st.lists(st.floats(-1, 1), min_size=4, max_size=4),
    scale=st.sampled_from(["batch", "none", "group"]),
)
def test_a_group_of_equal_rewards_carries_no_gradient(level, other, scale):
    adv = group_advantages([level] * 4 + other, 4, scale)
    assert (adv[:4] == 0.0).all()  # zero advantage; with beta=0 the policy-gradient term is all there is


def test_advantages_match_trl_on_the_same_rewards():
    """Our mirror against TRL's own arithmetic (torch, unbiased std, 1e-4), so the tests above test TRL's."""
    import torch
    from trl.trainer.utils import nanstd

    rewards = torch.tensor([0.3, 0.7, 0.7, 0.2, 0.5, 0.5, 0.5, 0.5], dtype=torch.float64)
    centred = rewards - rewards.view(-1, 4).mean(dim=1).repeat_interleave(4)
    expected = {
        "group": centred / (nanstd(rewards.view(-1, 4), dim=1).repeat_interleave(4) + 1e-4),
        "batch": centred / (nanstd(rewards) + 1e-4),
        "none": centred,
    }
    for scale, want in expected.items():
        np.testing.assert_allclose(group_advantages(rewards.numpy(), 4, scale), want.numpy(), atol=1e-12)
    with pytest.raises(ValueError, match="scale_rewards"):
        group_advantages(rewards.numpy(), 4, "std")


# ------------------------------------------------------------------------------ counterfactual credit
def replay(row: dict, first_action: str) -> float:
    """Independent reference: a single env restored at the row's state, ``first_action``, then the actions the
    reaching policy recorded, to the end."""
    env = market_env.make(row["task"], split="train", obs_mode="text", version=row["env_version"])
    env.reset(seed=0)
    env.set_state(state_from_json(row["state"]))
    for action in [first_action, *json.loads(row["continuation"])]:
        _, _, terminated, _, info = env.step(action)
        if terminated:
            return info["grade"]["score"]
    raise AssertionError("the recorded continuation ends before the episode")


def test_rows_record_the_policys_own_actions_as_their_continuation(rows):
    by_episode: dict[int, list[dict]] = {}
    for row in rows:
        by_episode.setdefault(row["episode"], []).append(row)
    for episode in by_episode.values():
        for row in episode:
            continuation = json.loads(row["continuation"])
            assert len(continuation) == 20 - 1 - row["t"]  # every later decision of the episode
        first, later = episode[0], episode[1]  # decisions 0 and 4 of one episode
        assert json.loads(first["continuation"])[later["t"] - first["t"] - 1] == later["action"]
    # replaying the recorded actions from the first state ends in the episode the policy played
    assert any(json.loads(r["continuation"]) != ["HOLD"] * (19 - r["t"]) for r in rows), "some trade"


def test_counterfactual_credit_is_the_difference_of_two_exact_replays(rows):
    credit = EnvScoreReward(RewardConfig(continuation="recorded", baseline="hold", num_generations=G))
    played = EnvScoreReward(RewardConfig(continuation="recorded", num_generations=G))
    for row in (rows[0], *held_rows(rows)[:2], rows[-1]):
        symbol = row["symbols"][0]
        texts = [f"BUY {symbol} 0.5", f"SELL {symbol} 1", "HOLD", f"BUY {symbol} 1"]
        columns = {"state": [row["state"]] * G, "state_hash": [row["state_hash"]] * G}
        columns["continuation"] = [row["continuation"]] * G
        got = credit([None] * G, texts, **columns)
        hold = replay(row, "HOLD")
        assert got == [replay(row, text) - hold for text in texts]
        assert got[2] == 0.0  # HOLD changes nothing
        assert played([None] * G, texts, **columns) == [replay(row, text) for text in texts]


def test_counterfactual_credit_floors_invalid_answers_below_every_difference(rows):
    credit = EnvScoreReward(RewardConfig(continuation="recorded", baseline="hold", num_generations=2))
    row = held_rows(rows)[0]
    got = credit([None] * 2, ["SELL nonsense", f"SELL {row['symbols'][0]} 1"], state=[row["state"]] * 2,
                 state_hash=[row["state_hash"]] * 2, continuation=[row["continuation"]] * 2)  # fmt: skip
    assert got[0] == -1.1 < -1.0 <= got[1]


def test_the_recorded_continuation_needs_its_column(rows, caplog):
    credit = EnvScoreReward(RewardConfig(continuation="recorded", num_generations=G))
    assert score(credit, rows[0], ["HOLD"] * G) == [credit.config.invalid_score] * G
    assert "continuation" in caplog.text


def test_states_of_a_seeded_policy_are_reproducible_from_the_seed():
    """The 'policy' expert is an agent object; the same seed gives the same states and the same actions."""
    from eval.agents import make_agent

    config = PromptSetConfig(task="easy", episodes=3, seed=11, experts=("policy",), stride=5)
    first = collect_rows(config, policy=make_agent("random"))
    assert first == collect_rows(config, policy=make_agent("random"))
    assert {row["expert"] for row in first} == {"policy"} and len(first) == 3 * 4
    other = collect_rows(PromptSetConfig(task="easy", episodes=3, seed=12, experts=("policy",), stride=5),
                         policy=make_agent("random"))  # fmt: skip
    assert other != first
    with pytest.raises(ValueError, match="policy being trained"):
        collect_rows(config)


# ------------------------------------------------------------------------------------- exit continuation
def exit_replay(row: dict, first_action: str, days: int) -> tuple[float, int]:
    """Independent reference: a single env at the row's state, ``first_action``, ``days - 1`` HOLDs, a SELL of
    everything, HOLD to the end; returns the score and the shares held right after the sell filled."""
    env = market_env.make(row["task"], split="train", obs_mode="text", version=row["env_version"])
    env.reset(seed=0)
    env.set_state(state_from_json(row["state"]))
    symbol = row["symbols"][0]
    actions = [first_action, *["HOLD"] * (days - 1), f"SELL {symbol} 1"]
    after_sell = -1
    for k in range(40):
        _, _, terminated, _, info = env.step(actions[k] if k < len(actions) else "HOLD")
        if k == len(actions) - 1:
            after_sell = int(env.market.snapshot().shares[0].sum())
        if terminated:
            return info["grade"]["score"], after_sell
    raise AssertionError("the episode did not end")


@pytest.mark.parametrize("days", [1, 3])
def test_exit_continuation_keeps_the_decision_n_days_then_sells_everything(rows, days):
    played = EnvScoreReward(RewardConfig(continuation="exit", exit_days=days, num_generations=2))
    credit = EnvScoreReward(
        RewardConfig(continuation="exit", exit_days=days, baseline="hold", num_generations=2)
    )
    early = [row for row in rows if row["t"] + days + 1 < 20]
    for row in (early[0], *held_rows(early)[:2]):
        symbol = row["symbols"][0]
        texts = [f"BUY {symbol} 1", "HOLD"]
        buy, hold = (exit_replay(row, text, days) for text in texts)
        assert buy[1] == 0 and hold[1] == 0, "flat once the exit sell has filled"
        assert score(played, row, texts) == pytest.approx([buy[0], hold[0]], abs=1e-12)
        assert score(credit, row, texts) == pytest.approx([buy[0] - hold[0], 0.0], abs=1e-12)
    # a longer horizon pays a different move: the continuation really depends on exit_days
    longer = EnvScoreReward(RewardConfig(continuation="exit", exit_days=days + 4, num_generations=2))
    texts = [f"BUY {early[0]['symbols'][0]} 1", "HOLD"]
    assert score(longer, early[0], texts) != score(played, early[0], texts)


def test_exit_days_must_be_positive():
    with pytest.raises(ValueError, match="exit_days"):
        RewardConfig(continuation="exit", exit_days=0)


def test_regime_shares_split_buy_and_sell_by_the_prompts_5_day_change(rows):
    up = [row for row in rows if momentum_up(row["prompt"])][:2]
    down = [row for row in rows if momentum_up(row["prompt"]) is False][:2]
    assert len(up) == 2 and len(down) == 2
    prompts = [row["prompt"] for row in (*up, *down)]
    # up: one BUY, one HOLD; down: one SELL, one HOLD
    sides = np.array([[0, 1, 0], [1, 0, 0], [0, 0, 1], [1, 0, 0]], dtype=bool)
    assert regime_shares(prompts, sides) == {
        "buy_up": 0.5, "sell_up": 0.0, "buy_down": 0.0, "sell_down": 0.5
    }  # fmt: skip
    # two stocks in one table: no single regime to split by
    content = up[0]["prompt"][-1]["content"]
    row_line = next(line for line in content.splitlines() if line.startswith(up[0]["symbols"][0] + "|"))
    several = content.replace(row_line, row_line + "\nOTHER" + row_line[len(up[0]["symbols"][0]) :])
    assert momentum_up([{"role": "user", "content": several}]) is None
    assert regime_shares([[{"role": "user", "content": "no table"}]], sides[:1]) == {}


@settings(max_examples=60, deadline=None)
@given(
    data=st.lists(
        st.tuples(st.floats(-1, 1), st.sampled_from([(1, 0, 0), (0, 1, 0), (0, 0, 1), (0, 1, 1), (0, 0, 0)])),
        min_size=1,
        max_size=24,
    )
)
def test_centring_zeroes_each_kinds_batch_mean_and_keeps_its_differences(data):
    rewards = np.array([r for r, _ in data])
    sides = np.array([kind for _, kind in data], dtype=bool)
    valid = sides.any(axis=1)  # (0, 0, 0): an invalid answer, which keeps its reward
    centred = center_by_action(rewards, valid, sides)
    assert np.array_equal(centred[~valid], rewards[~valid])
    for kind in {tuple(row) for row in sides[valid]}:
        rows = valid & (sides == kind).all(axis=1)
        assert centred[rows].mean() == pytest.approx(0.0, abs=1e-12)
        assert np.allclose(np.diff(centred[rows]), np.diff(rewards[rows]), atol=1e-12)


def test_centred_credit_is_the_states_credit_minus_the_batchs_mean_buy_credit(rows):
    """The reward ``--center-actions`` trains on: on real states, a BUY's credit against HOLD minus the mean
    BUY credit of the batch; HOLD keeps 0; the raw mean is logged."""
    flat = [row for row in rows if json.loads(row["state"])["shares"][0] == 0][:3]
    config = RewardConfig(continuation="exit", exit_days=3, baseline="hold", num_generations=2)
    batch = [(row, text) for row in flat for text in (f"BUY {row['symbols'][0]} 1", "HOLD")]
    columns = {
        "state": [row["state"] for row, _ in batch],
        "state_hash": [row["state_hash"] for row, _ in batch],
    }
    prompts, texts = [row["prompt"] for row, _ in batch], [text for _, text in batch]
    raw = np.array(EnvScoreReward(config)(prompts, texts, **columns))
    logged = {}
    centred = np.array(
        EnvScoreReward(replace(config, center_actions=True))(
            prompts, texts, log_metric=logged.__setitem__, **columns
        )
    )
    buys = raw[0::2]
    assert raw[1::2] == pytest.approx([0.0] * 3) and np.ptp(buys) > 0  # credits differ between states
    assert centred[0::2] == pytest.approx(buys - buys.mean(), abs=1e-12)
    assert centred[1::2] == pytest.approx([0.0] * 3, abs=1e-12)
    assert logged["env/raw_reward"] == pytest.approx(raw.mean())


def test_the_imitate_control_pays_exactly_the_answers_that_name_the_experts_orders():
    """``--reward-imitate momentum`` on real edge-market states: 1 for the answers whose side is the momentum
    agent's decision there (any fraction), 0 for the other valid ones, the invalid score for nonsense; no
    episode is played, so the baseline does not shift it."""
    rows = collect_rows(PromptSetConfig(task="easy", episodes=6, seed=3, stride=2, data="synthetic:edge"))
    texts = ("HOLD", "BUY {} 1", "BUY {} 0.5", "SELL {} 1", "BUY")
    config = RewardConfig(
        num_generations=len(texts), baseline="hold", data="synthetic:edge", imitate="momentum"
    )
    batch = [(row, text.format(row["symbols"][0])) for row in rows for text in texts]
    rewards = EnvScoreReward(config)(
        [row["prompt"] for row, _ in batch],
        [text for _, text in batch],
        state=[row["state"] for row, _ in batch],
        state_hash=[row["state_hash"] for row, _ in batch],
    )
    env = market_env.make("easy", split="train", obs_mode="text", data=resolve_data("synthetic:edge"))
    env.reset(seed=0)
    expected, seen = [], set()
    for row in rows:  # the reference: the evaluation's momentum agent on the restored state
        env.set_state(state_from_json(row["state"]))
        action = float(MomentumAgent().act(None, env.market.snapshot())[0, 0])
        side = "BUY" if action > 0 else "SELL" if action < 0 else "HOLD"
        seen.add(side)
        expected += [float(text.split()[0] == side) for text in texts[:4]] + [config.invalid_score]
    assert seen == {"BUY", "SELL", "HOLD"}  # every kind of decision was checked
    assert rewards == pytest.approx(expected)
    assert config.invalid_score == pytest.approx(-0.1)
    with pytest.raises(ValueError, match="unknown expert 'macd'"):
        RewardConfig(imitate="macd")


def test_under_env_4_the_prompts_5d_word_gives_the_sign_the_momentum_rule_reads():
    """Env 4.0.0 prints the 5-day direction in words, so ``momentum_up`` (the regime metrics' and the probe's
    split) is the sign of the raw change on every state, even where the printed value rounds to 0.0."""
    rows = collect_rows(
        PromptSetConfig(task="easy", episodes=6, seed=3, stride=2, data="synthetic:edge", env_version="4.0.0")
    )
    env = market_env.make(
        "easy", split="train", obs_mode="text", data=resolve_data("synthetic:edge"), version="4.0.0"
    )
    env.reset(seed=0)
    signs = set()
    for row in rows:
        env.set_state(state_from_json(row["state"]))
        snapshot = env.market.snapshot()
        change = snapshot.features[0, 0, snapshot.panel.feature_names.index("change_5d")]
        assert momentum_up(row["prompt"]) == (change > 0)
        signs.add(bool(change > 0))
    assert signs == {True, False}
