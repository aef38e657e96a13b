"""The pruning engine: dense timm ViTs in, physically smaller (and exported) ViTs out.

Names are imported lazily (PEP 562): `vitprune.cost`, `vitprune.sample` and `vitprune.rounding`
are torch-free and the API, predictors and search import them without paying for torch; the rest
loads torch and timm on first use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__all__ = [
    "create_model",
    "load_checkpoint",
    "sort_by_magnitude_",
    "head_scores",
    "mlp_scores",
    "extract_subnet",
    "hard_mask_",
    "save_subnet",
    "load_subnet",
    "export_onnx",
    "macs",
    "params",
    "tokens_per_block",
    "sample_arch",
    "round_spec",
    "GatedViT",
    "make_gated",
    "gates_to_spec",
]

_WHERE = {
    "create_model": "vitprune.models",
    "load_checkpoint": "vitprune.models",
    "sort_by_magnitude_": "vitprune.importance",
    "head_scores": "vitprune.importance",
    "mlp_scores": "vitprune.importance",
    "extract_subnet": "vitprune.extract",
    "hard_mask_": "vitprune.masking",
    "save_subnet": "vitprune.io",
    "load_subnet": "vitprune.io",
    "export_onnx": "vitprune.export",
    "macs": "vitprune.cost",
    "params": "vitprune.cost",
    "tokens_per_block": "vitprune.cost",
    "sample_arch": "vitprune.sample",
    "round_spec": "vitprune.rounding",
    "GatedViT": "vitprune.gates",
    "make_gated": "vitprune.gates",
    "gates_to_spec": "vitprune.gates",
}

if TYPE_CHECKING:
    from vitprune.cost import macs, params, tokens_per_block
    from vitprune.export import export_onnx
    from vitprune.extract import extract_subnet
    from vitprune.gates import GatedViT, gates_to_spec, make_gated
    from vitprune.importance import head_scores, mlp_scores, sort_by_magnitude_
    from vitprune.io import load_subnet, save_subnet
    from vitprune.masking import hard_mask_
    from vitprune.models import create_model, load_checkpoint
    from vitprune.rounding import round_spec
    from vitprune.sample import sample_arch


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'vitprune' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
