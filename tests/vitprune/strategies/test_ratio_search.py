"""Ratio search: attention and FFN ratios follow their costs; iterative stages with tuning."""

from __future__ import annotations

import copy
import re
from dataclasses import replace

from tests.vitprune.strategies.conftest import DENSE_MS, assert_hard_form_is_extraction, batches
from vitprune.cost import block_macs
from vitprune.gates import make_gated
from vitprune.strategies import get_strategy
from vitprune.strategies.calibration import teacher_kl
from vitprune.strategies.ratio_search import best_ratios, feasible_pairs, uniform_spec


def _weighted(attn_weight: float):
    """ms with attention MACs weighted `attn_weight` times the FFN's (5 tokens at 32x32)."""

    def predict(spec):
        blocks = [b.model_copy(update={"mlp": False, "mlp_hidden": 0}) for b in spec.blocks]
        attn_only = spec.model_copy(update={"blocks": blocks})
        attn = sum(block_macs(attn_only, b, 5) for b in range(len(blocks)))
        mlp = sum(2 * 5 * 192 * b.mlp_hidden for b in spec.blocks if b.mlp)
        return (attn_weight * attn + mlp) / 1e6

    return predict


def test_ratios_follow_the_costs(job):
    ctx, _ = job()
    dense = ctx.search.dense
    flat = [[1.0] * 64 for _ in dense.blocks]  # equal importance: only costs decide
    ratios = {}
    for weight in (8.0, 0.125):
        predict = _weighted(weight)
        search = replace(
            ctx.search,
            dim_scores=flat,
            mlp_scores=[[1.0] * 768 for _ in dense.blocks],
            predict_ms=predict,
        )
        goal = 0.6 * predict(dense)
        dims, hidden = best_ratios(search, goal)
        assert predict(uniform_spec(dense, dims, hidden)) <= goal
        ratios[weight] = (dims / 64, hidden / 768)
    assert ratios[8.0][0] < ratios[8.0][1], "costly attention is cut more"
    assert ratios[0.125][0] > ratios[0.125][1], "costly FFN is cut more"


def test_fit_in_stages_with_tuning(job):
    ctx, predictor = job(steps=6)
    fitted = get_strategy("ratio_search").fit(ctx, 0.6 * DENSE_MS)
    assert predictor.predict(fitted.arch) <= 0.6 * DENSE_MS
    assert [row["phase"] for row in fitted.curve] == ["stage1"] * 2 + ["stage2"] * 2 + [
        "stage3"
    ] * 2
    assert sum("stage" in n for n in fitted.notes) == 3
    assert_hard_form_is_extraction(fitted.model, fitted.arch)


def test_a_loss_picks_among_the_pairs_that_meet_the_goal(job):
    """With a loss, the pair is the feasible one it scores lowest, not the one keeping the
    most magnitude: here a loss that favours narrow attention."""
    ctx, predictor = job()
    goal = 0.6 * DENSE_MS
    pairs = feasible_pairs(ctx.search, goal)
    assert len(pairs) > 2 and all(
        predictor.predict(uniform_spec(ctx.search.dense, *p)) <= goal for p in pairs
    )
    assert best_ratios(ctx.search, goal, loss=lambda p: p[0]) == min(pairs)
    assert best_ratios(ctx.search, goal, loss=lambda p: -p[0]) == max(pairs)


def test_the_calibration_loss_is_zero_uncut_and_grows_with_the_cut(job):
    ctx, _ = job()
    dense = ctx.search.dense
    gated = make_gated(copy.deepcopy(ctx.teacher), dense)
    kl = teacher_kl(gated, ctx.teacher, [x for x, _ in batches(2)])
    assert kl(dense) < 1e-6
    assert 0 < kl(uniform_spec(dense, 32, 384)) < kl(uniform_spec(dense, 8, 64))


def test_fit_with_data_picks_pairs_by_the_calibration_loss(job):
    ctx, _ = job(steps=3)
    fitted = get_strategy("ratio_search").fit(ctx, 0.6 * DENSE_MS)
    assert any("KL to the teacher" in n for n in fitted.notes)
    ctx, _ = job(data=False)
    fitted = get_strategy("ratio_search").fit(ctx, 0.6 * DENSE_MS)
    assert not any("KL" in n for n in fitted.notes)


def test_pairs_cut_under_a_token_schedule_keep_it_and_are_wider(job):
    """From a base with a token schedule, the pairs keep the schedule and, the tokens having
    paid part of the cut, are wider than from the dense spec at the same goal."""
    from vitprune.strategies.token import keep_schedule

    ctx, predictor = job()
    dense = ctx.search.dense
    goal = 0.5 * DENSE_MS
    base = dense.model_copy(update={"tokens": keep_schedule(len(dense.blocks), 0.7)})
    plain = dict(feasible_pairs(ctx.search, goal))
    under = dict(feasible_pairs(ctx.search, goal, base))
    assert set(plain) <= set(under)
    assert all(under[d] >= plain[d] for d in plain) and any(under[d] > plain[d] for d in plain)
    spec = uniform_spec(base, *best_ratios(ctx.search, goal, base=base))
    assert spec.tokens == base.tokens and predictor.predict(spec) <= goal


def test_the_last_pair_is_the_kl_picks_neighbour_closest_to_the_teacher_after_tuning(job):
    ctx, _ = job(steps=6)
    goal = 0.6 * DENSE_MS
    fitted = get_strategy("ratio_search").fit(ctx, goal)
    (note,) = [n for n in fitted.notes if n.startswith("last pair by the KL after 1 ")]
    scored = {
        tuple(int(w) for w in pair.split("/")): float(kl)
        for pair, kl in re.findall(r"(\d+/\d+): ([\d.]+)", note)
    }
    pairs = feasible_pairs(ctx.search, goal)
    first = pairs.index(min(scored))
    assert len(scored) >= 2 and sorted(scored) == pairs[first : first + len(scored)]
    block = fitted.arch.blocks[0]
    assert (block.qk_dim, block.mlp_hidden) == min(scored, key=scored.get)
    assert [row["phase"] for row in fitted.curve].count("stage3") == 2, "probes log nothing"


def test_without_steps_the_last_pair_is_not_probed(job):
    ctx, _ = job(steps=0)
    fitted = get_strategy("ratio_search").fit(ctx, 0.6 * DENSE_MS)
    assert any("KL to the teacher" in n for n in fitted.notes)
    assert not any(n.startswith("last pair") for n in fitted.notes)
