from __future__ import annotations

import copy

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

from budgetprune.errors import InvalidArchError
from budgetprune.schemas.arch import ArchSpec, BlockSpec, TokenSpec
from vitprune.cost import tokens_per_block
from vitprune.extract import extract_subnet
from vitprune.layers import AttnOnlyBlock, MlpOnlyBlock, PrunedAttention, TokenPrunedBlock
from vitprune.masking import hard_mask_
from vitprune.sample import sample_arch

TINY = "deit_tiny_patch16_224"
PROPERTY = settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@st.composite
def block_specs(draw, num_heads: int = 3, head_dim: int = 64, hidden: int = 768) -> BlockSpec:
    attn = draw(st.booleans() | st.just(True))
    mlp = draw(st.booleans() | st.just(True))
    heads = draw(st.sets(st.integers(0, num_heads - 1), min_size=1)) if attn else set()
    return BlockSpec(
        attn=attn,
        heads=sorted(heads),
        qk_dim=draw(st.integers(1, head_dim)) if attn else 0,
        v_dim=draw(st.integers(1, head_dim)) if attn else 0,
        mlp=mlp,
        mlp_hidden=draw(st.integers(1, hidden)) if mlp else 0,
    )


@st.composite
def arch_specs(draw, model: str = TINY, img_size: int = 32) -> ArchSpec:
    blocks = [draw(block_specs()) for _ in range(12)]
    return ArchSpec(model=model, img_size=img_size, num_classes=10, blocks=blocks)


def _masked_and_extracted(model: nn.Module, spec: ArchSpec, x: torch.Tensor):
    sub = extract_subnet(model, spec)
    masked = copy.deepcopy(model)
    hard_mask_(masked, spec)
    with torch.no_grad():
        return masked(x), sub(x), sub


@PROPERTY
@given(spec=arch_specs())
def test_extracted_equals_hard_masked(make_model, images, spec: ArchSpec) -> None:
    model = make_model()
    masked, extracted, _ = _masked_and_extracted(model, spec, images(2, 32))
    assert (masked - extracted).abs().max() < 1e-4
    with torch.no_grad():
        dense = model(images(2, 32))
    # the spread-out weights make pruning visible: a test that cannot fail proves nothing
    if sum(len(b.heads) * b.qk_dim for b in spec.blocks) < 12 * 3 * 64 // 2:
        assert (dense - extracted).abs().max() > 1e-3


@PROPERTY
@given(seed=st.integers(0, 10_000))
def test_extracted_equals_hard_masked_distilled(make_model, images, seed: int) -> None:
    name = "deit_tiny_distilled_patch16_224"
    spec = sample_arch(name, seed, img_size=32, num_classes=10, drop_prob=0.3)
    masked, extracted, _ = _masked_and_extracted(make_model(name), spec, images(2, 32))
    assert (masked - extracted).abs().max() < 1e-4


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 10_000))
def test_extracted_equals_hard_masked_avg_pool_patch32(make_model, images, seed: int) -> None:
    name = "vit_small_patch32_224"
    spec = sample_arch(name, seed, img_size=64, num_classes=10)
    masked, extracted, _ = _masked_and_extracted(
        make_model(name, 64, 10, "avg"), spec, images(2, 64)
    )
    assert (masked - extracted).abs().max() < 1e-4


def test_dense_spec_extracts_the_same_model(tiny, images) -> None:
    spec = ArchSpec.dense(TINY, img_size=32, num_classes=10)
    sub = extract_subnet(tiny, spec)
    x = images(2, 32)
    with torch.no_grad():
        assert (sub(x) - tiny(x)).abs().max() < 1e-5
    assert sum(p.numel() for p in sub.parameters()) == sum(p.numel() for p in tiny.parameters())


def test_extraction_is_physical_and_leaves_the_source_alone(tiny, images) -> None:
    state = {k: v.clone() for k, v in tiny.state_dict().items()}
    blocks = [BlockSpec(heads=[0, 2], qk_dim=16, v_dim=40, mlp_hidden=100)] * 12
    spec = ArchSpec(model=TINY, img_size=32, num_classes=10, blocks=blocks)
    sub = extract_subnet(tiny, spec)
    attn = sub.blocks[3].attn
    assert isinstance(attn, PrunedAttention)
    assert (attn.num_heads, attn.qk_dim, attn.v_dim) == (2, 16, 40)
    assert attn.qkv.weight.shape == (2 * (16 + 16 + 40), 192)
    assert attn.proj.weight.shape == (192, 80)
    assert attn.scale == pytest.approx(64**-0.5)  # the dense scale, not qk_dim's
    assert sub.blocks[3].mlp.fc1.weight.shape == (100, 192)
    assert sub.blocks[3].mlp.fc2.weight.shape == (192, 100)
    assert all(torch.equal(state[k], v) for k, v in tiny.state_dict().items())
    feats = sub.forward_features(images(1, 32))
    assert feats.shape == (1, 5, 192)
    assert sub.forward_head(feats).shape == (1, 10)


def test_dropped_branches_leave_no_modules(tiny, images) -> None:
    full = BlockSpec(heads=[0, 1, 2], qk_dim=64, v_dim=64, mlp_hidden=768)
    blocks = [full.model_copy() for _ in range(12)]
    blocks[1] = BlockSpec(attn=False, mlp_hidden=768)
    blocks[2] = BlockSpec(heads=[1], qk_dim=64, v_dim=64, mlp=False)
    blocks[3] = BlockSpec(attn=False, mlp=False)
    spec = ArchSpec(model=TINY, img_size=32, num_classes=10, blocks=blocks)
    sub = extract_subnet(tiny, spec)
    assert isinstance(sub.blocks[1], MlpOnlyBlock) and not hasattr(sub.blocks[1], "attn")
    assert isinstance(sub.blocks[2], AttnOnlyBlock) and not hasattr(sub.blocks[2], "mlp")
    assert isinstance(sub.blocks[3], nn.Identity)
    masked = copy.deepcopy(tiny)
    hard_mask_(masked, spec)
    x = images(2, 32)
    with torch.no_grad():
        assert (sub(x) - masked(x)).abs().max() < 1e-4


def test_refuses_specs_that_do_not_fit(tiny) -> None:
    spec = sample_arch(TINY, 3, img_size=64, num_classes=10)
    with pytest.raises(InvalidArchError, match="img_size"):
        extract_subnet(tiny, spec)
    spec = sample_arch(TINY, 3, img_size=32, num_classes=10)
    sub = extract_subnet(tiny, spec)
    with pytest.raises(InvalidArchError, match="already pruned"):
        extract_subnet(sub, spec)
    with pytest.raises(InvalidArchError, match="not a dense"):
        extract_subnet(tiny, sample_arch("vit_small_patch16_224", 0, img_size=32, num_classes=10))


def _token_spec(keep: dict[int, float], package: bool = True, seed: int = 0) -> ArchSpec:
    spec = sample_arch(TINY, seed, img_size=64, num_classes=10)
    return spec.model_copy(update={"tokens": TokenSpec(keep=keep, package_token=package)})


@pytest.mark.parametrize("package", [True, False])
def test_token_pruning_runs_on_the_planned_token_counts(make_model, images, package) -> None:
    model = make_model(TINY, 64, 10)
    spec = _token_spec({2: 0.5, 5: 0.25, 9: 0.1}, package)
    sub = extract_subnet(model, spec)
    seen: list[int] = []
    for blk in sub.blocks:
        blk.register_forward_hook(lambda m, i, o: seen.append(o.shape[1]))
    with torch.no_grad():
        sub(images(1, 64))
    assert seen == tokens_per_block(spec)
    p = int(package)
    assert seen == [17, 17, 9 + p, 9 + p, 9 + p, 5 + p, 5 + p, 5 + p, 5 + p, 3 + p, 3 + p, 3 + p]
    assert isinstance(sub.blocks[2], TokenPrunedBlock)


def test_token_selector_keeps_the_tokens_the_class_token_attends_to(make_model, images) -> None:
    model = make_model(TINY, 64, 10)
    sub = extract_subnet(model, _token_spec({4: 0.25}))
    x = model.patch_embed(images(1, 64))
    x = model._pos_embed(x)
    for blk in model.blocks[:4]:
        x = blk(x)
    attn = model.blocks[4].attn  # the real class-token attention of block 4
    h = attn.num_heads
    qkv = attn.qkv(model.blocks[4].norm1(x)).reshape(1, 17, 3, h, 64).permute(2, 0, 3, 1, 4)
    q, k = qkv[0], qkv[1]
    cls_attn = ((q[:, :, :1] * attn.scale) @ k.transpose(-2, -1)).softmax(-1).mean(1)[0, 0]
    selector = sub.blocks[4].selector
    assert torch.allclose(selector.scores(x)[0], cls_attn, atol=1e-5)
    with torch.no_grad():
        out = selector(x)
    top = cls_attn[1:].topk(4).indices + 1
    assert torch.allclose(out[0, 1:5], x[0, top], atol=1e-6)
    rest = [i for i in range(1, 17) if i not in top.tolist()]
    w = cls_attn[rest] / cls_attn[rest].sum()
    assert torch.allclose(out[0, 5], (w[:, None] * x[0, rest]).sum(0), atol=1e-5)


def test_full_keep_ratio_changes_nothing(make_model, images) -> None:
    model = make_model(TINY, 64, 10)
    spec = _token_spec({3: 1.0})
    sub = extract_subnet(model, spec)
    assert not any(isinstance(b, TokenPrunedBlock) for b in sub.blocks)
    with torch.no_grad():
        dense_pruned = extract_subnet(model, spec.model_copy(update={"tokens": None}))
        assert torch.equal(sub(images(1, 64)), dense_pruned(images(1, 64)))
