"""Separate pruning ratios for attention and FFN, found by binary search against the predictor,
applied iteratively with short distillation in between (automatic ratio search for ViT pruning).

One uniform ratio wastes budget: attention and FFN differ in cost per unit and in importance per
unit. For every attention ratio on the grid (qk and v dims per head, in width multiples), a
binary search finds the widest FFN that meets the goal; the pair keeping the most importance
(mean kept share of magnitude in each part) wins. Pruning reaches the final pair in
`STAGES` steps of rising cut, each followed by a share of the fine-tuning steps.
"""

from __future__ import annotations

from collections.abc import Sequence

from budgetprune.schemas import ArchSpec
from vitprune.gates import make_gated
from vitprune.strategies.base import Fitted, SearchContext, TrainContext, register_strategy
from vitprune.strategies.netadapt import NetAdapt
from vitprune.strategies.tune import tune_hard

__all__ = ["RatioSearch", "RatioPair", "best_ratios", "uniform_spec"]

STAGES = 3

RatioPair = tuple[int, int]  # (qk and v dims per head, MLP neurons per block)


def uniform_spec(dense: ArchSpec, dims: int, hidden: int) -> ArchSpec:
    blocks = [
        b.model_copy(update={"qk_dim": dims, "v_dim": dims, "mlp_hidden": hidden})
        for b in dense.blocks
    ]
    return dense.model_copy(update={"blocks": blocks})


def _grid(full: int, multiple: int, least: int) -> list[int]:
    """Allowed widths, ascending: multiples of `multiple` from `least` (rounded up), and full."""
    start = max(multiple, -(-least // multiple) * multiple)
    return sorted({*range(start, full, multiple), full})


def _kept_share(scores: Sequence[Sequence[float]], width: int) -> float:
    return sum(sum(s[:width]) for s in scores) / max(sum(sum(s) for s in scores), 1e-12)


def best_ratios(ctx: SearchContext, goal_ms: float) -> RatioPair | None:
    """The (dims, hidden) pair under `goal_ms` keeping the most importance; None when no pair
    on the grid meets it."""
    info = ctx.dense.info
    dims_grid = _grid(info.head_dim, ctx.width_multiple, 1)
    hidden_grid = _grid(info.mlp_hidden, ctx.width_multiple, ctx.min_mlp_hidden)
    best: tuple[float, RatioPair] | None = None
    for dims in dims_grid:
        if ctx.predict_ms(uniform_spec(ctx.dense, dims, hidden_grid[0])) > goal_ms:
            continue
        lo, hi = 0, len(hidden_grid) - 1  # invariant: hidden_grid[lo] meets the goal
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if ctx.predict_ms(uniform_spec(ctx.dense, dims, hidden_grid[mid])) <= goal_ms:
                lo = mid
            else:
                hi = mid - 1
        hidden = hidden_grid[lo]
        kept = _kept_share(ctx.dim_scores, dims) + _kept_share(ctx.mlp_scores, hidden)
        if best is None or kept > best[0]:
            best = (kept, (dims, hidden))
    return None if best is None else best[1]


@register_strategy("ratio_search")
class RatioSearch(NetAdapt):
    """Works without data (the search alone); with data each stage is distilled."""

    def pair_for(self, ctx: SearchContext, goal_ms: float) -> RatioPair | None:
        return best_ratios(ctx, goal_ms)

    def fit(self, ctx: TrainContext, goal_ms: float) -> Fitted:
        search = ctx.search
        dense_ms = search.predict_ms(search.dense)
        gated = make_gated(ctx.model, search.dense)
        curve: list[dict[str, object]] = []
        notes: list[str] = []
        spec = search.dense
        for stage in range(1, STAGES + 1):
            stage_goal = dense_ms - (dense_ms - goal_ms) * stage / STAGES
            pair = self.pair_for(search, stage_goal)
            if pair is None:  # even the narrowest uniform pair is too slow: go greedy
                spec = self.propose(search, spec, stage_goal)
                notes.append(f"stage {stage}: no uniform pair meets the goal; netadapt instead")
            else:
                spec = uniform_spec(search.dense, *pair)
                notes.append(
                    f"stage {stage}: attention {pair[0]}/{search.dense.info.head_dim} dims, "
                    f"FFN {pair[1]}/{search.dense.info.mlp_hidden} neurons"
                )
            steps = ctx.steps // STAGES + (ctx.steps % STAGES if stage == STAGES else 0)
            tune_hard(gated, spec, ctx, steps, curve, f"stage{stage}")
        if ctx.train is None:
            notes.append("no data set: no fine-tuning between stages")
        return Fitted(spec, gated.dense_model(), curve, notes)
