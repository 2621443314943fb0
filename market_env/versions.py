"""Environment versions as frozen entries: market rules, tasks and the grader each version uses.

A version is never edited once published; a change is a new entry and the old one stays runnable
(``market_env.make("hard", version="1.0.0")``), so a result can always be reproduced under the version
it reports. Gymnasium ids carry the major version: ``nifty-rl/Hard-v1`` is env 1.0.0.

History
- 1.0.0: market rules of DESIGN.md; grader 1.0.0 (the published composite; doing nothing scores 0.300).
- 2.0.0: same market and tasks; grader 2.0.0 (return in excess of equal-weight buy-and-hold, a cost
  term instead of pay-for-activity).
- 3.0.0: grader 3.0.0 (score = clip(0.5 + net return), linear in P&L: no variance premium, size-aware,
  costs counted once); the position cap holds after the buy's own costs (``cap_after_costs``). Same tasks.
- 4.0.0: 3.0.0's market, tasks and grader (every grade equals 3.0.0's); the text observation's 5d% cell
  carries its direction word ("-0.4 down"), as the trend cell does, so a small model can key on a word
  rather than a sign (docs/grpo.md, "The direction in words"). A changed observation is a
  changed interface, hence a major version. 3.0.0 stays the default: the published LLM rows were trained
  and measured on its text.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from market_env.costs import CostModel
from market_env.errors import check_name
from market_env.tasks import EASY_V1, HARD_V1, MEDIUM_V1, TaskSpec


@dataclass(frozen=True)
class MarketRules:
    start_cash: float = 1_000_000.0  # Rs 10,00,000
    costs: CostModel = field(default_factory=CostModel)
    lookback_days: int = 60  # history every episode symbol must have before its first decision
    # False (env 1.0.0, 2.0.0): the cap is checked against the NAV before the step's buys, so their fees and
    # slippage shrink the NAV afterwards and a capped position ends up to ~0.02 pp over the cap. True (3.0.0):
    # the room is measured against the NAV net of a bound on those costs, so no position weight, valued at
    # the fill open, exceeds the cap after the trade. Kept per version so old grades stay bit-identical.
    cap_after_costs: bool = False


@dataclass(frozen=True)
class EnvVersion:
    version: str
    grader: str
    rules: MarketRules
    tasks: dict[str, TaskSpec]
    notes: str
    label_5d: bool = False  # the text observation's 5d% cell ends with up/down/flat (4.0.0 on)

    def task(self, name: str) -> TaskSpec:
        check_name("task", name, self.tasks)
        return self.tasks[name]


_TASKS_V1 = {"easy": EASY_V1, "medium": MEDIUM_V1, "hard": HARD_V1}

ENV_VERSIONS: dict[str, EnvVersion] = {
    "1.0.0": EnvVersion("1.0.0", "1.0.0", MarketRules(), _TASKS_V1, "published composite grader"),
    "2.0.0": EnvVersion(
        "2.0.0", "2.0.0", MarketRules(), _TASKS_V1, "excess-return grader, no pay-for-activity"
    ),
    "3.0.0": EnvVersion(
        "3.0.0",
        "3.0.0",
        MarketRules(cap_after_costs=True),
        _TASKS_V1,
        "net-return grader (0.5 = cash kept, +0.1 = +10% net); position cap holds after costs",
    ),
    "4.0.0": EnvVersion(
        "4.0.0",
        "3.0.0",
        MarketRules(cap_after_costs=True),
        _TASKS_V1,
        '3.0.0 with the 5d% cell\'s direction in words ("-0.4 down") in the text observation',
        label_5d=True,
    ),
}
# The default everywhere, and not the newest: the published LLM results (and the shipped adapters) were
# trained and measured on 3.0.0's text. Rule and PPO agents grade identically under 3.0.0 and 4.0.0.
ENV_VERSION = "3.0.0"


def get_version(version: str | None = None) -> EnvVersion:
    name = ENV_VERSION if version is None else version
    check_name("env version", name, ENV_VERSIONS)
    return ENV_VERSIONS[name]
