"""NetAdapt-style greedy shrinking: remove the unit (a head, or a chunk of MLP neurons) that
costs the least importance per millisecond saved, until the predictor says the goal is met.

Importance is weight magnitude, normalised per unit kind so heads and neuron chunks compare.
Neuron chunks are multiples of the width multiple, so widths stay hardware-friendly.
"""

from __future__ import annotations

from budgetprune.schemas import ArchSpec
from vitprune.strategies.base import SearchContext, Strategy, register_strategy

_CHUNKS_PER_BLOCK = 24


def mlp_chunk(dense_hidden: int, multiple: int) -> int:
    raw = max(dense_hidden // _CHUNKS_PER_BLOCK, 1)
    return max(multiple, -(-raw // multiple) * multiple)


@register_strategy("netadapt")
class NetAdapt(Strategy):
    def propose(self, ctx: SearchContext, current: ArchSpec, goal_ms: float) -> ArchSpec:
        spec = current.model_copy(deep=True)
        dense_hidden = ctx.dense.blocks[0].mlp_hidden
        chunk = mlp_chunk(dense_hidden, ctx.width_multiple)
        head_mean = mean_score([s for block in ctx.head_scores for s in block])
        chunk_mean = mean_score([s for block in ctx.mlp_scores for s in block]) * chunk

        predicted = ctx.predict_ms(spec)
        while predicted > goal_ms:
            best: tuple[float, ArchSpec, float] | None = None
            for b, block in enumerate(spec.blocks):
                options: list[tuple[float, ArchSpec]] = []
                if block.attn and len(block.heads) > ctx.min_heads:
                    weakest = min(block.heads, key=lambda h, b=b: ctx.head_scores[b][h])
                    cand = spec.model_copy(deep=True)
                    cand.blocks[b].heads = [h for h in block.heads if h != weakest]
                    options.append((ctx.head_scores[b][weakest] / head_mean, cand))
                if block.mlp and block.mlp_hidden - chunk >= ctx.min_mlp_hidden:
                    lost = sum(ctx.mlp_scores[b][block.mlp_hidden - chunk : block.mlp_hidden])
                    cand = spec.model_copy(deep=True)
                    cand.blocks[b].mlp_hidden = block.mlp_hidden - chunk
                    options.append((lost / chunk_mean, cand))
                for importance, cand in options:
                    cand_ms = ctx.predict_ms(cand)
                    # A removal the predictor prices at nothing (a flat stretch of a measured
                    # table) is still allowed, last: the goal is not met, so keep shrinking.
                    saved = max(predicted - cand_ms, 1e-9)
                    cost = importance / saved
                    if best is None or cost < best[0]:
                        best = (cost, cand, cand_ms)
            if best is None:  # nothing left to remove: the smallest allowed sub-network
                break
            _, spec, predicted = best
        return spec


def mean_score(values: list[float]) -> float:
    """Mean importance, never zero: the scale that makes heads and neuron chunks compare."""
    return max(sum(values) / max(len(values), 1), 1e-12)
