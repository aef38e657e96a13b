"""NetAdapt greedy shrinking against a MACs predictor: meets the goal, keeps the limits, removes
the least important units first."""

from __future__ import annotations

import random
from dataclasses import replace

import pytest

from budgetprune.errors import BudgetPruneError
from budgetprune.schemas import ArchSpec
from vitprune.cost import macs
from vitprune.strategies import SearchContext, get_strategy, list_strategies
from vitprune.strategies.steps import mlp_chunk


def _ctx(dense: ArchSpec, seed: int = 0, **limits) -> SearchContext:
    rng = random.Random(seed)
    info = dense.info
    heads = [[rng.random() for _ in range(info.num_heads)] for _ in dense.blocks]
    dims = [
        sorted((rng.random() for _ in range(info.head_dim)), reverse=True) for _ in dense.blocks
    ]
    mlp = [
        sorted((rng.random() for _ in range(info.mlp_hidden)), reverse=True) for _ in dense.blocks
    ]
    dense_macs = macs(dense)
    return SearchContext(
        dense=dense,
        head_scores=heads,
        dim_scores=dims,
        mlp_scores=mlp,
        predict_ms=lambda s: 10.0 * macs(s) / dense_macs,
        **limits,
    )


def test_registry():
    assert "netadapt" in list_strategies()
    with pytest.raises(BudgetPruneError, match="available: .*netadapt"):
        get_strategy("nope")


@pytest.mark.parametrize("goal", [9.0, 6.0, 3.5])
def test_meets_the_goal_and_widths_stay_multiples(goal):
    dense = ArchSpec.dense("deit_tiny_patch16_224")
    ctx = _ctx(dense)
    spec = get_strategy("netadapt").propose(ctx, dense, goal)
    assert ctx.predict_ms(spec) <= goal
    assert ctx.predict_ms(spec) > goal - 1.0, "it should not shrink far past the goal"
    for block in spec.blocks:
        assert block.mlp_hidden % ctx.width_multiple == 0
        assert len(block.heads) >= 1


def test_goal_zero_gives_the_smallest_allowed():
    dense = ArchSpec.dense("deit_small_patch16_224")
    ctx = _ctx(dense, min_heads=2, min_mlp_hidden=64)
    spec = get_strategy("netadapt").propose(ctx, dense, 0.0)
    chunk = mlp_chunk(1536, 8)
    for block in spec.blocks:
        assert len(block.heads) == 2
        assert 64 <= block.mlp_hidden < 64 + chunk


def test_keeps_the_most_important_heads():
    dense = ArchSpec.dense("deit_small_patch16_224")
    ctx = _ctx(dense, min_heads=3)
    spec = get_strategy("netadapt").propose(ctx, dense, 0.0)
    for b, block in enumerate(spec.blocks):
        top3 = sorted(range(6), key=lambda h: ctx.head_scores[b][h], reverse=True)[:3]
        assert block.heads == sorted(top3)


def test_never_grows_and_is_monotone():
    dense = ArchSpec.dense("deit_tiny_patch16_224")
    ctx = _ctx(dense, seed=3)
    strategy = get_strategy("netadapt")
    a = strategy.propose(ctx, dense, 7.0)
    b = strategy.propose(ctx, a, 5.0)
    for x, y in zip(a.blocks, b.blocks, strict=True):
        assert set(y.heads) <= set(x.heads) and y.mlp_hidden <= x.mlp_hidden
        assert y.qk_dim <= x.qk_dim and y.v_dim <= x.v_dim


def test_narrows_heads_before_removing_them_when_heads_are_alike():
    """Equal heads, dims of falling importance, cost linear in MACs: a slab of the weakest dims
    costs less than a whole head per MAC saved, so a moderate goal keeps every head (the
    old per-kind pricing removed whole heads first)."""
    dense = ArchSpec.dense("deit_tiny_patch16_224")
    ctx = _ctx(dense)
    ctx.head_scores = [[1.0] * 3 for _ in dense.blocks]
    spec = get_strategy("netadapt").propose(ctx, dense, 7.0)
    assert all(len(block.heads) == 3 for block in spec.blocks)
    assert any(block.qk_dim < 64 for block in spec.blocks)


def test_with_data_the_exchange_rates_are_the_ones_closest_to_the_teacher(job):
    """With calibration data, fit runs the greedy at every rate pair of the grid and keeps the
    sub-network with the lowest KL to the teacher, and returns its rates for later shrinks."""
    from tests.vitprune.strategies.conftest import DENSE_MS
    from vitprune.gates import make_gated
    from vitprune.strategies import UnitRates
    from vitprune.strategies.calibration import calibration_batches, teacher_kl
    from vitprune.strategies.netadapt import RATE_GRID

    ctx, predictor = job()
    strategy = get_strategy("netadapt")
    goal = 0.5 * DENSE_MS
    fitted = strategy.fit(ctx, goal)
    assert predictor.predict(fitted.arch) <= goal
    assert "exchange rates" in fitted.notes[0]
    kl = teacher_kl(
        make_gated(ctx.model, ctx.search.dense), ctx.teacher, calibration_batches(ctx.train)
    )
    losses = {}
    for head, neurons in RATE_GRID:
        at = replace(ctx.search, rates=UnitRates(head=head, neurons=neurons))
        losses[(head, neurons)] = kl(strategy.propose(at, ctx.search.dense, goal))
    assert kl(fitted.arch) == pytest.approx(min(losses.values()))
    assert (fitted.rates.head, fitted.rates.neurons) in losses
    assert len(set(losses.values())) > 1, "every rate pair gave one network: nothing was chosen"


def test_without_data_there_is_nothing_to_fit(job):
    ctx, _ = job(data=False)
    assert get_strategy("netadapt").fit(ctx, 5.0) is None
