"""The small exception hierarchy of market_env. Messages say what was expected, what arrived, what to do."""

from __future__ import annotations


class MarketEnvError(Exception):
    """Base class for every error raised on purpose by market_env."""


class UnknownNameError(MarketEnvError, ValueError):
    """A task, split, version, grader or observation mode name that is not registered."""

    def __init__(self, kind: str, name: object, valid: list[str]) -> None:
        super().__init__(f"unknown {kind} {name!r}; expected one of: {', '.join(valid)}")
        self.kind, self.name, self.valid = kind, name, valid


class EpisodeError(MarketEnvError, ValueError):
    """An episode cannot be built: no valid start date, too few complete symbols, a bad explicit episode."""


class EpisodeFinishedError(MarketEnvError, RuntimeError):
    """``step`` was called after the episode ended; call ``reset`` first."""


def check_name(kind: str, name: str, registry: dict) -> None:
    if name not in registry:
        raise UnknownNameError(kind, name, sorted(registry))
