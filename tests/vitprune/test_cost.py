from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch.utils.flop_counter import FlopCounterMode

from budgetprune.schemas.arch import ArchSpec
from vitprune.cost import macs, params, tokens_per_block
from vitprune.extract import extract_subnet
from vitprune.sample import sample_arch

PROPERTY = settings(
    max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


def _counted(model: torch.nn.Module, img_size: int) -> tuple[int, int]:
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(torch.randn(1, 3, img_size, img_size))
    flops = counter.get_total_flops()
    assert flops % 2 == 0
    return flops // 2, sum(p.numel() for p in model.parameters())


@PROPERTY
@given(
    name=st.sampled_from(
        ["deit_tiny_patch16_224", "deit_tiny_distilled_patch16_224", "vit_small_patch32_224"]
    ),
    seed=st.integers(0, 100_000),
    tokens=st.booleans(),
    num_classes=st.sampled_from([0, 10]),
)
def test_cost_matches_flop_counter_and_parameters(make_model, name, seed, tokens, num_classes):
    spec = sample_arch(name, seed, img_size=64, num_classes=num_classes, tokens=tokens)
    counted_macs, counted_params = _counted(
        extract_subnet(make_model(name, 64, num_classes), spec), 64
    )
    # every matmul is counted, and only matmuls: the two agree exactly
    assert macs(spec) == counted_macs
    assert params(spec) == counted_params


@pytest.mark.slow
def test_dense_deit_small_at_224_matches_published_numbers() -> None:
    spec = ArchSpec.dense("deit_small_patch16_224")
    assert macs(spec) == pytest.approx(4.6e9, rel=0.02)  # DeiT paper: 4.6 GFLOPs (MACs)
    assert params(spec) == pytest.approx(22.05e6, rel=0.01)
    from vitprune.models import create_model

    counted_macs, counted_params = _counted(create_model("deit_small_patch16_224"), 224)
    assert (macs(spec), params(spec)) == (counted_macs, counted_params)


def test_dense_deit_tiny_numbers() -> None:
    spec = ArchSpec.dense("deit_tiny_patch16_224")
    assert macs(spec) == pytest.approx(1.26e9, rel=0.02)
    assert params(spec) == 5_717_416  # timm's deit_tiny_patch16_224
    assert tokens_per_block(spec) == [197] * 12


def test_pruning_reduces_cost_monotonically() -> None:
    dense = ArchSpec.dense("deit_tiny_patch16_224", img_size=64, num_classes=10)
    smaller = dense.model_copy(deep=True)
    smaller.blocks[0].mlp_hidden = 100
    no_attn = smaller.model_copy(deep=True)
    no_attn.blocks[1].attn, no_attn.blocks[1].heads = False, []
    assert macs(dense) > macs(smaller) > macs(no_attn)
    assert params(dense) > params(smaller) > params(no_attn)


def test_cost_imports_without_torch() -> None:
    code = (
        "import sys; sys.modules['torch'] = None; sys.modules['timm'] = None\n"
        "from budgetprune.schemas.arch import ArchSpec\n"
        "import vitprune\n"
        "from vitprune.cost import macs, params\n"
        "from vitprune.sample import sample_arch\n"
        "from vitprune.rounding import round_spec\n"
        "s = sample_arch('deit_tiny_patch16_224', 1)\n"
        "print(macs(round_spec(s, 8)) > 0, params(s) > 0, vitprune.macs is macs)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["True", "True", "True"]
