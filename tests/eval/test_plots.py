"""Plot labels: long agent names are broken into short lines without losing a character."""

from __future__ import annotations

import itertools

from hypothesis import given
from hypothesis import strategies as st

from eval.plots import _wrap


@given(st.text(alphabet="abc-_.:@/+0123456789", max_size=80), st.integers(4, 40))
def test_wrapped_names_keep_every_character_and_break_only_at_separators(name: str, width: int) -> None:
    lines = _wrap(name, width).split("\n")
    assert "".join(lines) == name
    for line, following in itertools.pairwise(lines):
        assert line[-1] in ":@/" or following[0] == "+"  # never inside a word


def test_an_adapter_name_fits_under_its_box() -> None:
    assert _wrap("llm:smollm2-135m@runs/sft-easy/adapter+think") == (
        "llm:\nsmollm2-135m@\nruns/sft-easy/\nadapter+think"
    )
    assert _wrap("buy-and-hold") == "buy-and-hold"
