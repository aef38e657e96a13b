from __future__ import annotations

import pytest
import torch

from vitprune.extract import extract_subnet
from vitprune.importance import head_scores, mlp_scores, sort_by_magnitude_
from vitprune.sample import sample_arch


@pytest.mark.parametrize(
    ("name", "pool"),
    [
        ("deit_tiny_patch16_224", None),
        ("deit_tiny_distilled_patch16_224", None),
        ("vit_small_patch32_224", "avg"),
    ],
)
def test_sorting_preserves_the_function(make_model, images, name: str, pool: str | None) -> None:
    from vitprune.models import create_model

    model = create_model(name, img_size=64, num_classes=10, global_pool=pool)
    with torch.no_grad():
        for blk in model.blocks:  # break timm's uniform init so the permutation is not identity
            blk.mlp.fc1.weight.mul_(torch.rand(blk.mlp.fc1.out_features, 1) + 0.5)
            blk.attn.qkv.weight.mul_(torch.rand(blk.attn.qkv.out_features, 1) + 0.5)
    before = [b.mlp.fc1.weight.clone() for b in model.blocks]
    x = images(2, 64)
    with torch.no_grad():
        y0 = model(x)
        sort_by_magnitude_(model)
        y1 = model(x)
    assert any(
        not torch.equal(b0, b.mlp.fc1.weight) for b0, b in zip(before, model.blocks, strict=True)
    )
    assert (y0 - y1).abs().max() < 1e-4


def test_scores_are_descending_after_sorting(tiny) -> None:
    for block in mlp_scores(tiny):
        assert block == sorted(block, reverse=True)
        assert len(block) == 768
    attn = tiny.blocks[0].attn
    h, d = attn.num_heads, attn.head_dim
    w = torch.cat([attn.qkv.weight, attn.qkv.bias[:, None]], 1).reshape(3, h, d, -1)
    qk = w[0].norm(dim=-1) * w[1].norm(dim=-1)
    v = w[2].norm(dim=-1) * attn.proj.weight.t().reshape(h, d, -1).norm(dim=-1)
    assert torch.all(qk[:, :-1] >= qk[:, 1:])
    assert torch.all(v[:, :-1] >= v[:, 1:])


def test_sorting_is_idempotent_and_keeps_head_order(tiny) -> None:
    heads = head_scores(tiny)
    state = {k: v.clone() for k, v in tiny.state_dict().items()}
    sort_by_magnitude_(tiny)
    assert all(torch.equal(state[k], v) for k, v in tiny.state_dict().items())
    assert head_scores(tiny) == heads
    assert len(heads) == 12 and all(len(b) == 3 for b in heads)
    assert all(s > 0 for b in heads for s in b)


def test_head_scores_do_not_move_with_sorting(make_model) -> None:
    from vitprune.models import create_model

    model = create_model("deit_tiny_patch16_224", img_size=32, num_classes=10)
    with torch.no_grad():
        model.blocks[0].attn.qkv.weight[2 * 192 + 64 : 2 * 192 + 128] *= 10  # head 1's values
    scores = head_scores(model)
    sort_by_magnitude_(model)
    after = head_scores(model)
    assert sum(after, []) == pytest.approx(sum(scores, []), rel=1e-5)
    assert max(range(3), key=lambda h: scores[0][h]) == 1


def test_scoring_refuses_a_pruned_model(tiny) -> None:
    sub = extract_subnet(tiny, sample_arch("deit_tiny_patch16_224", 0, img_size=32, num_classes=10))
    with pytest.raises(ValueError, match="dense"):
        head_scores(sub)
