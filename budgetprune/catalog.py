"""The timm ViTs the engine supports, described without importing torch.

The API validates job specs against this table, and cost models read shapes from it, so neither
needs timm at hand. The engine checks that timm builds a model of exactly these shapes.
"""

from __future__ import annotations

from dataclasses import dataclass

from budgetprune.errors import UnsupportedModelError


@dataclass(frozen=True)
class ModelInfo:
    name: str
    embed_dim: int
    depth: int
    num_heads: int
    patch_size: int
    img_size: int = 224
    mlp_ratio: float = 4.0
    num_prefix_tokens: int = 1  # class token, plus the distillation token in distilled DeiTs
    num_classes: int = 1000
    timm_name: str = ""  # the timm factory to call, when it differs from `name`
    patch_override: bool = False  # pass patch_size to timm (CIFAR-shaped variants)

    @property
    def timm_kwargs(self) -> dict[str, object]:
        kwargs: dict[str, object] = {}
        if self.patch_override:
            kwargs["patch_size"] = self.patch_size
        return kwargs

    @property
    def factory(self) -> str:
        return self.timm_name or self.name

    @property
    def head_dim(self) -> int:
        return self.embed_dim // self.num_heads

    @property
    def mlp_hidden(self) -> int:
        return int(self.embed_dim * self.mlp_ratio)

    def num_patches(self, img_size: int | None = None) -> int:
        side = (img_size or self.img_size) // self.patch_size
        return side * side


def _family() -> dict[str, ModelInfo]:
    rows = [
        ("deit_tiny_patch16_224", 192, 12, 3, 16, 1),
        ("deit_small_patch16_224", 384, 12, 6, 16, 1),
        ("deit_base_patch16_224", 768, 12, 12, 16, 1),
        ("deit_tiny_distilled_patch16_224", 192, 12, 3, 16, 2),
        ("deit_small_distilled_patch16_224", 384, 12, 6, 16, 2),
        ("deit_base_distilled_patch16_224", 768, 12, 12, 16, 2),
        ("vit_tiny_patch16_224", 192, 12, 3, 16, 1),
        ("vit_small_patch16_224", 384, 12, 6, 16, 1),
        ("vit_base_patch16_224", 768, 12, 12, 16, 1),
        ("vit_small_patch32_224", 384, 12, 6, 32, 1),
        ("vit_base_patch32_224", 768, 12, 12, 32, 1),
    ]
    models = {
        name: ModelInfo(name, dim, depth, heads, patch, num_prefix_tokens=prefix)
        for name, dim, depth, heads, patch, prefix in rows
    }
    # DeiT shapes for 32x32 images (CIFAR): patch 4, 64 patches, the teachers of the benchmarks.
    for size, dim, heads in (("tiny", 192, 3), ("small", 384, 6)):
        name = f"deit_{size}_patch4_32"
        models[name] = ModelInfo(
            name,
            dim,
            12,
            heads,
            4,
            img_size=32,
            num_classes=10,
            timm_name=f"deit_{size}_patch16_224",
            patch_override=True,
        )
    return models


MODELS: dict[str, ModelInfo] = _family()


def get_model_info(name: str) -> ModelInfo:
    try:
        return MODELS[name]
    except KeyError:
        raise UnsupportedModelError(
            f"model {name!r} is not supported; supported models: {', '.join(sorted(MODELS))}"
        ) from None
