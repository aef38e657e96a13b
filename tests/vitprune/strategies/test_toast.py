"""ToaSt: training-free; calibration reorders FFN channels without changing the function."""

from __future__ import annotations

import torch

from tests.vitprune.strategies.conftest import DENSE_MS, assert_hard_form_is_extraction, batches
from vitprune.strategies import get_strategy


def test_no_training_and_the_function_is_unchanged(job):
    ctx, predictor = job(steps=100)  # steps are ignored: toast never trains
    fitted = get_strategy("toast").fit(ctx, 0.6 * DENSE_MS)
    assert fitted.curve == []
    assert predictor.predict(fitted.arch) <= 0.6 * DENSE_MS
    x = batches(1, seed=3)[0][0]
    with torch.no_grad():
        torch.testing.assert_close(fitted.model(x), ctx.model.eval()(x), atol=1e-4, rtol=1e-4)
    assert not torch.equal(
        fitted.model.blocks[0].mlp.fc1.weight, ctx.model.blocks[0].mlp.fc1.weight
    ), "calibration reordered the channels"
    assert any("calibration" in n for n in fitted.notes)
    assert_hard_form_is_extraction(fitted.model, fitted.arch)


def test_heads_go_whole_and_without_data_magnitude_is_used(job):
    ctx, predictor = job(data=False)
    fitted = get_strategy("toast").fit(ctx, 0.5 * DENSE_MS)
    assert predictor.predict(fitted.arch) <= 0.5 * DENSE_MS
    assert all(b.qk_dim == b.v_dim == 64 for b in fitted.arch.blocks), "whole heads only"
    assert any("magnitude" in n for n in fitted.notes)
