from __future__ import annotations

import pytest

from budgetprune.catalog import MODELS
from budgetprune.schemas.arch import ArchSpec
from vitprune.cost import macs
from vitprune.rounding import round_spec, round_width
from vitprune.sample import sample_arch


@pytest.mark.parametrize("name", sorted(MODELS))
def test_samples_are_valid_and_deterministic(name: str) -> None:
    for seed in range(5):
        spec = sample_arch(name, seed, tokens=seed % 2 == 1)
        assert spec == sample_arch(name, seed, tokens=seed % 2 == 1)
        assert ArchSpec.model_validate_json(spec.model_dump_json()) == spec
    assert sample_arch(name, 1) != sample_arch(name, 2)


def test_samples_cover_a_wide_range_of_sizes() -> None:
    dense = macs(ArchSpec.dense("deit_small_patch16_224"))
    ratios = [macs(sample_arch("deit_small_patch16_224", s)) / dense for s in range(200)]
    assert min(ratios) < 0.15
    assert max(ratios) > 0.8
    assert len({round(r, 2) for r in ratios}) > 50


def test_options_are_honoured() -> None:
    spec = sample_arch("deit_small_patch16_224", 7, img_size=96, num_classes=3, width_multiple=8)
    assert (spec.img_size, spec.num_classes) == (96, 3)
    for b in spec.blocks:
        assert not b.attn or (b.qk_dim % 8 == 0 and b.v_dim % 8 == 0)
        assert not b.mlp or b.mlp_hidden % 8 == 0
    drops = [sample_arch("deit_tiny_patch16_224", s, drop_prob=0.5) for s in range(20)]
    assert any(not b.attn for s in drops for b in s.blocks)
    assert any(not b.mlp for s in drops for b in s.blocks)
    assert all(sample_arch("deit_tiny_patch16_224", s).tokens is None for s in range(10))
    assert all(sample_arch("deit_tiny_patch16_224", s, tokens=True).tokens for s in range(10))


@pytest.mark.parametrize(
    ("width", "multiple", "full", "expected"),
    [
        (61, 8, 64, 64),
        (60, 8, 64, 64),
        (59, 8, 64, 56),
        (1, 8, 64, 8),
        (64, 8, 64, 64),
        (37, 1, 64, 37),
        (700, 16, 1536, 704),
        (5, 16, 12, 12),
        (13, 8, 64, 16),
    ],
)
def test_round_width(width: int, multiple: int, full: int, expected: int) -> None:
    assert round_width(width, multiple, full) == expected


def test_round_spec_keeps_full_widths_and_validates() -> None:
    spec = sample_arch("deit_tiny_patch16_224", 4)
    rounded = round_spec(spec, 16)
    for before, after in zip(spec.blocks, rounded.blocks, strict=True):
        assert after.heads == before.heads
        if after.attn:
            assert after.qk_dim % 16 == 0
            assert abs(after.qk_dim - before.qk_dim) <= 8 or after.qk_dim == 16
        if after.mlp:
            assert after.mlp_hidden % 16 == 0 or after.mlp_hidden == 768
    dense = ArchSpec.dense("deit_tiny_patch16_224")
    assert round_spec(dense, 48) == dense
    with pytest.raises(ValueError):
        round_width(3, 0, 64)


def test_a_given_level_sets_the_size() -> None:
    for seed in range(5):
        small = sample_arch("deit_tiny_patch16_224", seed, level=0.1)
        large = sample_arch("deit_tiny_patch16_224", seed, level=0.95)
        assert macs(small) < 0.4 * macs(large)
