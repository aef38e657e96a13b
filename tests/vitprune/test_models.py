from __future__ import annotations

import pickle

import pytest
import torch
from safetensors.torch import save_file

from budgetprune.catalog import MODELS
from budgetprune.errors import CheckpointError, UnsupportedModelError
from vitprune.models import create_model, load_checkpoint

SMALL_MODELS = [n for n in MODELS if "base" not in n]
BASE_MODELS = [n for n in MODELS if "base" in n]


def _check_built(name: str) -> None:
    info = MODELS[name]
    model = create_model(name, img_size=64, num_classes=7)
    assert not model.training
    assert model.num_prefix_tokens == info.num_prefix_tokens
    assert len(model.blocks) == info.depth
    assert all(not b.attn.fused_attn for b in model.blocks)
    out = model(torch.randn(1, 3, 64, 64))
    assert out.shape == (1, 7)


@pytest.mark.parametrize("name", SMALL_MODELS)
def test_every_small_catalog_model_builds_and_matches(name: str) -> None:
    _check_built(name)


@pytest.mark.slow
@pytest.mark.parametrize("name", BASE_MODELS)
def test_every_base_catalog_model_builds_and_matches(name: str) -> None:
    _check_built(name)


def test_unknown_model_names_the_supported_ones() -> None:
    with pytest.raises(UnsupportedModelError) as err:
        create_model("resnet50")
    assert "deit_tiny_patch16_224" in str(err.value)
    assert "vit_base_patch32_224" in str(err.value)


def test_bad_options_are_clear_errors() -> None:
    with pytest.raises(UnsupportedModelError, match="multiple"):
        create_model("deit_tiny_patch16_224", img_size=40)
    with pytest.raises(UnsupportedModelError, match="token"):
        create_model("deit_tiny_distilled_patch16_224", img_size=32, global_pool="avg")
    with pytest.raises(UnsupportedModelError, match="global_pool"):
        create_model("deit_tiny_patch16_224", img_size=32, global_pool="max")


def test_average_pooling_and_headless() -> None:
    model = create_model("vit_small_patch32_224", img_size=64, num_classes=0, global_pool="avg")
    assert model.global_pool == "avg"
    assert model(torch.randn(1, 3, 64, 64)).shape == (1, 384)


@pytest.mark.parametrize("suffix", [".safetensors", ".pt", ".pth"])
def test_checkpoint_round_trip(tmp_path, suffix: str) -> None:
    src = create_model("deit_tiny_patch16_224", img_size=32, num_classes=5)
    path = tmp_path / f"w{suffix}"
    state = {k: v.contiguous() for k, v in src.state_dict().items()}
    if suffix == ".safetensors":
        save_file(state, str(path))
    else:
        torch.save({"model": state}, path)  # DeiT's own checkpoints wrap the weights
    torch.manual_seed(123)  # a different random init, so equal outputs prove the load
    dst = create_model("deit_tiny_patch16_224", img_size=32, num_classes=5, checkpoint=path)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(src(x), dst(x))


def test_checkpoint_with_wrong_keys_or_shapes(tmp_path) -> None:
    state = create_model("deit_tiny_patch16_224", img_size=32, num_classes=5).state_dict()
    missing = {k: v for k, v in state.items() if k != "head.weight"}
    torch.save(missing, tmp_path / "missing.pt")
    with pytest.raises(CheckpointError, match=r"missing keys head\.weight"):
        create_model(
            "deit_tiny_patch16_224", img_size=32, num_classes=5, checkpoint=tmp_path / "missing.pt"
        )
    with pytest.raises(
        CheckpointError, match=r"wrong shapes head\.bias \(5,\) != \(3,\), head\.weight"
    ):
        load_checkpoint(create_model("deit_tiny_patch16_224", img_size=32, num_classes=3), state)
    with pytest.raises(CheckpointError, match="does not exist"):
        create_model("deit_tiny_patch16_224", checkpoint=tmp_path / "nope.pt")
    (tmp_path / "w.ckpt").write_bytes(b"xx")
    with pytest.raises(CheckpointError, match="unknown format"):
        create_model("deit_tiny_patch16_224", img_size=32, checkpoint=tmp_path / "w.ckpt")


class _Payload:
    def __reduce__(self):
        return (print, ("code ran while loading",))


def test_checkpoint_pickles_cannot_run_code(tmp_path, capsys) -> None:
    path = tmp_path / "evil.pt"
    path.write_bytes(pickle.dumps({"x": _Payload()}, protocol=2))
    with pytest.raises(CheckpointError, match="cannot read"):
        create_model("deit_tiny_patch16_224", img_size=32, checkpoint=path)
    assert "code ran" not in capsys.readouterr().out


def test_checkpoint_for_another_img_size_resamples_position_embedding(tmp_path) -> None:
    src = create_model("deit_tiny_patch16_224", img_size=64, num_classes=5)
    torch.save(src.state_dict(), tmp_path / "w.pt")
    dst = create_model(
        "deit_tiny_patch16_224", img_size=32, num_classes=5, checkpoint=tmp_path / "w.pt"
    )
    assert dst.pos_embed.shape == (1, 1 + 4, 192)
    assert torch.equal(dst.cls_token, src.cls_token)
