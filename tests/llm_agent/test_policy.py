"""The LLM agent of ``evaluate``: names and flags, the helpers around generation, batching, seeds, and the
evaluate command end to end with the real SmolLM2, offline on CPU."""

from __future__ import annotations

import json

import mlflow
import pytest
import torch

import market_env
from eval import cli
from eval.agents import UnknownAgentError, make_agent
from llm_agent.models import LoadedModel, UnknownModelError, parse_model_spec
from llm_agent.policy import (
    ACTION_MAX_NEW_TOKENS,
    THINK_MAX_NEW_TOKENS,
    LLMAgent,
    LLMAgentConfig,
    action_text,
    agent_name,
    infer_task,
    make_llm_agent,
    observation_symbols,
    split_flags,
)
from market_env.actions import format_action, parse_action
from market_env.versions import get_version


@pytest.fixture(scope="module")
def loaded(smollm2_cache) -> LoadedModel:
    """The agent's model, loaded once through the agent's own loader; every later LLMAgent reuses it."""
    return LLMAgent(LLMAgentConfig()).loaded


def day_one(task: str, n: int, seed: int = 0, **options) -> tuple[list[str], object]:
    """Day-one text observations of ``n`` test-split episodes and their snapshot."""
    batch = market_env.make_batch(task, n_envs=n, split="test", obs_mode="text", seed=seed, **options)
    observations, _ = batch.reset()
    return observations, batch.market.snapshot()


# ------------------------------------------------------------------------------------------ names and flags
@pytest.mark.parametrize(
    ("name", "base", "options"),
    [
        ("smollm2-135m", "smollm2-135m", {}),
        ("smollm2-135m+think", "smollm2-135m", {"think": True}),
        ("smollm2-135m+think+constrained", "smollm2-135m", {"think": True, "constrained": True}),
        ("smollm2-135m+t0.7", "smollm2-135m", {"temperature": 0.7}),
        ("smollm2-135m+t.5+constrained", "smollm2-135m", {"temperature": 0.5, "constrained": True}),
        ("smollm2-135m+t2", "smollm2-135m", {"temperature": 2.0}),  # an integer temperature
        ("llm:/models/a+b+think", "llm:/models/a+b", {"think": True}),  # a "+" inside a path stays put
        ("smollm2-135m+beam4", "smollm2-135m+beam4", {}),  # unknown suffix: left for the model lookup
        ("smollm2-135m+think+beam4", "smollm2-135m+think+beam4", {}),  # ... also ahead of known flags
        ("smollm2-135m+tx", "smollm2-135m+tx", {}),  # "t" without a number is no temperature
    ],
)
def test_split_flags(name: str, base: str, options: dict) -> None:
    assert split_flags(name) == (base, options)


@pytest.mark.parametrize(
    ("model", "think", "constrained", "temperature", "expected"),
    [
        ("smollm2-135m", False, False, None, "smollm2-135m"),
        ("smollm2-135m", True, True, 0.7, "smollm2-135m+think+constrained+t0.7"),
        ("smollm2-135m", False, False, 1.0, "smollm2-135m+t1"),  # %g: the name split_flags reads back
        ("deepseek-7b", True, False, None, "deepseek-7b"),  # thinking is that model's default, not a flag
        ("llm:/ckpt/base@/ckpt/lora", False, True, None, "llm:/ckpt/base@/ckpt/lora+constrained"),
    ],
)
def test_agent_name_holds_the_flags_that_make_a_configuration(
    model, think, constrained, temperature, expected
):
    name = agent_name(parse_model_spec(model), think, constrained, temperature)
    assert name == expected
    base, flags = split_flags(name)
    assert parse_model_spec(base) == parse_model_spec(model)  # the name resolves back to the same model
    assert flags.get("constrained", False) is constrained and flags.get("temperature") == temperature


def test_flags_in_the_name_and_cli_options_make_the_same_agent(loaded: LoadedModel) -> None:
    by_name = make_agent("smollm2-135m+t0.7+constrained+think")
    by_options = make_agent("smollm2-135m", think=True, constrained=True, temperature=0.7)
    for agent in (by_name, by_options):
        assert isinstance(agent, LLMAgent) and agent.loaded is loaded  # loaded once per process
        assert agent.name == "smollm2-135m+think+constrained+t0.7"  # canonical flag order
        assert agent.max_new_tokens == THINK_MAX_NEW_TOKENS
        assert agent.describe() == {
            "model": "HuggingFaceTB/SmolLM2-135M-Instruct", "adapter": "", "backend": "transformers",
            "think": "True", "constrained": "True", "max_new_tokens": "512", "decoding": "sample T=0.7",
            "batch_size": "16",
        }  # fmt: skip
    plain = make_llm_agent("smollm2-135m", {"max_new_tokens": 8, "batch_size": 2})
    assert (plain.name, plain.think, plain.max_new_tokens) == ("smollm2-135m", False, 8)
    assert plain.config.batch_size == 2
    assert plain.describe()["decoding"] == "greedy" and plain.describe()["batch_size"] == "2"
    assert make_llm_agent("smollm2-135m", {}).max_new_tokens == ACTION_MAX_NEW_TOKENS
    assert make_llm_agent("smollm2-135m+t0.7", {"temperature": 1.2}).name == "smollm2-135m+t1.2"  # CLI wins


@pytest.mark.parametrize(
    ("name", "options", "error", "message"),
    [
        (
            "smollm2-135m",
            {"beams": 4},
            ValueError,
            r"unknown LLM agent options \['beams'\]; valid: .*temperature",
        ),
        ("smollm2-135m+beam4", {}, UnknownModelError, r"unknown model 'smollm2-135m\+beam4'; valid names:"),
        ("smollm2-135m+t0", {}, ValueError, "temperature must be > 0"),  # greedy is no temperature at all
        ("smollm2-135m", {"max_new_tokens": 0}, ValueError, "max_new_tokens must be >= 1"),
        ("smollm2-135m", {"transcripts": -1}, ValueError, "transcripts must be >= 0"),
        ("smollm2-136m", {}, UnknownAgentError, "unknown agent 'smollm2-136m'; expected one of"),  # a typo
    ],
)
def test_bad_names_and_options_are_rejected_before_loading_anything(name, options, error, message) -> None:
    with pytest.raises(error, match=message):
        make_agent(name, **options)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"temperature": -0.5}, "temperature must be > 0"),
        ({"temperature": 0.0}, "leave it unset for greedy"),
        ({"max_new_tokens": 0}, "max_new_tokens must be >= 1, got 0"),
        ({"transcripts": -3}, "transcripts must be >= 0, got -3"),
    ],
)
def test_config_validation(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        LLMAgentConfig(**kwargs)


# --------------------------------------------------------------------------------------- prompt-side helpers
@pytest.mark.parametrize("task", ["easy", "medium", "hard"])
@pytest.mark.parametrize("version", ["1.0.0", "2.0.0"])
def test_infer_task_from_the_shape_of_the_first_day(task: str, version: str) -> None:
    spec = get_version(version).task(task)
    assert infer_task(spec.n_stocks, spec.n_days, version) == spec


def test_infer_task_says_what_to_do_when_no_task_fits() -> None:
    with pytest.raises(ValueError, match="cannot tell the task from 3 stocks and 20 days; pass task="):
        infer_task(3, 20)


@pytest.mark.parametrize("anonymize", [False, True])
def test_observation_symbols_are_the_episodes_names_also_with_positions(anonymize: bool) -> None:
    env = market_env.make("medium", split="val", seed=4, anonymize=anonymize)
    observation, _ = env.reset()
    assert observation_symbols(observation) == env.names
    if anonymize:
        assert env.names[:2] == ("STOCK_A", "STOCK_B")
    observation, *_ = env.step("\n".join(f"BUY {name} 0.1" for name in env.names[:3]))
    assert " @" in observation  # the position column is filled in now
    assert observation_symbols(observation) == env.names


@pytest.mark.parametrize("text", ["", "HOLD", "BUY TCS 0.5", "Day 1 of 20.\nsymbol|close\nTCS|3000"])
def test_observation_symbols_rejects_text_that_is_no_observation(text: str) -> None:
    with pytest.raises(ValueError, match="not a text observation of market_env"):
        observation_symbols(text)


@pytest.mark.parametrize(
    ("completion", "opened", "answer"),
    [
        ("<think>RSI 28, oversold</think>\nBUY TCS 0.5", False, "BUY TCS 0.5"),  # the answer after </think>
        ("RSI 28</think>\n\nSELL TCS 1", True, "SELL TCS 1"),  # the template opened <think>
        ("<think>a</think>BUY TCS 0.2</think>HOLD", False, "HOLD"),  # the last </think> ends the reasoning
        ("BUY TCS 0.5", False, "BUY TCS 0.5"),  # no reasoning: the completion as written
        ("  HOLD\n", False, "  HOLD\n"),  # ... untouched: the env parser reads it
    ],
)
def test_action_text_is_the_answer_after_the_reasoning(completion: str, opened: bool, answer: str) -> None:
    assert action_text(completion, opened) == answer


def test_an_unclosed_think_opened_by_the_template_is_reasoning_not_orders() -> None:
    completion = "RSI is 28, so maybe\nBUY TCS 0.5\nbut the trend is"  # cut off before </think>
    assert not parse_action(action_text(completion), ["TCS"]).invalid  # nothing opened: these are orders
    parsed = parse_action(action_text(completion, think_opened_in_prompt=True), ["TCS"])
    assert parsed.invalid and "unclosed <think>" in parsed.reason


# ----------------------------------------------------------------------------------- the agent with SmolLM2
@pytest.mark.slow
@pytest.mark.parametrize(
    "constrained",
    [
        False,  # free text: left-padded batches must not change greedy tokens
        True,  # the logits processor keeps one grammar state per row; rows end at different steps
    ],
)
def test_acting_on_a_batch_of_episodes_equals_acting_on_each_alone(loaded: LoadedModel, constrained: bool):
    observations, snapshot = day_one("easy", 3)
    config = LLMAgentConfig(max_new_tokens=10, constrained=constrained, batch_size=2, task="easy")
    agent = LLMAgent(config)  # batch_size 2: three episodes take two forward batches
    agent.reset(3, 0)
    batched = agent.act(observations, snapshot)
    batched_tokens = [c.token_ids for c in agent.last_completions]
    alone, alone_tokens = [], []
    for i, observation in enumerate(observations):
        single_observations, single_snapshot = day_one("easy", 1, seed=i)  # slot i of the batch, on its own
        assert single_observations == [observation]
        agent.reset(1, 0)
        alone += agent.act(single_observations, single_snapshot)
        alone_tokens += [c.token_ids for c in agent.last_completions]
    assert batched == alone
    assert batched_tokens == alone_tokens
    if constrained:
        symbols = [observation_symbols(o) for o in observations]
        assert all(not parse_action(a, s).invalid for a, s in zip(batched, symbols)), batched


@pytest.mark.slow
def test_sampling_is_reproducible_from_the_evaluation_seed(loaded: LoadedModel) -> None:
    observations, snapshot = day_one("easy", 1)

    def sample(seed: int, agent: LLMAgent | None = None) -> list[str]:
        agent = agent or make_agent("smollm2-135m+t1.5", max_new_tokens=8, task=get_version().task("easy"))
        agent.reset(1, seed)
        return agent.act(observations, snapshot)

    rng_state = torch.get_rng_state()
    agent = make_agent("smollm2-135m+t1.5", max_new_tokens=8, task=get_version().task("easy"))
    first = sample(7, agent)
    assert torch.equal(torch.get_rng_state(), rng_state)  # the global RNG is left alone
    assert sample(7, agent) == first  # reset restarts the day count, so the draws repeat
    assert sample(7) == first  # ... and so does a fresh agent
    assert any(sample(seed) != first for seed in (8, 9))  # 8 tokens at T=1.5: equal by chance is rare


@pytest.mark.slow
def test_one_agent_reused_for_another_task_prompts_with_that_tasks_rules(loaded: LoadedModel) -> None:
    """The harness resets an agent before each run; an agent reused across tasks must not keep the first
    task's rules (easy allows 100% in one stock, medium 25%)."""
    agent = LLMAgent(LLMAgentConfig(max_new_tokens=1, transcripts=100))
    for task, cap in (("easy", "100%"), ("medium", "25%")):
        observations, snapshot = day_one(task, 1)
        agent.reset(1, 0)
        agent.act(observations, snapshot)
        [transcript] = agent.transcripts
        assert f"may hold at most {cap} of the portfolio" in transcript["prompt"]


# ------------------------------------------------------------------------------------ evaluate, end to end
@pytest.mark.slow
def test_evaluate_smollm2_offline_prints_invalid_rates_writes_json_and_logs_transcripts(
    loaded: LoadedModel, tmp_path, monkeypatch, capsys
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'runs.db'}")
    monkeypatch.chdir(tmp_path)  # MLflow's default artifact root is relative to the working directory
    out = tmp_path / "out.json"
    args = ["--agent", "smollm2-135m", "--task", "easy", "--episodes", "1", "--max-new-tokens", "4",
            "--json", str(out), "--out-dir", str(tmp_path / "eval"), "--no-plots", "--quiet",
            "--no-baselines"]  # fmt: skip
    assert cli.main(args) == 0
    printed = capsys.readouterr().out
    assert "easy task, test split, n = 1 paired episodes" in printed and "invalid" in printed
    assert f"logged to sqlite:///{tmp_path / 'runs.db'}" in printed

    [result] = json.loads(out.read_text())["results"]
    assert (result["agent"], result["model"]) == ("smollm2-135m", "HuggingFaceTB/SmolLM2-135M-Instruct")
    [episode] = result["per_episode"]
    symbols = episode["symbols"]
    transcripts = result["transcripts"]
    assert sorted(t["day"] for t in transcripts) == list(range(1, 21))  # 20 decisions, all transcribed
    for t in transcripts:
        assert t["prompt"].endswith("<|im_start|>assistant\n") and f"Day {t['day']} of 20" in t["prompt"]
        assert t["action"] == t["completion"] and 0 < t["completion_tokens"] <= 4  # no reasoning asked for
        parsed = parse_action(t["action"], symbols)
        assert (t["invalid"], t["reason"]) == (parsed.invalid, parsed.reason)
        assert t["parsed"] == ("" if parsed.invalid else format_action(parsed.orders))
        assert t["finish_reason"] in ("stop", "length")
    invalid_rate = sum(t["invalid"] for t in transcripts) / 20
    assert result["summary"]["invalid_rate"]["mean"] == pytest.approx(invalid_rate)
    assert episode["invalid_rate"] == pytest.approx(invalid_rate)
    assert f"{invalid_rate:.1%}" in printed  # the table's invalid column

    run = mlflow.get_run(result["mlflow_run_id"])
    assert run.data.params["agent"] == "smollm2-135m" and run.data.params["task"] == "easy"
    # how it generated is part of the run's identity: runs that decoded differently are not confused
    assert {k: run.data.params[k] for k in ("max_new_tokens", "think", "decoding", "batch_size")} == {
        "max_new_tokens": "4", "think": "False", "decoding": "greedy", "batch_size": "16",
    }  # fmt: skip
    assert run.data.metrics["invalid_rate"] == pytest.approx(invalid_rate)
    logged = mlflow.artifacts.load_dict(f"{run.info.artifact_uri}/transcripts.json")
    assert logged["transcripts"] == transcripts


def test_only_the_latest_model_stays_loaded(loaded, smollm2_cache):
    from llm_agent import policy

    other = LLMAgent(LLMAgentConfig(model=f"llm:{smollm2_cache}"))  # the same weights under another name
    assert other.loaded is not loaded
    assert list(policy._LOADED.values()) == [other.loaded]  # a T4 cannot hold two 7B models
    assert LLMAgent(LLMAgentConfig(model=f"llm:{smollm2_cache}")).loaded is other.loaded  # reused
