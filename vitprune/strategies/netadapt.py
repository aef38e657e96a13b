"""NetAdapt-style greedy shrinking: take the step (a head, a slab of head dims or a chunk of MLP
neurons, see `strategies.steps`) that costs the least importance per millisecond saved, until the
predictor says the goal is met.

Importance is weight magnitude, priced as a share of the branch it belongs to so that the three
kinds of unit compare. Widths move in multiples of the width multiple (hardware-friendly).

What a share of one kind is worth against another is not in the weights. NetAdapt proper picks
between per-layer proposals by their accuracy after a short tune; here, with a data set, `fit`
runs the greedy once per exchange rate on a small grid (heads and MLP neurons priced up to 4x or
down to half) and keeps the sub-network closest to the teacher on calibration batches (KL, no
tuning; `strategies.calibration`); later shrinks use the same rates. Magnitude alone cut MLP
neurons about twice as deep as a uniform cut at 35% on CIFAR-10 and ended 0.9 points under it
(bench/README.md).
"""

from __future__ import annotations

import copy
from itertools import product
from typing import ClassVar

from budgetprune.schemas import ArchSpec
from vitprune.gates import make_gated
from vitprune.strategies.base import (
    Fitted,
    SearchContext,
    Strategy,
    TrainContext,
    register_strategy,
)
from vitprune.strategies.calibration import calibration_batches, teacher_kl
from vitprune.strategies.steps import Steps, UnitRates

# exchange rates tried by `fit`: (head, neurons), dims at 1.0
RATE_GRID = tuple(product((1.0, 2.0, 4.0), (0.5, 1.0, 2.0, 4.0)))


@register_strategy("netadapt")
class NetAdapt(Strategy):
    narrows_heads: ClassVar[bool] = True  # False: heads go whole or stay whole (ToaSt)
    rates: UnitRates = UnitRates()

    def propose(self, ctx: SearchContext, current: ArchSpec, goal_ms: float) -> ArchSpec:
        spec = current.model_copy(deep=True)
        steps = Steps(ctx, self.rates)
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

    def fit(self, ctx: TrainContext, goal_ms: float) -> Fitted | None:
        """With data: calibrate the exchange rates between kinds (see the module). Without,
        nothing to fit: the measuring loop starts from the greedy's proposal."""
        if ctx.train is None:
            return None
        search = ctx.search
        batches = calibration_batches(ctx.train)
        kl = teacher_kl(make_gated(ctx.model, search.dense), ctx.teacher, batches)
        scored: dict[str, tuple[float, UnitRates, ArchSpec]] = {}
        plain = 0.0  # the KL at the default rates, what the job gets without data
        for i, (head, neurons) in enumerate(RATE_GRID):
            self.rates = UnitRates(head=head, neurons=neurons)
            spec = self.propose(search, search.dense, goal_ms)
            if spec.sha256() not in scored:
                scored[spec.sha256()] = (kl(spec), self.rates, spec)
            if self.rates == UnitRates():
                plain = scored[spec.sha256()][0]
            ctx.progress((i + 1) / len(RATE_GRID))
        loss, self.rates, spec = min(scored.values(), key=lambda t: t[0])
        notes = [
            f"exchange rates heads x{self.rates.head:g}, MLP neurons x{self.rates.neurons:g}: "
            f"KL to the teacher {loss:.4f} on {len(batches)} batches, against {plain:.4f} at "
            f"x1 ({len(scored)} distinct sub-networks from {len(RATE_GRID)} rate pairs)"
        ]
        return Fitted(spec, copy.deepcopy(ctx.model), [], notes)
