"""Pruning strategies, registered by name so that a new one is a new file.

A strategy proposes sub-networks; it never measures. The pipeline owns the loop that measures
each proposal on the device, refines the predictor and tightens the goal (the certification
loop), so every strategy gets the same guarantee.

Strategies that look at weights or data (training with gates, calibration) also implement
`fit`: once, before the loop, they return an arch spec and the dense weights to extract it from;
the loop then shrinks further with `propose` only when the device disagrees with the predictor.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from budgetprune.errors import BudgetPruneError
from budgetprune.schemas import ArchSpec

if TYPE_CHECKING:  # torch stays out of the registry's import (the API lists strategies)
    import torch
    from torch import nn

    from vitprune.gates import GatedViT
    from vitprune.soft_tokens import SoftTokenViT


@dataclass(frozen=True)
class UnitRates:
    """What a share of importance is worth, by kind of unit (1.0 each: shares compare as they
    are; `strategies.steps`). Weights do not say what a head is worth against MLP neurons;
    netadapt and toast calibrate these on data, and the job keeps them for every later step."""

    head: float = 1.0
    dims: float = 1.0
    neurons: float = 1.0


@dataclass
class SearchContext:
    """What a strategy may look at: the dense spec, importance in the model's current (sorted)
    order (per head, per qk/v dim position, per MLP neuron), the predictor, the limits the
    user set, and the exchange rates a fit chose."""

    dense: ArchSpec
    head_scores: list[list[float]]
    dim_scores: list[list[float]]
    mlp_scores: list[list[float]]
    predict_ms: Callable[[ArchSpec], float]
    min_heads: int = 1
    min_mlp_hidden: int = 16
    width_multiple: int = 8
    rates: UnitRates = field(default_factory=UnitRates)


@dataclass
class TrainContext:
    """What a fitting strategy may use besides the search context. `train` is None when the
    job has no data set; `progress(fraction, **values)` reports and raises JobCancelledError
    when the user cancelled, so a long fit stops at the next step."""

    search: SearchContext
    model: nn.Module  # dense, importance-sorted; never modified (strategies copy it)
    teacher: nn.Module
    train: Iterable[tuple[torch.Tensor, torch.Tensor]] | None
    steps: int
    lr: float
    # differentiable, see strategies.latency
    expected_ms: Callable[[GatedViT | SoftTokenViT], torch.Tensor]
    progress: Callable[..., None]
    # where training loops keep checkpoints (the job's work dir), so a worker killed mid-fit
    # resumes at its last tenth instead of step 0; None: no checkpoints
    checkpoints: Path | None = None
    # times a hard spec on the target device now (the job's quick protocol) and refits the
    # predictor on it, so `expected_ms` is corrected for the kind of network the training is
    # converging to; returns the measured ms. None: no device in reach (dry runs, unit tests)
    measure: Callable[[ArchSpec], float] | None = None

    def checkpoint(self, name: str) -> Path | None:
        return None if self.checkpoints is None else self.checkpoints / f"fit-{name}.pt"


@dataclass
class Fitted:
    """A fit's result: `model` is dense (same shapes as the input) with the weights to extract
    `arch` from; `curve` is the strategy's own training log, `notes` what it had to do;
    `rates` price every later shrink and give-back (`SearchContext.rates`)."""

    arch: ArchSpec
    model: nn.Module
    curve: list[dict[str, object]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    rates: UnitRates = field(default_factory=UnitRates)


class Strategy(ABC):
    name: ClassVar[str]
    needs_data: ClassVar[bool] = False  # budgetprune.schemas.job mirrors this (tested)

    @abstractmethod
    def propose(self, ctx: SearchContext, current: ArchSpec, goal_ms: float) -> ArchSpec:
        """A sub-network of `current` predicted to run in at most `goal_ms`, or the smallest
        one allowed when none is."""

    def fit(self, ctx: TrainContext, goal_ms: float) -> Fitted | None:
        """Weights-and-data-aware pruning to `goal_ms`, run once before the measuring loop;
        None (the default) for strategies that only propose."""
        return None


_STRATEGIES: dict[str, type[Strategy]] = {}


def register_strategy(name: str) -> Callable[[type[Strategy]], type[Strategy]]:
    def wrap(cls: type[Strategy]) -> type[Strategy]:
        if name in _STRATEGIES:
            raise ValueError(f"strategy {name!r} is registered twice")
        cls.name = name
        _STRATEGIES[name] = cls
        return cls

    return wrap


def get_strategy(name: str) -> Strategy:
    try:
        return _STRATEGIES[name]()
    except KeyError:
        raise BudgetPruneError(
            f"unknown strategy {name!r}; available: {', '.join(sorted(_STRATEGIES))}"
        ) from None


def list_strategies() -> list[str]:
    return sorted(_STRATEGIES)
