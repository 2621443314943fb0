"""Published versions are frozen: stored grades of fixed episodes and actions must reproduce exactly.

A failure here means a change altered the market or the grader of a published version. Publish a new
version entry in ``market_env/versions.py`` instead (and regenerate only for the new version).
"""

from __future__ import annotations

import json

import pytest

from tests.market_env.reference_grades import PATH, play

REFERENCES = json.loads(PATH.read_text())


@pytest.mark.parametrize(
    "reference", REFERENCES, ids=lambda r: f"{r['task']}-v{r['env_version']}-seed{r['seed']}"
)
def test_published_versions_reproduce_their_stored_grades(reference):
    grade = play(
        reference["task"], reference["env_version"], reference["seed"], reference.get("data", "default")
    )
    assert grade["start_date"] == reference["start_date"]
    assert grade["score"] == pytest.approx(reference["score"], abs=1e-12)
    for name, value in reference["metrics"].items():
        assert grade["metrics"][name] == pytest.approx(value, rel=1e-12, abs=1e-12), name
