"""Reference form of a spec: the dense model with the pruned units' weights zeroed.

It is slow on purpose (every matmul keeps its dense size) and exists to define what extraction
must compute: a unit is cut off by zeroing the weights through which it reaches the residual
stream. Token pruning changes the sequence itself and cannot be expressed by zeroing weights;
see `vitprune.gates` for a masked form with tokens.
"""

from __future__ import annotations

import torch
from torch import nn

from budgetprune.errors import InvalidArchError
from budgetprune.schemas.arch import ArchSpec
from vitprune.extract import check_model_fits
from vitprune.units import proj_cols, qk_rows, v_rows

__all__ = ["hard_mask_"]


@torch.no_grad()
def hard_mask_(model: nn.Module, spec: ArchSpec) -> None:
    """Zero, in place, every weight of `model` that `spec` prunes (tokens excepted)."""
    check_model_fits(model, spec)
    if spec.tokens is not None and spec.tokens.keep:
        raise InvalidArchError("hard_mask_ cannot express token pruning; use vitprune.gates")
    for blk, bspec in zip(model.blocks, spec.blocks, strict=True):
        attn, mlp = blk.attn, blk.mlp
        h, d = attn.num_heads, attn.head_dim
        if not bspec.attn:
            _zero_output(attn.proj)
        else:
            keep_q, keep_k = qk_rows(bspec, h, d)
            rows = torch.cat([keep_q, keep_k, v_rows(bspec, h, d)])
            _zero_rows_except(attn.qkv, rows)
            cols = _complement(proj_cols(bspec, d), attn.proj.in_features)
            attn.proj.weight[:, cols] = 0
        if not bspec.mlp:
            _zero_output(mlp.fc2)
        else:
            mlp.fc2.weight[:, bspec.mlp_hidden :] = 0


def _zero_output(linear: nn.Linear) -> None:
    linear.weight.zero_()
    if linear.bias is not None:
        linear.bias.zero_()


def _complement(keep: torch.Tensor, n: int) -> torch.Tensor:
    mask = torch.ones(n, dtype=torch.bool)
    mask[keep] = False
    return mask.nonzero().flatten()


def _zero_rows_except(linear: nn.Linear, keep: torch.Tensor) -> None:
    rows = _complement(keep, linear.out_features)
    linear.weight[rows] = 0
    if linear.bias is not None:
        linear.bias[rows] = 0
