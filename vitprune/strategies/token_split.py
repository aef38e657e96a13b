"""How much of a latency cut token pruning takes, chosen on data.

At a small input (64 patches at 32x32) each token carries much of the image, and how much of a
cut tokens can take before they cost more accuracy than narrower widths differs per model, data
set and budget: in the accuracy benchmark (35% budget) token pruning at its strongest schedule,
with widths taking the rest, ended 3 points under width-only pruning. So each candidate share is
made into a whole sub-network: the mildest token schedule for its part of the cut, then widths
for the rest by the ratio search's attention/FFN split (a greedy `shrink` where no uniform pair
is fast enough). The candidate whose untrained sub-network stays closest to the teacher on a few
calibration batches (`strategies.proxy`) is kept.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from budgetprune.schemas import ArchSpec
from vitprune.strategies.base import SearchContext, TrainContext
from vitprune.strategies.proxy import calibration_batches, teacher_gap
from vitprune.strategies.ratio_search import best_ratios, uniform_spec
from vitprune.strategies.token_schedule import with_tokens

__all__ = ["SHARES", "Split", "cut_with_share", "split_cut", "widths_to"]

SHARES = (0.25, 0.5, 0.75, 1.0)  # token pruning is asked for: it takes a quarter at least

Shrink = Callable[[SearchContext, ArchSpec, float], ArchSpec]


@dataclass(frozen=True)
class Split:
    share: float  # of the predicted cut (dense to goal) given to tokens
    spec: ArchSpec
    gap: float  # KL to the teacher before training; nan when there was no data to judge on


def cut_with_share(ctx: SearchContext, goal_ms: float, share: float, shrink: Shrink) -> ArchSpec:
    """Tokens for `share` of the cut from the dense latency to `goal_ms`, widths for the rest."""
    dense_ms = ctx.predict_ms(ctx.dense)
    tokens = with_tokens(ctx, ctx.dense, dense_ms - share * (dense_ms - goal_ms))
    return widths_to(ctx, tokens, goal_ms, shrink)


def widths_to(ctx: SearchContext, spec: ArchSpec, goal_ms: float, shrink: Shrink) -> ArchSpec:
    """`spec` (dense widths, any token plan) narrowed to `goal_ms`: the ratio search's pair when
    one meets it, else `shrink`."""
    if ctx.predict_ms(spec) <= goal_ms:
        return spec
    pair = best_ratios(ctx, goal_ms, base=spec)
    return uniform_spec(spec, *pair) if pair is not None else shrink(ctx, spec, goal_ms)


def split_cut(
    ctx: TrainContext, goal_ms: float, shrink: Shrink, shares: tuple[float, ...] = SHARES
) -> tuple[Split, list[Split]]:
    """The share (of `shares`) whose sub-network starts closest to the teacher, and every
    candidate tried. Shares that give the same spec are judged once."""
    search = ctx.search
    specs: dict[str, tuple[float, ArchSpec]] = {}
    for share in shares:
        spec = cut_with_share(search, goal_ms, share, shrink)
        specs.setdefault(spec.sha256(), (share, spec))
    if ctx.train is None or len(specs) == 1:
        tried = [Split(share, spec, float("nan")) for share, spec in specs.values()]
        return tried[-1], tried
    judged = calibration_batches(ctx)
    tried = [
        Split(share, spec, teacher_gap(ctx.model, search.dense, spec, judged))
        for share, spec in specs.values()
    ]
    return min(tried, key=lambda s: s.gap), tried
