"""Grounded ``<think>`` traces: short reasoning written from an expert's decision and the prompt's own table.

Every value a trace mentions is copied from the observation's table cell for that stock (``table_cells``
reads the rows ``market_env.observations`` rendered), so it appears in the prompt exactly as printed: RSI
as an integer, changes, trend and %B with one decimal and no '+', the position's P&L as ``+3.2%``. The
sentence is picked by the rule that fired (``training.sft.experts.Call.rule``), so a trace never contradicts
the action lines after it: a BUY sentence says buying, a SELL sentence selling, and HOLD sentences use
neither word. Wording varies through several templates per rule, drawn from a seeded generator.

Length: one sentence per traded stock (plus, on the single-stock task, sometimes one line of context), a
short closing clause on portfolio tasks, one sentence for a hold.
"""

from __future__ import annotations

import numpy as np

from market_env.actions import format_action
from market_env.observations import TABLE_HEADER
from training.sft.experts import BUY, Call, Decision

# Short names for the table's columns, in TABLE_HEADER order.
COLUMNS = ("symbol", "close", "day", "5d", "rsi", "macd", "pct_b", "trend", "atr", "mom20", "volume",
           "position")  # fmt: skip
if len(COLUMNS) != len(TABLE_HEADER.split("|")):  # pragma: no cover - fails at import if the table changes
    raise ImportError(
        f"training.sft.think expects {len(COLUMNS)} table columns, the observation has {TABLE_HEADER!r}"
    )

# Templates by rule; "@one" variants are for the single-stock task, "@many" for portfolios (default: both).
# Fields: every table column's value ({rsi}, {trend}, ...) and label ({rsi_label}, ...), {pnl} of a position,
# {size} (the buy fraction in words), {macd_sign} ("positive", "negative" or "flat") and {trend_state}.
TEMPLATES: dict[str, tuple[str, ...]] = {
    # --- rsi expert
    "oversold": (
        "{symbol}: RSI {rsi} is oversold and {trend_state}, so buying with {size}.",
        "RSI {rsi} on {symbol} is oversold while {trend_state}: buy with {size}.",
        "{symbol} looks oversold (RSI {rsi}) and {trend_state}; buying with {size}.",
    ),
    "overbought": (
        "{symbol}: RSI {rsi} is overbought, so selling the whole position (P&L {pnl}).",
        "RSI {rsi} says {symbol} is overbought; selling all of it at P&L {pnl}.",
        "{symbol} is overbought at RSI {rsi}: sell everything.",
    ),
    "stop_loss": (
        "{symbol} shows P&L {pnl}, past the stop-loss: selling the whole position.",
        "The stop-loss is hit on {symbol} (P&L {pnl}), so sell everything.",
        "{symbol} has lost too much (P&L {pnl}); the stop-loss sells all of it.",
    ),
    "blocked_bearish_trend": (
        "{symbol}: RSI {rsi} is oversold, but the trend {trend}% is bearish, so no entry.",
        "RSI {rsi} on {symbol} is oversold, yet SMA20/SMA50 is {trend}%: a falling market, I wait.",
        "{symbol} is oversold (RSI {rsi}) in a downtrend ({trend}%); no entry against it.",
    ),
    "no_signal@one": (
        "{symbol}: RSI {rsi} is {rsi_label}, no oversold entry; holding.",
        "RSI {rsi} ({rsi_label}) on {symbol} gives no entry, so I wait.",
        "No signal on {symbol}: RSI {rsi} is {rsi_label}.",
    ),
    "no_signal@many": (
        "No entry: the lowest RSI is {symbol} at {rsi}, not oversold",
        "Nothing is oversold; the lowest RSI is {rsi} on {symbol}",
        "No RSI entry today, {symbol} is lowest at {rsi}",
    ),
    "held": (
        "Keeping {symbol}: RSI {rsi} is not overbought and P&L {pnl} is within the stop.",
        "{symbol} stays: RSI {rsi}, P&L {pnl}, no exit signal.",
        "No exit on {symbol} (RSI {rsi}, P&L {pnl}); holding.",
    ),
    # --- trend expert
    "trend_up": (
        "{symbol}: the trend is up ({trend}%) and MACD histogram {macd} is rising, so buying with {size}.",
        "{symbol} trends up, SMA20/SMA50 {trend}%, with MACD histogram {macd} rising: buy with {size}.",
        "Uptrend on {symbol} ({trend}%) confirmed by a rising MACD histogram ({macd}); buying with {size}.",
    ),
    "blocked_macd": (
        "{symbol} trends up ({trend}%), but the MACD histogram ({macd}, {macd_label}) does not confirm, "
        "so no entry yet.",
        "The trend on {symbol} is up ({trend}%) while MACD histogram {macd} ({macd_label}) does not confirm; "
        "I wait.",
    ),
    "trend_down": (
        "{symbol}: the trend has turned down ({trend}%), so selling the whole position.",
        "SMA20 fell below SMA50 on {symbol} ({trend}%, {trend_label}); sell everything.",
        "The uptrend on {symbol} is over ({trend}%): selling all of it.",
    ),
    "macd_down": (
        "{symbol}: the MACD histogram {macd} is {macd_sign} and falling, momentum is gone, so selling all.",
        "Momentum fades on {symbol} (MACD histogram {macd}, falling); sell the whole position.",
        "{symbol} loses momentum, MACD histogram {macd} and falling: selling everything.",
    ),
    # --- bollinger expert
    "lower_band": (
        "{symbol} sits at the lower Bollinger band (%B {pct_b}) and RSI {rsi} is not collapsing: "
        "buying with {size}.",
        "%B {pct_b} puts {symbol} at its lower band with RSI {rsi}, a dip to buy with {size}.",
        "{symbol} is stretched to the lower band (%B {pct_b}, RSI {rsi}); buying with {size}.",
    ),
    "upper_band": (
        "{symbol} is back in the upper part of its band (%B {pct_b}): the reversion is done, selling all.",
        "%B {pct_b} on {symbol} is {pct_b_label}; sell the whole position (P&L {pnl}).",
        "{symbol} reverted to %B {pct_b}, so selling everything.",
    ),
    "blocked_rsi_collapse": (
        "{symbol} is at the lower band (%B {pct_b}), but RSI {rsi} is collapsing, so no entry.",
        "%B {pct_b} on {symbol} is low, yet RSI {rsi} shows a collapse, not a dip; I wait.",
    ),
    # --- momentum expert
    "rising_5d": (
        "{symbol} is {5d}% over five days, a rise that tends to continue: buying with {size}.",
        "Five-day change on {symbol} is {5d}%, above zero, so buying with {size}.",
        "{symbol} gained {5d}% in five days; following the move, buy with {size}.",
    ),
    "falling_5d": (
        "{symbol} is {5d}% over five days, below zero: selling the whole position.",
        "Five-day change on {symbol} turned negative ({5d}%); sell everything.",
        "{symbol} is down over five days ({5d}%), so selling all of it.",
    ),
}
# The trend and bollinger experts explain holds in their own terms.
EXPERT_TEMPLATES: dict[str, dict[str, tuple[str, ...]]] = {
    "trend": {
        "no_signal@one": (
            "{symbol}: the trend {trend}% is {trend_label}, nothing to follow; holding.",
            "No uptrend on {symbol} ({trend}%, {trend_label}), so I wait.",
            "SMA20/SMA50 on {symbol} is {trend}%, no trend entry.",
        ),
        "no_signal@many": (
            "No trend entry: the strongest trend is {symbol} at {trend}%",
            "Nothing trends up with momentum; the best is {symbol} at {trend}%",
        ),
        "held": (
            "Keeping {symbol}: the trend {trend}% has not turned down and MACD histogram {macd} is "
            "{macd_label}.",
            "{symbol} stays: trend {trend}%, MACD histogram {macd} {macd_label}, no exit.",
        ),
    },
    "momentum": {
        "no_signal@one": (
            "{symbol}: the five-day change {5d}% is not above zero; holding.",
            "No rise on {symbol} over five days ({5d}%), so I wait.",
        ),
        "no_signal@many": (
            "No momentum entry: the best five-day change is {symbol} at {5d}%",
            "Nothing rose over five days; the closest is {symbol} at {5d}%",
        ),
        "held": (
            "Keeping {symbol}: its five-day change {5d}% is not below zero.",
            "{symbol} stays: five-day change {5d}%, no exit.",
        ),
    },
    "bollinger": {
        "no_signal@one": (
            "{symbol}: %B {pct_b} ({pct_b_label}) is not at the lower band; holding.",
            "No band entry on {symbol}: %B {pct_b} ({pct_b_label}).",
            "%B {pct_b} on {symbol} is not at the lower band, so I wait.",
        ),
        "no_signal@many": (
            "No band entry: the lowest %B is {symbol} at {pct_b}",
            "Nothing sits at its lower band; the closest is {symbol} at %B {pct_b}",
        ),
        "held": (
            "Keeping {symbol}: %B {pct_b} has not reached the upper band and P&L {pnl} is within the stop.",
            "{symbol} stays: %B {pct_b}, P&L {pnl}, no exit.",
        ),
    },
}
CONTEXT = (  # a second sentence on the single-stock task, sometimes
    "It closed at {close}, {day}% on the day and {5d}% over five days.",
    "Volume is {volume} times its 20-day average ({volume_label}) and ATR is {atr}% ({atr_label}).",
    "Twenty-day momentum is {mom20}%.",
)
# More trading stocks than this in one answer: one sentence per rule instead of one per stock.
MAX_SENTENCES = 3
GROUP_ITEMS = {
    "oversold": "{symbol} (RSI {rsi})",
    "trend_up": "{symbol} (trend {trend}%, MACD {macd})",
    "lower_band": "{symbol} (%B {pct_b})",
    "rising_5d": "{symbol} ({5d}% in 5 days)",
    "falling_5d": "{symbol} ({5d}% in 5 days)",
    "overbought": "{symbol} (RSI {rsi})",
    "stop_loss": "{symbol} (P&L {pnl})",
    "trend_down": "{symbol} (trend {trend}%)",
    "macd_down": "{symbol} (MACD {macd})",
    "upper_band": "{symbol} (%B {pct_b})",
}
GROUP_REASONS = {
    "oversold": "oversold while the trend is not bearish",
    "trend_up": "uptrends with a rising MACD histogram",
    "lower_band": "at the lower band with RSI not collapsing",
    "rising_5d": "up over five days",
    "falling_5d": "down over five days",
    "overbought": "overbought",
    "stop_loss": "the stop-loss is hit",
    "trend_down": "the trend turned down",
    "macd_down": "the MACD histogram is falling",
    "upper_band": "back in the upper part of the band",
}
HOLD_TAILS = ("; holding.", ", so holding.", "; no trade today.")
HELD_TAILS = ("; no position shows an exit, so holding.", ", and the positions stay.")
TRADE_TAILS = (
    "Nothing else gives a signal.",
    "The other stocks stay as they are.",
    "No other stock triggers a rule.",
)


def table_cells(observation: str) -> dict[str, dict[str, str]]:
    """The observation's table as symbol -> column -> printed cell (e.g. ``"27 oversold"``)."""
    lines = observation.splitlines()
    start = lines.index(TABLE_HEADER) + 1
    cells = {}
    for line in lines[start:]:
        parts = line.split("|")
        if len(parts) != len(COLUMNS):
            break  # the action grammar after the table
        cells[parts[0]] = dict(zip(COLUMNS, parts))
    return cells


def template_fields(cells: dict[str, str]) -> dict[str, str]:
    """Template fields of one stock's row: each column's value and label, the position's P&L."""
    fields = {}
    for column, cell in cells.items():
        value, _, label = cell.partition(" ")
        fields[column], fields[f"{column}_label"] = value, label
    fields["pnl"] = cells["position"].rsplit(" ", 1)[-1]
    macd = float(fields["macd"])
    fields["macd_sign"] = "positive" if macd > 0 else "negative" if macd < 0 else "flat"
    trend = fields["trend_label"]
    fields["trend_state"] = (
        f"the trend is {trend} ({fields['trend']}%)" if trend != "down" else
        f"the trend ({fields['trend']}%) is only mildly down"
    )  # fmt: skip
    return fields


def size_words(call: Call, expert: str) -> str:
    if call.fraction == 1.0:
        return "all the cash"
    if call.fraction == 0.5:
        return "half the cash"
    if expert == "bollinger":
        return "half of an equal share of the cash"
    return "an equal share of the cash"


def _templates(expert: str, rule: str, many: bool) -> tuple[str, ...]:
    own = EXPERT_TEMPLATES.get(expert, {})
    for key in (f"{rule}@{'many' if many else 'one'}", rule):
        if key in own:
            return own[key]
        if key in TEMPLATES:
            return TEMPLATES[key]
    raise KeyError(f"no trace template for expert {expert!r}, rule {rule!r}")


def _pick(options: tuple[str, ...], rng: np.random.Generator) -> str:
    return options[int(rng.integers(len(options)))]


def _sentence(call: Call, decision: Decision, table: dict, rng: np.random.Generator) -> str:
    many = decision.n_stocks > 1
    fields = template_fields(table[call.symbol]) | {"size": size_words(call, decision.expert)}
    return _pick(_templates(decision.expert, call.rule, many), rng).format(**fields)


def write_trace(decision: Decision, observation: str, rng: np.random.Generator) -> str:
    """The reasoning for ``decision``, grounded in ``observation`` (the prompt it answers)."""
    table = table_cells(observation)
    many = decision.n_stocks > 1
    if decision.is_hold:
        first = decision.calls[0]
        sentence = _sentence(first, decision, table, rng)
        if not many or first.rule == "held":
            return sentence
        held = any(c.rule == "held" for c in decision.calls)
        return sentence.rstrip(".") + _pick(HELD_TAILS if held else HOLD_TAILS, rng)
    if len(decision.calls) > MAX_SENTENCES:
        sentences = _grouped(decision, table)
    else:
        sentences = [_sentence(call, decision, table, rng) for call in decision.calls]
    if many:
        sentences.append(_pick(TRADE_TAILS, rng))
    elif rng.random() < 0.5:
        sentences.append(_pick(CONTEXT, rng).format(**template_fields(table[decision.calls[0].symbol])))
    return " ".join(sentences)


def _grouped(decision: Decision, table: dict) -> list[str]:
    """One sentence per rule when many stocks trade, so a busy day stays short: ``Buying A (RSI 27), ...``."""
    sentences = []
    for rule in dict.fromkeys(call.rule for call in decision.calls):
        calls = [call for call in decision.calls if call.rule == rule]
        items = ", ".join(GROUP_ITEMS[rule].format(**template_fields(table[c.symbol])) for c in calls)
        verb = "Buying" if calls[0].side == BUY else "Selling all of"
        size = f", each with {size_words(calls[0], decision.expert)}" if calls[0].side == BUY else ""
        sentences.append(f"{verb} {items}: {GROUP_REASONS[rule]}{size}.")
    return sentences


def assistant_message(decision: Decision, observation: str, rng: np.random.Generator) -> str:
    """``<think>trace</think>`` then the action lines (``HOLD`` when there are no orders)."""
    return f"<think>{write_trace(decision, observation, rng)}</think>\n{format_action(decision.orders)}"
