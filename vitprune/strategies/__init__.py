"""Pruning strategies, selected by name (`auto` picks one, see `strategies.auto`)."""

from vitprune.strategies import hiap as _hiap  # noqa: F401  (registers "hiap", "hiap_token")
from vitprune.strategies import netadapt as _netadapt  # noqa: F401  (registers "netadapt")
from vitprune.strategies import ratio_search as _ratio  # noqa: F401  (registers "ratio_search")
from vitprune.strategies import toast as _toast  # noqa: F401  (registers "toast")
from vitprune.strategies import token as _token  # noqa: F401  (registers "token")
from vitprune.strategies.auto import AUTO, resolve_strategy
from vitprune.strategies.base import (
    Fitted,
    SearchContext,
    Strategy,
    TrainContext,
    UnitRates,
    get_strategy,
    list_strategies,
    register_strategy,
)
from vitprune.strategies.latency import expected_ms_fn

__all__ = [
    "AUTO",
    "Fitted",
    "SearchContext",
    "Strategy",
    "TrainContext",
    "UnitRates",
    "expected_ms_fn",
    "get_strategy",
    "list_strategies",
    "register_strategy",
    "resolve_strategy",
]
