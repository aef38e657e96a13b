"""Analytical cost of an arch spec: multiply-accumulates and parameters.

Deliberately free of torch: the API, the predictors and the search call it thousands of times
and must not pay for importing torch. MACs count the matrix products (convolution, linear layers,
attention scores and attention-times-values, the token selector's products); norms, softmax,
GELU, additions and gathers are left out, which is also what `torch.utils.flop_counter` counts, so
tests cross-check the two exactly. Parameters count every tensor the extracted model holds.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from budgetprune.catalog import ModelInfo
from budgetprune.schemas.arch import ArchSpec

__all__ = [
    "TokenStage",
    "token_stages",
    "tokens_per_block",
    "macs",
    "macs_at",
    "params",
    "block_macs",
]

# Every model in the catalog is a ViT/DeiT with biased qkv, proj, MLP and head.
_QKV_BIAS = True


@dataclass(frozen=True)
class TokenStage:
    """Token pruning in front of one block: `keep` of the `num_patches` patch tokens survive."""

    block: int
    num_patches: int
    keep: int
    has_package: bool  # a package token arrives from an earlier stage
    make_package: bool  # this stage merges its dropped tokens into the package token


def token_stages(spec: ArchSpec) -> list[TokenStage]:
    """The pruning stages the spec asks for, in block order; ratios are of the image's patch
    count, a stage that would drop nothing is skipped (it would only add an empty package)."""
    if spec.tokens is None or not spec.tokens.keep:
        return []
    n0 = spec.info.num_patches(spec.img_size)
    current, package = n0, False
    stages: list[TokenStage] = []
    for block, ratio in sorted(spec.tokens.keep.items()):
        keep = min(current, max(1, math.ceil(ratio * n0 - 1e-9)))
        if keep == current:
            continue
        make = spec.tokens.package_token
        stages.append(TokenStage(block, current, keep, package, make))
        current, package = keep, package or make
    return stages


def tokens_per_block(spec: ArchSpec) -> list[int]:
    """How many tokens (prefix, patches, package) each block computes on."""
    info = spec.info
    by_block = {s.block: s for s in token_stages(spec)}
    n = info.num_patches(spec.img_size)
    package = False
    counts = []
    for b in range(len(spec.blocks)):
        stage = by_block.get(b)
        if stage is not None:
            n, package = stage.keep, package or stage.make_package
        counts.append(info.num_prefix_tokens + n + int(package))
    return counts


def block_macs(spec: ArchSpec, b: int, tokens: int) -> int:
    """MACs of block `b` of `spec` on `tokens` tokens."""
    d = spec.info.embed_dim
    blk = spec.blocks[b]
    total = 0
    if blk.attn:
        h, qk, v = len(blk.heads), blk.qk_dim, blk.v_dim
        total += tokens * d * h * (2 * qk + v)  # qkv
        total += h * tokens * tokens * (qk + v)  # scores and attention times values
        total += tokens * h * v * d  # proj
    if blk.mlp:
        total += 2 * tokens * d * blk.mlp_hidden
    return total


def _selector_macs(info: ModelInfo, tokens_in: int) -> int:
    d = info.embed_dim  # query of the class token, W_k^T q per head, logits against all tokens
    return d * d + d * d + info.num_heads * d * tokens_in


def macs(spec: ArchSpec) -> int:
    """Multiply-accumulates of one image through the extracted model (batch 1)."""
    prefix = spec.info.num_prefix_tokens
    selectors = [prefix + s.num_patches + int(s.has_package) for s in token_stages(spec)]
    return macs_at(spec, tokens_per_block(spec), selectors)


def macs_at(spec: ArchSpec, tokens: Sequence[Any], selectors: Sequence[Any]) -> Any:
    """MACs of `spec`'s widths with the given token count per block and tokens into each
    selector; plain arithmetic, so expected (tensor) counts give a differentiable cost."""
    info = spec.info
    d, p = info.embed_dim, info.patch_size
    total = info.num_patches(spec.img_size) * d * 3 * p * p
    for tokens_in in selectors:
        total += _selector_macs(info, tokens_in)
    for b, n in enumerate(tokens):
        total += block_macs(spec, b, n)
    return total + _heads(info) * d * spec.num_classes


def params(spec: ArchSpec) -> int:
    """Parameters of the extracted model (weights and biases, tokens and position embedding)."""
    info = spec.info
    d, p = info.embed_dim, info.patch_size
    bias = int(_QKV_BIAS)
    total = d * 3 * p * p + d  # patch embedding
    total += info.num_prefix_tokens * d  # class (and distillation) token
    total += (info.num_patches(spec.img_size) + info.num_prefix_tokens) * d  # position embedding
    for blk in spec.blocks:
        if blk.attn:
            h, qk, v = len(blk.heads), blk.qk_dim, blk.v_dim
            total += 2 * d  # norm1
            total += d * h * (2 * qk + v) + bias * h * (2 * qk + v)
            total += h * v * d + d
        if blk.mlp:
            total += 2 * d  # norm2
            total += d * blk.mlp_hidden + blk.mlp_hidden + blk.mlp_hidden * d + d
    total += 2 * len(token_stages(spec)) * d + len(token_stages(spec)) * (2 * d * d + d)
    total += 2 * d  # final norm (fc_norm instead when pooling by average: same size)
    if spec.num_classes > 0:
        total += _heads(info) * (d * spec.num_classes + spec.num_classes)
    return total


def _heads(info: ModelInfo) -> int:
    """Classifier heads: distilled DeiTs have a second one on the distillation token."""
    return 2 if info.num_prefix_tokens > 1 else 1
