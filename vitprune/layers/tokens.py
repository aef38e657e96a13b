"""Soft token pruning: keep the patch tokens the class token attends to, merge the rest.

The selector scores tokens with the class-token attention of the block it precedes (its norm and
query/key weights, averaged over heads), so a pretrained model prunes sensibly before any
fine-tuning. Only the class query is needed, so the keys are never materialised: q_cls . (x W_k)
equals (W_k^T q_cls) . x, which costs N*D per head instead of N*D*D; the key bias adds the same
logit to every token and cancels in the softmax. The dropped tokens (and an earlier package
token) are merged into ONE package token, their attention-weighted average, which later blocks
keep seeing. Gathers with sizes fixed at build time keep the ONNX graph static. With average
pooling the package token is one of the pooled tokens: it stands for the tokens it merged.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "TokenSelector",
    "TokenPrunedBlock",
    "selector_from_block",
    "class_attention",
    "reorganize",
]


def class_attention(
    x: torch.Tensor,
    norm: nn.Module,
    q_weight: torch.Tensor,
    q_bias: torch.Tensor | None,
    k_weight: torch.Tensor,
    *,
    num_heads: int,
    head_dim: int,
    scale: float,
) -> torch.Tensor:
    """Class-token attention to every token of `x` (B, N, D), averaged over heads: (B, N)."""
    B, _, D = x.shape
    h, d = num_heads, head_dim
    xn = norm(x)
    q_cls = F.linear(xn[:, 0], q_weight, q_bias).reshape(B, h, 1, d)
    u = q_cls @ k_weight.reshape(1, h, d, D)  # (B, h, 1, D): W_k^T q_cls per head
    logits = (u * scale) @ xn.unsqueeze(1).transpose(-2, -1)  # (B, h, 1, N)
    return logits.softmax(dim=-1).mean(dim=1).squeeze(1)


def reorganize(
    x: torch.Tensor,
    attn: torch.Tensor,
    *,
    num_prefix: int,
    num_patches: int,
    keep: int,
    has_package: bool,
    package: bool,
) -> torch.Tensor:
    """Keep the `keep` patch tokens with the most class attention `attn` (B, N), best first, and
    (if `package`) merge the others, with an incoming package token, into one package token."""
    p, n = num_prefix, num_patches
    B, _, D = x.shape
    patch_attn = attn[:, p : p + n]
    idx = patch_attn.topk(keep, dim=1).indices  # (B, keep)
    patches = x[:, p : p + n]
    kept = patches.gather(1, idx.unsqueeze(-1).expand(B, keep, D))
    parts = [x[:, :p], kept]
    if package:
        # attention of the dropped tokens only (ONNX's scatter wants updates shaped as idx)
        w = patch_attn.scatter(1, idx, torch.zeros_like(idx, dtype=patch_attn.dtype))
        merged = (w.unsqueeze(-1) * patches).sum(dim=1, keepdim=True)
        total = w.sum(dim=1, keepdim=True)
        if has_package:
            w_pkg = attn[:, p + n :]  # (B, 1)
            merged = merged + w_pkg.unsqueeze(-1) * x[:, p + n :]
            total = total + w_pkg
        parts.append(merged / total.clamp_min(1e-12).unsqueeze(-1))
    return torch.cat(parts, dim=1)


class TokenSelector(nn.Module):
    """Keeps `keep` of the `num_patches` patch tokens that follow `num_prefix` prefix tokens.

    Input layout: [prefix][patches][package if `has_package`]; output layout:
    [prefix][kept patches, best first][package if `make_package` or `has_package`].
    """

    def __init__(
        self,
        dim: int,
        *,
        num_heads: int,
        head_dim: int,
        num_prefix: int,
        num_patches: int,
        keep: int,
        has_package: bool,
        make_package: bool,
        scale: float,
        eps: float = 1e-6,
    ) -> None:
        super().__init__()
        if not 1 <= keep <= num_patches:
            raise ValueError(f"keep must be in 1..{num_patches}, got {keep}")
        self.num_heads, self.head_dim, self.scale = num_heads, head_dim, scale
        self.num_prefix, self.num_patches, self.keep = num_prefix, num_patches, keep
        self.has_package = has_package
        self.package = make_package or has_package
        self.norm = nn.LayerNorm(dim, eps=eps)
        self.q = nn.Linear(dim, num_heads * head_dim)
        self.k = nn.Linear(dim, num_heads * head_dim, bias=False)

    def scores(self, x: torch.Tensor) -> torch.Tensor:
        """Class-token attention to every token, averaged over heads: (B, N)."""
        return class_attention(
            x,
            self.norm,
            self.q.weight,
            self.q.bias,
            self.k.weight,
            num_heads=self.num_heads,
            head_dim=self.head_dim,
            scale=self.scale,
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return reorganize(
            x,
            self.scores(x),
            num_prefix=self.num_prefix,
            num_patches=self.num_patches,
            keep=self.keep,
            has_package=self.has_package,
            package=self.package,
        )

    def extra_repr(self) -> str:
        return (
            f"keep={self.keep}/{self.num_patches}, prefix={self.num_prefix}, "
            f"package={self.package}, has_package={self.has_package}"
        )


class TokenPrunedBlock(nn.Module):
    """A block preceded by its token selector; one entry of `model.blocks`, so block indices
    still match the arch spec."""

    def __init__(self, selector: TokenSelector, block: nn.Module) -> None:
        super().__init__()
        self.selector = selector
        self.block = block

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block(self.selector(x))


@torch.no_grad()
def selector_from_block(
    block: nn.Module,
    *,
    num_prefix: int,
    num_patches: int,
    keep: int,
    has_package: bool,
    make_package: bool,
) -> TokenSelector:
    """A selector that reproduces the class-token attention of a dense timm `block`."""
    attn = block.attn
    dim = attn.qkv.in_features
    h, d = attn.num_heads, attn.head_dim
    sel = TokenSelector(
        dim,
        num_heads=h,
        head_dim=d,
        num_prefix=num_prefix,
        num_patches=num_patches,
        keep=keep,
        has_package=has_package,
        make_package=make_package,
        scale=float(attn.scale),
        eps=float(block.norm1.eps),
    ).to(device=attn.qkv.weight.device, dtype=attn.qkv.weight.dtype)
    sel.norm.load_state_dict(block.norm1.state_dict())
    sel.q.weight.copy_(attn.qkv.weight[: h * d])
    if attn.qkv.bias is not None:
        sel.q.bias.copy_(attn.qkv.bias[: h * d])
    else:
        sel.q.bias.zero_()
    sel.k.weight.copy_(attn.qkv.weight[h * d : 2 * h * d])
    return sel
