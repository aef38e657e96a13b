"""Soft token pruning with learnable keep fractions: its hard limit is the extracted token-pruned
model, its expected latency is the predictor's, and both losses reach the keep fractions."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from budgetprune.schemas import ArchSpec
from budgetprune.schemas.arch import TokenSpec
from latency_tables import LutPredictor, load_table
from tests.vitprune.strategies.conftest import batches, predictor_for
from vitprune.extract import extract_subnet
from vitprune.soft_tokens import SoftTokenViT
from vitprune.strategies import expected_ms_fn

TINY = "deit_tiny_patch16_224"
BLOCKS = [3, 6, 9]
SHARES = [0.75, 2 / 3, 0.5]  # 4 patches at 32 px: 3, 2, then 1 kept
EXACT = TokenSpec(keep={3: 0.75, 6: 0.5, 9: 0.25})


def _soft(make_model, **kw) -> tuple[SoftTokenViT, ArchSpec]:
    dense = ArchSpec.dense(TINY, img_size=32, num_classes=2)
    return SoftTokenViT(make_model(TINY, 32, 2), dense, BLOCKS, SHARES, **kw), dense


def test_fractions_are_the_shares_multiplied_and_decrease(make_model):
    soft, _ = _soft(make_model)
    torch.testing.assert_close(soft.fractions(), torch.tensor([0.75, 0.5, 0.25]))
    assert soft.token_spec().keep == pytest.approx(EXACT.keep)


def test_sharp_masks_compute_what_the_extracted_model_does(make_model):
    """Masks near 0/1 at whole token counts: the soft model is the hard token-pruned one
    (dropped tokens leave attention, the package token carries their attention mass)."""
    soft, dense = _soft(make_model, sharpness=0.01)
    soft.eval()
    hard = extract_subnet(soft.dense_model(), dense.model_copy(update={"tokens": EXACT})).eval()
    x = batches(1, seed=3)[0][0]
    with torch.no_grad():
        torch.testing.assert_close(soft(x), hard(x), atol=2e-3, rtol=2e-3)


def test_expected_latency_is_the_predictors_at_whole_counts(make_model):
    soft, dense = _soft(make_model)
    predictor = predictor_for(dense)
    expected = expected_ms_fn(predictor)(soft)
    spec = dense.model_copy(update={"tokens": EXACT})
    assert float(expected.detach()) == pytest.approx(predictor.predict(spec), rel=1e-4)


def test_table_form_is_the_lut_predictors(make_model):
    from tests.vitprune.strategies.test_latency import TABLES

    path = next(TABLES.glob("*deit_tiny_patch16_224__224__*.json"))
    predictor = LutPredictor(load_table(path))
    dense = ArchSpec.dense(TINY)
    shares = [0.5, 0.5, 4 / 7]  # 196 patches: 98, 49, 28
    soft = SoftTokenViT(make_model(TINY, 224, 1000), dense, BLOCKS, shares)
    spec = dense.model_copy(update={"tokens": TokenSpec(keep={3: 0.5, 6: 0.25, 9: 1 / 7})})
    expected = float(expected_ms_fn(predictor)(soft).detach())
    assert expected == pytest.approx(predictor.predict(spec), rel=1e-3)


def test_latency_pushes_every_fraction_down(make_model):
    soft, dense = _soft(make_model)
    expected_ms_fn(predictor_for(dense))(soft).backward()
    grads = soft.share_logits.grad
    assert (grads > 0).all(), "keeping more tokens never costs less"


def test_the_task_loss_reaches_the_keep_fractions(make_model):
    """Through the masks: the accuracy side of the trade-off has a gradient too."""
    soft, _ = _soft(make_model)
    soft.train()
    x, y = batches(1, seed=5)[0]
    F.cross_entropy(soft(x), y).backward()
    grads = soft.share_logits.grad
    assert grads is not None and math.isfinite(float(grads.abs().sum()))
    assert float(grads.abs().sum()) > 0


def test_refuses_a_pooling_it_cannot_mask(make_model):
    model = make_model(TINY, 32, 2)
    model.global_pool = "map"
    with pytest.raises(ValueError, match="pooling"):
        SoftTokenViT(model, ArchSpec.dense(TINY, img_size=32, num_classes=2), BLOCKS, SHARES)
