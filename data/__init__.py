"""The embedded NIFTY 100 daily OHLCV data set, its validating loader, splits and causal indicators.

See ``SOURCE.md`` in this folder for provenance and caveats (split-adjusted, not dividend-adjusted;
survivorship: the April-2026 NIFTY 100).
"""

from data.loader import DataValidationError, embedded_path, load_prices, validate_prices
from data.panel import Panel, build_panel, load_panel
from data.splits import SPLITS, Split, get_split
from data.synthetic import resolve_data, synthetic_prices

__all__ = [
    "SPLITS",
    "DataValidationError",
    "Panel",
    "Split",
    "build_panel",
    "embedded_path",
    "get_split",
    "load_panel",
    "load_prices",
    "resolve_data",
    "synthetic_prices",
    "validate_prices",
]
