"""The gated (masked) form of a ViT, for training a sub-network end to end (HiAP-style).

Every granularity of the arch spec gets a gate: macro gates on the attention branch, the MLP
branch and each head; micro gates on the qk dims and v dims (one set per block, shared by its
heads, so a block stays one dense matmul after extraction) and on MLP neurons. Gates are
Gumbel-Sigmoid relaxations while training, deterministic sigmoids in eval, and 0/1 masks in the
hard form.

The hard form is defined by an arch spec, not by the open gates themselves: `gates_to_spec`
rounds the open gates to what extraction can build (kept heads; micro counts as a prefix of the
importance-sorted dims, rounded to a width multiple; a branch with no open unit closed), and
`harden` masks exactly that spec. So the hard-gated model equals `extract_subnet` of the spec,
and training with `straight_through=True` already sees the rounding.

Tokens are pruned with fixed keep ratios (the spec's `tokens`); the selector reads the block's
live norm and query/key weights, so it trains with them and extraction rebuilds it from them.
"""

from __future__ import annotations

import copy
import math
from typing import Literal

import torch
from torch import nn

from budgetprune.schemas.arch import ArchSpec, BlockSpec, TokenSpec
from vitprune.cost import token_stages
from vitprune.extract import check_model_fits
from vitprune.importance import dense_blocks
from vitprune.layers.tokens import class_attention, reorganize
from vitprune.rounding import round_spec

__all__ = [
    "Gate",
    "GatedAttention",
    "GatedMlp",
    "GatedBlock",
    "GatedTokenBlock",
    "GatedViT",
    "make_gated",
    "gates_to_spec",
    "expected_macs",
]

Mode = Literal["soft", "hard"]


class Gate(nn.Module):
    """`n` gates with learnable logits: Gumbel-Sigmoid when training, sigmoid in eval, a fixed
    0/1 mask in the hard form. A gate counts as open when its logit is positive."""

    def __init__(self, n: int, init_logit: float = 3.0, tau: float = 2 / 3) -> None:
        super().__init__()
        self.logits = nn.Parameter(torch.full((n,), float(init_logit)))
        self.register_buffer("hard_mask", torch.ones(n), persistent=False)
        self.tau = tau
        self.mode: Mode = "soft"
        self.straight_through = False

    def forward(self) -> torch.Tensor:
        if self.mode == "hard":
            return self.hard_mask
        logits = self.logits
        if self.training:  # logistic noise = difference of two Gumbels
            u = torch.rand_like(logits).clamp(1e-6, 1 - 1e-6)
            logits = logits + torch.log(u) - torch.log1p(-u)
        soft = torch.sigmoid(logits / self.tau)
        if self.straight_through:
            return (soft > 0.5).to(soft.dtype) + soft - soft.detach()
        return soft

    def probs(self) -> torch.Tensor:
        """Probability that each gate is open (differentiable): drives the expected cost."""
        return torch.sigmoid(self.logits)

    def open(self) -> torch.Tensor:
        return self.logits.detach() > 0

    def extra_repr(self) -> str:
        return f"n={self.logits.numel()}, tau={self.tau}, mode={self.mode}"


class GatedAttention(nn.Module):
    """A dense timm Attention with head, qk-dim and v-dim gates.

    The qk gate multiplies only q: the logit sum_j g_j q_j k_j then loses exactly the closed dims,
    as the extracted attention (same dense scale) does.
    """

    def __init__(self, attn: nn.Module, init_logit: float, tau: float) -> None:
        super().__init__()
        self.attn = attn
        self.head_gate = Gate(attn.num_heads, init_logit, tau)
        self.qk_gate = Gate(attn.head_dim, init_logit, tau)
        self.v_gate = Gate(attn.head_dim, init_logit, tau)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.attn
        B, N, _ = x.shape
        h, d = a.num_heads, a.head_dim
        q, k, v = a.qkv(x).reshape(B, N, 3, h, d).permute(2, 0, 3, 1, 4).unbind(0)
        q = q * self.qk_gate()
        v = v * self.v_gate()
        attn = ((q * a.scale) @ k.transpose(-2, -1)).softmax(dim=-1)
        out = (a.attn_drop(attn) @ v) * self.head_gate().reshape(1, h, 1, 1)
        return a.proj_drop(a.proj(out.transpose(1, 2).reshape(B, N, h * d)))


class GatedMlp(nn.Module):
    """A timm Mlp with one gate per hidden neuron (after the activation, before fc2)."""

    def __init__(self, mlp: nn.Module, init_logit: float, tau: float) -> None:
        super().__init__()
        self.mlp = mlp
        self.neuron_gate = Gate(mlp.fc1.out_features, init_logit, tau)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m = self.mlp
        hidden = m.drop1(m.act(m.fc1(x))) * self.neuron_gate()
        return m.drop2(m.fc2(m.norm(hidden)))


class GatedBlock(nn.Module):
    """A timm Block with macro gates on its two branches; its `attn` and `mlp` become the gated
    wrappers (each weight is held once, so the state dict has no duplicates)."""

    def __init__(self, block: nn.Module, init_logit: float, tau: float) -> None:
        super().__init__()
        block.attn = GatedAttention(block.attn, init_logit, tau)
        block.mlp = GatedMlp(block.mlp, init_logit, tau)
        self.block = block
        self.attn_gate = Gate(1, init_logit, tau)
        self.mlp_gate = Gate(1, init_logit, tau)

    @property
    def attn(self) -> GatedAttention:
        return self.block.attn

    @property
    def mlp(self) -> GatedMlp:
        return self.block.mlp

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b = self.block
        x = x + self.attn_gate() * b.drop_path1(b.ls1(b.attn(b.norm1(x))))
        return x + self.mlp_gate() * b.drop_path2(b.ls2(b.mlp(b.norm2(x))))

    def dense_block(self) -> nn.Module:
        """A copy of the timm Block with the current weights and no gates."""
        blk = copy.deepcopy(self.block)
        blk.attn = blk.attn.attn
        blk.mlp = blk.mlp.mlp
        return blk


class GatedTokenBlock(nn.Module):
    """Token pruning in front of a gated block, scored with that block's live weights."""

    def __init__(self, gated: GatedBlock, *, num_prefix: int, stage) -> None:
        super().__init__()
        self.gated = gated
        self.num_prefix = num_prefix
        self.num_patches = stage.num_patches
        self.keep = stage.keep
        self.has_package = stage.has_package
        self.package = stage.make_package or stage.has_package

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        blk = self.gated.block
        a = blk.attn.attn
        hd = a.num_heads * a.head_dim
        q_bias = a.qkv.bias[:hd] if a.qkv.bias is not None else None
        scores = class_attention(
            x,
            blk.norm1,
            a.qkv.weight[:hd],
            q_bias,
            a.qkv.weight[hd : 2 * hd],
            num_heads=a.num_heads,
            head_dim=a.head_dim,
            scale=float(a.scale),
        )
        x = reorganize(
            x,
            scores,
            num_prefix=self.num_prefix,
            num_patches=self.num_patches,
            keep=self.keep,
            has_package=self.has_package,
            package=self.package,
        )
        return self.gated(x)


class GatedViT(nn.Module):
    """A dense timm ViT (sorted by importance first) with gates at every granularity.

    Train it in soft mode (the default; `set_mode("soft", straight_through=True)` to train
    through the rounding), then `harden()` for the deterministic form and its arch spec, and
    `extract_subnet(gated.dense_model(), spec)` for the physical model.
    """

    def __init__(
        self,
        model: nn.Module,
        spec: ArchSpec,
        *,
        init_logit: float = 3.0,
        tau: float = 2 / 3,
    ) -> None:
        super().__init__()
        check_model_fits(model, spec)
        dense_blocks(model)
        self.spec_template = spec.model_copy(deep=True)
        self.model = copy.deepcopy(model)
        stages = {s.block: s for s in token_stages(spec)}
        blocks: list[nn.Module] = []
        for i, blk in enumerate(self.model.blocks):
            gated = GatedBlock(blk, init_logit, tau)
            stage = stages.get(i)
            if stage is not None:
                num_prefix = self.model.num_prefix_tokens
                blocks.append(GatedTokenBlock(gated, num_prefix=num_prefix, stage=stage))
            else:
                blocks.append(gated)
        self.model.blocks = nn.Sequential(*blocks)
        self.width_multiple = 1

    @property
    def gated_blocks(self) -> list[GatedBlock]:
        """The gated blocks in order (unwrapped from their token pruning)."""
        return [b.gated if isinstance(b, GatedTokenBlock) else b for b in self.model.blocks]

    @property
    def tokens(self) -> TokenSpec | None:
        return self.spec_template.tokens

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def gates(self) -> list[Gate]:
        return [m for m in self.modules() if isinstance(m, Gate)]

    def gate_parameters(self) -> list[nn.Parameter]:
        """The gate logits, to give them their own optimiser group (learning rate, no decay)."""
        return [g.logits for g in self.gates()]

    def weight_parameters(self) -> list[nn.Parameter]:
        gate_ids = {id(p) for p in self.gate_parameters()}
        return [p for p in self.parameters() if id(p) not in gate_ids]

    def set_mode(self, mode: Mode, straight_through: bool = False) -> None:
        for g in self.gates():
            g.mode = mode
            g.straight_through = straight_through

    def harden(self, width_multiple: int = 1) -> ArchSpec:
        """Switch to the deterministic hard form of the current gates; returns its spec."""
        spec = gates_to_spec(self, width_multiple)
        self.apply_spec(spec)
        return spec

    @torch.no_grad()
    def apply_spec(self, spec: ArchSpec) -> None:
        """Hard form of an arbitrary spec (same model and tokens): 0/1 masks, mode 'hard'."""
        if spec.tokens != self.tokens or spec.model != self.spec_template.model:
            raise ValueError("the spec must be for the same model and token plan as the gates")
        for gated, b in zip(self.gated_blocks, spec.blocks, strict=True):
            heads = gated.attn.head_gate.hard_mask
            heads.zero_()
            if b.attn:
                heads[b.heads] = 1
            _prefix_(gated.attn.qk_gate.hard_mask, b.qk_dim if b.attn else 0)
            _prefix_(gated.attn.v_gate.hard_mask, b.v_dim if b.attn else 0)
            _prefix_(gated.mlp.neuron_gate.hard_mask, b.mlp_hidden if b.mlp else 0)
            gated.attn_gate.hard_mask.fill_(float(b.attn))
            gated.mlp_gate.hard_mask.fill_(float(b.mlp))
        self.set_mode("hard")

    def dense_model(self) -> nn.Module:
        """The underlying dense timm model with the current (trained) weights, to extract from."""
        dense = copy.deepcopy(self.model)
        dense.blocks = nn.Sequential(*[g.dense_block() for g in self.gated_blocks])
        return dense


def _prefix_(mask: torch.Tensor, n: int) -> None:
    mask.zero_()
    mask[:n] = 1


def make_gated(
    model: nn.Module,
    spec: ArchSpec | None = None,
    *,
    tokens: TokenSpec | None = None,
    init_logit: float = 3.0,
    tau: float = 2 / 3,
) -> GatedViT:
    """Gate a dense, importance-sorted model. `spec` gives model, img_size and num_classes (the
    dense spec of `model` when omitted, read from the model); `tokens` the fixed keep ratios."""
    if spec is None:
        name = (
            model.pretrained_cfg.get("architecture") if hasattr(model, "pretrained_cfg") else None
        )
        if name is None:
            raise ValueError("pass the spec: the model does not name its architecture")
        spec = ArchSpec.dense(name, model.patch_embed.img_size[0], model.num_classes)
    if tokens is not None:
        spec = spec.model_copy(update={"tokens": tokens})
    return GatedViT(model, spec, init_logit=init_logit, tau=tau)


@torch.no_grad()
def gates_to_spec(gated: GatedViT, width_multiple: int = 1) -> ArchSpec:
    """The arch spec of the open gates: kept heads by index, micro units as counts (extraction
    keeps the importance-sorted prefix), widths rounded to `width_multiple`. A closed macro gate
    closes everything under it, and a branch left without an open unit is dropped."""
    template = gated.spec_template
    blocks = []
    for g in gated.gated_blocks:
        heads = g.attn.head_gate.open().nonzero().flatten().tolist()
        qk = max(1, int(g.attn.qk_gate.open().sum()))
        v = max(1, int(g.attn.v_gate.open().sum()))
        hidden = int(g.mlp.neuron_gate.open().sum())
        attn = bool(g.attn_gate.open().item()) and bool(heads)
        mlp = bool(g.mlp_gate.open().item()) and hidden > 0
        blocks.append(
            BlockSpec(
                attn=attn,
                heads=heads if attn else [],
                qk_dim=qk if attn else 0,
                v_dim=v if attn else 0,
                mlp=mlp,
                mlp_hidden=hidden if mlp else 0,
            )
        )
    spec = template.model_copy(update={"blocks": blocks})
    spec = ArchSpec.model_validate(spec.model_dump())
    return round_spec(spec, width_multiple) if width_multiple > 1 else spec


@torch.no_grad()
def open_units(gated: GatedViT) -> tuple[int, int]:
    """(attention heads, MLP neurons) whose gates, and whose branch's gate, are open (p > 0.5):
    what the network would keep if training stopped now."""
    heads = neurons = 0
    for g in gated.gated_blocks:
        if float(g.attn_gate.probs()[0]) > 0.5:
            heads += int((g.attn.head_gate.probs() > 0.5).sum())
        if float(g.mlp_gate.probs()[0]) > 0.5:
            neurons += int((g.mlp.neuron_gate.probs() > 0.5).sum())
    return heads, neurons


def expected_macs(gated: GatedViT) -> torch.Tensor:
    """Differentiable MACs of the sub-network the gates sample (open probabilities treated as
    independent): the analytical cost term of the training loss. Matmuls only, as `cost.macs`,
    without the token selectors' (constant and small) products."""
    spec = gated.spec_template
    info = spec.info
    d = info.embed_dim
    counts = _tokens(spec)
    total = torch.zeros(())
    for g, n in zip(gated.gated_blocks, counts, strict=True):
        p_attn = g.attn_gate.probs()[0]
        heads = g.attn.head_gate.probs().sum()
        qk = g.attn.qk_gate.probs().sum()
        v = g.attn.v_gate.probs().sum()
        attn = n * d * heads * (2 * qk + v) + heads * n * n * (qk + v) + n * heads * v * d
        mlp = 2 * n * d * g.mlp.neuron_gate.probs().sum()
        total = total + p_attn * attn + g.mlp_gate.probs()[0] * mlp
    fixed = info.num_patches(spec.img_size) * d * 3 * info.patch_size**2
    fixed += (2 if info.num_prefix_tokens > 1 else 1) * d * spec.num_classes
    return total + fixed


def _tokens(spec: ArchSpec) -> list[int]:
    from vitprune.cost import tokens_per_block

    return tokens_per_block(spec)


def logit_for(prob: float) -> float:
    """The logit whose sigmoid is `prob`: to initialise gates at a chosen openness."""
    return math.log(prob / (1 - prob))
