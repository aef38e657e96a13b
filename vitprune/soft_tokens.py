"""Token keep ratios learned by gradient against the device's latency (computation-aware soft
token pruning, after SPViT and the latency-aware training of ../shared/docs/papers.md).

The hard selector (`layers.tokens`) keeps a fixed count of tokens, which has no gradient. In
training, each stage instead keeps every token with a soft mask: a token's mask falls from 1 to
0 as its rank (by the class-token attention the hard selector uses) passes the stage's keep
count k = f * N, so the task loss sees, through the masks, what a larger or smaller k costs in
accuracy, and the latency term (the table's expected latency at k tokens, `SoftCounts`) what it
costs in milliseconds. Masked tokens leave attention through a log-mask key bias; what they lose
moves into the package token, as in the hard form. The learned fractions become the spec's
`TokenSpec`, and the hard model is extracted from the same weights.

Only the keep fractions and the weights train here: widths stay dense (HiAP's gates prune
those). Stages keep f_1 >= f_2 >= ... by construction: each keeps a share in [MIN_SHARE, 1] of
the previous one.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import torch
from torch import nn

from budgetprune.schemas.arch import ArchSpec, TokenSpec
from vitprune.extract import check_model_fits
from vitprune.layers.tokens import class_attention

__all__ = ["MIN_SHARE", "SoftCounts", "SoftTokenViT"]

MIN_SHARE = 0.25  # the smallest share of the previous stage's tokens a stage may keep
_EPS = 1e-6


@dataclass(frozen=True)
class SoftCounts:
    """Expected token counts (tensors) for the latency term: what each block computes on, and
    what each selector reads (tokens in, and whether it writes a package token)."""

    per_block: list[torch.Tensor]
    selectors: list[tuple[torch.Tensor, bool]]


class SoftTokenViT(nn.Module):
    """A dense timm ViT whose token stages keep learnable fractions of the patches."""

    def __init__(
        self,
        model: nn.Module,
        dense: ArchSpec,
        blocks: list[int],
        init_shares: list[float],
        *,
        sharpness: float = 0.5,
    ) -> None:
        super().__init__()
        check_model_fits(model, dense)
        if getattr(model, "global_pool", "token") not in ("token", "avg"):
            raise ValueError("soft token pruning needs class-token or average pooling")
        if len(blocks) != len(init_shares) or sorted(blocks) != blocks or not blocks:
            raise ValueError("one initial share per stage, stages in block order")
        self.model = copy.deepcopy(model)
        self.dense = dense
        self.blocks = list(blocks)
        self.num_patches = dense.info.num_patches(dense.img_size)
        self.num_prefix = dense.info.num_prefix_tokens
        self.sharpness = sharpness  # in tokens: how soft a mask is around the keep count
        shares = [min(max(s, MIN_SHARE + 1e-3), 1 - 1e-3) for s in init_shares]
        self.share_logits = nn.Parameter(
            torch.tensor([math.log((s - MIN_SHARE) / (1 - s)) for s in shares])
        )

    # --- the learned plan ---------------------------------------------------------------

    def fractions(self) -> torch.Tensor:
        """Kept fraction of the image's patches after each stage (decreasing)."""
        shares = MIN_SHARE + (1 - MIN_SHARE) * torch.sigmoid(self.share_logits)
        return torch.cumprod(shares, dim=0)

    def token_spec(self) -> TokenSpec:
        return TokenSpec(
            keep={b: float(f) for b, f in zip(self.blocks, self.fractions().detach(), strict=True)}
        )

    def counts(self) -> SoftCounts:
        p, n = self.num_prefix, self.num_patches
        kept = self.fractions() * n
        per_block, selectors = [], []
        current, package = kept.new_tensor(float(n)), False  # on the gates' device, not the CPU
        stage_of = dict(zip(self.blocks, kept, strict=True))
        for b in range(len(self.dense.blocks)):
            if b in stage_of:
                selectors.append((p + current + int(package), True))
                current, package = stage_of[b], True
            per_block.append(p + current + int(package))
        return SoftCounts(per_block, selectors)

    def weight_parameters(self) -> list[nn.Parameter]:
        return list(self.model.parameters())

    def dense_model(self) -> nn.Module:
        """The dense timm model with the trained weights, to extract the hard spec from."""
        return copy.deepcopy(self.model)

    # --- forward -------------------------------------------------------------------------

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m = self.model
        x = m.norm_pre(m.patch_drop(m._pos_embed(m.patch_embed(x))))
        p, n = self.num_prefix, self.num_patches
        keep = x.new_ones(x.shape[0], n)  # soft masks of the patch tokens
        package = False
        stage_k = dict(zip(self.blocks, self.fractions() * n, strict=True))
        for b, blk in enumerate(m.blocks):
            if b in stage_k:
                x, keep = self._select(blk, x, keep, stage_k[b], package)
                package = True
            live = torch.cat([keep.new_ones(keep.shape[0], p), keep], dim=1)
            if package:
                live = torch.cat([live, keep.new_ones(keep.shape[0], 1)], dim=1)
            x = blk(x, attn_mask=live.clamp_min(_EPS).log()[:, None, None, :])
        x = m.norm(x)
        if m.global_pool == "avg":
            weights = torch.cat([keep, keep.new_ones(keep.shape[0], int(package))], dim=1)
            pooled = (x[:, p:] * weights.unsqueeze(-1)).sum(1) / weights.sum(1, keepdim=True)
            return m.head(m.head_drop(m.fc_norm(pooled)))
        return m.forward_head(x)

    def _select(
        self,
        blk: nn.Module,
        x: torch.Tensor,
        keep: torch.Tensor,
        k: torch.Tensor,
        has_package: bool,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One stage: masks fall past rank k; the attention mass of what this stage drops (and
        of an incoming package token) becomes the package token."""
        p, n = self.num_prefix, self.num_patches
        a = blk.attn
        hd = a.num_heads * a.head_dim
        scores = class_attention(
            x,
            blk.norm1,
            a.qkv.weight[:hd],
            a.qkv.bias[:hd] if a.qkv.bias is not None else None,
            a.qkv.weight[hd : 2 * hd],
            num_heads=a.num_heads,
            head_dim=a.head_dim,
            scale=float(a.scale),
        )
        patch = scores[:, p : p + n] * keep  # tokens already masked hold no attention
        total = scores[:, :p].sum(1, keepdim=True) + patch.sum(1, keepdim=True)
        pkg_score = scores[:, p + n :] if has_package else None
        if pkg_score is not None:
            total = total + pkg_score
        patch = patch / total
        rank = patch.detach().argsort(dim=1, descending=True).argsort(dim=1).to(x.dtype)
        new_keep = keep * torch.sigmoid((k - 0.5 - rank) / self.sharpness)
        w = patch * (keep - new_keep)  # attention mass leaving at this stage
        merged = (w.unsqueeze(-1) * x[:, p : p + n]).sum(1, keepdim=True)
        mass = w.sum(1, keepdim=True)
        if pkg_score is not None:
            w_pkg = pkg_score / total
            merged = merged + w_pkg.unsqueeze(-1) * x[:, p + n :]
            mass = mass + w_pkg
        package = merged / mass.clamp_min(1e-12).unsqueeze(-1)
        return torch.cat([x[:, : p + n], package], dim=1), new_keep
