"""Every strategy is registered; `auto` resolves by rule; the job schema knows which need data."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from budgetprune.schemas import JobCreate
from budgetprune.schemas.job import STRATEGIES_NEEDING_DATA
from vitprune.strategies import get_strategy, list_strategies, resolve_strategy


def test_all_registered_and_data_needs_mirror_the_schema():
    names = set(list_strategies())
    assert {"netadapt", "hiap", "hiap_token", "token", "toast", "ratio_search"} <= names
    assert {n for n in names if get_strategy(n).needs_data} == STRATEGIES_NEEDING_DATA


def test_auto_rule():
    assert resolve_strategy("auto", has_data=False, steps=0) == "toast"
    assert resolve_strategy("auto", has_data=True, steps=50) == "toast"
    assert resolve_strategy("auto", has_data=True, steps=500) == "hiap"
    assert resolve_strategy("ratio_search", has_data=False, steps=0) == "ratio_search"


def test_training_strategy_without_data_is_refused_at_validation():
    with pytest.raises(ValidationError, match="hiap trains the network end to end"):
        JobCreate(model="deit_tiny_patch16_224", budget_fraction=0.5, strategy="hiap")
    JobCreate(model="deit_tiny_patch16_224", budget_fraction=0.5, strategy="toast")
