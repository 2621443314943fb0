"""Task specs: how many stocks, how many decision days, position cap and slippage.

Each task carries its own semver ``version``; a change to any field is a new version, frozen beside the
old one in ``market_env.versions``.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TaskSpec:
    name: str
    version: str
    n_stocks: int
    n_days: int  # decisions per episode
    position_cap: float  # max share of NAV in one stock after a trade
    slippage_bps: float  # fills at open * (1 +- slippage)
    description: str

    @property
    def slippage(self) -> float:
        return self.slippage_bps / 10_000.0


EASY_V1 = TaskSpec(
    "easy", "1.0.0", n_stocks=1, n_days=20, position_cap=1.0, slippage_bps=5.0,
    description="one stock, 20 trading days: timing entries and exits",
)  # fmt: skip
MEDIUM_V1 = TaskSpec(
    "medium", "1.0.0", n_stocks=10, n_days=30, position_cap=0.25, slippage_bps=10.0,
    description="ten stocks, 30 trading days: choosing among names, at most 25% of NAV in one",
)  # fmt: skip
HARD_V1 = TaskSpec(
    "hard", "1.0.0", n_stocks=25, n_days=40, position_cap=0.15, slippage_bps=10.0,
    description="25 stocks, 40 trading days: a diversified book, at most 15% of NAV in one",
)  # fmt: skip

TASK_NAMES = ("easy", "medium", "hard")
