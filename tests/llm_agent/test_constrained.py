"""Constrained decoding: the model can only write what the environment's parser accepts, in its token budget.

Three views of one language are checked against each other and against the env parser
(:func:`market_env.actions.parse_action`): the character automaton (:class:`ActionGrammar`), the token-level
logits processor built on the real SmolLM2 vocabulary, and the regular expression given to vLLM.
"""

from __future__ import annotations

import re

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import market_env
from llm_agent.constrained import (
    FRACTIONS,
    ActionConstraint,
    ActionGrammar,
    ActionLogitsProcessor,
    TokenVocabulary,
    action_constraint,
    grammar_for,
    token_strings,
    token_vocabulary,
)
from llm_agent.generation import GenerationConfig, generate
from llm_agent.models import LoadedModel
from llm_agent.policy import action_text, observation_symbols
from llm_agent.prompts import THINK_CLOSE, build_messages
from market_env.actions import parse_action

# Real tickers, with the shapes that stress a trie: "LT" is a prefix of "LTM", "TMCV" and "TMPV" part late,
# "M&M" and "BAJAJ-AUTO" hold the non-alphanumeric characters of the NIFTY 100.
TICKERS = ["LT", "LTM", "TMCV", "TMPV", "M&M", "BAJAJ-AUTO", "BAJAJFINSV", "BAJFINANCE", "TCS", "INFY", "ITC"]
SYMBOL_CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789&_.-"  # what the parser accepts in a symbol, upper case

symbol_lists = st.one_of(
    st.lists(st.sampled_from(TICKERS), min_size=1, max_size=5, unique=True),
    st.lists(st.text(SYMBOL_CHARS, min_size=1, max_size=8), min_size=1, max_size=4, unique=True),
)
reasoning_texts = st.text(st.characters(exclude_characters="<", codec="utf-8"), max_size=40)


def run(grammar: ActionGrammar, text: str) -> tuple | None:
    """The automaton's state after ``text``, or None once a character is not allowed."""
    state = grammar.start
    for ch in text:
        state = grammar.step(state, ch)
        if state is None:
            return None
    return state


def accepts(grammar: ActionGrammar, text: str) -> bool:
    """Whether ``text`` followed by the end-of-turn token is a complete answer of the grammar."""
    state = run(grammar, text)
    return state is not None and grammar.accepts_end(state)


def regex_accepts(grammar: ActionGrammar, text: str) -> bool:
    return re.fullmatch(grammar.regex(), text) is not None


def assert_valid_for(text: str, symbols: list[str], think: bool) -> None:
    """What the agent sends the env parses as valid orders, each symbol at most once, all of the episode."""
    answer = action_text(text)
    parsed = parse_action(answer, symbols)
    assert not parsed.invalid, (text, parsed.reason)
    traded = [order.symbol for order in parsed.orders]
    assert len(traded) == len(set(traded)) and set(traded) <= set(symbols)
    assert parsed.is_hold == (answer == "HOLD")
    if think:
        assert THINK_CLOSE in text
    assert not parse_action(text, symbols).invalid  # the raw completion parses the same way


@st.composite
def valid_completions(draw: st.DrawFn, symbols: list[str], think: bool) -> tuple[str, str]:
    """(completion, answer): a HOLD or orders on distinct symbols, after reasoning when ``think``."""
    if draw(st.booleans()):
        answer = "HOLD"
    else:
        chosen = draw(st.lists(st.sampled_from(symbols), min_size=1, max_size=len(symbols), unique=True))
        answer = "\n".join(
            f"{draw(st.sampled_from(['BUY', 'SELL']))} {symbol} {draw(st.sampled_from(FRACTIONS))}"
            for symbol in chosen
        )
    if not think:
        return answer, answer
    opener = draw(st.sampled_from(["", "<think>"]))
    lead = draw(st.text(" \n", max_size=2))
    return f"{opener}{draw(reasoning_texts)}{THINK_CLOSE}{lead}{answer}", answer


# ------------------------------------------------------------------------------------ the character automaton
@settings(max_examples=150, deadline=None)
@given(symbols=symbol_lists, think=st.booleans(), data=st.data())
def test_every_answer_of_the_grammar_is_accepted_by_the_automaton_and_the_regex(symbols, think, data):
    grammar = ActionGrammar(symbols, think=think)
    completion, answer = data.draw(valid_completions(symbols, think))
    assert accepts(grammar, completion)
    assert regex_accepts(grammar, completion)
    assert action_text(completion) == answer
    assert_valid_for(completion, symbols, think)


@settings(max_examples=150, deadline=None)
@given(symbols=symbol_lists, think=st.booleans(), data=st.data())
def test_random_walks_through_the_automaton_end_in_text_the_env_parser_accepts(symbols, think, data):
    grammar = ActionGrammar(symbols, think=think)
    text = data.draw(reasoning_texts) if think else ""  # free reasoning; the walk then has to close it
    state = run(grammar, text)
    assert state is not None and state[0] == ("think" if think else "answer")
    while True:
        options = grammar.next_chars(state) + (["END"] if grammar.accepts_end(state) else [])
        assert options, f"dead end after {text!r}"
        ch = data.draw(st.sampled_from(options))
        if ch == "END":
            break
        remaining = grammar.min_finish(state)
        state = grammar.step(state, ch)
        assert state is not None, f"next_chars offered {ch!r} after {text!r} but step refused it"
        assert grammar.min_finish(state) >= remaining - 1  # one character brings the end one step closer
        text += ch
    assert grammar.min_finish(state) == 1  # only the end-of-turn token is left
    assert regex_accepts(grammar, text)
    assert_valid_for(text, symbols, think)


def _edits(alphabet: str) -> st.SearchStrategy:
    return st.lists(
        st.tuples(
            st.sampled_from(["insert", "delete", "replace"]), st.integers(0, 200), st.sampled_from(alphabet)
        ),
        min_size=1,
        max_size=3,
    )


def _apply(text: str, edits: list[tuple[str, int, str]]) -> str:
    for kind, position, ch in edits:
        at = position % (len(text) + 1)
        if kind == "insert":
            text = text[:at] + ch + text[at:]
        elif text:
            at = min(at, len(text) - 1)
            text = text[:at] + (ch if kind == "replace" else "") + text[at + 1 :]
    return text


def _repeats_a_symbol(answer: str) -> bool:
    lines = answer.lstrip(" \n").split("\n")  # blanks may lead the answer after </think>
    symbols = [line.split(" ")[1] for line in lines if line.count(" ") == 2]
    return len(symbols) != len(set(symbols))


@settings(max_examples=300, deadline=None)
@given(symbols=symbol_lists, think=st.booleans(), data=st.data())
def test_near_misses_are_accepted_only_if_they_are_valid_answers(symbols, think, data):
    """Small edits of valid answers: whatever the automaton still accepts the env parser accepts, and the
    automaton and the regex agree except where the regex cannot remember used symbols."""
    grammar = ActionGrammar(symbols, think=think)
    completion, _ = data.draw(valid_completions(symbols, think))
    alphabet = "BUYSELHOD 0123456789.\n<>/thinkX&-" + "".join(symbols)
    text = _apply(completion, data.draw(_edits(alphabet)))
    if accepts(grammar, text):
        assert_valid_for(text, symbols, think)
    reasoning, closed, answer = text.partition(THINK_CLOSE) if think else ("", "", text)
    if think and (not closed or "<" in reasoning.removeprefix("<think>")):
        return  # the regex allows no "<" in reasoning; the automaton allows any reasoning
    assert accepts(grammar, text) == (regex_accepts(grammar, text) and not _repeats_a_symbol(answer))


@pytest.mark.parametrize(
    ("text", "think", "regex_too"),
    [
        ("", False, True),  # no answer at all
        ("BUY TCS 0.33", False, True),  # a fraction the grammar does not offer (the parser would take it)
        ("BUY TCS 0.5 ", False, True),  # trailing blank
        ("BUY TCS 0.5\n", False, True),  # trailing newline: a line must follow it
        ("BUY TCS  0.5", False, True),  # double blank
        ("BUY TCS .5", False, True),  # only the canonical spellings
        ("buy TCS 0.5", False, True),  # lower-case side
        ("BUY tcs 0.5", False, True),  # lower-case symbol
        ("BUY WIPRO 0.5", False, True),  # a symbol of another episode
        ("BUY TCS", False, True),  # missing fraction
        ("HOLD\nBUY TCS 0.5", False, True),  # HOLD stands alone
        ("BUY TCS 0.5\nHOLD", False, True),  # ... also after orders
        (" HOLD", False, True),  # blanks before the answer only after </think>
        ("<think>fine</think>HOLD", False, True),  # reasoning when not asked to think
        ("HOLD", True, True),  # asked to think: </think> comes first
        ("<think>RSI 28</think>", True, True),  # reasoning without an answer
        ("<think>RSI 28</think>\n\n\nHOLD", True, True),  # at most two blanks after </think>
        ("BUY TCS 0.5\nSELL TCS 0.5", False, False),  # conflicting orders (the env counts them invalid)
        ("BUY TCS 0.5\nBUY TCS 0.5", False, False),  # the same symbol twice
        ("BUY TCS 0.5\nSELL INFY 1\nBUY TCS 0.1", False, False),  # ... also apart
        ("BUY TCS 0.5\nSELL INFY 1\nBUY ITC 0.1\nSELL TCS 1", False, True),  # more lines than symbols
    ],
)
def test_texts_outside_the_grammar_are_rejected(text: str, think: bool, regex_too: bool) -> None:
    grammar = ActionGrammar(["TCS", "INFY", "ITC"], think=think)
    assert not accepts(grammar, text)
    # the vLLM regex cannot remember which symbols were used: those rows document where it is wider
    assert regex_accepts(grammar, text) is not regex_too


def test_the_regex_escapes_symbols_and_offers_each_order_once_per_symbol() -> None:
    grammar = ActionGrammar(["M&M", "BAJAJ-AUTO", "L.T"])
    assert regex_accepts(grammar, "BUY L.T 0.5\nSELL M&M 1\nBUY BAJAJ-AUTO 0.25")
    assert not regex_accepts(grammar, "BUY LxT 0.5")  # "." is a literal dot, not any character
    assert not regex_accepts(grammar, "BUY L.T 0.5\nSELL M&M 1\nBUY BAJAJ-AUTO 0.25\nSELL L.T 1")  # 4 > 3


def test_an_empty_symbol_list_is_rejected() -> None:
    with pytest.raises(ValueError, match="at least one symbol"):
        ActionGrammar([])


def test_grammars_are_shared_per_symbol_list_so_their_caches_serve_every_day() -> None:
    first = grammar_for(("TCS", "INFY"), FRACTIONS, False)
    assert grammar_for(("TCS", "INFY"), FRACTIONS, False) is first
    assert grammar_for(("TCS", "INFY"), FRACTIONS, True) is not first


# ------------------------------------------------------------------------------ tokens: the logits processor
@pytest.fixture(scope="module")
def vocabulary(smollm2: LoadedModel) -> TokenVocabulary:
    return token_vocabulary(smollm2)


def test_the_vocabulary_is_the_tokenizers_text_built_once(smollm2: LoadedModel, vocabulary) -> None:
    tokenizer = smollm2.tokenizer
    assert token_vocabulary(smollm2) is vocabulary  # cached per tokenizer
    assert vocabulary.end_ids == (tokenizer.convert_tokens_to_ids("<|im_end|>"),)
    assert vocabulary.size == smollm2.model.get_output_embeddings().weight.shape[0]
    for word in ["BUY", " TCS", "0.25", "\n", "HOLD"]:  # byte-level pieces decode to their text
        ids = tokenizer(word, add_special_tokens=False)["input_ids"]
        assert "".join(vocabulary.strings[i] for i in ids) == word
    special = tokenizer.convert_tokens_to_ids("<|im_start|>")
    assert vocabulary.strings[special] is None and special in vocabulary.blocked


def walk_tokens(
    grammars: list[ActionGrammar], vocabulary: TokenVocabulary, max_new_tokens: int, pick
) -> list[list[int]]:
    """Drive the processor like ``model.generate``: each step every unfinished row takes an allowed token
    chosen by ``pick(row, allowed_ids)``; finished rows get padding. Returns each row's tokens, its end token
    included."""
    processor = ActionLogitsProcessor(grammars, vocabulary, max_new_tokens)
    end = vocabulary.end_ids[0]
    rows: list[list[int]] = [[] for _ in grammars]
    input_ids = torch.zeros((len(grammars), 1), dtype=torch.long)  # the prompt's last token; never read
    for _ in range(max_new_tokens):
        scores = processor(input_ids, torch.zeros((len(grammars), vocabulary.size)))
        chosen = []
        for r, tokens in enumerate(rows):
            if tokens and tokens[-1] == end:
                chosen.append(end)  # padding after the end, as generate does
                continue
            allowed = torch.isfinite(scores[r]).nonzero().flatten().tolist()
            assert allowed, f"row {r} has no allowed token after {tokens}"
            tokens.append(pick(r, allowed))
            chosen.append(tokens[-1])
        input_ids = torch.cat([input_ids, torch.tensor(chosen)[:, None]], dim=1)
        if all(tokens[-1] == end for tokens in rows):
            break
    return rows


@settings(max_examples=40, deadline=None)
@given(
    symbol_sets=st.lists(symbol_lists, min_size=1, max_size=3),
    think=st.booleans(),
    extra_budget=st.integers(0, 24),
    data=st.data(),
)
def test_random_token_walks_end_within_the_budget_in_valid_actions(
    smollm2: LoadedModel, vocabulary, symbol_sets, think, extra_budget, data
) -> None:
    """Rows of one batch with their own symbols: any allowed token at each step, reasoning included (random
    tokens almost never close </think> by themselves, so the budget has to close it), ends in an answer the
    env accepts, within max_new_tokens and with the end-of-turn token."""
    grammars = [ActionGrammar(symbols, think=think) for symbols in symbol_sets]
    max_new_tokens = max(g.min_finish(g.start) for g in grammars) + extra_budget
    picks = st.integers(0, 10**9)
    rows = walk_tokens(grammars, vocabulary, max_new_tokens, lambda r, ids: ids[data.draw(picks) % len(ids)])
    for symbols, grammar, tokens in zip(symbol_sets, grammars, rows):
        assert len(tokens) <= max_new_tokens
        assert tokens[-1] in vocabulary.end_ids
        text = smollm2.tokenizer.decode(tokens[:-1], skip_special_tokens=True)
        assert accepts(grammar, "".join(vocabulary.strings[t] for t in tokens[:-1]))
        assert_valid_for(text, symbols, think)


@pytest.mark.parametrize("think", [False, True])
def test_the_shortest_budget_still_ends_in_a_valid_answer(vocabulary, think: bool) -> None:
    grammar = ActionGrammar(["TCS", "INFY"], think=think)
    budget = grammar.min_finish(grammar.start)
    assert budget == (len(THINK_CLOSE) + len("HOLD") + 1 if think else len("HOLD") + 1)
    [tokens] = walk_tokens([grammar], vocabulary, budget, lambda r, ids: ids[-1])
    assert accepts(grammar, "".join(vocabulary.strings[t] for t in tokens[:-1]))
    assert len(tokens) <= budget and tokens[-1] in vocabulary.end_ids
    with pytest.raises(ValueError, match=f"max_new_tokens >= {budget}"):
        ActionLogitsProcessor([grammar], vocabulary, budget - 1)


def _feed(processor: ActionLogitsProcessor, tokens: list[int], vocabulary: TokenVocabulary) -> torch.Tensor:
    """The processor's scores after the chosen ``tokens`` (one row), as generate would call it."""
    input_ids = torch.zeros((1, 1), dtype=torch.long)
    scores = processor(input_ids, torch.zeros((1, vocabulary.size)))
    for token in tokens:
        input_ids = torch.cat([input_ids, torch.tensor([[token]])], dim=1)
        scores = processor(input_ids, torch.zeros((1, vocabulary.size)))
    return scores[0]


def test_reasoning_may_close_think_only_into_an_answer_of_the_grammar(
    smollm2: LoadedModel, vocabulary
) -> None:
    grammar = ActionGrammar(["TCS"], think=True)
    processor = ActionLogitsProcessor([grammar], vocabulary, 64)
    scores = _feed(processor, smollm2.tokenizer("</think", add_special_tokens=False)["input_ids"], vocabulary)
    assert processor.states == [("think", len(THINK_CLOSE) - 1)]
    allowed = {vocabulary.strings[t] for t in vocabulary.closing_ids if torch.isfinite(scores[t])}
    assert ">" in allowed and "/>" in allowed  # closes; breaks the match and goes on reasoning
    assert not allowed & {">>", ">,", ">.", "><"}  # would close and go on with text no answer starts with
    assert not torch.isfinite(scores[list(vocabulary.end_ids)]).any()  # no end of turn inside reasoning


def test_a_row_that_left_the_grammar_is_finished_and_left_alone(smollm2: LoadedModel, vocabulary) -> None:
    """Only a masking bug can get a row off the grammar; it is treated as finished (the env flags it)."""
    grammar = ActionGrammar(["TCS"])
    processor = ActionLogitsProcessor([grammar], vocabulary, 16)
    scores = _feed(processor, smollm2.tokenizer("Hello", add_special_tokens=False)["input_ids"], vocabulary)
    assert processor.states == [("done",)] and torch.isfinite(scores).all()
    assert (grammar.step(("done",), "H"), grammar.next_chars(("done",)), grammar.min_finish(("done",))) == (
        None,
        [],
        0,
    )
    assert not grammar.accepts_end(("done",))


def test_a_constraint_for_vllm_has_no_processor_but_gives_each_row_its_regex() -> None:
    grammars = [grammar_for(("TCS",), FRACTIONS, False), grammar_for(("INFY",), FRACTIONS, True)]
    constraint = ActionConstraint(grammars)
    assert constraint.regex(1) == grammars[1].regex() and "INFY" in constraint.regex(1)
    with pytest.raises(ValueError, match="built for vLLM"):
        constraint.logits_processor([0, 1], 16)


def test_token_strings_of_a_sentencepiece_vocabulary() -> None:
    """Llama/Mistral-style pieces: the word-start marker is a blank and byte pieces are their byte."""
    from tokenizers import Tokenizer, models

    pieces = {"<unk>": 0, "<s>": 1, "▁BUY": 2, "▁TCS": 3, "<0x0A>": 4, "0.5": 5, "HOLD": 6}
    backend = Tokenizer(models.Unigram([(piece, -1.0) for piece in pieces], unk_id=0))
    from transformers import PreTrainedTokenizerFast

    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="<unk>", bos_token="<s>")
    assert token_strings(tokenizer) == [None, None, " BUY", " TCS", "\n", "0.5", "HOLD"]


# ------------------------------------------------------------------------------------- with the real SmolLM2
def _day_one_chats(n: int, think: bool) -> tuple[list, list[tuple[str, ...]]]:
    batch = market_env.make_batch("easy", n_envs=n, split="test", obs_mode="text", seed=0)
    observations, _ = batch.reset()
    chats = [build_messages(obs, "easy", think=think) for obs in observations]
    return chats, [observation_symbols(obs) for obs in observations]


@pytest.mark.slow
def test_smollm2_constrained_acts_validly_where_zero_shot_mostly_does_not(smollm2: LoadedModel) -> None:
    chats, symbols = _day_one_chats(4, think=False)
    config = GenerationConfig(max_new_tokens=24, show_progress=False)
    free = generate(smollm2, chats, config)
    constrained = generate(smollm2, chats, config, action_constraint(smollm2, symbols))
    free_invalid = [parse_action(c.text, s).invalid for c, s in zip(free, symbols)]
    assert sum(free_invalid) > len(chats) / 2, [c.text for c in free]
    for completion, episode_symbols in zip(constrained, symbols):
        assert_valid_for(completion.text, list(episode_symbols), think=False)
        assert completion.finish_reason == "stop" and completion.completion_tokens <= 24


@pytest.mark.slow
def test_smollm2_thinking_is_closed_in_time_to_answer_within_max_new_tokens(smollm2: LoadedModel) -> None:
    chats, symbols = _day_one_chats(2, think=True)
    budget = 20  # room for a few words of reasoning, "</think>" and an order line
    config = GenerationConfig(max_new_tokens=budget, show_progress=False)
    completions = generate(smollm2, chats, config, action_constraint(smollm2, symbols, think=True))
    for completion, episode_symbols in zip(completions, symbols):
        assert completion.finish_reason == "stop" and completion.completion_tokens <= budget
        assert completion.text.split(THINK_CLOSE)[0].strip(), "the model reasons before the forced close"
        assert_valid_for(completion.text, list(episode_symbols), think=True)
