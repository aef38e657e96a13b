"""Computation-aware soft token pruning (SPViT family): keep ratios chosen against the latency
predictor, dropped tokens merged into a package token, then distillation.

The selector has no weights of its own (it reads the block's query/key), so what is learned
against latency is the schedule: stages at a quarter, half and three quarters of the depth keep
r, r^2, r^3 of the patches, and r is the largest value (binary search) whose predicted latency
meets the goal. With a lookup-table predictor that is the device's own cost of fewer tokens.
When even the smallest schedule is too slow, widths shrink too (NetAdapt on the token spec) and
the notes say so.
"""

from __future__ import annotations

from budgetprune.schemas import ArchSpec
from budgetprune.schemas.arch import TokenSpec
from vitprune.gates import make_gated
from vitprune.strategies.base import Fitted, SearchContext, TrainContext, register_strategy
from vitprune.strategies.netadapt import NetAdapt
from vitprune.strategies.tune import tune_hard

__all__ = ["TokenPruning", "keep_schedule", "with_tokens"]

MIN_RATIO = 0.25
SEARCH_STEPS = 12


def keep_schedule(depth: int, ratio: float) -> TokenSpec:
    """Keep ratios r, r^2, r^3 (of the patch count) from a quarter, half, three quarters deep."""
    blocks = [depth // 4, depth // 2, 3 * depth // 4]
    return TokenSpec(keep={b: ratio ** (i + 1) for i, b in enumerate(blocks)})


def with_tokens(ctx: SearchContext, spec: ArchSpec, goal_ms: float) -> ArchSpec:
    """`spec` with the mildest token schedule the predictor puts under `goal_ms` (the strongest
    allowed one when none is)."""
    depth = len(spec.blocks)

    def at(r: float) -> ArchSpec:
        return spec.model_copy(update={"tokens": keep_schedule(depth, r)})

    if ctx.predict_ms(spec) <= goal_ms:
        return spec
    lo, hi = MIN_RATIO, 1.0
    if ctx.predict_ms(at(lo)) > goal_ms:
        return at(lo)
    for _ in range(SEARCH_STEPS):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if ctx.predict_ms(at(mid)) <= goal_ms else (lo, mid)
    return at(lo)


@register_strategy("token")
class TokenPruning(NetAdapt):
    """Works without data (the schedule alone); with data the pruned network is distilled."""

    def fit(self, ctx: TrainContext, goal_ms: float) -> Fitted:
        search = ctx.search
        spec = with_tokens(search, search.dense, goal_ms)
        notes = [f"token keep ratios {spec.tokens.keep if spec.tokens else {}}"]
        if search.predict_ms(spec) > goal_ms:
            spec = self.propose(search, spec, goal_ms)
            notes.append("tokens alone could not meet the goal: widths shrunk too (netadapt)")
        gated = make_gated(ctx.model, search.dense, tokens=spec.tokens)
        curve: list[dict[str, object]] = []
        tune_hard(gated, spec, ctx, ctx.steps, curve, "distill")
        if ctx.train is None:
            notes.append("no data set: token schedule only, no distillation")
        return Fitted(spec, gated.dense_model(), curve, notes)
