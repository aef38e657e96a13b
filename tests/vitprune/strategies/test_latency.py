"""The differentiable latency equals the predictor on a hard spec, for both predictors, and has
a gradient that closes gates."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from budgetprune.schemas import ArchSpec
from latency_tables import LutPredictor, load_table
from tests.vitprune.strategies.conftest import TINY, predictor_for
from vitprune.gates import make_gated
from vitprune.sample import sample_arch
from vitprune.strategies import expected_ms_fn

TABLES = Path(__file__).resolve().parents[3] / "bench/results/tables"


@torch.no_grad()
def _saturate(gated, spec: ArchSpec) -> None:
    """Logits far on the side of the spec's hard masks: probabilities 0 or 1."""
    gated.apply_spec(spec)
    for gate in gated.gates():
        gate.logits.copy_(torch.where(gate.hard_mask > 0, 30.0, -30.0))


@pytest.mark.parametrize("seed", [0, 1])
def test_linear_form_equals_the_predictor_on_a_hard_spec(make_model, seed):
    spec = sample_arch(TINY, seed=seed, img_size=32, num_classes=2).model_copy(
        update={"tokens": None}
    )
    dense = ArchSpec.dense(TINY, img_size=32, num_classes=2)
    predictor = predictor_for(dense)
    gated = make_gated(make_model(TINY, 32, 2), dense)
    _saturate(gated, spec)
    expected = expected_ms_fn(predictor)(gated)
    assert float(expected.detach()) == pytest.approx(predictor.predict(spec), rel=1e-4)


def test_table_form_equals_the_lut_predictor(make_model):
    path = next(TABLES.glob("*deit_tiny_patch16_224__224__*.json"))
    predictor = LutPredictor(load_table(path))
    dense = ArchSpec.dense(TINY)
    spec = sample_arch(TINY, seed=3).model_copy(update={"tokens": None})
    gated = make_gated(make_model(TINY, 224, 1000), dense)
    _saturate(gated, spec)
    expected = expected_ms_fn(predictor)(gated)
    assert float(expected.detach()) == pytest.approx(predictor.predict(spec), rel=1e-3)


def test_gradient_closes_gates(make_model):
    dense = ArchSpec.dense(TINY, img_size=32, num_classes=2)
    gated = make_gated(make_model(TINY, 32, 2), dense)
    expected_ms_fn(predictor_for(dense))(gated).backward()
    grads = torch.cat([g.logits.grad.flatten() for g in gated.gates()])
    assert (grads >= 0).all() and (grads > 0).any(), "more open gates never cost less"
