"""The torch-free picture of a checkpoint against what timm builds, and the static pickle scan
against what torch.save writes."""

from __future__ import annotations

import os
import pickle

import pytest
import torch
from safetensors.torch import save_file

from budgetprune.catalog import MODELS
from budgetprune.checkpoints import CheckpointMismatch, check_checkpoint_fits, expected_shapes
from budgetprune.filecheck import pickle_globals
from vitprune.models import create_model


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(MODELS))
def test_expected_shapes_are_the_state_dict_timm_builds(name):
    info = MODELS[name]
    img = info.patch_size * 2
    model = create_model(name, img_size=img, num_classes=7)
    built = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert expected_shapes(info, img, 7) == built


def test_a_fitting_checkpoint_passes_and_another_image_size_is_resampled(tmp_path):
    model = create_model("deit_tiny_patch16_224", img_size=64, num_classes=3)
    path = tmp_path / "w.safetensors"
    save_file(model.state_dict(), str(path))
    info = MODELS["deit_tiny_patch16_224"]
    check_checkpoint_fits(path, info, 64, 3)
    check_checkpoint_fits(path, info, 224, 3)  # pos_embed for a 4x4 grid is resampled to 14x14
    with pytest.raises(CheckpointMismatch, match=r"head.weight \[3, 192\] \(the model needs"):
        check_checkpoint_fits(path, info, 64, 1000)


class _Evil:
    def __reduce__(self):
        return (os.system, ("true",))


def test_the_scan_sees_what_torch_save_names(tmp_path):
    path = tmp_path / "sd.pt"
    torch.save({"model": create_model("deit_tiny_patch16_224", img_size=32).state_dict()}, path)
    import zipfile

    with zipfile.ZipFile(path) as zf:
        data = zf.read(next(n for n in zf.namelist() if n.endswith("data.pkl")))
    assert set(pickle_globals(data)) == {
        "collections OrderedDict",
        "torch FloatStorage",
        "torch._utils _rebuild_tensor_v2",
    }


@pytest.mark.parametrize("protocol", [0, 2, 4, 5])
def test_the_scan_finds_code_at_every_protocol(protocol):
    names = pickle_globals(pickle.dumps({"x": [1, _Evil()]}, protocol=protocol))
    assert any(n.endswith(" system") for n in names), names
