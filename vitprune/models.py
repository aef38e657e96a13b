"""Build the dense timm ViTs the engine prunes, checked against the catalog.

The catalog describes every supported model without torch, and the API and the cost model trust
it; so a model that timm builds with other shapes (a timm release that changed a default) must be
refused here rather than produce specs that silently do not fit.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import timm
import torch
from timm.layers import resample_abs_pos_embed
from timm.models.vision_transformer import VisionTransformer
from torch import nn

from budgetprune.catalog import MODELS, ModelInfo, get_model_info
from budgetprune.errors import CheckpointError, UnsupportedModelError

__all__ = ["create_model", "load_checkpoint", "read_state_dict", "check_matches_catalog"]

_POOLS = ("token", "avg")


def create_model(
    name: str,
    img_size: int | None = None,
    num_classes: int | None = None,
    checkpoint: str | Path | None = None,
    global_pool: str | None = None,
) -> nn.Module:
    """A dense, randomly initialised (or checkpoint-loaded) timm ViT in eval mode.

    `exportable=True` turns fused attention off: the explicit softmax path is what ONNX export
    and our pruned attention reproduce, so all forms of a model compute the same thing.
    """
    info = get_model_info(name)
    img_size = img_size or info.img_size
    if img_size % info.patch_size or img_size < info.patch_size:
        raise UnsupportedModelError(
            f"img_size {img_size} is not a positive multiple of {name}'s patch {info.patch_size}"
        )
    if num_classes is not None and num_classes < 0:
        raise UnsupportedModelError(f"num_classes must be >= 0, got {num_classes}")
    if global_pool is not None and global_pool not in _POOLS:
        raise UnsupportedModelError(
            f"global_pool {global_pool!r} is not supported; use one of {', '.join(_POOLS)}"
        )
    if global_pool == "avg" and info.num_prefix_tokens > 1:
        raise UnsupportedModelError(
            f"{name} reads its class and distillation tokens; it supports global_pool 'token' only"
        )
    kwargs: dict[str, object] = {"img_size": img_size}
    kwargs["num_classes"] = info.num_classes if num_classes is None else num_classes
    kwargs |= info.timm_kwargs  # e.g. patch 4 for the CIFAR-shaped variants
    if global_pool is not None:
        kwargs["global_pool"] = global_pool
    model = timm.create_model(info.factory, pretrained=False, exportable=True, **kwargs)
    check_matches_catalog(model, info)
    if checkpoint is not None:
        load_checkpoint(model, checkpoint)
    return model.eval()


def check_matches_catalog(model: nn.Module, info: ModelInfo) -> None:
    """Refuse a model whose structure differs from what the catalog (and so the cost model and
    the extractor) assume."""
    if not isinstance(model, VisionTransformer):
        raise UnsupportedModelError(
            f"{info.name} is not a timm VisionTransformer; supported: {', '.join(sorted(MODELS))}"
        )
    found = {
        "embed_dim": model.embed_dim,
        "depth": len(model.blocks),
        "num_prefix_tokens": model.num_prefix_tokens,
        "patch_size": model.patch_embed.patch_size[0],
    }
    expected = {
        "embed_dim": info.embed_dim,
        "depth": info.depth,
        "num_prefix_tokens": info.num_prefix_tokens,
        "patch_size": info.patch_size,
    }
    problems = [
        f"{k}: timm {found[k]} != catalog {expected[k]}" for k in found if found[k] != expected[k]
    ]
    for i, blk in enumerate(model.blocks):
        attn, mlp = blk.attn, blk.mlp
        if attn.num_heads != info.num_heads or attn.head_dim != info.head_dim:
            problems.append(f"block {i}: heads {attn.num_heads}x{attn.head_dim}")
        if getattr(attn, "fused_attn", False):
            problems.append(f"block {i}: fused attention is on (exportable=True was lost)")
        if not isinstance(attn.q_norm, nn.Identity) or not isinstance(attn.norm, nn.Identity):
            problems.append(f"block {i}: attention has q/k or scale norms")
        if getattr(attn, "gate", None) is not None:
            problems.append(f"block {i}: gated attention")
        if mlp.fc1.out_features != info.mlp_hidden:
            problems.append(f"block {i}: mlp hidden {mlp.fc1.out_features}")
        if not isinstance(blk.ls1, nn.Identity) or not isinstance(blk.ls2, nn.Identity):
            problems.append(f"block {i}: layer scale")
    if model.attn_pool is not None or model.reg_token is not None or model.no_embed_class:
        problems.append("attention pooling, register tokens or no_embed_class")
    if problems:
        raise UnsupportedModelError(
            f"timm builds {info.name} differently from the catalog: {'; '.join(problems)}"
        )


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Tensors of a .safetensors or .pt/.pth file; pickles only through `weights_only=True`, so
    a checkpoint can never run code."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    suffix = path.suffix.lower()
    try:
        if suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path), device="cpu")
        if suffix in (".pt", ".pth", ".bin"):
            obj = torch.load(path, map_location="cpu", weights_only=True)
        else:
            raise CheckpointError(
                f"checkpoint {path.name}: unknown format; use .safetensors, .pt or .pth"
            )
    except CheckpointError:
        raise
    except Exception as exc:  # corrupt file, pickle with code, wrong format
        raise CheckpointError(f"cannot read checkpoint {path.name}: {exc}") from None
    for key in ("model", "state_dict", "model_ema"):  # DeiT and training scripts wrap weights
        if isinstance(obj, Mapping) and isinstance(obj.get(key), Mapping):
            obj = obj[key]
            break
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(f"checkpoint {path.name} does not hold a state dict of tensors")
    return {str(k).removeprefix("module."): v for k, v in obj.items()}


def load_checkpoint(model: nn.Module, checkpoint: str | Path | Mapping[str, torch.Tensor]) -> None:
    """Load dense weights strictly; a position embedding for another grid is resampled, since the
    service prunes at any img_size."""
    state = dict(checkpoint) if isinstance(checkpoint, Mapping) else read_state_dict(checkpoint)
    own = model.state_dict()
    pos = state.get("pos_embed")
    if pos is not None and "pos_embed" in own and pos.shape != own["pos_embed"].shape:
        prefix = model.num_prefix_tokens
        if pos.ndim == 3 and pos.shape[-1] == own["pos_embed"].shape[-1]:
            state["pos_embed"] = resample_abs_pos_embed(
                pos, new_size=list(model.patch_embed.grid_size), num_prefix_tokens=prefix
            )
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    wrong = sorted(k for k in set(own) & set(state) if own[k].shape != state[k].shape)
    if missing or unexpected or wrong:
        parts = []
        if missing:
            parts.append(f"missing keys {_few(missing)}")
        if unexpected:
            parts.append(f"unexpected keys {_few(unexpected)}")
        if wrong:
            shapes = [f"{k} {tuple(state[k].shape)} != {tuple(own[k].shape)}" for k in wrong]
            parts.append(f"wrong shapes {_few(shapes)}")
        raise CheckpointError("checkpoint does not fit the model: " + "; ".join(parts))
    not_float = sorted(f"{k} {v.dtype}" for k, v in state.items() if not v.is_floating_point())
    if not_float:
        # a cast would load them as numbers; they are not weights of this model
        raise CheckpointError(f"checkpoint tensors that are not floating point: {_few(not_float)}")
    model.load_state_dict({k: v.to(own[k].dtype) for k, v in state.items()}, strict=True)


def _few(items: list[str], n: int = 5) -> str:
    more = f" (+{len(items) - n} more)" if len(items) > n else ""
    return ", ".join(items[:n]) + more
