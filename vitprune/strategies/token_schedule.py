"""Token keep schedules priced by the predictor: the mildest schedule that meets a goal, and
learned ratios scaled down together to one. Pure search over specs (no torch), shared by the
token strategies.

Stages sit at a quarter, half and three quarters of the depth and keep r, r^2, r^3 of the
patches. r stops at MIN_RATIO (an eighth of the patches left after the last stage): below that
each stage throws away most of what carries the class.
"""

from __future__ import annotations

from collections.abc import Callable

from budgetprune.schemas import ArchSpec
from budgetprune.schemas.arch import TokenSpec
from vitprune.strategies.base import SearchContext

__all__ = ["MIN_RATIO", "keep_schedule", "scaled_to", "with_tokens"]

MIN_RATIO = 0.5
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
    return at(_largest(ctx, at, goal_ms) or MIN_RATIO)


def _largest(ctx: SearchContext, at: Callable[[float], ArchSpec], goal_ms: float) -> float | None:
    """The largest r in [MIN_RATIO, 1] (binary search) whose spec `at(r)` the predictor puts
    under `goal_ms`; None when even MIN_RATIO is over."""
    lo, hi = MIN_RATIO, 1.0
    if ctx.predict_ms(at(lo)) > goal_ms:
        return None
    for _ in range(SEARCH_STEPS):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if ctx.predict_ms(at(mid)) <= goal_ms else (lo, mid)
    return lo


def scaled_to(ctx: SearchContext, spec: ArchSpec, goal_ms: float) -> ArchSpec | None:
    """`spec` with every keep fraction multiplied by the largest c in [MIN_RATIO, 1] that the
    predictor puts under `goal_ms`: learned ratios a little over the goal keep the allocation
    they learned between stages (the weights trained with it) instead of being thrown away.
    None when even c = MIN_RATIO is over."""
    assert spec.tokens is not None

    def at(c: float) -> ArchSpec:
        keep = {b: f * c for b, f in spec.tokens.keep.items()}
        return spec.model_copy(update={"tokens": spec.tokens.model_copy(update={"keep": keep})})

    c = _largest(ctx, at, goal_ms)
    return None if c is None else at(c)
