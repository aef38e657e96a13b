"""A checkpoint that runs code when unpickled, or has the wrong shapes, is refused clearly."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from budgetprune.errors import BudgetPruneError
from vitprune.models import create_model

PWNED = Path("/tmp/budgetprune-pwned-ckpt")


class _Evil:
    def __reduce__(self):
        return (open, (str(PWNED), "w"))


def test_pickle_that_runs_code_is_refused(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"pos_embed": _Evil()}, path)
    with pytest.raises(BudgetPruneError) as err:
        create_model("deit_tiny_patch16_224", img_size=32, checkpoint=path)
    assert "weights" in str(err.value).lower() or "unsafe" in str(err.value).lower()
    assert not PWNED.exists()


def test_wrong_shapes_name_the_tensor(tmp_path):
    model = create_model("deit_tiny_patch16_224", img_size=32)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    state["head.weight"] = torch.zeros(7, 192)
    path = tmp_path / "w.safetensors"
    save_file(state, str(path))
    with pytest.raises(BudgetPruneError, match="head.weight"):
        create_model("deit_tiny_patch16_224", img_size=32, checkpoint=path)


def test_integer_tensors_are_refused_not_cast(tmp_path):
    model = create_model("deit_tiny_patch16_224", img_size=32)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    state["norm.weight"] = torch.ones(192, dtype=torch.int32)
    path = tmp_path / "i.safetensors"
    save_file(state, str(path))
    with pytest.raises(BudgetPruneError, match="norm.weight torch.int32"):
        create_model("deit_tiny_patch16_224", img_size=32, checkpoint=path)


def test_half_precision_weights_load_as_float32(tmp_path):
    model = create_model("deit_tiny_patch16_224", img_size=32)
    path = tmp_path / "h.safetensors"
    save_file({k: v.half() for k, v in model.state_dict().items()}, str(path))
    loaded = create_model("deit_tiny_patch16_224", img_size=32, checkpoint=path)
    assert loaded.head.weight.dtype == torch.float32
    torch.testing.assert_close(loaded.head.weight, model.head.weight.half().float())
