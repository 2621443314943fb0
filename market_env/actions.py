"""The one action grammar: text actions from LLMs and users, numeric actions from RL policies.

Text actions (env 1.0.0)
------------------------
One action per line::

    BUY <SYMBOL> <fraction>     fraction of the cash available once this step's sells have filled
    SELL <SYMBOL> <fraction>    fraction of the shares held
    HOLD                        do nothing

Sells execute before buys; buys that together ask for more than the cash are scaled down (the simulator does
that, this module only parses).

Parsing, in order:

1. ``<think>...</think>`` blocks (case-insensitive, may span lines, may be several) are reasoning and removed.
   An unclosed ``<think>`` makes everything after it reasoning; a stray ``</think>`` without an opener makes
   everything before it reasoning (chat templates that pre-fill ``<think>`` produce exactly that).
2. Markdown emphasis and code markers (``*``, ``**``, backticks) are blanked out. Per line, leading bullets,
   numbering, quote marks and headers (``-``, ``*``, ``+``, ``1.``, ``1)``, ``>``, ``#``) are stripped,
   then an optional label: ``Action:``, ``Actions:``, ``Final action:``, ``Answer:``, ``Final answer:``,
   ``Decision:`` (case-insensitive).
3. A line is an action line only if it then STARTS with ``BUY``, ``SELL`` or ``HOLD`` as a whole word
   (case-insensitive). Every other line is prose and ignored. A ``HOLD`` line is ``HOLD`` alone or followed by
   punctuation-led commentary (``HOLD.``, ``HOLD - no signal``, ``HOLD (waiting)``); ``Hold on, ...`` and
   ``holding is best`` are prose. A line starting with ``BUY``/``SELL`` is always an order line, so prose
   must not start with those words.
4. An order line is ``<side> <symbol> <fraction> [commentary]``. The symbol (letters, digits, ``& - _ .``) is
   matched case-insensitively against the episode's symbols and carries their canonical spelling. The fraction
   is a decimal (``0.5``, ``.5``, ``1``, ``1.0``, ``1e-2``) or a percentage (``10%``, ``50 %``); it must be
   finite and in (0, 1]. Commentary after it is allowed (``BUY X 0.5 - oversold``, ``BUY X 0.5 because ...``)
   unless it starts with another number (``0.5 0.3``, ``1/3``, ``1,5``, ``0.5.3``): those are ambiguous.
5. Identical orders are counted once; HOLD lines next to orders are ignored (the orders execute).

Any malformed action line makes the whole step invalid, and an invalid step is a HOLD: partial execution of a
malformed answer would hide the error from training.

Documented results (``ok`` = valid, ``inv`` = invalid, ``reason`` names the problem):

=====================================================  =================================================
input                                                  result
=====================================================  =================================================
``""``, prose only, JSON ``{"action": "BUY", ...}``    inv: no action line found
``<think>...`` unclosed, no action before it           inv: no action line found (unclosed <think> ...)
``<think>...</think>`` then ``BUY X 0.5``              ok: the think block is ignored
``...</think> BUY X 0.5`` (stray closer)               ok: text before ``</think>`` is ignored
``BUY``, ``BUY.``, ``BUY: X 0.5``                      inv: missing symbol and fraction
``BUY X``                                              inv: missing fraction for X
``BUY X nan``, ``inf``, ``1e309``                      inv: fraction ... is not a finite number
``BUY X 0``, ``-0.5``, ``1.5``, ``150%``, ``1e-400``   inv: fraction ... is outside (0, 1]
``BUY X 0.5x``, ``BUY X half``                         inv: malformed fraction
``BUY X 0.5 0.3``, ``BUY X 1/3``, ``BUY X 1,5``        inv: unexpected number after the fraction
``BUY X 10%``, ``BUY X 50 %``                          ok: fraction 0.10, 0.50
``BUY FOO 0.5`` (FOO not in symbols)                   inv: unknown symbol 'FOO' (names the symbols)
``BUY X(1) 0.5``                                       inv: malformed symbol
``Buy signals look strong`` (prose starting with Buy)  inv: unknown symbol 'signals'
``buy x 0.5``                                          ok: canonical symbol spelling, side BUY
``- **BUY** `X` 0.5``, ``1. BUY X 0.5``, code fences   ok: markdown is stripped
``Action: BUY X 0.5``, ``Final answer: HOLD``          ok: label is stripped
``HOLD``, ``HOLD - no signal``, several HOLD lines     ok: hold (no orders)
``Hold on, let me think``, ``holding is best``         prose (alone: no action line found)
``HOLD`` + ``BUY X 0.5``                               ok: the BUY executes, HOLD is ignored
``BUY X 0.5`` twice                                    ok: one order
``BUY X 0.5`` + ``SELL X 0.5`` (or ``BUY X 0.3``)      inv: conflicting orders for X
one bad line among good ones                           inv: the whole step is a HOLD
=====================================================  =================================================

``parse_action`` never raises for a ``str`` (any length, control characters, unicode) and parses 100 KB in a
few milliseconds: the regexes are compiled once and written so they cannot backtrack catastrophically.

Numeric actions
---------------
``Box(-1, 1, (K,))``: a_k > 0.1 is ``BUY k (a_k - 0.1) / 0.9``, a_k < -0.1 is ``SELL k (-a_k - 0.1) / 0.9``,
otherwise hold; values are clipped to [-1, 1]; a non-finite value is a hold for that stock and flagged.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np

from market_env import kernels

BUY, SELL = "BUY", "SELL"
NUMERIC_DEADZONE = 0.1
NO_ACTION = "no action line found"
_UNCLOSED_THINK = " (unclosed <think> block: everything after <think> is reasoning)"
_MIN_PRINTED_FRACTION = 1e-4  # 4 decimals: a positive fraction must never print as the invalid "0"


def action_grammar(example_symbol: str = "<SYMBOL>") -> str:
    """The grammar as the observation states it, its example naming ``example_symbol``.

    Observations pass one of the episode's own symbols: a fixed real name (it used to be TCS) would
    name a real stock inside an anonymised observation and suggest a stock the episode may not hold.
    """
    return (
        "Reply with one action per line: BUY <SYMBOL> <fraction of cash>, "
        "SELL <SYMBOL> <fraction of shares>, or HOLD. "
        f"Fractions are in (0, 1], e.g. BUY {example_symbol} 0.25. Sells fill before buys; buys are "
        "scaled to your cash. Reasoning may go first inside <think>...</think>. A malformed line makes the "
        "whole step a HOLD."
    )


ACTION_GRAMMAR = action_grammar()  # the generic statement (server metadata); observations name a symbol


@dataclass(frozen=True)
class Order:
    """One order: ``side`` BUY or SELL, ``symbol`` as listed in the episode, ``fraction`` in (0, 1]."""

    side: str
    symbol: str
    fraction: float

    def __post_init__(self) -> None:
        if self.side not in (BUY, SELL):
            raise ValueError(f"Order side must be {BUY!r} or {SELL!r}, got {self.side!r}")
        if not 0.0 < self.fraction <= 1.0:  # also rejects NaN
            raise ValueError(f"Order fraction must be in (0, 1], got {self.fraction!r}")


@dataclass(frozen=True)
class ParsedAction:
    """The parsed step: its orders, or ``invalid=True`` with a ``reason`` (and then no orders)."""

    orders: tuple[Order, ...] = ()
    invalid: bool = False
    reason: str = ""

    def __post_init__(self) -> None:
        if self.invalid and (self.orders or not self.reason):
            raise ValueError("an invalid ParsedAction has no orders and a non-empty reason")
        if not self.invalid and self.reason:
            raise ValueError("a valid ParsedAction has an empty reason")

    @property
    def is_hold(self) -> bool:
        """True when nothing trades this step: a valid hold or an invalid action."""
        return self.invalid or not self.orders


# --- regexes, compiled once ---------------------------------------------------------------------------------
# Every repeated group below starts with a character its neighbours cannot match, so a failing match backs
# off in linear time; that is what keeps 100 KB of adversarial text fast.
_THINK_TAG = re.compile(r"<(/?)think>", re.IGNORECASE)
# str.splitlines() breaks on all of these; "^" under re.MULTILINE only knows "\n".
_LINE_BREAK = re.compile(r"\r\n?|[\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029]")
_MARKUP = str.maketrans("*`", "  ")  # spaces, not deletions: "0.5*2" must not become "0.52"
_SP = r"[^\S\n]"  # whitespace within one line
_KEYWORD = re.compile(r"\b(?:buy|sell|hold)\b", re.IGNORECASE)
_PREFIX = re.compile(  # what may precede the keyword on an action line
    rf"{_SP}*(?:(?:[-+>#]|\(?[0-9]{{1,3}}[.)]){_SP}*)*"  # bullets, numbering, quotes, headers
    rf"(?:(?:final{_SP}+)?(?:actions?|answer|decisions?){_SP}*:{_SP}*)?",  # optional label
    re.IGNORECASE,
)
_HOLD_REST = re.compile(r"\s*(?:[^\w\s].*)?")  # HOLD alone or punctuation-led commentary
_ORDER_REST = re.compile(r"\s+(?P<sym>\S+)(?P<after>.*)")
_SYMBOL = re.compile(r"[A-Za-z0-9&_.\-]+")
_FRACTION = re.compile(
    r"\s+(?P<num>[+\-]?(?:(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:e[+\-]?[0-9]+)?|nan|inf(?:inity)?))"
    r"(?P<pct>\s*%)?(?P<tail>.*)",
    re.IGNORECASE,
)
_GLUED = re.compile(r"\w")  # "0.5x", "1e", "inflation": the number runs into a word
_NUMBER_AFTER = re.compile(r"\s*(?:[/:,.+\-]\s*)?\.?\d")  # "0.5 0.3", "1/3", "1,5", "0.5.3"


def parse_action(text: str, symbols: Sequence[str]) -> ParsedAction:
    """Parse an answer into orders for ``symbols``; never raises for a ``str`` (see the module docstring)."""
    if not isinstance(text, str):
        raise TypeError(f"parse_action expects the answer as str, got {type(text).__name__}")
    body, unclosed = _strip_think(text)
    lookup = _symbol_lookup(tuple(symbols))
    orders: dict[str, Order] = {}
    found = False
    seen: set[tuple[str, str]] = set()
    for side, rest in _action_lines(_LINE_BREAK.sub("\n", body).translate(_MARKUP)):
        if (side, rest) in seen:
            continue  # a repetition loop (common in small models): a line's outcome is already counted
        seen.add((side, rest))
        if side == "HOLD":
            found = found or _HOLD_REST.fullmatch(rest) is not None
            continue
        order = _parse_order(side, rest, lookup)
        if isinstance(order, str):
            return _invalid(f"{order} in line {_short(side + rest, 60)!r}")
        found = True
        if orders.setdefault(order.symbol, order) != order:
            return _invalid(f"conflicting orders for {order.symbol}")
    if not found:
        return _invalid(NO_ACTION + (_UNCLOSED_THINK if unclosed else ""))
    return ParsedAction(orders=tuple(orders.values()))


def _action_lines(body: str) -> Iterator[tuple[str, str]]:
    """``(keyword, rest of line)`` for each line that starts, after its prefix, with BUY, SELL or HOLD.

    Searching for the keyword first keeps prose-heavy text cheap: only lines that contain one are looked at.
    Only a line's first keyword can start it (any later one has that keyword in its prefix), so the search
    goes on from the next line.
    """
    pos = 0
    while (hit := _KEYWORD.search(body, pos)) is not None:
        start = body.rfind("\n", 0, hit.start()) + 1
        end = body.find("\n", hit.end())
        end = len(body) if end < 0 else end
        pos = end + 1
        if _PREFIX.fullmatch(body, start, hit.start()) is not None:
            yield hit[0].upper(), body[hit.end() : end]


def _invalid(reason: str) -> ParsedAction:
    return ParsedAction(invalid=True, reason=reason)


def _strip_think(text: str) -> tuple[str, bool]:
    """Drop reasoning; return the rest and whether a ``<think>`` was left unclosed."""
    kept: list[str] = []
    pos, inside = 0, False
    for tag in _THINK_TAG.finditer(text):
        closing = bool(tag.group(1))
        if inside:
            # A <think> nested in reasoning is reasoning too; the first </think> ends the block.
            if closing:
                inside, pos = False, tag.end()
        elif closing:
            kept, pos = [], tag.end()  # stray closer: the template opened the block, all before is reasoning
        else:
            kept.append(text[pos : tag.start()])
            inside = True
    if not inside:
        kept.append(text[pos:])
    # Joined by newlines so text on either side of a removed block never merges into one line.
    return "\n".join(kept), inside


@lru_cache(maxsize=256)
def _symbol_lookup(symbols: tuple[str, ...]) -> dict[str, str]:
    """Upper-case spelling -> canonical spelling; cached: an env parses against the same list each step."""
    lookup = {symbol.upper(): symbol for symbol in symbols}
    if len(lookup) != len(symbols):
        raise ValueError(f"symbols must be unique ignoring case, got {list(symbols)}")
    return lookup


def _parse_order(side: str, rest: str, lookup: dict[str, str]) -> Order | str:
    """The order on a BUY/SELL line, or the reason it is malformed."""
    match = _ORDER_REST.match(rest)
    if match is None:
        return "missing symbol and fraction"
    token = match["sym"]
    if _SYMBOL.fullmatch(token) is None:
        return f"malformed symbol {_short(token)!r}"
    symbol = lookup.get(token.upper())
    if symbol is None:
        return f"unknown symbol {_short(token)!r} (symbols: {_short(', '.join(lookup.values()), 80)})"
    fraction = _parse_fraction(match["after"])
    if isinstance(fraction, str):
        return f"{fraction} for {symbol}"
    return Order(side, symbol, fraction)


def _parse_fraction(after: str) -> float | str:
    """The fraction at the start of ``after`` (the text after the symbol), or the reason it is malformed."""
    if not after.strip():
        return "missing fraction"
    match = _FRACTION.match(after)
    if match is None or _GLUED.match(match["tail"]):
        return f"malformed fraction {_short(after.split()[0])!r}"
    if _NUMBER_AFTER.match(match["tail"]):
        return "unexpected number after the fraction"
    token = match["num"] + ("%" if match["pct"] else "")
    value = float(match["num"]) / (100.0 if match["pct"] else 1.0)
    if not math.isfinite(value):
        return f"fraction {_short(token)} is not a finite number"
    if not 0.0 < value <= 1.0:
        return f"fraction {_short(token)} is outside (0, 1]"
    return value


def _short(text: str, limit: int = 24) -> str:
    """Clip user text quoted in a reason, so a 100 KB token cannot make a 100 KB reason."""
    return text if len(text) <= limit else text[: limit - 3] + "..."


def format_fraction(x: float) -> str:
    """``x`` with up to 4 decimals and no trailing zeros: 0.5 -> "0.5", 1.0 -> "1", 1/3 -> "0.3333"."""
    text = f"{x:.4f}".rstrip("0").rstrip(".")
    return "0" if text == "-0" else text


def format_action(orders: Sequence[Order]) -> str:
    """Canonical text of ``orders``, one ``BUY SYM 0.5`` line each, or ``HOLD`` when there are none."""
    if not orders:
        return "HOLD"
    return "\n".join(
        f"{o.side} {o.symbol} {format_fraction(max(o.fraction, _MIN_PRINTED_FRACTION))}" for o in orders
    )


@lru_cache(maxsize=256)
def _symbol_index(symbols: tuple[str, ...]) -> dict[str, int]:
    return {symbol: i for i, symbol in enumerate(symbols)}


def orders_to_fractions(parsed: ParsedAction, symbols: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """``(sell_frac, buy_frac)``, float64 of shape ``(len(symbols),)``; zeros for a hold or invalid step."""
    sell = np.zeros(len(symbols), dtype=np.float64)
    buy = np.zeros(len(symbols), dtype=np.float64)
    if parsed.invalid:
        return sell, buy
    index = _symbol_index(tuple(symbols))
    for order in parsed.orders:
        if order.symbol not in index:
            raise ValueError(f"order symbol {order.symbol!r} is not one of {list(symbols)}")
        (buy if order.side == BUY else sell)[index[order.symbol]] = order.fraction
    return sell, buy


_REAL_KINDS = frozenset("iuf")  # signed and unsigned integers, floats: bool, complex, object, text are not


def numeric_action_array(action: Any, shape: tuple[int, ...], name: str = "action") -> np.ndarray:
    """``action`` as a float64 array of ``shape``, or a ValueError naming ``name`` that says what arrived.

    Only arrays (or nested sequences) of real numbers pass: a dict, a string, complex or object values
    (``10**400`` is one: NumPy cannot hold it as a number) would otherwise surface as a TypeError or an
    OverflowError from deep inside NumPy, or be silently cast (complex drops its imaginary part).
    """
    if action is None or isinstance(action, (str, bytes, dict, set, frozenset)):
        raise ValueError(f"numeric {name} must be an array of real numbers, got {type(action).__name__}")
    try:
        array = np.asarray(action)
    except (TypeError, ValueError, OverflowError) as error:
        raise ValueError(f"numeric {name} is not an array of real numbers: {error}") from error
    if array.dtype.kind not in _REAL_KINDS:
        raise ValueError(f"numeric {name} must hold real numbers, got dtype {array.dtype}")
    if array.shape != shape:
        raise ValueError(f"numeric {name} must have shape {shape}, got {array.shape}")
    return array.astype(np.float64, copy=False)


def text_action_list(actions: Any, n_envs: int, name: str = "actions") -> list[str]:
    """A batch's text actions as a list of ``n_envs`` strings, or a ValueError naming ``name``.

    A single string would otherwise be split into characters and a numeric array read as n actions.
    """
    if isinstance(actions, (str, bytes)):
        raise ValueError(f"{name} must be a list of {n_envs} strings, one per env, got a single string")
    if isinstance(actions, np.ndarray) and actions.dtype.kind not in "UO":
        raise ValueError(f"{name} must be a list of {n_envs} strings, got an array of dtype {actions.dtype}")
    try:
        items = list(actions)
    except TypeError as error:
        raise ValueError(
            f"{name} must be a list of {n_envs} strings, got {type(actions).__name__}"
        ) from error
    if len(items) != n_envs:
        raise ValueError(f"expected {n_envs} text actions in {name}, got {len(items)}")
    for i, item in enumerate(items):
        if not isinstance(item, str):
            raise ValueError(f"{name}[{i}] must be a string, got {type(item).__name__}")
    return items


def numeric_to_fractions(
    actions: np.ndarray, out: tuple[np.ndarray, np.ndarray] | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Map numeric actions of any shape to ``(sell_frac, buy_frac, nonfinite_mask)`` of the same shape.

    Hot loop of every numeric step: one compiled pass (``market_env.kernels.numeric_fractions``), into
    ``out`` (two C-contiguous float64 arrays) when given, so the batch env reuses its buffers.
    """
    a = np.ascontiguousarray(actions, dtype=np.float64)
    sell, buy = out if out is not None else (np.empty_like(a), np.empty_like(a))
    nonfinite = np.empty(a.shape, dtype=bool)
    rows = (-1, a.shape[-1]) if a.ndim else (1, 1)
    kernels.numeric_fractions(
        a.reshape(rows), NUMERIC_DEADZONE, sell.reshape(rows), buy.reshape(rows), nonfinite.reshape(rows)
    )
    return sell, buy, nonfinite
