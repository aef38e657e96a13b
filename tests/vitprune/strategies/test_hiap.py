"""HiAP: gates trained against the latency goal give an arch under it, the latency term really
pulls the expected latency down, and the returned weights are the ones the hard form used."""

from __future__ import annotations

import copy

import pytest
import torch

from budgetprune.errors import JobCancelledError
from tests.vitprune.strategies.conftest import DENSE_MS, assert_hard_form_is_extraction
from vitprune.gates import make_gated
from vitprune.strategies import get_strategy
from vitprune.strategies.hiap import feasibility


def test_meets_the_goal_and_lowers_expected_latency(job):
    ctx, predictor = job(steps=30)
    goal = 0.6 * DENSE_MS
    fitted = get_strategy("hiap").fit(ctx, goal)
    assert predictor.predict(fitted.arch) <= goal
    expected = [row["expected_ms"] for row in fitted.curve]
    assert len(expected) == 30
    assert expected[0] > goal and expected[-1] <= 1.05 * goal, "the latency term reaches the goal"
    assert fitted.curve[-1]["tau"] < fitted.curve[0]["tau"], "temperature anneals"
    assert fitted.arch != ctx.search.dense
    for block in fitted.arch.blocks:
        if block.mlp:
            assert block.mlp_hidden % 8 == 0 or block.mlp_hidden == 768
    assert_hard_form_is_extraction(fitted.model, fitted.arch)


def test_the_latency_term_is_what_lowers_latency(job):
    """Control: with a goal already met there is no downward pressure (the multiplier only
    pays for reopening units), and latency stays far higher."""
    pressed = get_strategy("hiap").fit(job(steps=10)[0], 0.6 * DENSE_MS)
    free = get_strategy("hiap").fit(job(steps=10)[0], 2 * DENSE_MS)
    assert all(row["lambda"] <= 0 for row in free.curve), "under the goal: no pressure"
    assert pressed.curve[-1]["lambda"] > pressed.curve[0]["lambda"]
    assert free.curve[-1]["expected_ms"] > pressed.curve[-1]["expected_ms"] + 1.0


def test_the_fit_lands_at_the_goal_not_far_under_it(job):
    """The hinge it replaced let momentum carry the gates past the goal and had nothing to
    pull them back: 100 steps of this job closed every unit (1.2 ms at a 3.5 ms goal)."""
    torch.manual_seed(0)  # the Gumbel noise: the same run whatever ran before
    ctx, predictor = job(steps=100)
    goal = 0.35 * DENSE_MS
    fitted = get_strategy("hiap").fit(ctx, goal)
    assert 0.8 * goal <= predictor.predict(fitted.arch) <= goal
    expected = [row["expected_ms"] for row in fitted.curve]
    assert min(expected) > 0.6 * goal, "no deep overshoot on the way"
    assert sum(b.attn for b in fitted.arch.blocks) > 0 and sum(b.mlp for b in fitted.arch.blocks)


def test_the_hard_network_is_held_to_the_goal_in_the_straight_through_phase(job):
    """Before, the last quarter held the expectation over independent gates to the goal, and
    the hardened network came out over it every time in the benchmark (units closed untrained
    after the fit). Now its own predicted latency is what the multipliers see."""
    torch.manual_seed(0)
    ctx, predictor = job(steps=40)
    goal = 0.5 * DENSE_MS
    fitted = get_strategy("hiap").fit(ctx, goal)
    late = [row for row in fitted.curve if row["step"] >= 30]
    assert all(row["expected_ms"] == pytest.approx(row["hard_ms"]) for row in late)
    assert late[-1]["hard_ms"] <= goal
    assert not any("weakest gates closed" in n for n in fitted.notes)
    # the last logged hard network is from before the last optimiser step, which may still
    # flip a head (0.08 ms, 2% of this network: it did on an AMD host, not on an Intel one)
    assert predictor.predict(fitted.arch) == pytest.approx(late[-1]["hard_ms"], rel=0.05)


def test_timing_the_hard_network_on_the_device_corrects_the_latency_term(job):
    """A device 25% faster than the predictor thinks: once the hard network has been timed
    (and the predictor refitted on it), training keeps more of the network than it would have
    without looking."""
    torch.manual_seed(0)
    blind_ctx, _ = job(steps=30)
    goal = 0.5 * DENSE_MS
    blind = get_strategy("hiap").fit(blind_ctx, goal)

    torch.manual_seed(0)
    ctx, predictor = job(steps=30)
    device = copy.deepcopy(predictor)  # what the device really reads: 0.75 x the prediction
    timed = []

    def measure(spec):
        ms = 0.75 * device.predict(spec)
        timed.append(ms)
        predictor.add(spec, ms)
        return ms

    ctx.measure = measure
    seeing = get_strategy("hiap").fit(ctx, goal)
    assert len(timed) == 3
    assert sum("timed on the device" in n for n in seeing.notes) == 3
    assert device.predict(seeing.arch) > device.predict(blind.arch) * 1.05, "kept more"
    # by the refitted predictor, what it delivers is under the goal and nearer to it
    assert predictor.predict(blind.arch) < predictor.predict(seeing.arch) <= goal


def test_a_few_steps_do_not_collapse_the_network(job):
    """Four steps cannot train gates; the result must still be a network, under the goal."""
    ctx, predictor = job(steps=4)
    fitted = get_strategy("hiap").fit(ctx, 0.35 * DENSE_MS)
    assert predictor.predict(fitted.arch) <= 0.35 * DENSE_MS
    kept = sum(b.attn for b in fitted.arch.blocks) + sum(b.mlp for b in fitted.arch.blocks)
    assert kept >= len(fitted.arch.blocks)
    assert any("weakest gates closed" in n for n in fitted.notes)


def test_hiap_token_prunes_tokens_and_gates(job):
    ctx, predictor = job(steps=20)
    fitted = get_strategy("hiap_token").fit(ctx, 0.5 * DENSE_MS)
    assert fitted.arch.tokens is not None and fitted.arch.tokens.keep
    assert predictor.predict(fitted.arch) <= 0.5 * DENSE_MS
    assert_hard_form_is_extraction(fitted.model, fitted.arch)


def test_refuses_without_data(job):
    ctx, _ = job(steps=10, data=False)
    with pytest.raises(ValueError, match="needs a data set"):
        get_strategy("hiap").fit(ctx, 5.0)


def test_cancel_stops_training(job):
    seen = []

    def progress(fraction, **kw):
        seen.append(fraction)
        if len(seen) == 3:
            raise JobCancelledError("cancelled")

    ctx, _ = job(steps=50, progress=progress)
    with pytest.raises(JobCancelledError):
        get_strategy("hiap").fit(ctx, 5.0)
    assert len(seen) == 3


def test_feasibility_penalises_micro_gates_under_a_closed_branch(make_model):
    from budgetprune.schemas import ArchSpec

    model = make_model("deit_tiny_patch16_224", 32, 2)
    gated = make_gated(model, ArchSpec.dense("deit_tiny_patch16_224", 32, 2))
    before = float(feasibility(gated).detach())
    gated.gated_blocks[0].attn_gate.logits.data.fill_(-6.0)  # branch closed, heads still open
    assert float(feasibility(gated).detach()) > before + 0.01
