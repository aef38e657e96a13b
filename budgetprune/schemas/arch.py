"""Arch spec: which sub-network of a timm ViT (contracts.md section 2).

The spec is the replayable pruning plan: the engine extracts exactly this sub-network from a
model whose weights were first put in importance order, and `model.safetensors` + `arch.json`
rebuild it.
"""

from __future__ import annotations

import hashlib
import json

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from budgetprune.catalog import ModelInfo, get_model_info
from budgetprune.errors import InvalidArchError


class BlockSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    attn: bool = True
    heads: list[int] = Field(default_factory=list, description="indices of the kept heads")
    qk_dim: int = Field(0, ge=0, description="kept query/key dims per kept head")
    v_dim: int = Field(0, ge=0, description="kept value dims per kept head")
    mlp: bool = True
    mlp_hidden: int = Field(0, ge=0, description="kept FFN neurons")

    @field_validator("heads")
    @classmethod
    def _sorted_unique(cls, heads: list[int]) -> list[int]:
        if len(set(heads)) != len(heads):
            raise ValueError("heads must not repeat an index")
        return sorted(heads)


class TokenSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    keep: dict[int, float] = Field(
        default_factory=dict, description="block index -> fraction of patch tokens kept from there"
    )
    package_token: bool = True

    @field_validator("keep")
    @classmethod
    def _ratios(cls, keep: dict[int, float]) -> dict[int, float]:
        for block, ratio in keep.items():
            if not 0.0 < ratio <= 1.0:
                raise ValueError(f"keep ratio at block {block} must be in (0, 1], got {ratio}")
        return dict(sorted(keep.items()))


class ArchSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: str
    img_size: int = 224
    num_classes: int = 1000
    blocks: list[BlockSpec]
    tokens: TokenSpec | None = None

    @model_validator(mode="after")
    def _fits_model(self) -> ArchSpec:
        try:
            info = get_model_info(self.model)
        except Exception as exc:  # an unknown model is a validation error of the spec
            raise ValueError(str(exc)) from None
        problems = arch_problems(self, info)
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @classmethod
    def dense(cls, model: str, img_size: int | None = None, num_classes: int | None = None):
        info = get_model_info(model)
        block = BlockSpec(
            heads=list(range(info.num_heads)),
            qk_dim=info.head_dim,
            v_dim=info.head_dim,
            mlp_hidden=info.mlp_hidden,
        )
        return cls(
            model=model,
            img_size=img_size or info.img_size,
            num_classes=info.num_classes if num_classes is None else num_classes,
            blocks=[block.model_copy() for _ in range(info.depth)],
        )

    @property
    def info(self) -> ModelInfo:
        return get_model_info(self.model)

    def canonical_json(self) -> str:
        return json.dumps(self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))

    def sha256(self) -> str:
        return hashlib.sha256(self.canonical_json().encode()).hexdigest()

    def summary(self) -> str:
        heads = sum(len(b.heads) for b in self.blocks if b.attn)
        mlp = sum(b.mlp_hidden for b in self.blocks if b.mlp)
        return f"{heads} heads, {mlp} MLP neurons over {len(self.blocks)} blocks"


def arch_problems(spec: ArchSpec, info: ModelInfo) -> list[str]:
    """Every way `spec` does not fit `info`, as messages that say what to fix."""
    problems: list[str] = []
    if spec.img_size % info.patch_size or spec.img_size < info.patch_size:
        problems.append(f"img_size {spec.img_size} is not a multiple of patch {info.patch_size}")
    if spec.num_classes < 0:
        problems.append("num_classes must be >= 0")
    if len(spec.blocks) != info.depth:
        problems.append(f"{info.name} has {info.depth} blocks, spec has {len(spec.blocks)}")
    for i, b in enumerate(spec.blocks):
        if b.attn:
            if not b.heads:
                problems.append(f"block {i}: attn is kept but no head is; set attn false instead")
            if any(h < 0 or h >= info.num_heads for h in b.heads):
                problems.append(f"block {i}: head indices must be in 0..{info.num_heads - 1}")
            if not 1 <= b.qk_dim <= info.head_dim or not 1 <= b.v_dim <= info.head_dim:
                problems.append(f"block {i}: qk_dim and v_dim must be in 1..{info.head_dim}")
        if b.mlp and not 1 <= b.mlp_hidden <= info.mlp_hidden:
            problems.append(f"block {i}: mlp_hidden must be in 1..{info.mlp_hidden}")
    if spec.tokens:
        for block in spec.tokens.keep:
            if not 0 <= block < info.depth:
                problems.append(f"tokens.keep names block {block}, outside 0..{info.depth - 1}")
    return problems


def load_arch(text: str) -> ArchSpec:
    try:
        return ArchSpec.model_validate_json(text)
    except ValueError as exc:
        raise InvalidArchError(f"invalid arch spec: {exc}") from None
