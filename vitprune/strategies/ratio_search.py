"""Separate pruning ratios for attention and FFN, found by binary search against the predictor,
applied iteratively with short distillation in between (automatic ratio search for ViT pruning).

One uniform ratio wastes budget: attention and FFN differ in cost per unit and in importance per
unit. For every attention ratio on the grid (qk and v dims per head, in width multiples), a
binary search finds the widest FFN that meets the goal. Of those pairs, the one whose pruned
model stays closest to the teacher on calibration batches wins (the paper searches the ratios
"to minimise accuracy loss"); without data, the one keeping the most weight magnitude. Pruning
reaches the final pair in `STAGES` steps of rising cut, each followed by a share of the
fine-tuning steps.

The last stage's pair, the one delivered, is chosen after some tuning: the KL-best pair and its
neighbours on the attention grid are each distilled for a sixth of the steps on a throwaway copy
and scored by their KL then. Scored right after the cut, the KL underrates what narrow attention
costs once tuned: at 50% of the latency on CIFAR-10 it picked 16/64 dims per head with 312/768
neurons, and one ratio for both (24/64, 272) ended 1.6 points higher after the same training
(bench/README.md, 2026-12-06 late morning). Like token's probes, these steps are search
compute: the delivered weights never see them.

Why the calibration loss: picking by kept magnitude share (attention and FFN weighted alike)
chose 8 of 64 dims per head with 2464 FFN neurons at 35% on CIFAR-10 and ended 2.1 points below
the uniform ratio at the same training budget (bench/README.md, 2026-12-05 Intel run).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence

import torch
from torch import nn

from budgetprune.schemas import ArchSpec
from vitprune.gates import GatedViT, make_gated
from vitprune.strategies.base import Fitted, SearchContext, TrainContext, register_strategy
from vitprune.strategies.calibration import calibration_batches, teacher_kl
from vitprune.strategies.netadapt import NetAdapt
from vitprune.strategies.tune import tune_hard

__all__ = [
    "PROBE_SHARE",
    "RatioSearch",
    "RatioPair",
    "best_ratios",
    "feasible_pairs",
    "pair_kl",
    "uniform_spec",
]

STAGES = 3
PROBE_SHARE = 1 / 6  # of a fit's steps, each probe's distillation

RatioPair = tuple[int, int]  # (qk and v dims per head, MLP neurons per block)


def uniform_spec(base: ArchSpec, dims: int, hidden: int) -> ArchSpec:
    """`base` with every block at `dims` per head and `hidden` neurons (its tokens kept)."""
    blocks = [
        b.model_copy(update={"qk_dim": dims, "v_dim": dims, "mlp_hidden": hidden})
        for b in base.blocks
    ]
    return base.model_copy(update={"blocks": blocks})


def _grid(full: int, multiple: int, least: int) -> list[int]:
    """Allowed widths, ascending: multiples of `multiple` from `least` (rounded up), and full."""
    start = max(multiple, -(-least // multiple) * multiple)
    return sorted({*range(start, full, multiple), full})


def _kept_share(scores: Sequence[Sequence[float]], width: int) -> float:
    return sum(sum(s[:width]) for s in scores) / max(sum(sum(s) for s in scores), 1e-12)


def feasible_pairs(
    ctx: SearchContext, goal_ms: float, base: ArchSpec | None = None
) -> list[RatioPair]:
    """Per attention width on the grid, the widest FFN meeting `goal_ms` (binary search) when
    cut from `base` (the dense spec, or the dense widths under a token schedule); the widths
    whose narrowest FFN is already too slow are left out."""
    base = base or ctx.dense
    info = ctx.dense.info
    dims_grid = _grid(info.head_dim, ctx.width_multiple, 1)
    hidden_grid = _grid(info.mlp_hidden, ctx.width_multiple, ctx.min_mlp_hidden)
    pairs = []
    for dims in dims_grid:
        if ctx.predict_ms(uniform_spec(base, dims, hidden_grid[0])) > goal_ms:
            continue
        lo, hi = 0, len(hidden_grid) - 1  # invariant: hidden_grid[lo] meets the goal
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if ctx.predict_ms(uniform_spec(base, dims, hidden_grid[mid])) <= goal_ms:
                lo = mid
            else:
                hi = mid - 1
        pairs.append((dims, hidden_grid[lo]))
    return pairs


def best_ratios(
    ctx: SearchContext,
    goal_ms: float,
    loss: Callable[[RatioPair], float] | None = None,
    base: ArchSpec | None = None,
) -> RatioPair | None:
    """The pair under `goal_ms` (cut from `base`, default the dense spec) with the lowest
    `loss`, or, without one, keeping the most importance; None when no pair on the grid meets
    the goal."""
    pairs = feasible_pairs(ctx, goal_ms, base)
    if not pairs:
        return None
    if loss is not None:
        return min(pairs, key=loss)
    return max(
        pairs, key=lambda p: _kept_share(ctx.dim_scores, p[0]) + _kept_share(ctx.mlp_scores, p[1])
    )


def pair_kl(
    gated: GatedViT, teacher: nn.Module, batches: list[torch.Tensor], base: ArchSpec
) -> Callable[[RatioPair], float]:
    """A pair's loss: the KL to the teacher of `base` cut to it, hardened inside `gated`."""
    kl = teacher_kl(gated, teacher, batches)
    return lambda pair: kl(uniform_spec(base, *pair))


@register_strategy("ratio_search")
class RatioSearch(NetAdapt):
    """Works without data (the search alone); with data each stage is distilled."""

    def pair_for(
        self,
        ctx: SearchContext,
        goal_ms: float,
        loss: Callable[[RatioPair], float] | None = None,
        base: ArchSpec | None = None,
    ) -> RatioPair | None:
        return best_ratios(ctx, goal_ms, loss, base)

    def cut(
        self,
        ctx: SearchContext,
        base: ArchSpec,
        current: ArchSpec,
        goal_ms: float,
        loss: Callable[[RatioPair], float] | None,
    ) -> tuple[ArchSpec, RatioPair | None]:
        """`base` at the pair `pair_for` picks under `goal_ms`, or, when no pair is fast
        enough, `current` shrunk by the greedy (pair None)."""
        pair = self.pair_for(ctx, goal_ms, loss, base)
        if pair is None:
            return self.propose(ctx, current, goal_ms), None
        return uniform_spec(base, *pair), pair

    def probe_candidates(
        self,
        ctx: SearchContext,
        goal_ms: float,
        loss: Callable[[RatioPair], float],
        base: ArchSpec,
    ) -> list[RatioPair]:
        """The last stage's candidates: the pair under `goal_ms` that `loss` scores lowest
        and its neighbours on the attention grid."""
        pairs = feasible_pairs(ctx, goal_ms, base)  # ascending attention widths
        if not pairs:
            return []
        i = pairs.index(min(pairs, key=loss))
        return pairs[max(i - 1, 0) : i + 2]

    def probed_pair(
        self,
        ctx: TrainContext,
        gated: GatedViT,
        base: ArchSpec,
        goal_ms: float,
        loss: Callable[[RatioPair], float],
        batches: list[torch.Tensor],
        phase: str,
        notes: list[str],
    ) -> RatioPair | None:
        """Of `probe_candidates`, the pair closest to the teacher after each is distilled
        for `PROBE_SHARE` of the steps on a copy of `gated`; None when there is nothing to
        choose between or no steps to probe with."""
        steps = int(ctx.steps * PROBE_SHARE)
        candidates = self.probe_candidates(ctx.search, goal_ms, loss, base) if steps else []
        if len(candidates) < 2:
            return None
        scored: list[tuple[float, RatioPair]] = []
        for pair in candidates:
            probe, spec = copy.deepcopy(gated), uniform_spec(base, *pair)
            tune_hard(probe, spec, ctx, steps, [], f"{phase}-probe-{pair[0]}x{pair[1]}")
            scored.append((teacher_kl(probe, ctx.teacher, batches)(spec), pair))
        best = min(scored)[1]
        tried = ", ".join(f"{d}/{h}: {kl:.4f}" for kl, (d, h) in scored)
        notes.append(f"last pair by the KL after {steps} distillation steps of each ({tried})")
        return best

    def fit(self, ctx: TrainContext, goal_ms: float) -> Fitted:
        gated = make_gated(ctx.model, ctx.search.dense)
        curve: list[dict[str, object]] = []
        notes: list[str] = []
        spec = self.staged(ctx, gated, ctx.search.dense, goal_ms, ctx.steps, curve, notes)
        if ctx.train is None:
            notes.append("no data set: no fine-tuning between stages")
        return Fitted(spec, gated.dense_model(), curve, notes)

    def staged(
        self,
        ctx: TrainContext,
        gated: GatedViT,
        base: ArchSpec,
        goal_ms: float,
        steps: int,
        curve: list[dict[str, object]],
        notes: list[str],
        phase: str = "stage",
    ) -> ArchSpec:
        """Cut `base`'s widths (its tokens kept) to `goal_ms` in STAGES steps of rising cut,
        each a pair from `pair_for` (picked by the KL to the teacher with data) distilled for a
        share of `steps` inside `gated`; returns the last stage's spec."""
        search = ctx.search
        base_ms = search.predict_ms(base)
        loss, batches = None, []
        if ctx.train is not None:
            batches = calibration_batches(ctx.train)
            loss = pair_kl(gated, ctx.teacher, batches, base)
            notes.append(f"pairs picked by the KL to the teacher on {len(batches)} batches")
        spec = base
        for stage in range(1, STAGES + 1):
            stage_goal = base_ms - (base_ms - goal_ms) * stage / STAGES
            probed = None
            if stage == STAGES and loss is not None:
                probed = self.probed_pair(
                    ctx, gated, base, stage_goal, loss, batches, f"{phase}{stage}", notes
                )
            if probed is None:
                spec, pair = self.cut(search, base, spec, stage_goal, loss)
            else:
                spec, pair = uniform_spec(base, *probed), probed
            if pair is None:  # even the narrowest uniform pair is too slow: went greedy
                notes.append(f"stage {stage}: no uniform pair meets the goal; netadapt instead")
            else:
                notes.append(
                    f"stage {stage}: attention {pair[0]}/{search.dense.info.head_dim} dims, "
                    f"FFN {pair[1]}/{search.dense.info.mlp_hidden} neurons"
                )
            share = steps // STAGES + (steps % STAGES if stage == STAGES else 0)
            tune_hard(gated, spec, ctx, share, curve, f"{phase}{stage}")
        return spec
