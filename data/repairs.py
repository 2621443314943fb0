"""Known defects of the embedded NIFTY 100 file, repaired as it loads (the file stays the provenance copy).

Each repair is a frozen, documented entry (``data/SOURCE.md``, "Repairs applied at load"). They apply to the
embedded file only: a user's own file is loaded as given, because its adjustments may already be right.

Why repair at load rather than edit the file: the shipped bytes keep the sha256 their provenance records, and
the repair stays visible, reviewable code. The data identity that runs record (``load_prices()[1]``) is the
content hash of the repaired table, so a run made on repaired prices never claims the raw file's identity.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

PRICE_COLUMNS = ("open", "high", "low", "close")


@dataclass(frozen=True)
class Rescale:
    """Rescale a symbol's prices before ``first_good_day`` so that its last earlier close is ``anchor_close``.

    The factor is derived from the anchor, not stored, so the repair is idempotent: applied to prices that
    already carry the right level, the factor is 1. Volume is left as the file has it (see ``reason``).
    """

    symbol: str
    first_good_day: str  # ISO date: rows from this day on are right and are the reference level
    anchor_close: float  # the right close of the last row before ``first_good_day``, on the file's scale
    reason: str

    def factor(self, prices: pd.DataFrame) -> float:
        rows = prices[(prices["symbol"] == self.symbol) & (prices["date"] < self.first_good_day)]
        if rows.empty:
            return 1.0
        return self.anchor_close / float(rows.loc[rows["date"].idxmax(), "close"])

    def apply(self, prices: pd.DataFrame) -> pd.DataFrame:
        factor = self.factor(prices)
        if factor == 1.0:
            return prices
        repaired = prices.copy()
        before = (repaired["symbol"] == self.symbol) & (repaired["date"] < self.first_good_day)
        repaired.loc[before, list(PRICE_COLUMNS)] *= factor
        return repaired


# MOTHERSON (then Motherson Sumi Systems) went ex-demerger on 2022-01-14 (1 Motherson Sumi Wiring India share
# per share, record date 2022-01-17): NSE closes Rs 234.80 on 2022-01-13, about Rs 185.5 on 2022-01-14 (-21%).
# Yahoo scaled the earlier prices by a further 0.615, so the file jumps +35% at the open and never reverts.
# The file's later prices are bonus-adjusted for two 1:2 bonuses (ex 2022-10-03 and July 2025: x 2/3 twice,
# 2.25 in all; its 2022-01-14 close 82.4667 x 2.25 = 185.55). Putting the 2022-01-13 close at 234.80 / 2.25
# restores the exchange's prices on that scale: the ex-demerger day becomes the -21% it was, the demerger
# left unadjusted as the file does for ITC (2025-01-06). Factor 1.6267 on open/high/low/close before the day.
# Volume stays: it shows no matching step (median 23.1 M shares a day in the 3 months before, 18.3 M after).
MOTHERSON_2022_DEMERGER = Rescale(
    symbol="MOTHERSON",
    first_good_day="2022-01-14",
    anchor_close=234.80 / 2.25,
    reason="Yahoo scaled the prices before the 2022-01-14 demerger ex-date by 0.615 (+35% overnight jump)",
)

EMBEDDED_REPAIRS: tuple[Rescale, ...] = (MOTHERSON_2022_DEMERGER,)


def apply_repairs(prices: pd.DataFrame, repairs: tuple[Rescale, ...] = EMBEDDED_REPAIRS) -> pd.DataFrame:
    """``prices`` (validated: typed dates) with every repair applied, in order."""
    for repair in repairs:
        prices = repair.apply(prices)
    return prices
