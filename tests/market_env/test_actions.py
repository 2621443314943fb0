"""The one action grammar: a corpus of malformed LLM outputs, each with its documented result."""

from __future__ import annotations

import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from market_env.actions import (
    ACTION_GRAMMAR,
    BUY,
    SELL,
    Order,
    ParsedAction,
    format_action,
    numeric_to_fractions,
    orders_to_fractions,
    parse_action,
)

SYMBOLS = ("RELIANCE", "TCS", "M&M", "BAJAJ-AUTO", "INFY")
OK, INVALID = "ok", "invalid"


def orders(*triples) -> tuple[Order, ...]:
    return tuple(Order(side, symbol, fraction) for side, symbol, fraction in triples)


CORPUS = [
    # (text, expected orders or INVALID, reason fragment) — why each case is here in the comment
    ("", INVALID, "no action line"),  # empty completion
    ("I think the market looks fine today.", INVALID, "no action line"),  # prose only
    (
        '{"action": "BUY", "symbol": "TCS", "fraction": 0.5}',
        INVALID,
        "no action line",
    ),  # JSON is not the grammar
    ("<think>RSI is low, buy TCS", INVALID, "unclosed <think>"),  # the model ran out of tokens mid-thought
    ("<think>RSI 28 oversold</think>\nBUY TCS 0.5", orders((BUY, "TCS", 0.5)), ""),  # reasoning then action
    ("RSI is low</think>BUY TCS 0.5", orders((BUY, "TCS", 0.5)), ""),  # template opened the think block
    ("BUY TCS nan", INVALID, "not a finite number"),
    ("BUY TCS 1e309", INVALID, "not a finite number"),  # overflows to inf
    ("BUY TCS -0.5", INVALID, "outside (0, 1]"),
    ("SELL TCS 0", INVALID, "outside (0, 1]"),
    ("BUY TCS 1.5", INVALID, "outside (0, 1]"),
    ("BUY TCS 10%", orders((BUY, "TCS", 0.1)), ""),  # percentages are read as fractions
    ("BUY WIPRO 0.5", INVALID, "unknown symbol"),  # not in this episode
    ("buy tcs 0.5\nsell infy 1", orders((BUY, "TCS", 0.5), (SELL, "INFY", 1.0)), ""),  # lowercase
    ("BUY TCS 0.5\nBUY TCS 0.5\nBUY TCS 0.5", orders((BUY, "TCS", 0.5)), ""),  # a repetition loop
    ("BUY TCS 0.5\nSELL TCS 0.5", INVALID, "conflicting orders for TCS"),
    ("- **BUY** `TCS` 0.25\n1. SELL INFY 1", orders((BUY, "TCS", 0.25), (SELL, "INFY", 1.0)), ""),  # markdown
    ("```\nBUY TCS 0.25\n```", orders((BUY, "TCS", 0.25)), ""),  # code fence
    ("Action: BUY M&M 0.3", orders((BUY, "M&M", 0.3)), ""),  # label and '&'
    ("SELL BAJAJ-AUTO 1 - taking profit", orders((SELL, "BAJAJ-AUTO", 1.0)), ""),  # '-' and commentary
    ("BUY", INVALID, "missing"),  # keyword alone
    ("BUY TCS", INVALID, "missing fraction"),
    ("HOLD - no signal today", (), ""),  # hold with commentary
    ("Hold on, let me think.", INVALID, "no action line"),  # prose starting with 'Hold'
    ("HOLD\nBUY TCS 0.2", orders((BUY, "TCS", 0.2)), ""),  # the order executes, HOLD is ignored
    ("BUY TCS 0.2\nBUY WIPRO 0.2", INVALID, "unknown symbol"),  # one bad line spoils the step
]


@pytest.mark.parametrize("text, expected, reason", CORPUS)
def test_corpus_of_malformed_outputs_gets_its_documented_result(text, expected, reason):
    parsed = parse_action(text, SYMBOLS)
    if expected == INVALID:
        assert parsed.invalid and parsed.orders == () and parsed.is_hold
        assert reason in parsed.reason
    else:
        assert not parsed.invalid and parsed.reason == ""
        assert parsed.orders == pytest.approx(expected) if expected else parsed.orders == ()


def test_100_kb_of_junk_parses_fast_and_an_order_at_its_end_still_counts():
    junk = ("lorem ipsum BUY? SELL!! 0.5 <think> " * 3000)[:100_000]
    start = time.perf_counter()
    assert parse_action(junk, SYMBOLS).invalid
    parsed = parse_action(junk.replace("<think>", "") + "\nSELL TCS 0.5", SYMBOLS)
    assert time.perf_counter() - start < 1.0  # generous: it takes milliseconds; this only catches a blow-up
    assert parsed.orders == orders((SELL, "TCS", 0.5))


def test_anonymised_names_work_like_real_ones():
    assert parse_action("BUY stock_b 0.5", ("STOCK_A", "STOCK_B")).orders == orders((BUY, "STOCK_B", 0.5))


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=400))
def test_parser_never_raises_and_its_result_is_consistent(text):
    parsed = parse_action(text, SYMBOLS)
    assert isinstance(parsed, ParsedAction)
    assert not parsed.invalid or (parsed.orders == () and parsed.reason)
    for order in parsed.orders:
        assert order.symbol in SYMBOLS and 0 < order.fraction <= 1


ORDER_LISTS = st.lists(
    st.tuples(st.sampled_from([BUY, SELL]), st.sampled_from(SYMBOLS), st.floats(0.0001, 1.0)),
    max_size=5,
    unique_by=lambda o: o[1],
)


@settings(max_examples=150, deadline=None)
@given(ORDER_LISTS, st.sampled_from(["{}", "<think>why</think>\n{}", "Here is my plan.\n{}\nGood luck!"]))
def test_format_then_parse_round_trips(triples, wrapper):
    written = tuple(Order(side, symbol, round(fraction, 4) or 0.0001) for side, symbol, fraction in triples)
    parsed = parse_action(wrapper.format(format_action(written)), SYMBOLS)
    assert not parsed.invalid
    assert parsed.orders == pytest.approx(written, abs=5e-5)


def test_fractions_land_at_their_symbol_index():
    sell, buy = orders_to_fractions(parse_action("SELL INFY 0.5\nBUY TCS 0.25", SYMBOLS), SYMBOLS)
    assert sell.tolist() == [0, 0, 0, 0, 0.5] and buy.tolist() == [0, 0.25, 0, 0, 0]
    assert not orders_to_fractions(parse_action("oops", SYMBOLS), SYMBOLS)[1].any()


def test_numeric_mapping_dead_zone_endpoints_clipping_and_nonfinite():
    sell, buy, nonfinite = numeric_to_fractions(np.array([1.0, -1.0, 0.1, -0.05, 3.0, np.nan, np.inf, 0.55]))
    assert buy.tolist() == [1.0, 0, 0, 0, 1.0, 0, 0, pytest.approx(0.5)]
    assert sell.tolist() == [0, 1.0, 0, 0, 0, 0, 0, 0]
    assert nonfinite.tolist() == [False] * 5 + [True, True, False]


@settings(max_examples=100, deadline=None)
@given(st.lists(st.floats(allow_nan=True, allow_infinity=True), min_size=1, max_size=30))
def test_numeric_fractions_stay_in_unit_interval_and_never_buy_and_sell_one_stock(values):
    sell, buy, _ = numeric_to_fractions(np.array(values).reshape(1, -1))
    assert ((sell >= 0) & (sell <= 1) & (buy >= 0) & (buy <= 1)).all()
    assert not ((sell > 0) & (buy > 0)).any()


def test_grammar_text_is_plain_ascii_and_names_every_keyword():
    assert ACTION_GRAMMAR.isascii()
    assert all(word in ACTION_GRAMMAR for word in ("BUY", "SELL", "HOLD", "<think>"))
