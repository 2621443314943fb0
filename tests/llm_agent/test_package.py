"""The package imports light and exposes its API lazily."""

from __future__ import annotations

import subprocess
import sys

import pytest

import llm_agent
from llm_agent import generation, models


def test_importing_the_package_and_registry_does_not_import_torch() -> None:
    code = (
        "import sys, llm_agent, llm_agent.models\n"
        "llm_agent.models.parse_model_spec('smollm2-135m')\n"
        "print('torch' in sys.modules, 'transformers' in sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.split() == ["False", "False"]


def test_public_names_resolve_lazily() -> None:
    assert llm_agent.load_model is models.load_model
    assert llm_agent.generate is generation.generate
    assert set(llm_agent.__all__) <= set(dir(llm_agent))
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        _ = llm_agent.nope
