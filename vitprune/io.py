"""A pruned model on disk: `model.safetensors` + `arch.json` (contracts.md section 3).

The two files are enough to rebuild the module: the dense skeleton of `spec.model` is extracted
with the spec to get every shape, then the weights are loaded strictly. What the spec does not
say (the pooling) travels in the safetensors metadata.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn

from budgetprune.errors import CheckpointError
from budgetprune.schemas.arch import ArchSpec, load_arch
from vitprune.extract import extract_subnet
from vitprune.models import create_model, read_state_dict

__all__ = ["save_subnet", "load_subnet", "WEIGHTS_FILE", "ARCH_FILE"]

WEIGHTS_FILE = "model.safetensors"
ARCH_FILE = "arch.json"
_FORMAT = "vitprune-subnet/1"


def save_subnet(model: nn.Module, spec: ArchSpec, out_dir: str | Path) -> Path:
    """Write the extracted `model` and its `spec` into `out_dir`; returns `out_dir`."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    meta = {"format": _FORMAT, "global_pool": str(model.global_pool), "arch_sha256": spec.sha256()}
    save_file(state, str(out / WEIGHTS_FILE), metadata=meta)
    (out / ARCH_FILE).write_text(json.dumps(spec.model_dump(mode="json"), indent=2) + "\n")
    return out


def load_subnet(out_dir: str | Path) -> tuple[nn.Module, ArchSpec]:
    """Rebuild the module `save_subnet` wrote, in eval mode."""
    out = Path(out_dir)
    spec = load_arch((out / ARCH_FILE).read_text())
    weights = out / WEIGHTS_FILE
    if not weights.is_file():
        raise CheckpointError(f"{weights} does not exist")
    with safe_open(str(weights), framework="pt") as f:
        meta = f.metadata() or {}
    if meta.get("arch_sha256", spec.sha256()) != spec.sha256():
        raise CheckpointError(f"{WEIGHTS_FILE} was saved for another arch spec than {ARCH_FILE}")
    # Shapes only: build the skeleton on the meta device (no memory, no random init; 2 s saved
    # for DeiT-B), then let the loaded tensors become the parameters.
    with torch.device("meta"):
        skeleton = create_model(
            spec.model,
            img_size=spec.img_size,
            num_classes=spec.num_classes,
            global_pool=meta.get("global_pool") or None,
        )
        model = extract_subnet(skeleton, spec)
    state = read_state_dict(weights)
    own = model.state_dict()
    missing, unexpected = sorted(set(own) - set(state)), sorted(set(state) - set(own))
    wrong = sorted(k for k in set(own) & set(state) if own[k].shape != state[k].shape)
    if missing or unexpected or wrong:
        raise CheckpointError(
            f"{WEIGHTS_FILE} does not fit {ARCH_FILE}: missing {missing[:5]}, "
            f"unexpected {unexpected[:5]}, wrong shapes {wrong[:5]}"
        )
    model.load_state_dict(state, strict=True, assign=True)
    left = [n for n, t in [*model.named_parameters(), *model.named_buffers()] if t.is_meta]
    if left:  # a tensor outside the state dict would have no values
        raise CheckpointError(f"{WEIGHTS_FILE} leaves tensors without values: {left[:5]}")
    return model.eval(), spec
