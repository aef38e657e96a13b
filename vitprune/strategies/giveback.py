"""Give width back: the inverse of NetAdapt's step, for a certified model that came in well
under its budget (the search overshoots when one removal saves a lot, and predictors err).

Adds, one at a time, the unit that brings the most importance per millisecond it costs: the
strongest head a kept attention branch lacks, or the next chunk of MLP neurons (the model is in
importance order, so the next neurons are the strongest missing ones). Branches the strategy
dropped stay dropped and head dims and token ratios stay as they are: the result is always a
superset of the certified network, so what was kept keeps its (fine-tuned) weights.
"""

from __future__ import annotations

from budgetprune.schemas import ArchSpec
from vitprune.strategies.base import SearchContext
from vitprune.strategies.netadapt import mean_score, mlp_chunk

__all__ = ["give_back"]


def give_back(ctx: SearchContext, current: ArchSpec, goal_ms: float) -> ArchSpec:
    """The largest superset of `current` the greedy order reaches with predicted <= goal_ms;
    `current` itself when no unit fits."""
    spec = current.model_copy(deep=True)
    dense = ctx.dense
    chunk = mlp_chunk(dense.blocks[0].mlp_hidden, ctx.width_multiple)
    head_mean = mean_score([s for block in ctx.head_scores for s in block])
    chunk_mean = mean_score([s for block in ctx.mlp_scores for s in block]) * chunk
    predicted = ctx.predict_ms(spec)
    while True:
        best: tuple[float, ArchSpec, float] | None = None
        for b, block in enumerate(spec.blocks):
            options: list[tuple[float, ArchSpec]] = []
            missing = [h for h in dense.blocks[b].heads if h not in block.heads]
            if block.attn and missing:
                strongest = max(missing, key=lambda h, b=b: ctx.head_scores[b][h])
                cand = spec.model_copy(deep=True)
                cand.blocks[b].heads = sorted([*block.heads, strongest])
                options.append((ctx.head_scores[b][strongest] / head_mean, cand))
            full = dense.blocks[b].mlp_hidden
            if block.mlp and block.mlp_hidden < full:
                grown = min(full, block.mlp_hidden + chunk)
                gained = sum(ctx.mlp_scores[b][block.mlp_hidden : grown])
                cand = spec.model_copy(deep=True)
                cand.blocks[b].mlp_hidden = grown
                options.append((gained / chunk_mean, cand))
            for importance, cand in options:
                cand_ms = ctx.predict_ms(cand)
                if cand_ms > goal_ms:
                    continue
                value = importance / max(cand_ms - predicted, 1e-6)
                if best is None or value > best[0]:
                    best = (value, cand, cand_ms)
        if best is None:
            return spec
        _, spec, predicted = best
