"""One step of the greedy width search, priced in one currency for every kind of unit.

NetAdapt removes and give-back adds one unit at a time: a whole head, a slab of qk and v dims
(`width_multiple` from every kept head of a block, so the matmuls stay dense), or a chunk of MLP
neurons. A step's importance is its share of an average block's branch: in DeiT-Tiny a head is
about a third of an attention branch and a slab of 8 of 64 dims about an eighth. Pricing each
kind against the mean unit of its own kind instead made a whole head cost what a 24th of an MLP
costs, and the search removed whole heads first; on CIFAR-10 that lost 3-8 points against
baselines that narrow every head (bench/README, "Accuracy at budget").
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from itertools import accumulate

from budgetprune.schemas import ArchSpec
from budgetprune.schemas.arch import BlockSpec
from vitprune.strategies.base import SearchContext

__all__ = ["Step", "Steps", "mlp_chunk"]

_CHUNKS_PER_BLOCK = 24


def mlp_chunk(dense_hidden: int, multiple: int) -> int:
    raw = max(dense_hidden // _CHUNKS_PER_BLOCK, 1)
    return max(multiple, -(-raw // multiple) * multiple)


@dataclass(frozen=True)
class Step:
    share: float  # importance moved, as a share of an average block's branch
    spec: ArchSpec


class Steps:
    """The steps out of (`removals`) or into (`additions`) a spec. Built once per search: the
    branch totals and dim prefix sums it prices with do not change while the spec does.
    Shares are weighted by the context's exchange rates between kinds."""

    def __init__(self, ctx: SearchContext) -> None:
        blocks = max(len(ctx.dense.blocks), 1)
        self.ctx = ctx
        self.chunk = mlp_chunk(ctx.dense.info.mlp_hidden, ctx.width_multiple)
        self.attn = max(sum(map(sum, ctx.head_scores)) / blocks, 1e-12)
        self.mlp = max(sum(map(sum, ctx.mlp_scores)) / blocks, 1e-12)
        # per block, the share of its per-head importance the first j dims keep (sorted model)
        self.dim_prefix = [
            [x / max(sum(scores), 1e-12) for x in accumulate(scores, initial=0.0)]
            for scores in ctx.dim_scores
        ]

    def removals(self, spec: ArchSpec) -> Iterator[Step]:
        """Per block: the weakest head, one slab of dims, the last chunk of neurons (each only
        while the limits allow it)."""
        ctx, m = self.ctx, self.ctx.width_multiple
        for b, block in enumerate(spec.blocks):
            if block.attn and len(block.heads) > ctx.min_heads:
                weakest = min(block.heads, key=lambda h, b=b: ctx.head_scores[b][h])
                heads = [h for h in block.heads if h != weakest]
                yield Step(self._head(b, weakest, block), _with(spec, b, heads=heads))
            qk, v = (max(m, d - m) if d > m else d for d in (block.qk_dim, block.v_dim))
            if block.attn and block.heads and (qk, v) != (block.qk_dim, block.v_dim):
                yield Step(self._dims(b, block, qk, v), _with(spec, b, qk_dim=qk, v_dim=v))
            if block.mlp and block.mlp_hidden - self.chunk >= ctx.min_mlp_hidden:
                hidden = block.mlp_hidden - self.chunk
                share = self._neurons(b, hidden, block.mlp_hidden)
                yield Step(share, _with(spec, b, mlp_hidden=hidden))

    def additions(self, spec: ArchSpec) -> Iterator[Step]:
        """Per block: the strongest missing head, one slab of dims back, the next chunk of
        neurons. Dropped branches stay dropped; every step keeps what `spec` kept."""
        ctx, dense = self.ctx, self.ctx.dense
        full_dims = dense.info.head_dim
        for b, block in enumerate(spec.blocks):
            missing = [h for h in dense.blocks[b].heads if h not in block.heads]
            if block.attn and missing:
                strongest = max(missing, key=lambda h, b=b: ctx.head_scores[b][h])
                heads = sorted([*block.heads, strongest])
                yield Step(self._head(b, strongest, block), _with(spec, b, heads=heads))
            qk, v = (min(full_dims, d + ctx.width_multiple) for d in (block.qk_dim, block.v_dim))
            if block.attn and block.heads and (qk, v) != (block.qk_dim, block.v_dim):
                yield Step(self._dims(b, block, qk, v), _with(spec, b, qk_dim=qk, v_dim=v))
            full = dense.blocks[b].mlp_hidden
            if block.mlp and block.mlp_hidden < full:
                hidden = min(full, block.mlp_hidden + self.chunk)
                share = self._neurons(b, block.mlp_hidden, hidden)
                yield Step(share, _with(spec, b, mlp_hidden=hidden))

    def _dims_kept(self, b: int, qk: int, v: int) -> float:
        prefix = self.dim_prefix[b]
        return (prefix[qk] + prefix[v]) / 2

    def _head(self, b: int, h: int, block: BlockSpec) -> float:
        kept = self._dims_kept(b, block.qk_dim, block.v_dim)
        return self.ctx.rates.head * self.ctx.head_scores[b][h] * kept / self.attn

    def _dims(self, b: int, block: BlockSpec, qk: int, v: int) -> float:
        heads = sum(self.ctx.head_scores[b][h] for h in block.heads)
        moved = abs(self._dims_kept(b, block.qk_dim, block.v_dim) - self._dims_kept(b, qk, v))
        return self.ctx.rates.dims * moved * heads / self.attn

    def _neurons(self, b: int, lo: int, hi: int) -> float:
        return self.ctx.rates.neurons * sum(self.ctx.mlp_scores[b][lo:hi]) / self.mlp


def _with(spec: ArchSpec, b: int, **changes: object) -> ArchSpec:
    """A new spec sharing `spec`'s other blocks (a search builds one per candidate, and deep
    copies were half its time; specs are copied before anything edits them in place)."""
    blocks = list(spec.blocks)
    blocks[b] = blocks[b].model_copy(update=changes)
    return spec.model_copy(update={"blocks": blocks})
