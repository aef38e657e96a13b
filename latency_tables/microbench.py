"""The micro-benchmark graphs a table is measured from, built from the engine's own modules.

Each graph uses exactly the modules `vitprune.extract` puts into a pruned model (AttnOnlyBlock,
MlpOnlyBlock, TokenSelector, timm's patch embedding and head), so the ONNX ops the runtime sees
are those of the real sub-networks. Blocks are measured in stacks of identical copies and
costed by the slope over stack depth: a block timed alone also pays the run's fixed overhead,
which misleads badly (tvm-notes.md, "measure in context").

Caches are the other half of the context. Inside a whole model every block's weights have been
pushed out of the core's L2 by the other blocks since the last run; a small stack's weights stay
in L2 from run to run and look too cheap (DeiT-T attention: 0.6 MB of weights, a 4 MB L2). So
every graph first streams a large weight matrix (`Evicting`); its cost is the same at every
depth and drops out of the slope. Files are compacted (`latency_tables.compact`): the sweep and
the weights travel as tiles that the runtime repeats when it loads the graph.
"""

from __future__ import annotations

import copy
import warnings
from pathlib import Path

import torch
from torch import nn

from budgetprune.schemas.arch import BlockSpec
from latency_tables.compact import compact
from vitprune.extract import prune_block
from vitprune.layers.tokens import selector_from_block

__all__ = [
    "TokenStack",
    "attention_stack",
    "mlp_stack",
    "full_width_stack",
    "selector_graph",
    "head_graph",
    "embed_graph",
    "no_block_model",
    "overhead_graph",
    "export_graph",
    "Evicting",
]


class TokenStack(nn.Module):
    """Modules applied in order to a (batch, tokens, dim) input."""

    def __init__(self, parts: list[nn.Module]) -> None:
        super().__init__()
        self.parts = nn.Sequential(*parts)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.parts(x)


@torch.no_grad()
def _pruned_stack(dense_block: nn.Module, spec: BlockSpec, depth: int) -> TokenStack:
    """One pruned block applied `depth` times: the stack's blocks share one set of weights and
    every block after the first reads it warm, as a small model's blocks read theirs from run to
    run. (Exact copies export to the same graph, since `torch.onnx.export` merges initializers
    of equal value, but copying the block for every depth was 8% of a 32-px table build.)
    Copies with weights of their own priced blocks as a large model runs them (deit_small's
    in-model factor flat at x0.91-0.95 from 7 to 197 tokens) but narrow 32-px deit_tiny networks
    26-35% dear, so the weights stay shared and `BlockContext` prices the difference
    (bench/README.md, "Stacks share their weights")."""
    return TokenStack([prune_block(copy.deepcopy(dense_block), spec)] * depth).eval()


def attention_stack(
    dense_block: nn.Module, *, heads: int, qk_dim: int, v_dim: int, depth: int
) -> TokenStack:
    """`depth` blocks that kept only their attention branch, with `heads` heads."""
    spec = BlockSpec(attn=True, heads=list(range(heads)), qk_dim=qk_dim, v_dim=v_dim, mlp=False)
    return _pruned_stack(dense_block, spec, depth)


def mlp_stack(dense_block: nn.Module, *, hidden: int, depth: int) -> TokenStack:
    """`depth` blocks that kept only their MLP branch, with `hidden` neurons."""
    return _pruned_stack(dense_block, BlockSpec(attn=False, mlp=True, mlp_hidden=hidden), depth)


def full_width_stack(dense_block: nn.Module, kind: str, depth: int) -> TokenStack:
    """The dense block's `kind` ("attention" or "mlp") branch at full width, `depth` times:
    what the benchmarks of the stacks themselves time."""
    if kind == "mlp":
        return mlp_stack(dense_block, hidden=dense_block.mlp.fc1.out_features, depth=depth)
    heads, dim = dense_block.attn.num_heads, dense_block.attn.qkv.in_features
    return attention_stack(
        dense_block, heads=heads, qk_dim=dim // heads, v_dim=dim // heads, depth=depth
    )


def selector_graph(
    dense_block: nn.Module, *, num_prefix: int, num_patches: int, keep: int, package: bool
) -> TokenStack:
    sel = selector_from_block(
        dense_block,
        num_prefix=num_prefix,
        num_patches=num_patches,
        keep=keep,
        has_package=False,
        make_package=package,
    )
    return TokenStack([sel]).eval()


class _Head(nn.Module):
    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.forward_head(self.model.norm(x))


def head_graph(model: nn.Module) -> nn.Module:
    """Final norm, pooling and classifier of `model`, on tokens."""
    return _Head(model).eval()


class _Embed(nn.Module):
    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m = self.model
        return m.norm_pre(m.patch_drop(m._pos_embed(m.patch_embed(x))))


def embed_graph(model: nn.Module) -> nn.Module:
    """Patch embedding, class token and position embedding of `model`: image in, tokens out."""
    return _Embed(model).eval()


def no_block_model(model: nn.Module) -> nn.Module:
    """`model` without transformer blocks: everything a pruned model costs besides its blocks."""
    out = copy.deepcopy(model)
    out.blocks = nn.Sequential()
    return out.eval()


class _Scale(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * 1.5


def overhead_graph() -> nn.Module:
    """One elementwise op: what any run costs (feeding, fetching, dispatch) besides its work."""
    return _Scale()


class Evicting(nn.Module):
    """`inner` run after a product that reads `evict_bytes` of weights, so no weight of `inner`
    is still in the core's private caches when it runs.

    `inner`'s input is made to depend on the product (adding zero times one of its values): the
    runtime may order independent nodes as it likes, and a sweep between two blocks of a stack
    would make the deeper stacks pay for cold activations too. (`TableGrid.evict_bytes`; 0: no
    sweep.)
    """

    def __init__(self, inner: nn.Module, in_features: int, evict_bytes: int) -> None:
        super().__init__()
        self.inner = inner
        self.in_features = in_features
        cols = max(1, evict_bytes // (4 * in_features))
        self.register_buffer("sweep", torch.randn(in_features, cols), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        swept = x.reshape(x.shape[0], -1)[:, : self.in_features] @ self.sweep
        return self.inner(x + swept[0, 0] * 0.0)


def export_graph(
    module: nn.Module,
    path: Path,
    input_shape: list[int],
    opset: int = 17,
    *,
    compacted: bool = True,
) -> Path:
    """Self-contained ONNX with one float input of `input_shape`, exported like the engine's
    models (TorchScript exporter, opset 17, constant folding) so the runtime optimises it the
    same way; `compacted`: large tensors stored as tiles (it is only timed)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    x = torch.randn(*input_shape)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module,
            (x,),
            str(path),
            dynamo=False,
            opset_version=opset,
            input_names=["input"],
            output_names=["output"],
            do_constant_folding=True,
        )
    if compacted:
        compact(path)
    return path
