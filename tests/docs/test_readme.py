"""The README's Python example runs as written and its action is a valid one (a user copies it first)."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).parents[2] / "README.md"


def python_api_example() -> str:
    section = README.read_text().split("## Python API", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_the_python_api_example_runs_and_its_action_is_valid():
    namespace: dict = {}
    exec(compile(python_api_example(), "README.md", "exec"), namespace)  # the snippet asserts validity itself
    info = namespace["info"]
    assert info["invalid_action"] is False and info["trades"], "the example's BUY must execute"
    assert namespace["obs"].shape[0] == 1024  # the batch example ran too


def test_the_readme_names_the_default_env_version():
    import market_env

    assert f"Default: {market_env.ENV_VERSION}, which the published LLM rows" in README.read_text()
