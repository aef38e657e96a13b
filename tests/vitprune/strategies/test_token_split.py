"""How much of the cut tokens take: candidates priced by the predictor, judged on data."""

from __future__ import annotations

import math

import pytest

from tests.vitprune.strategies.conftest import DENSE_MS, batches
from vitprune.strategies import get_strategy
from vitprune.strategies.proxy import teacher_gap
from vitprune.strategies.token_split import SHARES, cut_with_share, split_cut


def _shrink():
    return get_strategy("netadapt").propose


def test_every_share_meets_the_goal_and_a_larger_share_keeps_fewer_tokens(job):
    """(The test model has 4 patches: at goals past the token floor every share is one spec.)"""
    ctx, predictor = job()
    goal = 0.85 * DENSE_MS
    specs = [cut_with_share(ctx.search, goal, s, _shrink()) for s in SHARES]
    assert all(predictor.predict(s) <= goal for s in specs)
    last_stage = [s.tokens.keep[9] if s.tokens else 1.0 for s in specs]
    assert last_stage == sorted(last_stage, reverse=True)
    assert last_stage[0] > last_stage[-1]
    widths = [sum(b.mlp_hidden + b.qk_dim for b in s.blocks) for s in specs]
    assert widths[0] < widths[-1], "what tokens do not take, widths do"


def test_the_candidate_closest_to_the_teacher_wins(job):
    ctx, _ = job()
    chosen, tried = split_cut(ctx, 0.85 * DENSE_MS, _shrink())
    assert len(tried) > 1 and not any(math.isnan(s.gap) for s in tried)
    assert len({s.spec.sha256() for s in tried}) == len(tried), "each spec judged once"
    assert chosen.gap == min(s.gap for s in tried)
    judged = [(x, ctx.teacher(x)) for x, _y in batches()]
    for s in tried:  # the gap is the KL of that spec, not of another candidate
        again = teacher_gap(ctx.model, ctx.search.dense, s.spec, judged)
        assert again == pytest.approx(s.gap, rel=1e-4)


def test_a_network_judged_against_itself_has_no_gap(job):
    ctx, _ = job()
    dense = ctx.search.dense
    judged = [(x, ctx.model.eval()(x)) for x, _y in batches()]
    assert teacher_gap(ctx.model, dense, dense, judged) == pytest.approx(0.0, abs=1e-5)
    narrow = cut_with_share(ctx.search, 0.5 * DENSE_MS, 0.5, _shrink())
    assert teacher_gap(ctx.model, dense, narrow, judged) > 1e-3


def test_without_data_tokens_take_the_whole_cut(job):
    ctx, _ = job(data=False)
    chosen, _ = split_cut(ctx, 0.85 * DENSE_MS, _shrink())
    assert math.isnan(chosen.gap)
    assert chosen.spec == cut_with_share(ctx.search, 0.85 * DENSE_MS, 1.0, _shrink())
    assert chosen.spec.blocks == ctx.search.dense.blocks, "tokens alone meet a mild goal"
