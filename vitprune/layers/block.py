"""Transformer blocks that lost a whole branch.

Dropping a branch must remove its work, not zero its output: a module that returns zeros still
runs the norm and the matmuls. So a block without MLP is a different class whose forward only has
the attention residual (and vice versa); a block without either becomes `nn.Identity`. Submodule
names stay timm's (`norm1`, `attn`, `ls1`, `norm2`, `mlp`, `ls2`) so state dicts read the same.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["AttnOnlyBlock", "MlpOnlyBlock"]


class AttnOnlyBlock(nn.Module):
    """Pre-norm block whose MLP branch was dropped: x + ls1(attn(norm1(x)))."""

    def __init__(self, norm1: nn.Module, attn: nn.Module, ls1: nn.Module | None = None) -> None:
        super().__init__()
        self.norm1 = norm1
        self.attn = attn
        self.ls1 = ls1 if ls1 is not None else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.ls1(self.attn(self.norm1(x)))


class MlpOnlyBlock(nn.Module):
    """Pre-norm block whose attention branch was dropped: x + ls2(mlp(norm2(x)))."""

    def __init__(self, norm2: nn.Module, mlp: nn.Module, ls2: nn.Module | None = None) -> None:
        super().__init__()
        self.norm2 = norm2
        self.mlp = mlp
        self.ls2 = ls2 if ls2 is not None else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.ls2(self.mlp(self.norm2(x)))
