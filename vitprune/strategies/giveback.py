"""Give width back: the inverse of NetAdapt's step, for a certified model that came in well
under its budget (the search overshoots when one removal saves a lot, and predictors err).

Adds, one at a time, the step (see `strategies.steps`) that brings the most importance per
millisecond it costs: the strongest head a kept attention branch lacks, a slab of head dims, or
the next chunk of MLP neurons (the model is in importance order, so the next dims and neurons
are the strongest missing ones). Branches the strategy dropped stay dropped and token ratios
stay as they are: the result is always a superset of the certified network, so what was kept
keeps its (fine-tuned) weights.
"""

from __future__ import annotations

from budgetprune.schemas import ArchSpec
from vitprune.strategies.base import SearchContext
from vitprune.strategies.steps import Steps

__all__ = ["give_back"]


def give_back(ctx: SearchContext, current: ArchSpec, goal_ms: float) -> ArchSpec:
    """The largest superset of `current` the greedy order reaches with predicted <= goal_ms;
    `current` itself when no unit fits."""
    spec = current.model_copy(deep=True)
    steps = Steps(ctx)
    predicted = ctx.predict_ms(spec)
    while True:
        best: tuple[float, ArchSpec, float] | None = None
        for step in steps.additions(spec):
            cand_ms = ctx.predict_ms(step.spec)
            if cand_ms > goal_ms:
                continue
            value = step.share / max(cand_ms - predicted, 1e-6)
            if best is None or value > best[0]:
                best = (value, step.spec, cand_ms)
        if best is None:
            return spec
        _, spec, predicted = best
