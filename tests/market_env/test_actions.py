"""Tests for ``market_env.actions``: the text grammar (corpus + properties) and the numeric mapping."""

from __future__ import annotations

import math
import random
import re
import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from market_env.actions import (
    ACTION_GRAMMAR,
    BUY,
    NUMERIC_DEADZONE,
    SELL,
    Order,
    ParsedAction,
    format_action,
    format_fraction,
    numeric_to_fractions,
    orders_to_fractions,
    parse_action,
)

SYMBOLS = ("RELIANCE", "TCS", "M&M", "BAJAJ-AUTO", "STOCK_A", "STOCK_B")


def _junk(n: int, seed: int = 0) -> str:
    """``n`` characters of noise: printable ASCII, control characters, unicode, markup fragments."""
    alphabet = "xyz QWZ 0123456789.,;:%&-_*#>`<>/\\{}[]\"'\n\t\r\x00\x07\x1b\x85\u2028é中😀"
    rng = random.Random(seed)
    return "".join(rng.choice(alphabet) for _ in range(n))


JUNK_100K = _junk(100_000)


def buy(symbol: str, fraction: float) -> Order:
    return Order(BUY, symbol, fraction)


def sell(symbol: str, fraction: float) -> Order:
    return Order(SELL, symbol, fraction)


HOLD: tuple[Order, ...] = ()  # a valid hold: no orders

# (answer text, expected): a tuple of orders for a valid action, else a fragment of the invalid reason.
CORPUS = [
    # Nothing to parse at all: the model said nothing.
    pytest.param("", "no action line found", id="empty"),
    # Long noise with control characters and unicode must neither raise nor invent an order.
    pytest.param(JUNK_100K, "no action line found", id="100k-junk"),
    # The answer may come after pages of rambling; the one order at the end must be found.
    pytest.param(JUNK_100K + "\nBUY RELIANCE 0.5", (buy("RELIANCE", 0.5),), id="100k-junk-then-order"),
    # Generation cut off inside the reasoning: no answer, and the reason must say why.
    pytest.param("<think>RSI is low so I will BUY TCS 0.5", "unclosed <think>", id="unclosed-think"),
    # An order written before an unclosed <think> still counts.
    pytest.param("SELL TCS 1\n<think>maybe more", (sell("TCS", 1.0),), id="order-before-unclosed-think"),
    # The intended shape: reasoning (mentioning orders) in a closed block, then the action.
    pytest.param(
        "<think>\nBUY TCS 1 is tempting\n</THINK>\nSELL TCS 0.25",
        (sell("TCS", 0.25),),
        id="think-then-action",
    ),
    # Several think blocks, one nested opener; only text outside the blocks is parsed.
    pytest.param(
        "<think>a <think> b</think>BUY TCS 0.5<think>SELL TCS 1</think>",
        (buy("TCS", 0.5),),
        id="several-thinks",
    ),
    # Chat templates that pre-fill <think> leave only a closer: everything before it is reasoning.
    pytest.param("BUY TCS 1 ... no.</think>\nHOLD", HOLD, id="stray-closer"),
    # Non-finite and overflowing fractions must never reach the simulator.
    pytest.param("BUY TCS nan", "not a finite number", id="nan"),
    pytest.param("BUY TCS inf", "not a finite number", id="inf"),
    pytest.param("BUY TCS 1e309", "not a finite number", id="overflow-1e309"),
    # Fractions outside (0, 1]: negative, zero, too large, as decimals and as percentages.
    pytest.param("SELL TCS -0.5", "outside (0, 1]", id="negative"),
    pytest.param("BUY TCS 0", "outside (0, 1]", id="zero"),
    pytest.param("BUY TCS 1.5", "outside (0, 1]", id="above-one"),
    pytest.param("BUY TCS 150%", "outside (0, 1]", id="percent-above-100"),
    pytest.param("BUY TCS 1e-400", "outside (0, 1]", id="underflow-to-zero"),
    # Percentages are a common way to write a fraction.
    pytest.param("BUY TCS 10%", (buy("TCS", 0.1),), id="percent"),
    pytest.param("SELL TCS 50 %", (sell("TCS", 0.5),), id="percent-with-space"),
    # Leading-dot and integer forms of the decimal.
    pytest.param("BUY TCS .5\nSELL M&M 1.0", (buy("TCS", 0.5), sell("M&M", 1.0)), id="decimal-forms"),
    # A word or a glued suffix is not a fraction.
    pytest.param("BUY TCS half", "malformed fraction 'half'", id="word-fraction"),
    pytest.param("BUY TCS 0.5x", "malformed fraction", id="glued-suffix"),
    # A second number right after the fraction is ambiguous (1/3 must not buy with all the cash).
    pytest.param("BUY TCS 1/3", "unexpected number", id="slash-fraction"),
    pytest.param("BUY TCS 1,5", "unexpected number", id="decimal-comma"),
    pytest.param("BUY TCS 0.5 0.3", "unexpected number", id="two-numbers"),
    # A symbol the episode does not trade: the reason names it and the valid ones.
    pytest.param("BUY INFY 0.5", "unknown symbol 'INFY' (symbols: RELIANCE, TCS", id="unknown-symbol"),
    # Characters outside the symbol alphabet.
    pytest.param("BUY TCS(1) 0.5", "malformed symbol", id="malformed-symbol"),
    # Keywords and symbols are case-insensitive; the order carries the canonical spelling.
    pytest.param("buy reliance 0.5\nSell Tcs 1", (buy("RELIANCE", 0.5), sell("TCS", 1.0)), id="lowercase"),
    # JSON is not the grammar, even when it says BUY.
    pytest.param('{"action": "BUY", "symbol": "TCS", "fraction": 0.5}', "no action line found", id="json"),
    pytest.param('{\n  "action": "BUY",\n  "symbol": "TCS"\n}', "no action line found", id="json-multiline"),
    # The same order twice is one order, not twice the size.
    pytest.param("BUY TCS 0.5\nBUY TCS 0.5\nbuy tcs .5", (buy("TCS", 0.5),), id="repeated-identical"),
    # Two different orders for one symbol cannot both execute.
    pytest.param("BUY TCS 0.5\nSELL TCS 0.5", "conflicting orders for TCS", id="conflict-sides"),
    pytest.param("BUY TCS 0.5\nBUY TCS 0.3", "conflicting orders for TCS", id="conflict-fractions"),
    # Markdown decoration that chat models add around answers.
    pytest.param(
        "- **BUY** `TCS` 0.5\n* SELL M&M 0.25", (buy("TCS", 0.5), sell("M&M", 0.25)), id="bullets-bold"
    ),
    pytest.param("```\nBUY TCS 0.5\n```", (buy("TCS", 0.5),), id="code-fence"),
    pytest.param("> ## **SELL TCS 1**", (sell("TCS", 1.0),), id="quote-header"),
    pytest.param("1. BUY TCS 0.5\n2) SELL M&M 1", (buy("TCS", 0.5), sell("M&M", 1.0)), id="numbered-list"),
    # Labels before the action.
    pytest.param("Action: BUY TCS 0.5", (buy("TCS", 0.5),), id="action-label"),
    pytest.param("**Final answer:** HOLD", HOLD, id="final-answer-label"),
    pytest.param("Decision: SELL TCS 0.5", (sell("TCS", 0.5),), id="decision-label"),
    # Prose only: nothing starts with an action keyword.
    pytest.param(
        "The market looks weak.\nSelling pressure is high.", "no action line found", id="prose-only"
    ),
    # Symbol and fraction are required.
    pytest.param("BUY", "missing symbol and fraction", id="buy-alone"),
    pytest.param("Action: BUY: TCS 0.5", "missing symbol and fraction", id="buy-colon"),
    pytest.param("BUY RELIANCE", "missing fraction for RELIANCE", id="missing-fraction"),
    # Prose that starts with Buy is an order line, and a bad one: documented strictness.
    pytest.param("Buy signals look strong.", "unknown symbol 'signals'", id="prose-starting-with-buy"),
    # HOLD with punctuation-led commentary is a hold.
    pytest.param("HOLD - no clear signal", HOLD, id="hold-dash-comment"),
    pytest.param("HOLD.\nHOLD (waiting)\nHOLD", HOLD, id="several-holds"),
    # "Hold on" and "holding" are prose, so alone they are no action.
    pytest.param("Hold on, let me think.\nHolding is best.", "no action line found", id="hold-on-prose"),
    # HOLD next to orders: the orders execute.
    pytest.param("HOLD\nBUY TCS 0.5", (buy("TCS", 0.5),), id="hold-plus-buy"),
    # One bad line spoils the whole answer: partial execution would hide the error from training.
    pytest.param("BUY TCS 0.5\nSELL M&M 2", "outside (0, 1] for M&M", id="one-bad-line"),
    # Real NSE symbols with & and -.
    pytest.param("BUY M&M 0.5\nSELL bajaj-auto 1", (buy("M&M", 0.5), sell("BAJAJ-AUTO", 1.0)), id="amp-dash"),
    # Anonymised episodes use STOCK_A names (underscore inside the symbol).
    pytest.param(
        "buy stock_a 0.2\nSELL STOCK_B 1", (buy("STOCK_A", 0.2), sell("STOCK_B", 1.0)), id="stock-a"
    ),
    # Commentary after a complete order is allowed.
    pytest.param(
        "BUY TCS 0.5 - oversold\nSELL M&M 1 because RSI is 80 (overbought).",
        (buy("TCS", 0.5), sell("M&M", 1.0)),
        id="trailing-commentary",
    ),
    # Windows line endings and unicode line separators split lines like "\n".
    pytest.param(
        "BUY TCS 0.5\r\nSELL M&M 1\u2028HOLD", (buy("TCS", 0.5), sell("M&M", 1.0)), id="line-breaks"
    ),
]


@pytest.mark.parametrize(("text", "expected"), CORPUS)
def test_corpus(text: str, expected: tuple[Order, ...] | str) -> None:
    parsed = parse_action(text, SYMBOLS)
    if isinstance(expected, str):
        assert parsed.invalid and parsed.is_hold and parsed.orders == ()
        assert expected in parsed.reason
    else:
        assert parsed == ParsedAction(orders=expected)
        assert parsed.is_hold == (expected == ())


def test_reason_quotes_little_of_a_huge_line() -> None:
    # A 100 KB token must not become a 100 KB reason in info/logs.
    parsed = parse_action("BUY " + "X" * 100_000 + " 0.5", SYMBOLS)
    assert parsed.invalid and len(parsed.reason) < 300


def _best_parse_seconds(text: str, repeats: int = 3) -> float:
    """Best of a few runs, so a busy CI machine does not fail a test about the algorithm."""
    timings = []
    for _ in range(repeats):
        start = time.perf_counter()
        parse_action(text, SYMBOLS)
        timings.append(time.perf_counter() - start)
    return min(timings)


def test_parses_100kb_fast() -> None:
    assert _best_parse_seconds(JUNK_100K + "\nBUY RELIANCE 0.5") < 0.05  # takes ~6 ms


@pytest.mark.parametrize(
    "text",
    [
        "-" * 100_000 + "x",  # a long run of bullet characters (backtracking in the prefix)
        " " * 100_000 + "x",  # a long run of whitespace
        "\n" * 100_000,  # every position a line start
        "<think>" * 14_000,  # many unclosed openers
        "1." * 50_000,  # numbering-like noise
    ],
    ids=["dashes", "spaces", "newlines", "think-openers", "numbering"],
)
def test_adversarial_100kb_is_fast(text: str) -> None:
    assert parse_action(text, SYMBOLS).invalid
    assert _best_parse_seconds(text) < 0.05  # catastrophic backtracking would take seconds to hours


def test_non_str_is_a_programmer_error() -> None:
    with pytest.raises(TypeError, match="str"):
        parse_action(b"BUY TCS 0.5", SYMBOLS)  # type: ignore[arg-type]


def test_symbols_must_be_unique_ignoring_case() -> None:
    with pytest.raises(ValueError, match="unique"):
        parse_action("HOLD", ["TCS", "tcs"])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(side="HOLD", symbol="TCS", fraction=0.5), "side"),  # HOLD is the absence of orders
        (dict(side=BUY, symbol="TCS", fraction=0.0), "fraction"),
        (dict(side=SELL, symbol="TCS", fraction=math.nan), "fraction"),
    ],
)
def test_order_validates(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Order(**kwargs)


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(orders=(Order(BUY, "TCS", 0.5),), invalid=True, reason="x"),  # invalid steps trade nothing
        dict(invalid=True),  # an invalid step must say why
        dict(reason="why"),  # a valid step has no reason
    ],
)
def test_parsed_action_validates(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        ParsedAction(**kwargs)


# --- properties ---------------------------------------------------------------------------------------------

_FRAGMENTS = [
    "BUY", "SELL", "HOLD", "buy", "hold", " ", "\n", "TCS", "m&m", "STOCK_A", "INFY", "0.5", ".5", "1",
    "0", "-0.5", "10%", "%", "nan", "1e309", "<think>", "</think>", "**", "`", "- ", "1. ", "Action:", ",",
    "/", "x",
]  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(), st.lists(st.sampled_from(_FRAGMENTS), max_size=30).map("".join)))
def test_parse_never_raises_and_keeps_invariants(text: str) -> None:
    parsed = parse_action(text, SYMBOLS)
    assert isinstance(parsed, ParsedAction)
    if parsed.invalid:
        assert parsed.orders == () and parsed.reason
    for order in parsed.orders:
        assert 0.0 < order.fraction <= 1.0 and order.symbol in SYMBOLS and order.side in (BUY, SELL)
    assert len({o.symbol for o in parsed.orders}) == len(parsed.orders)


_order_lists = st.lists(
    st.tuples(st.sampled_from(SYMBOLS), st.sampled_from([BUY, SELL]), st.floats(1e-6, 1.0)),
    unique_by=lambda t: t[0],
    max_size=len(SYMBOLS),
).map(lambda rows: tuple(Order(side, symbol, fraction) for symbol, side, fraction in rows))

_WRAPPERS = [
    lambda text: text,
    lambda text: f"<think>\nreasoning about BUY TCS 1\n</think>\n{text}",
    lambda text: f"Here is my plan.\n\n{text}\nThat is all, good luck.",
    lambda text: f"<think>weigh it</think>\nThe market is mixed.\n{text.lower()}\n",
]


@settings(deadline=None)
@given(_order_lists, st.sampled_from(_WRAPPERS))
def test_format_parse_round_trip(orders: tuple[Order, ...], wrap) -> None:
    parsed = parse_action(wrap(format_action(orders)), SYMBOLS)
    # Printed with 4 decimals; a positive fraction below 0.00005 prints as the smallest valid one.
    expected = tuple(Order(o.side, o.symbol, max(round(o.fraction, 4), 1e-4)) for o in orders)
    assert parsed == ParsedAction(orders=expected)


@pytest.mark.parametrize(
    ("x", "text"),
    [
        (0.5, "0.5"),
        (1.0, "1"),
        (1 / 3, "0.3333"),
        (0.25, "0.25"),
        (0.12345, "0.1235"),
        (0.0, "0"),
        (-1e-9, "0"),
    ],
)
def test_format_fraction(x: float, text: str) -> None:
    assert format_fraction(x) == text


def test_format_action() -> None:
    assert format_action([]) == "HOLD"
    orders = [sell("TCS", 1.0), buy("M&M", 1 / 3), buy("STOCK_A", 1e-6)]
    assert format_action(orders) == "SELL TCS 1\nBUY M&M 0.3333\nBUY STOCK_A 0.0001"


def test_action_grammar_text() -> None:
    # It ends every text observation and the system prompt: plain ASCII and compact for small models.
    assert ACTION_GRAMMAR.isascii() and len(ACTION_GRAMMAR) < 600
    for words in ("BUY <SYMBOL>", "SELL <SYMBOL>", "HOLD", "<think>...</think>", "(0, 1]", "before buys"):
        assert words in ACTION_GRAMMAR
    # Every example order the grammar shows must itself parse.
    for side, symbol, fraction in re.findall(
        r"\b(BUY|SELL) ([A-Z][A-Z0-9&_.-]*) ([0-9.]+%?)", ACTION_GRAMMAR
    ):
        assert not parse_action(f"{side} {symbol} {fraction}", [symbol]).invalid


# --- orders_to_fractions ------------------------------------------------------------------------------------


def test_orders_to_fractions_places_each_symbol() -> None:
    sell_frac, buy_frac = orders_to_fractions(
        parse_action("SELL TCS 0.25\nbuy stock_b 50%", SYMBOLS), SYMBOLS
    )
    assert sell_frac.dtype == buy_frac.dtype == np.float64
    np.testing.assert_array_equal(sell_frac, [0, 0.25, 0, 0, 0, 0])
    np.testing.assert_array_equal(buy_frac, [0, 0, 0, 0, 0, 0.5])


@pytest.mark.parametrize("text", ["HOLD", "BUY TCS 2"], ids=["hold", "invalid"])
def test_orders_to_fractions_zeros_when_nothing_trades(text: str) -> None:
    for frac in orders_to_fractions(parse_action(text, SYMBOLS), SYMBOLS):
        np.testing.assert_array_equal(frac, np.zeros(len(SYMBOLS)))


def test_orders_to_fractions_rejects_a_foreign_symbol() -> None:
    with pytest.raises(ValueError, match="INFY"):
        orders_to_fractions(ParsedAction(orders=(buy("INFY", 0.5),)), SYMBOLS)


# --- numeric_to_fractions -----------------------------------------------------------------------------------


def test_numeric_hand_checked() -> None:
    # 0.28 -> (0.28 - 0.1) / 0.9 = 0.2; -0.55 -> (0.55 - 0.1) / 0.9 = 0.5.
    sell_frac, buy_frac, nonfinite = numeric_to_fractions(np.array([1.0, -1.0, 0.28, -0.55, 3.0, -3.0]))
    np.testing.assert_allclose(buy_frac, [1.0, 0, 0.2, 0, 1.0, 0], atol=1e-12)
    np.testing.assert_allclose(sell_frac, [0, 1.0, 0, 0.5, 0, 1.0], atol=1e-12)
    assert buy_frac[0] == 1.0 and sell_frac[1] == 1.0  # exact endpoints: "buy everything" means everything
    assert not nonfinite.any()


def test_numeric_deadzone_holds() -> None:
    values = np.array([-NUMERIC_DEADZONE, -0.05, 0.0, 0.05, NUMERIC_DEADZONE])
    sell_frac, buy_frac, _ = numeric_to_fractions(values)
    assert not sell_frac.any() and not buy_frac.any()


def test_numeric_nonfinite_is_flagged_and_held() -> None:
    sell_frac, buy_frac, nonfinite = numeric_to_fractions(np.array([np.nan, np.inf, -np.inf, 0.55]))
    np.testing.assert_array_equal(nonfinite, [True, True, True, False])
    np.testing.assert_array_equal(sell_frac, 0.0)
    np.testing.assert_allclose(buy_frac, [0, 0, 0, 0.5])


def test_numeric_batched_matches_rows() -> None:
    actions = np.random.default_rng(0).uniform(-2, 2, size=(4, 25)).astype(np.float32)
    batched = numeric_to_fractions(actions)
    for b in range(actions.shape[0]):
        for got, want in zip(batched, numeric_to_fractions(actions[b])):
            np.testing.assert_array_equal(got[b], want)
    assert all(out.shape == (4, 25) for out in batched)


def test_numeric_writes_into_given_buffers() -> None:
    # The batch env passes preallocated buffers; stale values from the last step must be overwritten.
    out = (np.full((2, 3), 7.0), np.full((2, 3), 7.0))
    sell_frac, buy_frac, _ = numeric_to_fractions(np.array([[1.0, -1.0, 0.0], [0.55, np.nan, -3.0]]), out=out)
    assert sell_frac is out[0] and buy_frac is out[1]
    np.testing.assert_allclose(sell_frac, [[0, 1, 0], [0, 0, 1]])
    np.testing.assert_allclose(buy_frac, [[1, 0, 0], [0.5, 0, 0]])


def test_numeric_extremes_do_not_overflow() -> None:
    # Clipping before the affine map: float64's extremes must give 1.0 without an overflow warning.
    with np.errstate(all="raise"):
        sell_frac, buy_frac, _ = numeric_to_fractions(
            np.array([np.finfo(np.float64).max, -np.finfo(np.float64).max])
        )
    np.testing.assert_array_equal(buy_frac, [1.0, 0.0])
    np.testing.assert_array_equal(sell_frac, [0.0, 1.0])


@settings(deadline=None)
@given(hnp.arrays(np.float64, hnp.array_shapes(min_dims=1, max_dims=2, max_side=8)))
def test_numeric_outputs_in_range_and_one_sided(actions: np.ndarray) -> None:
    sell_frac, buy_frac, nonfinite = numeric_to_fractions(actions)
    for frac in (sell_frac, buy_frac):
        assert frac.shape == actions.shape and frac.dtype == np.float64
        assert ((frac >= 0.0) & (frac <= 1.0)).all()
    assert not ((sell_frac > 0) & (buy_frac > 0)).any()
    np.testing.assert_array_equal(nonfinite, ~np.isfinite(actions))
    assert not (sell_frac[nonfinite].any() or buy_frac[nonfinite].any())
