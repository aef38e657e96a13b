"""NetAdapt-style greedy shrinking: take the step (a head, a slab of head dims or a chunk of MLP
neurons, see `strategies.steps`) that costs the least importance per millisecond saved, until the
predictor says the goal is met.

Importance is weight magnitude, priced as a share of the branch it belongs to so that the three
kinds of unit compare. Widths move in multiples of the width multiple (hardware-friendly).
"""

from __future__ import annotations

from typing import ClassVar

from budgetprune.schemas import ArchSpec
from vitprune.strategies.base import SearchContext, Strategy, register_strategy
from vitprune.strategies.steps import Steps


@register_strategy("netadapt")
class NetAdapt(Strategy):
    narrows_heads: ClassVar[bool] = True  # False: heads go whole or stay whole (ToaSt)

    def propose(self, ctx: SearchContext, current: ArchSpec, goal_ms: float) -> ArchSpec:
        spec = current.model_copy(deep=True)
        steps = Steps(ctx)
        predicted = ctx.predict_ms(spec)
        while predicted > goal_ms:
            best: tuple[float, ArchSpec, float] | None = None
            for step in steps.removals(spec, dims=self.narrows_heads):
                cand_ms = ctx.predict_ms(step.spec)
                # A removal the predictor prices at nothing (a flat stretch of a measured
                # table) is still allowed, last: the goal is not met, so keep shrinking.
                cost = step.share / max(predicted - cand_ms, 1e-9)
                if best is None or cost < best[0]:
                    best = (cost, step.spec, cand_ms)
            if best is None:  # nothing left to remove: the smallest allowed sub-network
                break
            _, spec, predicted = best
        return spec
