"""Turn a trained gated model's spec into one the job accepts: the user's limits hold for every
kept branch, and the predictor puts it under the goal.

Training aims at the goal, but rounding widths to the multiple (and limits that reopen units)
can leave a spec slightly over it. Then the weakest units by gate probability are closed,
NetAdapt-style, and the strategy says so in its notes: it is a correction, not the method.
"""

from __future__ import annotations

from dataclasses import replace

import torch

from budgetprune.schemas import ArchSpec
from vitprune.gates import GatedViT
from vitprune.strategies.base import SearchContext
from vitprune.strategies.netadapt import NetAdapt

__all__ = ["respect_limits", "under_goal"]


def respect_limits(spec: ArchSpec, gated: GatedViT, ctx: SearchContext) -> ArchSpec:
    """Every kept attention branch keeps `min_heads` heads (the most open ones) and every kept
    MLP `min_mlp_hidden` neurons (rounded up to the width multiple). A closed branch stays closed:
    the limits bound the width of what is kept, and closing a branch is what macro gates are
    for."""
    info = spec.info
    out = spec.model_copy(deep=True)
    for blk, g in zip(out.blocks, gated.gated_blocks, strict=True):
        if blk.attn and len(blk.heads) < ctx.min_heads:
            order = torch.argsort(g.attn.head_gate.logits.detach(), descending=True).tolist()
            blk.heads = sorted(order[: min(ctx.min_heads, info.num_heads)])
        if blk.mlp and blk.mlp_hidden < ctx.min_mlp_hidden:
            m = ctx.width_multiple
            blk.mlp_hidden = min(info.mlp_hidden, -(-ctx.min_mlp_hidden // m) * m)
    return ArchSpec.model_validate(out.model_dump())


def under_goal(
    spec: ArchSpec, gated: GatedViT, ctx: SearchContext, goal_ms: float
) -> tuple[ArchSpec, bool]:
    """`spec`, or the spec with its weakest units closed until the predictor says `goal_ms`;
    the flag says whether units were closed."""
    if ctx.predict_ms(spec) <= goal_ms:
        return spec, False
    gate_ctx = replace(
        ctx,
        head_scores=[g.attn.head_gate.probs().detach().tolist() for g in gated.gated_blocks],
        mlp_scores=[g.mlp.neuron_gate.probs().detach().tolist() for g in gated.gated_blocks],
    )
    return NetAdapt().propose(gate_ctx, spec, goal_ms), True
