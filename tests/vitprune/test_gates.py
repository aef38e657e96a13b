from __future__ import annotations

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from budgetprune.schemas.arch import ArchSpec, TokenSpec
from vitprune.cost import macs
from vitprune.extract import extract_subnet
from vitprune.gates import Gate, expected_macs, gates_to_spec, make_gated
from vitprune.sample import sample_arch

TINY = "deit_tiny_patch16_224"
PROPERTY = settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
token_specs = st.none() | st.builds(
    TokenSpec,
    keep=st.dictionaries(st.integers(0, 11), st.floats(0.05, 1.0), min_size=1, max_size=3),
    package_token=st.booleans(),
)


def _randomise_gates(gated, seed: int, mean: float = 0.5) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for gate in gated.gates():
            gate.logits.copy_(torch.randn(gate.logits.shape, generator=g) * 2 + mean)


@PROPERTY
@given(seed=st.integers(0, 10_000), tokens=token_specs, multiple=st.sampled_from([1, 8]))
def test_hard_gates_equal_the_extracted_spec(make_model, images, seed, tokens, multiple) -> None:
    gated = make_gated(make_model(TINY, 64, 10), tokens=tokens)
    _randomise_gates(gated, seed)
    spec = gated.harden(width_multiple=multiple)
    assert spec.tokens == tokens
    sub = extract_subnet(gated.dense_model(), spec)
    gated.eval()
    x = images(2, 64, seed=seed)
    with torch.no_grad():
        assert (gated(x) - sub(x)).abs().max() < 1e-4


@PROPERTY
@given(seed=st.integers(0, 10_000))
def test_hard_form_of_any_spec_with_tokens_equals_extraction(make_model, images, seed) -> None:
    name = "deit_tiny_distilled_patch16_224" if seed % 2 else TINY
    spec = sample_arch(name, seed, img_size=64, num_classes=10, tokens=True, drop_prob=0.2)
    model = make_model(name, 64, 10)
    gated = make_gated(model, spec)
    gated.apply_spec(spec)
    sub = extract_subnet(model, spec)
    with torch.no_grad():
        assert (gated(images(2, 64)) - sub(images(2, 64))).abs().max() < 1e-4


def test_open_gates_in_hard_form_are_the_dense_model(tiny, images) -> None:
    gated = make_gated(tiny)
    spec = gated.harden()
    assert spec == ArchSpec.dense(TINY, 32, 10)
    with torch.no_grad():
        assert (gated(images()) - tiny(images())).abs().max() < 1e-5


def test_soft_gates_are_differentiable_and_stochastic_only_in_training(tiny, images) -> None:
    gated = make_gated(tiny, init_logit=0.5)
    gated.train()
    y1, y2 = gated(images()), gated(images())
    assert (y1 - y2).abs().max() > 1e-4  # Gumbel noise
    (y1.square().mean() + expected_macs(gated) * 1e-9).backward()
    gate_grads = [g.logits.grad for g in gated.gates()]
    assert all(gr is not None for gr in gate_grads)
    assert sum(float(gr.abs().sum()) for gr in gate_grads) > 0
    assert gated.model.blocks[0].block.attn.attn.qkv.weight.grad is not None
    gated.eval()
    with torch.no_grad():
        assert torch.equal(gated(images()), gated(images()))
    assert len(gated.gate_parameters()) == 12 * 6
    assert len(gated.gate_parameters()) + len(gated.weight_parameters()) == len(
        list(gated.parameters())
    )


def test_straight_through_gates_are_binary_forward() -> None:
    gate = Gate(6, init_logit=0.0)
    with torch.no_grad():
        gate.logits.copy_(torch.tensor([-3.0, -1.0, -0.1, 0.1, 1.0, 3.0]))
    gate.eval()
    gate.straight_through = True
    out = gate()
    assert out.tolist() == [0, 0, 0, 1, 1, 1]
    out.sum().backward()
    assert torch.all(gate.logits.grad > 0)


def test_spec_from_gates_closes_units_under_closed_macro_gates(tiny) -> None:
    gated = make_gated(tiny)
    blocks = gated.gated_blocks
    with torch.no_grad():
        blocks[0].attn_gate.logits.fill_(-1)  # macro closed: heads do not matter
        blocks[1].attn.head_gate.logits.fill_(-1)  # every head closed: branch dropped
        blocks[2].mlp.neuron_gate.logits.fill_(-1)  # every neuron closed: branch dropped
        blocks[3].attn.head_gate.logits[1] = -1
        blocks[3].attn.qk_gate.logits[:50] = -1  # 14 open dims
        blocks[3].attn.v_gate.logits.fill_(-1)  # never below one dim
        blocks[4].mlp.neuron_gate.logits[:700] = -1  # 68 open: rounds to 64 with multiple 16
    spec = gates_to_spec(gated)
    assert not spec.blocks[0].attn and spec.blocks[0].heads == []
    assert not spec.blocks[1].attn
    assert not spec.blocks[2].mlp and spec.blocks[2].mlp_hidden == 0
    b3 = spec.blocks[3]
    assert (b3.heads, b3.qk_dim, b3.v_dim) == ([0, 2], 14, 1)
    assert spec.blocks[4].mlp_hidden == 68
    assert gates_to_spec(gated, width_multiple=16).blocks[4].mlp_hidden == 64


def test_expected_macs_tracks_the_cost_model(tiny) -> None:
    gated = make_gated(tiny, init_logit=30.0)
    dense = ArchSpec.dense(TINY, 32, 10)
    assert float(expected_macs(gated).detach()) == pytest.approx(macs(dense), rel=1e-6)
    _randomise_gates(gated, 3)
    with torch.no_grad():
        for gate in gated.gates():  # nearly hard gates: expectation close to the hard spec
            gate.logits.mul_(50)
    spec = gates_to_spec(gated)
    assert float(expected_macs(gated).detach()) == pytest.approx(macs(spec), rel=0.02)


def test_apply_spec_refuses_another_token_plan(tiny) -> None:
    gated = make_gated(tiny)
    spec = sample_arch(TINY, 0, img_size=32, num_classes=10, tokens=True)
    with pytest.raises(ValueError, match="token plan"):
        gated.apply_spec(spec)


def test_gated_state_has_each_weight_once(tiny) -> None:
    gated = make_gated(tiny)
    state = gated.state_dict()
    ptrs = [t.data_ptr() for t in state.values()]
    assert len(ptrs) == len(set(ptrs))
    dense = gated.dense_model()
    assert not any(isinstance(m, Gate) for m in dense.modules())
    assert dense.state_dict().keys() == tiny.state_dict().keys()
