"""ToaSt-style decoupled pruning, training-free: coupled per-head structured pruning for
attention and channel selection for the FFN from calibration activations.

Attention is pruned within each head with its projections coupled: a slab of dims takes a
head's q and k columns together (they meet in q k^T) and its v columns with the proj rows they
feed, in every kept head of a block alike (dense matmuls); whole heads go where that costs less.
An earlier version only removed whole heads; at 35% of the latency on CIFAR-10 that cut
22 of 36 heads and ended 3.6 points under a uniform cut at any exchange rate (bench/README.md).

A channel's score is its contribution to the block output on calibration tokens,
sqrt(E[a_j^2]) * ||W_fc2[:, j]||: channels that stay near zero on real data are redundant even
when their weights are large. A head's score is the same quantity for its slice of the proj
input. The neurons are permuted (function-preserving) into that order so extraction's prefix
keeps the best, and NetAdapt's greedy spends the latency cut where these scores are cheapest per
millisecond, at the exchange rates between kinds that leave the sub-network closest to the
teacher (`NetAdapt.calibrated`). Without data the weight-magnitude scores and x1 rates are
used, and the notes say so.
"""

from __future__ import annotations

import copy
from dataclasses import replace

import torch
from torch import nn

from vitprune.importance import dense_blocks
from vitprune.strategies.base import Fitted, TrainContext, register_strategy
from vitprune.strategies.calibration import calibration_batches
from vitprune.strategies.netadapt import NetAdapt

__all__ = ["ToaSt", "calibration_scores"]


@torch.no_grad()
def calibration_scores(
    model: nn.Module, batches: list[torch.Tensor]
) -> tuple[list[list[float]], list[torch.Tensor]]:
    """Per block: head scores, and per-neuron channel scores (in the model's current order)."""
    blocks = dense_blocks(model)
    hidden_sq = [torch.zeros(b.mlp.fc1.out_features) for b in blocks]
    heads_sq = [torch.zeros(b.attn.num_heads) for b in blocks]
    hooks = []
    for i, blk in enumerate(blocks):

        def on_act(_m, _inp, out, i=i):
            hidden_sq[i] += out.pow(2).flatten(0, -2).mean(0)

        def on_proj(_m, inp, _out, i=i, h=blk.attn.num_heads):
            per_head = inp[0].unflatten(-1, (h, -1)).pow(2).sum(-1)
            heads_sq[i] += per_head.flatten(0, -2).mean(0)

        hooks.append(blk.mlp.act.register_forward_hook(on_act))
        hooks.append(blk.attn.proj.register_forward_hook(on_proj))
    was_training = model.training
    model.eval()
    try:
        for x in batches:
            model(x)
    finally:
        for hook in hooks:
            hook.remove()
        model.train(was_training)
    head_out, neuron_out = [], []
    for blk, hs, ns in zip(blocks, heads_sq, hidden_sq, strict=True):
        h = blk.attn.num_heads
        proj = blk.attn.proj.weight.t().reshape(h, -1, blk.attn.proj.out_features)
        head_out.append((hs.sqrt() * proj.pow(2).sum((1, 2)).sqrt()).tolist())
        neuron_out.append(ns.sqrt() * blk.mlp.fc2.weight.norm(dim=0))
    return head_out, neuron_out


@torch.no_grad()
def _reorder_neurons_(model: nn.Module, scores: list[torch.Tensor]) -> list[list[float]]:
    """Permute each MLP's neurons by descending score (fc1 rows with fc2 columns); returns the
    scores in the new order."""
    out = []
    for blk, s in zip(dense_blocks(model), scores, strict=True):
        order = torch.argsort(s, descending=True, stable=True)
        fc1, fc2 = blk.mlp.fc1, blk.mlp.fc2
        fc1.weight.copy_(fc1.weight[order])
        if fc1.bias is not None:
            fc1.bias.copy_(fc1.bias[order])
        fc2.weight.copy_(fc2.weight[:, order])
        out.append(s[order].tolist())
    return out


@register_strategy("toast")
class ToaSt(NetAdapt):
    """No training; data, when the job has it, only calibrates: the scores, and the exchange
    rates between kinds (as netadapt's, by KL to the teacher)."""

    def fit(self, ctx: TrainContext, goal_ms: float) -> Fitted:
        search = ctx.search
        model = copy.deepcopy(ctx.model)
        if ctx.train is None:
            spec = self.propose(search, search.dense, goal_ms)
            ctx.progress(1.0)
            notes = ["no data set: weight-magnitude scores instead of calibration activations"]
            return Fitted(spec, model, [], notes)
        batches = calibration_batches(ctx.train)
        heads, neurons = calibration_scores(model, batches)
        mlp = _reorder_neurons_(model, neurons)
        scored = replace(search, head_scores=heads, mlp_scores=mlp)
        spec, rates, note = self.calibrated(
            ctx, scored, model, batches, search.dense, goal_ms, ctx.progress
        )
        images = sum(len(x) for x in batches)
        notes = [f"FFN channels and heads scored on {images} calibration images", note]
        return Fitted(spec, model, [], notes, rates)
