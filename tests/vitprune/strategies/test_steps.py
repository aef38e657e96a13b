"""The greedy search's steps: one currency for heads, dim slabs and neuron chunks, and add is the
inverse of remove."""

from __future__ import annotations

from dataclasses import replace

import pytest

from budgetprune.schemas import ArchSpec
from vitprune.strategies import SearchContext
from vitprune.strategies.base import UnitRates
from vitprune.strategies.steps import Steps, mlp_chunk

TINY = "deit_tiny_patch16_224"  # 3 heads of 64 dims, 768 MLP neurons per block


def _flat_ctx(dense: ArchSpec) -> SearchContext:
    info = dense.info
    return SearchContext(
        dense=dense,
        head_scores=[[1.0] * info.num_heads for _ in dense.blocks],
        dim_scores=[[1.0] * info.head_dim for _ in dense.blocks],
        mlp_scores=[[1.0] * info.mlp_hidden for _ in dense.blocks],
        predict_ms=lambda s: 0.0,
    )


def _changed(a: ArchSpec, b: ArchSpec) -> str:
    (diff,) = [i for i, (x, y) in enumerate(zip(a.blocks, b.blocks, strict=True)) if x != y]
    x, y = a.blocks[diff], b.blocks[diff]
    return "head" if x.heads != y.heads else "dims" if x.qk_dim != y.qk_dim else "mlp"


def test_shares_are_shares_of_the_branch():
    """With flat importance a step's share is the part of its branch it moves."""
    dense = ArchSpec.dense(TINY)
    shares = {_changed(dense, s.spec): s.share for s in Steps(_flat_ctx(dense)).removals(dense)}
    assert shares["head"] == pytest.approx(1 / 3)
    assert shares["dims"] == pytest.approx(8 / 64)
    assert shares["mlp"] == pytest.approx(mlp_chunk(768, 8) / 768)
    ctx = replace(_flat_ctx(dense), rates=UnitRates(head=2.0, dims=0.5, neurons=4.0))
    priced = {_changed(dense, s.spec): s.share for s in Steps(ctx).removals(dense)}
    assert priced == pytest.approx(
        {"head": 2 * shares["head"], "dims": 0.5 * shares["dims"], "mlp": 4 * shares["mlp"]}
    )


def test_a_head_of_narrowed_dims_weighs_less():
    dense = ArchSpec.dense(TINY)
    narrow = dense.model_copy(deep=True)
    narrow.blocks[0] = narrow.blocks[0].model_copy(update={"qk_dim": 32, "v_dim": 32})
    ctx = _flat_ctx(dense)
    kept = narrow.blocks[0].heads
    head = [s for s in Steps(ctx).removals(narrow) if s.spec.blocks[0].heads != kept]
    assert head[0].share == pytest.approx(1 / 6)


def test_additions_undo_removals_at_the_same_price():
    dense = ArchSpec.dense(TINY)
    ctx = _flat_ctx(dense)
    steps = Steps(ctx)
    for removed in steps.removals(dense):
        back = [s for s in steps.additions(removed.spec) if s.spec == dense]
        assert len(back) == 1 and back[0].share == pytest.approx(removed.share)


def test_limits_and_dense_widths_bound_the_steps():
    dense = ArchSpec.dense(TINY)
    ctx = _flat_ctx(dense)
    assert list(Steps(ctx).additions(dense)) == []  # nothing to add to the dense model
    smallest = dense.model_copy(deep=True)
    smallest.blocks = [
        b.model_copy(update={"heads": [0], "qk_dim": 8, "v_dim": 8, "mlp_hidden": 16})
        for b in dense.blocks
    ]
    assert list(Steps(ctx).removals(smallest)) == []
