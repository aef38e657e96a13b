"""The differentiable expected latency equals the hard prediction on 0/1 probabilities."""

from __future__ import annotations

import pytest
import torch

from budgetprune.schemas import ArchSpec, TokenSpec
from latency_tables import LutPredictor
from latency_tables.schema import BlockContext
from latency_tables.torch_expect import BlockProbs, expected_latency, gate_probs
from vitprune.sample import sample_arch

from .conftest import TINY


def _hard_probs(spec: ArchSpec) -> list[BlockProbs]:
    info = spec.info
    out = []
    for b in spec.blocks:
        heads = torch.zeros(info.num_heads)
        heads[b.heads] = 1.0
        out.append(
            BlockProbs(
                attn=torch.tensor(float(b.attn)),
                mlp=torch.tensor(float(b.mlp)),
                heads=heads,
                qk=(torch.arange(info.head_dim) < b.qk_dim).float(),
                v=(torch.arange(info.head_dim) < b.v_dim).float(),
                neurons=(torch.arange(info.mlp_hidden) < b.mlp_hidden).float(),
            )
        )
    return out


@pytest.mark.parametrize("seed", range(6))
def test_equals_the_hard_prediction_on_zero_one_probabilities(macs_table, seed):
    spec = sample_arch(TINY, seed=seed, img_size=64, tokens=seed % 2 == 1)
    # blocks dearer inside whole models on few tokens (a device whose cache the model outgrows)
    context = BlockContext(
        tokens=macs_table.attention.tokens, factor=[1.6, 1.3, 1.1], depths=[1, 12]
    )
    table = macs_table.model_copy(update={"context": context})
    predictor = LutPredictor(table)
    got = expected_latency(predictor, spec, _hard_probs(spec))
    assert float(got) == pytest.approx(predictor.predict(spec), rel=1e-5)
    raw = expected_latency(table, spec, _hard_probs(spec))
    assert float(raw) == pytest.approx(predictor.raw(spec), rel=1e-5)


def test_gradients_reach_every_gate_and_opening_costs_time(macs_table):
    from vitprune.gates import make_gated
    from vitprune.models import create_model

    tokens = TokenSpec(keep={4: 0.5})
    gated = make_gated(create_model(TINY, img_size=64), tokens=tokens, init_logit=0.0)
    template = ArchSpec.dense(TINY, 64).model_copy(update={"tokens": tokens})
    ms = expected_latency(macs_table, template, gate_probs(gated))
    ms.backward()
    grads = torch.cat([g.logits.grad.flatten() for g in gated.gates()])
    assert torch.all(grads >= 0) and torch.all(grads[:2] > 0)
    block = gated.gated_blocks[0]
    assert float(block.mlp.neuron_gate.logits.grad.sum()) > 0
    assert float(block.attn_gate.logits.grad) > 0


def test_probabilities_for_the_wrong_depth_are_refused(macs_table):
    spec = ArchSpec.dense(TINY, 64)
    with pytest.raises(ValueError, match="blocks"):
        expected_latency(macs_table, spec, _hard_probs(spec)[:3])
