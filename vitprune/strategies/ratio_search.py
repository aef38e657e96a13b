"""Separate pruning ratios for attention and FFN, found by binary search against the predictor,
applied iteratively with short distillation in between (automatic ratio search for ViT pruning).

One uniform ratio wastes budget: attention and FFN differ in cost per unit and in importance per
unit. For every attention ratio on the grid (qk and v dims per head, in width multiples), a
binary search finds the widest FFN that meets the goal. With data, the pair whose sub-network
(at the current weights) is closest to the teacher on a few calibration batches wins
(`strategies.proxy`): magnitude cannot say whether an attention dim is worth more than an FFN
neuron, the data can. Without data, the pair keeping the most importance (mean kept share of
magnitude in each part) wins. Pruning reaches the final pair in `STAGES` steps of rising cut,
each followed by a share of the fine-tuning steps.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import ClassVar

from budgetprune.schemas import ArchSpec
from vitprune.gates import make_gated
from vitprune.strategies.base import Fitted, SearchContext, TrainContext, register_strategy
from vitprune.strategies.netadapt import NetAdapt
from vitprune.strategies.proxy import calibration_batches, gated_gap
from vitprune.strategies.tune import tune_hard

__all__ = ["RatioSearch", "RatioPair", "best_ratios", "ratio_candidates", "uniform_spec"]

STAGES = 3

RatioPair = tuple[int, int]  # (qk and v dims per head, MLP neurons per block)
Judge = Callable[[ArchSpec], float]  # a candidate's distance from the teacher; lower is better


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


def ratio_candidates(ctx: SearchContext, goal_ms: float) -> list[tuple[float, RatioPair]]:
    """For each attention width on the grid that can meet `goal_ms`, the widest FFN that does,
    with the share of importance the pair keeps."""
    info = ctx.dense.info
    dims_grid = _grid(info.head_dim, ctx.width_multiple, 1)
    hidden_grid = _grid(info.mlp_hidden, ctx.width_multiple, ctx.min_mlp_hidden)
    out = []
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
        out.append((kept, (dims, hidden)))
    return out


def best_ratios(ctx: SearchContext, goal_ms: float) -> RatioPair | None:
    """The pair of `ratio_candidates` keeping the most importance; None when no pair on the
    grid meets the goal."""
    candidates = ratio_candidates(ctx, goal_ms)
    return max(candidates)[1] if candidates else None


@register_strategy("ratio_search")
class RatioSearch(NetAdapt):
    """Works without data (the search alone); with data each stage is distilled."""

    judges: ClassVar[bool] = True  # False: the pairs are not judged on data (baselines)

    def pair_for(
        self, ctx: SearchContext, goal_ms: float, judge: Judge | None = None
    ) -> RatioPair | None:
        """With `judge` (a job with data), the candidate whose sub-network starts closest to
        the teacher; without, the one keeping the most weight magnitude."""
        if judge is None:
            return best_ratios(ctx, goal_ms)
        candidates = ratio_candidates(ctx, goal_ms)
        if not candidates:
            return None
        return min(candidates, key=lambda c: judge(uniform_spec(ctx.dense, *c[1])))[1]

    def fit(self, ctx: TrainContext, goal_ms: float) -> Fitted:
        search = ctx.search
        dense_ms = search.predict_ms(search.dense)
        gated = make_gated(ctx.model, search.dense)
        curve: list[dict[str, object]] = []
        notes: list[str] = []
        spec = search.dense
        judged = calibration_batches(ctx) if self.judges else []
        judge = (lambda s: gated_gap(gated, s, judged)) if judged else None
        if judged:
            images = sum(len(x) for x, _t in judged)
            notes.append(f"pairs judged by KL to the teacher on {images} calibration images")
        for stage in range(1, STAGES + 1):
            stage_goal = dense_ms - (dense_ms - goal_ms) * stage / STAGES
            pair = self.pair_for(search, stage_goal, judge)
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
