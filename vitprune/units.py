"""Where each unit of an arch spec lives in a dense timm block's weights.

Extraction slices these rows and columns, masking zeroes them, gating multiplies them: one place
owns the layout (timm's fused qkv is [q | k | v], each [head][head_dim]), so the three forms
cannot drift apart.
"""

from __future__ import annotations

import torch

from budgetprune.schemas.arch import BlockSpec

__all__ = ["qk_rows", "v_rows", "proj_cols", "pruned_qkv_rows"]


def _per_head(heads: list[int], head_dim: int, keep: int, offset: int) -> torch.Tensor:
    idx = [offset + h * head_dim + j for h in heads for j in range(keep)]
    return torch.tensor(idx, dtype=torch.long)


def qk_rows(blk: BlockSpec, num_heads: int, head_dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows of the fused qkv weight holding the kept query and key dims."""
    dim = num_heads * head_dim
    return (
        _per_head(blk.heads, head_dim, blk.qk_dim, 0),
        _per_head(blk.heads, head_dim, blk.qk_dim, dim),
    )


def v_rows(blk: BlockSpec, num_heads: int, head_dim: int) -> torch.Tensor:
    """Rows of the fused qkv weight holding the kept value dims."""
    return _per_head(blk.heads, head_dim, blk.v_dim, 2 * num_heads * head_dim)


def proj_cols(blk: BlockSpec, head_dim: int) -> torch.Tensor:
    """Columns of the proj weight that read the kept value dims."""
    return _per_head(blk.heads, head_dim, blk.v_dim, 0)


def pruned_qkv_rows(blk: BlockSpec, num_heads: int, head_dim: int) -> torch.Tensor:
    """Dense qkv rows in the order of `PrunedAttention.qkv`: per kept head, q then k then v."""
    dim = num_heads * head_dim
    rows = []
    for h in blk.heads:
        base = h * head_dim
        rows += [base + j for j in range(blk.qk_dim)]
        rows += [dim + base + j for j in range(blk.qk_dim)]
        rows += [2 * dim + base + j for j in range(blk.v_dim)]
    return torch.tensor(rows, dtype=torch.long)
