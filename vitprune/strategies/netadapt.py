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
from collections.abc import Callable
from dataclasses import replace
from itertools import product

import torch
from torch import nn

from budgetprune.schemas import ArchSpec
from vitprune.gates import make_gated
from vitprune.strategies.base import (
    Fitted,
    SearchContext,
    Strategy,
    TrainContext,
    UnitRates,
    register_strategy,
)
from vitprune.strategies.calibration import calibration_batches, teacher_kl
from vitprune.strategies.steps import Steps

# exchange rates tried by `fit`: (head, neurons), dims at 1.0
RATE_GRID = tuple(product((1.0, 2.0, 4.0), (0.5, 1.0, 2.0, 4.0)))


@register_strategy("netadapt")
class NetAdapt(Strategy):
    def propose(self, ctx: SearchContext, current: ArchSpec, goal_ms: float) -> ArchSpec:
        spec = current.model_copy(deep=True)
        steps = Steps(ctx)
        predicted = ctx.predict_ms(spec)
        while predicted > goal_ms:
            best: tuple[float, ArchSpec, float] | None = None
            for step in steps.removals(spec):
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
        spec, rates, note = self.calibrated(
            ctx, search, ctx.model, batches, search.dense, goal_ms, ctx.progress
        )
        return Fitted(spec, copy.deepcopy(ctx.model), [], [note], rates)

    def calibrated(
        self,
        ctx: TrainContext,
        search: SearchContext,
        model: nn.Module,
        batches: list[torch.Tensor],
        start: ArchSpec,
        goal_ms: float,
        progress: Callable[[float], None] | None = None,
    ) -> tuple[ArchSpec, UnitRates, str]:
        """The greedy's cut of `start` (its tokens kept) at each rate pair of RATE_GRID, scored
        by its KL to the teacher on `batches` with `model`'s weights; the lowest wins. `search`
        holds the importance `model`'s order was sorted by. Returns the spec, its rates and a
        note for the report."""
        gated = make_gated(model, search.dense, tokens=start.tokens)
        kl = teacher_kl(gated, ctx.teacher, batches)
        scored: dict[str, tuple[float, UnitRates, ArchSpec]] = {}
        plain = 0.0  # the KL at the default rates, what the job gets without data
        for i, (head, neurons) in enumerate(RATE_GRID):
            rates = UnitRates(head=head, neurons=neurons)
            spec = self.propose(replace(search, rates=rates), start, goal_ms)
            if spec.sha256() not in scored:
                scored[spec.sha256()] = (kl(spec), rates, spec)
            if rates == UnitRates():
                plain = scored[spec.sha256()][0]
            if progress is not None:
                progress((i + 1) / len(RATE_GRID))
        loss, rates, spec = min(scored.values(), key=lambda t: t[0])
        note = (
            f"exchange rates heads x{rates.head:g}, MLP neurons x{rates.neurons:g}: "
            f"KL to the teacher {loss:.4f} on {len(batches)} batches, against {plain:.4f} at "
            f"x1 ({len(scored)} distinct sub-networks from {len(RATE_GRID)} rate pairs)"
        )
        return spec, rates, note
