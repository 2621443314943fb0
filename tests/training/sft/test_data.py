"""make-sft-data: answers parse to the expert's orders, traces are grounded in their prompts and agree with
the action, examples stay inside their split, the mix holds, the filter keeps only episodes beating hold,
and the same seed gives the same bytes. A small real data set is built once through the CLI."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import market_env
from data.splits import SPLITS
from eval.agents import make_agent
from eval.harness import EvalConfig, run_evaluation
from llm_agent.prompts import arrange_observation, build_messages
from market_env.actions import Order, format_action, parse_action
from training.sft import data as sft_data
from training.sft import think
from training.sft.experts import EXPERTS, Call, Decision, make_expert

# the blended set of the three experts (--mix), with a small score table
SMALL = ["--easy", "60", "--portfolio", "50", "--val-examples", "30", "--no-progress", "--mix"]
SMALL += ["--report-episodes", "8"]
NUMBER = re.compile(r"[-+]?\d+(?:\.\d+)?")
BUY_RULES = ("oversold", "trend_up", "lower_band", "rising_5d")


def _read(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    out = tmp_path_factory.mktemp("sft") / "data"
    assert sft_data.main(["--out", str(out), "--seed", "3", *SMALL]) == 0
    return out


@pytest.fixture(scope="module")
def examples(built) -> list[dict]:
    return _read(built / "train.jsonl") + _read(built / "val.jsonl")


def _symbols(prompt: str) -> list[str]:
    return list(think.table_cells(prompt))


def _trace(example: dict) -> str:
    return example["messages"][-1]["content"].split("</think>")[0].removeprefix("<think>")


def test_files_have_the_requested_counts_and_chat_format(built, examples):
    train, val = _read(built / "train.jsonl"), _read(built / "val.jsonl")
    assert len(train) == 110 and len(val) == 30
    assert {e["meta"]["task"] for e in train} == {"easy", "medium", "hard"}
    for example in examples:
        assert [m["role"] for m in example["messages"]] == ["system", "user", "assistant"]
        assert set(example["meta"]) == {"task", "split", "date", "episode_seed", "expert", "actions", "hold"}
        # the prompt is exactly what the LLM agent is given
        prompt = build_messages(example["messages"][1]["content"], example["meta"]["task"], think=True)
        assert example["messages"][:2] == prompt


def test_every_answer_parses_to_the_actions_in_meta(examples):
    for example in examples:
        parsed = parse_action(example["messages"][-1]["content"], _symbols(example["messages"][1]["content"]))
        assert not parsed.invalid, parsed.reason
        assert format_action(parsed.orders).splitlines() == example["meta"]["actions"]
        assert example["meta"]["hold"] == (not parsed.orders)
        assert example["messages"][-1]["content"].startswith("<think>")


def test_answers_are_the_experts_orders_on_the_replayed_episode(examples):
    # Replay episodes one at a time in the single env: the prompt must recur on the example's date, and the
    # expert's decision there must be the answer's orders.
    for example in examples[:12]:
        meta = example["meta"]
        env = market_env.make(meta["task"], split=meta["split"], obs_mode="text")
        observation, info = env.reset(seed=meta["episode_seed"])
        expert = make_expert(meta["expert"])
        while info["date"] != meta["date"]:
            decision = expert.signals(env.market.snapshot()).decision(0, env.names)
            observation, _, _, _, info = env.step(format_action(decision.orders))
        assert arrange_observation(observation) == example["messages"][1]["content"]
        decision = expert.signals(env.market.snapshot()).decision(0, env.names)
        assert parse_action(example["messages"][-1]["content"], env.names).orders == decision.orders


@pytest.fixture(scope="module", params=["mix", "momentum"])
def traced(request, examples, tmp_path_factory) -> list[dict]:
    """The blended set, and a set of the momentum control expert on the edge market (its own templates)."""
    if request.param == "mix":
        return examples
    out = tmp_path_factory.mktemp("sft") / "momentum"
    small = ["--easy", "40", "--portfolio", "40", "--val-examples", "0", "--report-episodes", "4"]
    argv = ["--out", str(out), "--experts", "momentum", "--data", "synthetic:edge", "--no-progress", *small]
    assert sft_data.main(argv) == 0
    rows = _read(out / "train.jsonl")
    assert {e["meta"]["expert"] for e in rows} == {"momentum"}
    return rows


def test_every_number_in_a_trace_is_printed_in_its_prompt(traced):
    for example in traced:
        printed = set(NUMBER.findall(example["messages"][1]["content"]))
        missing = [n for n in NUMBER.findall(_trace(example)) if n not in printed]
        assert not missing, (missing, _trace(example))


def test_traces_never_contradict_the_action(traced):
    for example in traced:
        trace = _trace(example).lower()
        if example["meta"]["hold"]:
            assert "buy" not in trace and "sell" not in trace, trace
            continue
        for line in example["meta"]["actions"]:
            side, symbol, _ = line.split()
            named = re.compile(rf"(?<![A-Z&-]){re.escape(symbol)}(?![A-Z&-])")
            sentences = [s.lower() for s in re.split(r"(?<=\.) ", _trace(example)) if named.search(s)]
            other = "sell" if side == "BUY" else "buy"
            assert sentences, (symbol, trace)
            assert all(side.lower() in s and other not in s for s in sentences), (line, sentences)


def test_examples_come_from_their_split_and_date(examples):
    for example in examples:
        meta = example["meta"]
        split = SPLITS[meta["split"]]
        assert split.start <= meta["date"] <= split.end
        assert f", {meta['date']}." in example["messages"][1]["content"].splitlines()[-1]
    assert {e["meta"]["split"] for e in examples} == {"train", "val"}


def test_hold_only_answers_are_at_most_half_of_each_task(examples):
    for split in ("train", "val"):
        for task in ("easy", "medium", "hard"):
            rows = [e for e in examples if e["meta"]["split"] == split and e["meta"]["task"] == task]
            assert sum(e["meta"]["hold"] for e in rows) <= 0.5 * len(rows)
            assert any(not e["meta"]["hold"] for e in rows)


def test_datasets_loads_the_jsonl(built):
    from datasets import load_dataset

    data = load_dataset(
        "json", data_files={"train": str(built / "train.jsonl"), "val": str(built / "val.jsonl")}
    )
    assert data["train"].num_rows == 110 and data["val"].num_rows == 30
    assert data["train"][0]["messages"][2]["role"] == "assistant"


def test_card_and_meta_report_counts_versions_and_hashes(built):
    meta = json.loads((built / "meta.json").read_text())
    assert (
        meta["seed"] == 3
        and meta["filter_beats_hold"] is True
        and meta["env_version"] == market_env.ENV_VERSION
    )
    assert meta["data_sha256"] and meta["git_commit"] and meta["command"]
    train = meta["splits"]["train"]
    assert train["per_task"] == {"easy": 60, "medium": 30, "hard": 20}
    assert train["per_action"]["HOLD"] <= 55 and train["hold_share"] <= 0.5
    import hashlib

    assert train["sha256"] == hashlib.sha256((built / "train.jsonl").read_bytes()).hexdigest()
    card = (built / "data_card.md").read_text()
    assert "| train | train.jsonl | 110 | 60 | 30 | 20 |" in card and meta["data_sha256"] in card


def test_same_seed_gives_identical_files_and_another_seed_differs(built, tmp_path):
    assert sft_data.main(["--out", str(tmp_path / "same"), "--seed", "3", *SMALL]) == 0
    for name in ("train.jsonl", "val.jsonl", "data_card.md"):
        assert (tmp_path / "same" / name).read_bytes() == (built / name).read_bytes()
    assert sft_data.main(["--out", str(tmp_path / "other"), "--seed", "4", *SMALL]) == 0
    assert (tmp_path / "other" / "train.jsonl").read_bytes() != (built / "train.jsonl").read_bytes()


# ------------------------------------------------------------------------------------------------ filter
@pytest.mark.parametrize("version", ["2.0.0", None])  # 2.0.0: hold's score varies; the newest: hold = 0.5
def test_hold_scores_match_the_hold_agent_on_the_same_episodes(version):
    env = market_env.make_batch("medium", n_envs=24, split="train", obs_mode="text", version=version)
    rollout = sft_data.play(env, make_expert("trend"), 100)
    config = EvalConfig("medium", "train", 24, 100, version)
    hold = run_evaluation(make_agent("hold"), config, progress=False)
    np.testing.assert_allclose(rollout.hold_scores, hold.values("score"), rtol=0, atol=1e-12)
    assert (np.ptp(rollout.hold_scores) > 0) == (version == "2.0.0")


def _beats_hold(meta: dict) -> bool:
    env = market_env.make_batch(meta["task"], n_envs=1, split=meta["split"], obs_mode="text")
    rollout = sft_data.play(env, make_expert(meta["expert"]), meta["episode_seed"])
    config = EvalConfig(meta["task"], meta["split"], episodes=1, seed=meta["episode_seed"])
    hold = run_evaluation(make_agent("hold"), config, progress=False)
    return bool(rollout.scores[0] > hold.values("score")[0])


def test_filter_keeps_only_episodes_that_beat_hold_and_no_filter_keeps_others(examples, tmp_path):
    episodes = {
        (e["meta"]["task"], e["meta"]["split"], e["meta"]["expert"], e["meta"]["episode_seed"])
        for e in examples
    }
    metas = [dict(zip(("task", "split", "expert", "episode_seed"), key)) for key in sorted(episodes)]
    assert all(_beats_hold(meta) for meta in metas[::3])
    out = tmp_path / "unfiltered"
    sft_data.main(
        ["--out", str(out), "--no-filter", "--easy", "40", "--portfolio", "0", "--val-examples", "0", "--mix"]
    )
    unfiltered = _read(out / "train.jsonl")
    assert len(unfiltered) == 40 and json.loads((out / "meta.json").read_text())["filter_beats_hold"] is False
    seeds = {(e["meta"]["expert"], e["meta"]["episode_seed"]) for e in unfiltered}
    assert not all(
        _beats_hold({"task": "easy", "split": "train", "expert": x, "episode_seed": s}) for x, s in seeds
    )


def test_a_rarely_trading_expert_writes_fewer_examples_never_more_holds(tmp_path, capsys):
    # the RSI rule on one stock rarely trades: its episode budget cannot fill the quota, the hold cap holds
    argv = [
        "--out",
        str(tmp_path),
        "--experts",
        "rsi",
        "--easy",
        "300",
        "--portfolio",
        "0",
        "--val-examples",
        "0",
    ]
    assert sft_data.main(argv) == 0
    examples = _read(tmp_path / "train.jsonl")
    assert 0 < len(examples) < 300 and sum(e["meta"]["hold"] for e in examples) <= 0.5 * len(examples)
    assert f"warning: train has {len(examples)} of the 300 examples" in capsys.readouterr().out


# ------------------------------------------------------------------------------------------------ traces
def _held_observation() -> tuple[str, tuple[str, ...]]:
    """A real medium-task prompt with two open positions, a few days after buying them."""
    env = market_env.make("medium", split="train", obs_mode="text")
    observation, _ = env.reset(seed=5)
    env.step(f"BUY {env.names[0]} 0.2\nBUY {env.names[1]} 0.2")
    for _ in range(3):
        observation, *_ = env.step("HOLD")
    return observation, env.names


@pytest.mark.parametrize("n_stocks", [1, 10])  # single-stock and portfolio wording differ
def test_every_template_is_grounded_and_formats(n_stocks):
    observation, names = _held_observation()
    symbol = names[0]
    rules = {rule.split("@")[0] for rule in think.TEMPLATES} | {"held", "no_signal"}
    printed = set(NUMBER.findall(observation))
    for expert in EXPERTS:
        for rule in rules:
            side = "BUY" if rule in BUY_RULES else "SELL" if rule in think.GROUP_REASONS else "HOLD"
            call = Call(symbol, 0, side, rule, {"BUY": 0.5, "SELL": 1.0, "HOLD": 0.0}[side])
            orders = () if side == "HOLD" else (Order(side, symbol, call.fraction),)
            decision = Decision(expert, orders, (call,), n_stocks)
            for seed in range(6):  # several wordings and context sentences
                trace = think.write_trace(decision, observation, np.random.default_rng(seed))
                assert set(NUMBER.findall(trace)) <= printed, trace
                assert "{" not in trace


def test_every_wording_copies_its_numbers_from_the_prompt():
    observation, names = _held_observation()
    printed = set(NUMBER.findall(observation))
    wordings = [*think.CONTEXT, *think.GROUP_ITEMS.values()]
    wordings += [w for options in think.TEMPLATES.values() for w in options]
    wordings += [w for own in think.EXPERT_TEMPLATES.values() for options in own.values() for w in options]
    cells = think.table_cells(observation)
    for symbol in names[:2]:  # held positions: every field, P&L included, has a value
        fields = think.template_fields(cells[symbol]) | {"size": "all the cash"}
        for wording in wordings:
            text = wording.format(**fields)
            assert set(NUMBER.findall(text)) <= printed, (wording, text)


def test_a_rule_without_wording_is_an_error():
    observation, names = _held_observation()
    decision = Decision("rsi", (), (Call(names[0], 0, "HOLD", "moon_phase"),), 10)
    with pytest.raises(KeyError, match="no trace template for expert 'rsi', rule 'moon_phase'"):
        think.write_trace(decision, observation, np.random.default_rng(0))


def test_busy_days_are_grouped_into_one_sentence_per_rule():
    observation, names = _held_observation()
    calls = tuple(Call(names[k], k, "BUY", "trend_up", 0.125) for k in range(2, 7))
    decision = Decision("trend", tuple(Order(c.side, c.symbol, c.fraction) for c in calls), calls, 10)
    trace = think.write_trace(decision, observation, np.random.default_rng(0))
    assert trace.count("Buying") == 1 and all(name in trace for name in names[2:7])
    assert set(NUMBER.findall(trace)) <= set(NUMBER.findall(observation))


# ------------------------------------------------------------------------------------------------ CLI
def test_help_names_every_option(capsys):
    with pytest.raises(SystemExit) as exit_:
        sft_data.main(["--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    for flag in ("--out", "--seed", "--easy", "--portfolio", "--no-filter", "--val-examples"):
        assert flag in out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--easy", "-1"], "--easy must be >= 0"),  # a negative count
        (["--experts", "macd"], "unknown expert"),  # a name the registry lacks
        (["--max-hold-share", "1.5"], "--max-hold-share"),  # a share outside [0, 1)
    ],
)
def test_bad_arguments_get_a_clear_message(argv, message, tmp_path):
    with pytest.raises(SystemExit, match=re.escape(message)):
        sft_data.main(["--out", str(tmp_path), *argv])


@given(st.integers(0, 500), st.lists(st.integers(0, 200), min_size=1, max_size=5))
def test_even_split_never_exceeds_a_supply_and_uses_what_it_can(total, supplies):
    take = sft_data.even_split(total, supplies)
    assert all(0 <= t <= s for t, s in zip(take, supplies))
    assert sum(take) == min(total, sum(supplies))
    # even: a party below another's share got everything it had
    assert all(t == s or t >= max(take) - 1 for t, s in zip(take, supplies))


# ---------------------------------------------------------------------------- one expert per set, control
def test_each_expert_gets_its_own_set_and_an_unfiltered_control(tmp_path, capsys):
    argv = ["--out", str(tmp_path), "--experts", "rsi", "trend", "--control", "--easy", "20"]
    argv += ["--portfolio", "0", "--val-examples", "0", "--report-episodes", "0", "--no-progress"]
    assert sft_data.main(argv) == 0
    for expert in ("rsi", "trend"):
        for out, filtered in ((tmp_path / expert, True), (tmp_path / expert / "control", False)):
            rows = _read(out / "train.jsonl")
            assert rows and {e["meta"]["expert"] for e in rows} == {expert}  # no contradictory teacher
            assert json.loads((out / "meta.json").read_text())["filter_beats_hold"] is filtered
    assert not (tmp_path / "train.jsonl").exists()


def test_the_natural_hold_rate_is_the_experts_own(tmp_path):
    argv = ["--out", str(tmp_path), "--experts", "trend", "--max-hold-share", "natural", "--easy", "200"]
    argv += ["--portfolio", "0", "--val-examples", "0", "--report-episodes", "0", "--no-progress"]
    assert sft_data.main(argv) == 0
    meta = json.loads((tmp_path / "meta.json").read_text())
    train = meta["splits"]["train"]
    stats = train["rollouts"]["easy"]["trend"]
    natural = stats["hold_candidates"] / (stats["hold_candidates"] + stats["trade_candidates"])
    assert natural > 0.5, "the trend rule holds on most days"  # so the old 50% cap would have changed it
    assert abs(train["hold_share"] - natural) <= 1 / train["examples"] + 1e-9
    assert meta["max_hold_share"] is None and "natural rate" in (tmp_path / "data_card.md").read_text()


def test_the_card_scores_each_expert_against_hold_and_buy_and_hold_on_val(built):
    meta = json.loads((built / "meta.json").read_text())
    report = meta["expert_report"]
    assert set(report) == {"easy", "medium", "hard"} and set(report["easy"]) == set(
        sft_data.SFTDataConfig().experts
    )
    row = report["medium"]["trend"]
    episodes = EvalConfig("medium", "val", row["episodes"], 7_000_000 + 3)  # the card's episodes (seed 3)
    bah = run_evaluation(make_agent("buy-and-hold"), episodes, progress=False).values("score").mean()
    hold = run_evaluation(make_agent("hold"), episodes, progress=False).values("score").mean()
    assert row["buy_and_hold"] == pytest.approx(bah, abs=1e-12)
    assert row["hold"] == pytest.approx(hold, abs=1e-12)
    assert row["vs_buy_and_hold"] == pytest.approx(row["expert"] - bah, abs=1e-12)
    assert "| medium | trend | 8 |" in (built / "data_card.md").read_text()


def test_synthetic_markets_feed_the_data_set(tmp_path):
    argv = ["--out", str(tmp_path), "--experts", "trend", "--data", "synthetic:edge", "--easy", "20"]
    argv += [
        "--portfolio",
        "0",
        "--val-examples",
        "0",
        "--report-episodes",
        "0",
        "--no-progress",
        "--no-filter",
    ]
    assert sft_data.main(argv) == 0
    rows = _read(tmp_path / "train.jsonl")
    assert all(_symbols(e["messages"][1]["content"])[0].startswith("SYN") for e in rows)
    assert "synthetic:edge" in (tmp_path / "data_card.md").read_text()


def test_no_think_answers_are_the_action_lines_alone_and_the_prompt_asks_for_them(tmp_path):
    argv = ["--out", str(tmp_path), "--experts", "trend", "--easy", "40", "--portfolio", "0"]
    argv += ["--val-examples", "0", "--report-episodes", "0", "--no-progress", "--no-think"]
    assert sft_data.main(argv) == 0
    rows = _read(tmp_path / "train.jsonl")
    assert len(rows) == 40
    for row in rows:
        system, user, answer = (m["content"] for m in row["messages"])
        assert "<think>" not in answer and answer == "\n".join(row["meta"]["actions"])
        parsed = parse_action(answer, _symbols(user))  # the one grammar reads it back
        assert not parsed.invalid and format_action(parsed.orders) == answer
        assert system.endswith("Write only the action lines.")
    assert {row["meta"]["hold"] for row in rows} == {True, False}  # trades and holds both taught
    assert "the action lines alone" in (tmp_path / "data_card.md").read_text()
    assert json.loads((tmp_path / "meta.json").read_text())["config"]["think"] is False
