"""The models the engine can prune."""

from __future__ import annotations

from fastapi import APIRouter, Depends
from pydantic import BaseModel, ConfigDict

from api.deps import get_current_user
from api.problems import COMMON_ERRORS
from budgetprune.catalog import MODELS

router = APIRouter(
    responses=COMMON_ERRORS,
    prefix="/v1/models",
    tags=["models"],
    dependencies=[Depends(get_current_user)],
)


_MODEL_EXAMPLE = {
    "name": "deit_tiny_patch16_224",
    "embed_dim": 192,
    "depth": 12,
    "num_heads": 3,
    "head_dim": 64,
    "mlp_hidden": 768,
    "patch_size": 16,
    "img_size": 224,
    "num_prefix_tokens": 1,
    "num_classes": 1000,
}


class ModelPublic(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [_MODEL_EXAMPLE]})

    name: str
    embed_dim: int
    depth: int
    num_heads: int
    head_dim: int
    mlp_hidden: int
    patch_size: int
    img_size: int
    num_prefix_tokens: int
    num_classes: int


class ModelsPublic(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"data": [_MODEL_EXAMPLE], "count": 1}]}
    )

    data: list[ModelPublic]
    count: int


@router.get("", response_model=ModelsPublic)
def list_models() -> ModelsPublic:
    data = [
        ModelPublic(
            name=m.name,
            embed_dim=m.embed_dim,
            depth=m.depth,
            num_heads=m.num_heads,
            head_dim=m.head_dim,
            mlp_hidden=m.mlp_hidden,
            patch_size=m.patch_size,
            img_size=m.img_size,
            num_prefix_tokens=m.num_prefix_tokens,
            num_classes=m.num_classes,
        )
        for m in MODELS.values()
    ]
    return ModelsPublic(data=data, count=len(data))
