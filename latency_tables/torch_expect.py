"""Differentiable expected latency of a gated ViT, from the same table and lookups as the
predictor, for the latency term of a training loss.

Mean-field: each block's cost is read at the EXPECTED number of kept heads, qk dims, v dims and
neurons (sums of the open probabilities) and weighted by the probability that its branch stays.
Exact when every probability is 0 or 1 (the hard spec), since it then evaluates the same
piecewise-linear lookups on the same counts; between grid points the gradient is the table's
local slope, so training sees which widths actually buy milliseconds on the device.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from budgetprune.schemas.arch import ArchSpec
from latency_tables.lookup import attention_ms, fixed_ms, in_model, mlp_ms, selector_ms
from latency_tables.predictor import LutPredictor, check_fits
from latency_tables.schema import LatencyTable
from vitprune.cost import token_stages, tokens_per_block

__all__ = ["BlockProbs", "dense_probs", "expected_latency", "gate_probs"]

if TYPE_CHECKING:
    from vitprune.soft_tokens import SoftCounts


@dataclass(frozen=True)
class BlockProbs:
    """Open probabilities of one block's gates (0-d tensors for the branches)."""

    attn: torch.Tensor
    mlp: torch.Tensor
    heads: torch.Tensor
    qk: torch.Tensor
    v: torch.Tensor
    neurons: torch.Tensor


def gate_probs(gated) -> list[BlockProbs]:
    """Probabilities of a `vitprune.GatedViT`'s gates, block by block."""
    return [
        BlockProbs(
            attn=g.attn_gate.probs()[0],
            mlp=g.mlp_gate.probs()[0],
            heads=g.attn.head_gate.probs(),
            qk=g.attn.qk_gate.probs(),
            v=g.attn.v_gate.probs(),
            neurons=g.mlp.neuron_gate.probs(),
        )
        for g in gated.gated_blocks
    ]


def dense_probs(template: ArchSpec, device: torch.device | None = None) -> list[BlockProbs]:
    """Every unit open with probability 1: the widths of `template`, for a model whose widths
    do not train (soft token pruning); on the device the model trains on."""
    one = torch.ones((), device=device)
    return [
        BlockProbs(
            attn=one * b.attn,
            mlp=one * b.mlp,
            heads=torch.ones(len(b.heads), device=device),
            qk=torch.ones(b.qk_dim, device=device),
            v=torch.ones(b.v_dim, device=device),
            neurons=torch.ones(b.mlp_hidden, device=device),
        )
        for b in template.blocks
    ]


def expected_latency(
    source: LutPredictor | LatencyTable,
    template: ArchSpec,
    probs: Sequence[BlockProbs],
    tokens: SoftCounts | None = None,
) -> torch.Tensor:
    """Expected milliseconds of the sub-network the gates sample. `template` gives model, image
    size, classes and token keep ratios (fixed during training) unless `tokens` gives learned,
    expected token counts; a predictor's calibration line is applied, a bare table gives its
    raw sum."""
    if isinstance(source, LutPredictor):
        table, scale, offset = source.table, source.scale, source.offset
    else:
        table, scale, offset = source, 1.0, 0.0
    check_fits(table, template)
    if len(probs) != len(template.blocks):
        raise ValueError(f"{len(probs)} blocks of probabilities for {len(template.blocks)} blocks")
    info = template.info
    if tokens is None:
        counts: Sequence[Any] = tokens_per_block(template)
        selectors: Sequence[tuple[Any, bool]] = [
            (
                info.num_prefix_tokens + s.num_patches + int(s.has_package),
                s.make_package or s.has_package,
            )
            for s in token_stages(template)
        ]
    else:
        counts, selectors = tokens.per_block, tokens.selectors
    total = torch.zeros(())
    for p, n in zip(probs, counts, strict=True):
        attn = attention_ms(table, n, p.heads.sum(), p.qk.sum(), p.v.sum())
        block = p.attn * attn + p.mlp * mlp_ms(table, n, p.neurons.sum())
        total = total + block * in_model(table, n)
    for n_in, package in selectors:
        total = total + selector_ms(table, n_in, package)
    full = info.num_prefix_tokens + info.num_patches(template.img_size)
    total = total + fixed_ms(table, counts[-1], full)
    return scale * total + offset
