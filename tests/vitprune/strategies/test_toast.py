"""ToaSt: training-free; calibration reorders FFN channels without changing the function."""

from __future__ import annotations

import copy
from dataclasses import replace

import pytest
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


def test_heads_are_narrowed_and_without_data_magnitude_is_used(job):
    """Coupled per-head pruning: q/k and v dims go in slabs from every kept head, not only
    whole heads (which lost 3.6 points at 35% of the latency on CIFAR-10)."""
    ctx, predictor = job(data=False)
    fitted = get_strategy("toast").fit(ctx, 0.5 * DENSE_MS)
    assert predictor.predict(fitted.arch) <= 0.5 * DENSE_MS
    assert any(b.qk_dim < 64 for b in fitted.arch.blocks), "heads narrowed"
    assert all(b.qk_dim == b.v_dim for b in fitted.arch.blocks), "q/k and v dims coupled"
    assert any("magnitude" in n for n in fitted.notes)


def test_with_data_the_exchange_rates_are_chosen_by_kl(job):
    """As netadapt's, toast's greedy runs at every rate pair and keeps the sub-network closest
    to the teacher, here on the calibration scores and the reordered channels."""
    from vitprune.gates import make_gated
    from vitprune.strategies import UnitRates
    from vitprune.strategies.calibration import calibration_batches, teacher_kl
    from vitprune.strategies.netadapt import RATE_GRID
    from vitprune.strategies.toast import _reorder_neurons_, calibration_scores

    ctx, predictor = job()
    goal = 0.5 * DENSE_MS
    strategy = get_strategy("toast")
    fitted = strategy.fit(ctx, goal)
    assert predictor.predict(fitted.arch) <= goal
    assert any("exchange rates" in n for n in fitted.notes)
    calib = calibration_batches(ctx.train)
    model = copy.deepcopy(ctx.model)
    heads, neurons = calibration_scores(model, calib)
    scored = replace(ctx.search, head_scores=heads, mlp_scores=_reorder_neurons_(model, neurons))
    kl = teacher_kl(make_gated(model, ctx.search.dense), ctx.teacher, calib)
    dense = ctx.search.dense
    at = {(h, n): replace(scored, rates=UnitRates(head=h, neurons=n)) for h, n in RATE_GRID}
    losses = {pair: kl(strategy.propose(c, dense, goal)) for pair, c in at.items()}
    assert kl(fitted.arch) == pytest.approx(min(losses.values()))
    assert (fitted.rates.head, fitted.rates.neurons) in losses
