"""The physical sub-network an arch spec describes: sliced weights, smaller matmuls.

Masks would leave every matmul its dense size, so the pruned model would be no faster; here each
kept unit becomes part of a smaller dense tensor, and dropped branches lose their modules. The
result is still a timm VisionTransformer (forward, forward_features, forward_head work), so
everything downstream (export, evaluation, fine-tuning) treats it like any timm model.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from budgetprune.errors import InvalidArchError
from budgetprune.schemas.arch import ArchSpec, BlockSpec
from vitprune.cost import token_stages
from vitprune.layers import (
    AttnOnlyBlock,
    MlpOnlyBlock,
    PrunedAttention,
    TokenPrunedBlock,
    selector_from_block,
)
from vitprune.units import proj_cols, pruned_qkv_rows

__all__ = ["extract_subnet", "check_model_fits"]


def check_model_fits(model: nn.Module, spec: ArchSpec) -> None:
    """Refuse a model that is not the dense model the spec was written for."""
    info = spec.info
    problems = []
    blocks = list(getattr(model, "blocks", []))
    if len(blocks) != info.depth or getattr(model, "embed_dim", None) != info.embed_dim:
        problems.append(f"the model is not a dense {info.name}")
    elif any(not hasattr(b, "attn") or not hasattr(b, "mlp") for b in blocks):
        problems.append("the model was already pruned; extract from the dense model")
    elif any(b.attn.qkv.out_features != 3 * info.embed_dim for b in blocks):
        problems.append("the model was already pruned; extract from the dense model")
    else:
        if model.patch_embed.img_size[0] != spec.img_size:
            problems.append(f"model img_size {model.patch_embed.img_size[0]} != {spec.img_size}")
        if model.num_classes != spec.num_classes:
            problems.append(f"model num_classes {model.num_classes} != {spec.num_classes}")
        if model.num_prefix_tokens != info.num_prefix_tokens:
            problems.append("prefix tokens differ from the catalog")
    if problems:
        raise InvalidArchError(f"arch spec for {spec.model} does not fit: {'; '.join(problems)}")


@torch.no_grad()
def extract_subnet(model: nn.Module, spec: ArchSpec) -> nn.Module:
    """A deep copy of the dense `model` reduced to `spec`; `model` itself is left untouched.

    Sort the model first (`sort_by_magnitude_`) so the kept qk/v dims and neurons, always a
    prefix, are the important ones.
    """
    check_model_fits(model, spec)
    stages = {s.block: s for s in token_stages(spec)}
    num_prefix = model.num_prefix_tokens
    dense_blocks = list(model.blocks)
    out = copy.deepcopy(model)
    new_blocks: list[nn.Module] = []
    for b, (blk, bspec) in enumerate(zip(out.blocks, spec.blocks, strict=True)):
        pruned = prune_block(blk, bspec)
        stage = stages.get(b)
        if stage is not None:
            selector = selector_from_block(
                dense_blocks[b],
                num_prefix=num_prefix,
                num_patches=stage.num_patches,
                keep=stage.keep,
                has_package=stage.has_package,
                make_package=stage.make_package,
            )
            pruned = TokenPrunedBlock(selector, pruned)
        new_blocks.append(pruned)
    out.blocks = nn.Sequential(*new_blocks)
    out.train(model.training)
    return out


def prune_block(blk: nn.Module, spec: BlockSpec) -> nn.Module:
    """The smallest module computing `blk` restricted to `spec` (`blk` is reused, not copied)."""
    if spec.attn:
        blk.attn = prune_attention(blk.attn, spec)
    if spec.mlp:
        blk.mlp = prune_mlp(blk.mlp, spec.mlp_hidden)
    if spec.attn and spec.mlp:
        return blk
    if spec.attn:
        return AttnOnlyBlock(blk.norm1, blk.attn, blk.ls1)
    if spec.mlp:
        return MlpOnlyBlock(blk.norm2, blk.mlp, blk.ls2)
    return nn.Identity()


def prune_attention(attn: nn.Module, spec: BlockSpec) -> PrunedAttention:
    """Heads, qk dims and v dims of `spec` from a dense timm Attention; the logit scale stays the
    dense one so the result equals the masked model."""
    h, d = attn.num_heads, attn.head_dim
    rows = pruned_qkv_rows(spec, h, d)
    new = PrunedAttention(
        attn.qkv.in_features,
        num_heads=len(spec.heads),
        qk_dim=spec.qk_dim,
        v_dim=spec.v_dim,
        scale=float(attn.scale),
        qkv_bias=attn.qkv.bias is not None,
        proj_bias=attn.proj.bias is not None,
    ).to(device=attn.qkv.weight.device, dtype=attn.qkv.weight.dtype)
    _copy_linear(new.qkv, attn.qkv, rows=rows)
    _copy_linear(new.proj, attn.proj, cols=proj_cols(spec, d))
    new.attn_drop.p = attn.attn_drop.p
    new.proj_drop.p = attn.proj_drop.p
    new.train(attn.training)
    return new


def prune_mlp(mlp: nn.Module, hidden: int) -> nn.Module:
    """The first `hidden` neurons of a timm Mlp (sorted models keep their most important)."""
    keep = torch.arange(hidden)
    fc1, fc2 = mlp.fc1, mlp.fc2
    mlp.fc1 = nn.Linear(fc1.in_features, hidden, bias=fc1.bias is not None).to(fc1.weight)
    mlp.fc2 = nn.Linear(hidden, fc2.out_features, bias=fc2.bias is not None).to(fc2.weight)
    _copy_linear(mlp.fc1, fc1, rows=keep)
    _copy_linear(mlp.fc2, fc2, cols=keep)
    if not isinstance(getattr(mlp, "norm", nn.Identity()), nn.Identity):
        raise InvalidArchError("MLPs with a hidden norm are not supported")
    return mlp


def _copy_linear(
    dst: nn.Linear,
    src: nn.Linear,
    rows: torch.Tensor | None = None,
    cols: torch.Tensor | None = None,
) -> None:
    w = src.weight
    if rows is not None:
        w = w[rows]
    if cols is not None:
        w = w[:, cols]
    dst.weight.copy_(w)
    if dst.bias is not None:
        dst.bias.copy_(src.bias if rows is None else src.bias[rows])
