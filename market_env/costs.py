"""Indian delivery-equity transaction costs (defaults as of 2025, configurable).

Every charge is proportional to the traded value except two flat ones: a per-order brokerage (0 at
discount brokers for delivery trades) and the depository (DP) charge, Rs 15.93 per symbol sold per day
(Rs 13.50 + 18% GST, already included). Slippage is not a cost here: it moves the fill price and belongs
to the task spec.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class CostModel:
    brokerage_rate: float = 0.0  # share of traded value
    brokerage_per_order: float = 0.0  # Rs per executed order
    stt_rate: float = 0.001  # securities transaction tax, buy and sell (delivery)
    transaction_rate: float = 0.0000297  # NSE transaction charge
    sebi_rate: float = 0.000001  # SEBI turnover fee (Rs 10 per crore)
    stamp_duty_rate: float = 0.00015  # buys only
    gst_rate: float = 0.18  # on brokerage + transaction charge + SEBI fee
    dp_charge: float = 15.93  # Rs per symbol sold per day, GST included

    @property
    def _taxed_rate(self) -> float:
        return (self.brokerage_rate + self.transaction_rate + self.sebi_rate) * (1.0 + self.gst_rate)

    @property
    def buy_rate(self) -> float:
        """Proportional cost of a buy, as a share of its value."""
        return self.stt_rate + self.stamp_duty_rate + self._taxed_rate

    @property
    def sell_rate(self) -> float:
        return self.stt_rate + self._taxed_rate

    @property
    def buy_flat(self) -> float:
        """Flat cost of one executed buy order, Rs."""
        return self.brokerage_per_order * (1.0 + self.gst_rate)

    @property
    def sell_flat(self) -> float:
        return self.brokerage_per_order * (1.0 + self.gst_rate) + self.dp_charge

    def buy_cost(self, value: float) -> float:
        return value * self.buy_rate + (self.buy_flat if value > 0 else 0.0)

    def sell_cost(self, value: float) -> float:
        return value * self.sell_rate + (self.sell_flat if value > 0 else 0.0)
