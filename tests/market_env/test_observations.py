"""Text and numeric observations: one snapshot, the same information, anonymisation."""

from __future__ import annotations

import re

import numpy as np
import pytest

import market_env
from market_env.actions import action_grammar
from market_env.observations import (
    GLOBAL_FEATURES,
    STOCK_FEATURES,
    TABLE_HEADER,
    TEXT_CHARSET,
    format_rupees,
    render_text,
    render_vectors,
    split_observation,
    vector_size,
)

LINE = re.compile(
    r"^(?P<name>[^|]+)\|(?P<close>[\d.]+)\|(?P<d1>-?[\d.]+)\|(?P<d5>-?[\d.]+)\|(?P<rsi>\d+) \w+\|"
    r"(?P<macd>-?[\d.]+) \w+\|(?P<pctb>-?[\d.]+) \w+\|(?P<trend>-?[\d.]+) \w+\|(?P<atr>[\d.]+) \w+\|"
    r"(?P<mom>-?[\d.]+)\|(?P<vol>[\d.]+) \w+\|(?P<pos>.+)$"
)
HEADER = re.compile(
    r"^Day (?P<day>\d+) of (?P<n>\d+).*Cash Rs (?P<cash>[\d,]+); portfolio value Rs (?P<nav>[\d,]+)"
)


def _rupees(text: str) -> float:
    return float(text.replace(",", ""))


@pytest.mark.parametrize("task", market_env.TASK_NAMES)
def test_text_and_vector_from_one_snapshot_carry_the_same_numbers(task):
    env = market_env.make(task, split="val", seed=8)
    _, info = env.reset()
    names = info["symbols"]
    env.step("\n".join(f"BUY {s} 0.1" for s in names[:3]))
    env.step("HOLD")
    snapshot = env.market.snapshot()
    text = render_text(snapshot, 0, env.names, anonymize=False)
    vector = render_vectors(snapshot)[0]
    n = len(names)
    assert vector.shape == (vector_size(n),)
    stocks, _ = split_observation(vector, n)
    col = {name: i for i, name in enumerate(STOCK_FEATURES)}
    lines = text.splitlines()
    header = HEADER.match(lines[0])
    assert int(header["day"]) == 3 and vector[-1] == pytest.approx(2 / int(header["n"]))
    nav = _rupees(header["nav"])
    assert vector[-len(GLOBAL_FEATURES)] == pytest.approx(_rupees(header["cash"]) / nav, abs=2e-6)
    for k, line in enumerate(lines[2 : 2 + n]):
        m = LINE.match(line)
        assert m, line
        assert m["name"] == names[k]
        assert float(m["rsi"]) == pytest.approx(stocks[k, col["rsi"]] * 50 + 50, abs=0.51)
        assert float(m["d1"]) / 100 == pytest.approx(stocks[k, col["change_1d"]] / 20, abs=5.1e-4)
        assert float(m["d5"]) / 100 == pytest.approx(stocks[k, col["change_5d"]] / 10, abs=5.1e-4)
        assert float(m["pctb"]) == pytest.approx(stocks[k, col["pct_b"]] + 0.5, abs=0.051)
        assert float(m["trend"]) / 100 == pytest.approx(stocks[k, col["trend"]] / 10, abs=5.1e-4)
        assert float(m["atr"]) / 100 == pytest.approx(stocks[k, col["atr_pct"]] / 20, abs=5.1e-4)
        assert float(m["mom"]) / 100 == pytest.approx(stocks[k, col["momentum_20d"]] / 5, abs=5.1e-4)
        assert float(m["vol"]) == pytest.approx(np.exp(stocks[k, col["volume_ratio"]]), abs=0.051)
        held = m["pos"] != "-"
        assert stocks[k, col["held"]] == float(held)
        if held:
            shares = float(m["pos"].split()[0])
            weight = shares * float(m["close"]) / nav
            assert stocks[k, col["weight"]] == pytest.approx(weight, rel=1e-3)
    assert text.endswith(action_grammar(names[0]))  # the example names one of the episode's own stocks


def _play(task: str, version: str) -> tuple[list[str], dict]:
    """Every text observation of one val episode (buy three stocks, then hold) and its grade."""
    env = market_env.make(task, split="val", seed=8, version=version)
    obs, info = env.reset()
    texts, action, done = [obs], "\n".join(f"BUY {s} 0.3" for s in info["symbols"][:3]), False
    while not done:
        obs, _, done, _, info = env.step(action)
        texts.append(obs)
        action = "HOLD"
    return texts, info["grade"]


@pytest.mark.parametrize("task", market_env.TASK_NAMES)
def test_env_4_adds_the_5d_direction_word_and_changes_nothing_else(task):
    old_texts, old_grade = _play(task, "3.0.0")
    new_texts, new_grade = _play(task, "4.0.0")
    assert new_grade["score"] == old_grade["score"] and new_grade["metrics"] == old_grade["metrics"]
    labels = set()
    for old, new in zip(old_texts, new_texts, strict=True):
        for old_line, new_line in zip(old.splitlines(), new.splitlines(), strict=True):
            old_cells, new_cells = old_line.split("|"), new_line.split("|")
            if len(old_cells) < 12 or old_line == TABLE_HEADER:  # the headline, header and grammar
                assert new_line == old_line
                continue
            value, label = new_cells[3].split(" ")
            assert value == old_cells[3] and new_cells[:3] + new_cells[4:] == old_cells[:3] + old_cells[4:]
            if float(value) != 0:  # a printed 0.0 may be a tiny rise or fall
                assert label == ("up" if float(value) > 0 else "down")
            labels.add(label)
    assert {"up", "down"} <= labels


def test_text_observation_fits_its_space_for_the_hard_task():
    env = market_env.make("hard", split="test", seed=0)
    obs, _ = env.reset()
    assert set(obs) <= TEXT_CHARSET
    assert env.observation_space.contains(obs)
    assert obs.count("\n") == 2 + 25 + market_env.ACTION_GRAMMAR.count("\n")
    assert "TCS" not in obs.splitlines()[-1] or "TCS" in env.names  # no fixed real name in the grammar


def test_anonymised_text_hides_names_dates_and_price_levels():
    env = market_env.make("medium", split="test", seed=5, anonymize=True)
    obs, info = env.reset()
    real = env.episode_identity["real_symbols"]
    assert info["symbols"] == [f"STOCK_{c}" for c in "ABCDEFGHIJ"] == list(env.names)
    for symbol in real:
        assert not re.search(rf"\b{re.escape(symbol)}\b", obs)
    assert not re.search(r"20\d\d-\d\d-\d\d", obs)
    closes = [float(line.split("|")[1]) for line in obs.splitlines()[2:12]]
    assert closes == [100.0] * 10  # rescaled to 100 at the episode start
    assert obs.splitlines()[-1] == action_grammar("STOCK_A")
    _, _, _, _, step = env.step("BUY STOCK_C 0.2")
    assert step["trades"][0]["symbol"] == "STOCK_C" and not step["invalid_action"]
    _, _, _, _, step = env.step(f"BUY {real[0]} 0.2")
    assert step["invalid_action"]  # real names are not tradable names in anonymous mode


def _letter_ranks(seed: int) -> list[int]:
    env = market_env.make("hard", split="test", seed=seed, anonymize=True)
    env.reset()
    names = env.episode_identity["names"]
    real = sorted(names.values())
    return [real.index(names[f"STOCK_{c}"]) for c in "ABCDE"]


def test_anonymous_letters_do_not_follow_the_alphabetical_order():
    # before: STOCK_A was always the alphabetically first of the episode's stocks (rank 0)
    ranks = np.array([_letter_ranks(seed) for seed in range(40)])
    assert (ranks[:, 0] == 0).mean() < 0.2  # 1/25 expected by chance
    assert 8 < ranks.mean() < 16  # a uniform rank over 0..24 averages 12


def test_anonymised_numeric_observation_is_the_plain_one_in_the_agents_stock_order():
    plain = market_env.make("hard", split="val", obs_mode="numeric", seed=2)
    anonymous = market_env.make("hard", split="val", obs_mode="numeric", seed=2, anonymize=True)
    plain_obs, anonymous_obs = plain.reset()[0], anonymous.reset()[0]
    slot = [plain.names.index(anonymous.episode_identity["names"][name]) for name in anonymous.names]
    plain_stocks, plain_globals = split_observation(plain_obs, 25)
    stocks, globals_ = split_observation(anonymous_obs, 25)
    np.testing.assert_array_equal(stocks, plain_stocks[slot])
    np.testing.assert_array_equal(globals_, plain_globals)
    assert slot != sorted(slot)


def test_the_final_observation_says_the_episode_is_over():
    env = market_env.make("easy", split="val", seed=3)
    env.reset()
    for _ in range(19):
        obs, *_ = env.step("HOLD")
    assert obs.startswith("Day 20 of 20, ")
    obs, _, terminated, _, info = env.step("HOLD")
    assert terminated and obs.startswith(f"Episode over: 20 of 20 days done, {info['date']}.")
    assert "Day 21" not in obs


@pytest.mark.parametrize(
    "amount, text",
    [
        (1_000_000, "Rs 10,00,000"),
        (1234567.8, "Rs 12,34,568"),
        (999, "Rs 999"),
        (0, "Rs 0"),
        (-45210, "Rs -45,210"),
    ],
)
def test_rupees_use_indian_digit_grouping(amount, text):
    assert format_rupees(amount) == text
