from __future__ import annotations

import json

import pytest
import torch

from budgetprune.errors import CheckpointError
from budgetprune.schemas.arch import TokenSpec
from vitprune.extract import extract_subnet
from vitprune.io import load_subnet, save_subnet
from vitprune.sample import sample_arch


@pytest.mark.parametrize(
    ("name", "pool", "tokens"),
    [
        ("deit_tiny_patch16_224", None, True),
        ("deit_tiny_distilled_patch16_224", None, False),
        ("vit_small_patch32_224", "avg", True),
    ],
)
def test_save_and_load_rebuild_the_same_module(make_model, images, tmp_path, name, pool, tokens):
    model = make_model(name, 64, 10, pool)
    spec = sample_arch(name, 5, img_size=64, num_classes=10, tokens=tokens)
    sub = extract_subnet(model, spec)
    save_subnet(sub, spec, tmp_path)
    assert {p.name for p in tmp_path.iterdir()} == {"model.safetensors", "arch.json"}
    assert json.loads((tmp_path / "arch.json").read_text())["model"] == name
    loaded, loaded_spec = load_subnet(tmp_path)
    assert loaded_spec == spec
    assert loaded.global_pool == sub.global_pool
    assert str(loaded) == str(sub)
    x = images(2, 64)
    with torch.no_grad():
        assert torch.equal(loaded(x), sub(x))


def test_weights_for_another_spec_are_refused(make_model, tmp_path) -> None:
    model = make_model("deit_tiny_patch16_224", 64, 10)
    spec = sample_arch("deit_tiny_patch16_224", 1, img_size=64, num_classes=10)
    save_subnet(extract_subnet(model, spec), spec, tmp_path)
    other = spec.model_copy(update={"tokens": TokenSpec(keep={3: 0.5})})
    (tmp_path / "arch.json").write_text(other.model_dump_json())
    with pytest.raises(CheckpointError, match="another arch spec"):
        load_subnet(tmp_path)
    (tmp_path / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match="does not exist"):
        load_subnet(tmp_path)
