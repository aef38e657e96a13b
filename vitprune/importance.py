"""Magnitude importance, and the permutation that puts important units first.

The arch spec names only counts for micro units ("keep 40 qk dims"), so extraction keeps a
prefix; sorting makes that prefix the most important part. Each permutation is applied to both
sides of the product it lives in (q and k rows together, v rows with proj columns, fc1 rows with
fc2 columns), so the model computes exactly the same function before and after. Heads are not
permuted: the spec names them by index, and a search reads `head_scores` to choose them.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["sort_by_magnitude_", "head_scores", "dim_scores", "mlp_scores", "dense_blocks"]


def dense_blocks(model: nn.Module) -> list[nn.Module]:
    """The model's blocks, refusing one that was already pruned (scores and sorting assume the
    dense layout of timm's Attention and Mlp)."""
    blocks = list(model.blocks)
    for i, blk in enumerate(blocks):
        attn = getattr(blk, "attn", None)
        if attn is None or not hasattr(blk, "mlp") or attn.qkv.out_features != 3 * attn.attn_dim:
            raise ValueError(f"block {i} is not a dense timm Block; sort and score the dense model")
    return blocks


def _rows(linear: nn.Linear) -> torch.Tensor:
    """Output rows with their bias, so a unit with a large bias counts as used."""
    w = linear.weight
    return w if linear.bias is None else torch.cat([w, linear.bias.unsqueeze(1)], dim=1)


def _qkv_parts(attn: nn.Module) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """q, k, v rows (with bias) as (heads, head_dim, dim+1)."""
    h, d = attn.num_heads, attn.head_dim
    rows = _rows(attn.qkv).reshape(3, h, d, -1)
    return rows[0], rows[1], rows[2]


def _proj_cols(attn: nn.Module) -> torch.Tensor:
    """proj input columns as (heads, head_dim, dim)."""
    h, d = attn.num_heads, attn.head_dim
    return attn.proj.weight.t().reshape(h, d, -1)


@torch.no_grad()
def head_scores(model: nn.Module) -> list[list[float]]:
    """Per block, per head: ||W_q,h|| ||W_k,h|| + ||W_v,h|| ||W_proj,h|| (Frobenius).

    The two terms are the sizes of the head's logit product and of its output path; a head that
    is small in both contributes little to the residual stream.
    """
    out = []
    for blk in dense_blocks(model):
        q, k, v = _qkv_parts(blk.attn)
        proj = _proj_cols(blk.attn)
        score = _norm(q, (1, 2)) * _norm(k, (1, 2)) + _norm(v, (1, 2)) * _norm(proj, (1, 2))
        out.append([float(s) for s in score])
    return out


@torch.no_grad()
def dim_scores(model: nn.Module) -> list[list[float]]:
    """Per block, per qk/v dim position, summed over heads: the terms `head_scores` sums, one
    dim at a time. In a sorted model position j is each head's j-th strongest dim, so a prefix
    is what a narrower head keeps."""
    out = []
    for blk in dense_blocks(model):
        q, k, v = _qkv_parts(blk.attn)
        proj = _proj_cols(blk.attn)
        score = _norm(q, 2) * _norm(k, 2) + _norm(v, 2) * _norm(proj, 2)  # (heads, head_dim)
        out.append([float(s) for s in score.sum(0)])
    return out


@torch.no_grad()
def mlp_scores(model: nn.Module) -> list[list[float]]:
    """Per block, per hidden neuron in the current order: ||fc1 row|| * ||fc2 column||."""
    return [[float(s) for s in _neuron_scores(blk.mlp)] for blk in dense_blocks(model)]


def _norm(t: torch.Tensor, dims: int | tuple[int, ...]) -> torch.Tensor:
    return t.float().pow(2).sum(dim=dims).sqrt()


def _neuron_scores(mlp: nn.Module) -> torch.Tensor:
    return _norm(_rows(mlp.fc1), 1) * _norm(mlp.fc2.weight, 0)


def _order(scores: torch.Tensor) -> torch.Tensor:
    """Descending, stable: equal scores keep their order, so sorting twice changes nothing."""
    return torch.argsort(scores, dim=-1, descending=True, stable=True)


@torch.no_grad()
def sort_by_magnitude_(model: nn.Module) -> None:
    """Permute, in place, every block's MLP neurons and each head's qk and v dims so that larger
    magnitude comes first; the function the model computes does not change."""
    for blk in dense_blocks(model):
        _sort_attention_(blk.attn)
        _sort_mlp_(blk.mlp)


def _sort_mlp_(mlp: nn.Module) -> None:
    order = _order(_neuron_scores(mlp))
    mlp.fc1.weight.copy_(mlp.fc1.weight[order])
    if mlp.fc1.bias is not None:
        mlp.fc1.bias.copy_(mlp.fc1.bias[order])
    mlp.fc2.weight.copy_(mlp.fc2.weight[:, order])


def _sort_attention_(attn: nn.Module) -> None:
    h, d = attn.num_heads, attn.head_dim
    q, k, v = _qkv_parts(attn)
    proj = _proj_cols(attn)
    qk_order = _order(_norm(q, 2) * _norm(k, 2))  # (h, d), one permutation per head
    v_order = _order(_norm(v, 2) * _norm(proj, 2))
    base = (torch.arange(h) * d).unsqueeze(1)
    dim = h * d
    rows = torch.cat(
        [
            (qk_order + base).flatten(),
            (qk_order + base).flatten() + dim,
            (v_order + base).flatten() + 2 * dim,
        ]
    )
    attn.qkv.weight.copy_(attn.qkv.weight[rows])
    if attn.qkv.bias is not None:
        attn.qkv.bias.copy_(attn.qkv.bias[rows])
    attn.proj.weight.copy_(attn.proj.weight[:, (v_order + base).flatten()])
