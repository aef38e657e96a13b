"""Token pruning: the keep schedule is the mildest one the predictor accepts."""

from __future__ import annotations

import pytest

from tests.vitprune.strategies.conftest import DENSE_MS, assert_hard_form_is_extraction
from vitprune.strategies import get_strategy
from vitprune.strategies.token import MIN_RATIO, keep_schedule, scaled_to, with_tokens


def test_schedule_is_the_mildest_under_the_goal(job):
    ctx, predictor = job()
    dense = ctx.search.dense
    spec = with_tokens(ctx.search, dense, 0.85 * DENSE_MS)
    assert spec.tokens is not None
    assert predictor.predict(spec) <= 0.85 * DENSE_MS
    ratio = spec.tokens.keep[min(spec.tokens.keep)]
    milder = dense.model_copy(update={"tokens": keep_schedule(len(dense.blocks), ratio + 0.05)})
    assert predictor.predict(milder) > 0.85 * DENSE_MS


def test_fit_without_data_is_schedule_only(job):
    ctx, predictor = job(data=False)
    fitted = get_strategy("token").fit(ctx, 0.85 * DENSE_MS)
    assert predictor.predict(fitted.arch) <= 0.85 * DENSE_MS
    assert fitted.curve == [] and any("no data" in n for n in fitted.notes)


def test_fit_with_data_distils_and_shrinks_widths_when_tokens_are_not_enough(job):
    ctx, predictor = job(steps=3)
    fitted = get_strategy("token").fit(ctx, 0.3 * DENSE_MS)
    assert predictor.predict(fitted.arch) <= 0.3 * DENSE_MS
    assert len(fitted.curve) == 3
    assert any("widths cut" in n for n in fitted.notes)
    assert_hard_form_is_extraction(fitted.model, fitted.arch)


def test_the_width_cut_under_tokens_is_the_uniform_pair_the_kl_picks_in_stages(job, monkeypatch):
    """With data, the widths tokens could not spare are cut in stages, each to the uniform
    (dims, neurons) pair under the token schedule that the calibration loss scores lowest:
    here a loss that favours narrow attention."""
    from vitprune.strategies import UnitRates, ratio_search

    monkeypatch.setattr(
        ratio_search, "teacher_kl", lambda g, t, b: lambda spec: spec.blocks[0].qk_dim
    )
    ctx, predictor = job(steps=6)
    goal = 0.3 * DENSE_MS
    fitted = get_strategy("token").fit(ctx, goal)
    arch = fitted.arch
    assert predictor.predict(arch) <= goal and arch.tokens is not None
    base = ctx.search.dense.model_copy(update={"tokens": arch.tokens})
    dims, hidden = min(ratio_search.feasible_pairs(ctx.search, goal, base))
    assert {(b.qk_dim, b.v_dim, b.mlp_hidden) for b in arch.blocks} == {(dims, dims, hidden)}
    stages = [c["phase"] for c in fitted.curve if c["phase"].startswith("widths")]
    assert stages[-1] == "widths3" and sum(n.startswith("stage") for n in fitted.notes) == 3
    assert fitted.rates == UnitRates()
    assert_hard_form_is_extraction(fitted.model, arch)


def test_fit_with_data_learns_the_keep_ratios_against_the_predictor(job, monkeypatch):
    from vitprune.strategies import token

    monkeypatch.setattr(token, "MILDEST", MIN_RATIO)  # no split probe: tokens take the cut
    ctx, predictor = job(steps=10)
    goal = 0.85 * DENSE_MS
    start = with_tokens(ctx.search, ctx.search.dense, goal).tokens
    fitted = get_strategy("token").fit(ctx, goal)
    learned = [c for c in fitted.curve if c["phase"] == "learn keep ratios"]
    assert len(learned) == 6 and len(fitted.curve) == 10, "60% learning, then distillation"
    assert learned[0]["keep"] != learned[-1]["keep"], "the keep fractions trained"
    assert fitted.arch.tokens is not None and fitted.arch.tokens != start
    c = assert_learned_shape_at_the_goal(ctx, fitted.arch, learned[-1]["keep"], goal)
    assert c > 1, "the latency term carried the ratios under the goal: scaled back up"
    assert any("learned" in n for n in fitted.notes)
    assert_hard_form_is_extraction(fitted.model, fitted.arch)


def assert_learned_shape_at_the_goal(ctx, arch, learned: list[float], goal: float) -> float:
    """`arch`'s keep fractions are the learned ones times one c, the largest whose tokens the
    predictor puts under `goal`; returns c."""
    keep = arch.tokens.keep
    c = keep[3] / learned[0]
    expected = {b: f * c for b, f in zip([3, 6, 9], learned, strict=True)}
    assert keep == pytest.approx(expected, rel=1e-3), "the curve logs 4 digits"
    assert ctx.search.predict_ms(arch) <= goal
    wider = {b: f * (1 + 1e-3) for b, f in keep.items()}
    over = arch.model_copy(update={"tokens": arch.tokens.model_copy(update={"keep": wider})})
    assert keep[3] > 0.999 or ctx.search.predict_ms(over) > goal, "the largest such c"
    return c


def test_below_the_token_floor_the_learned_ratios_are_kept_and_widths_take_the_rest(job):
    """A goal tokens alone cannot reach: the keep ratios are learned at the floor schedule's
    latency (not against a goal they could never meet, and then thrown away), then widths
    shrink to the goal."""
    ctx, predictor = job(steps=10)
    goal = 0.6 * DENSE_MS
    fitted = get_strategy("token").fit(ctx, goal)
    assert not any("binary-search schedule kept" in n for n in fitted.notes), fitted.notes
    assert any("widths cut" in n for n in fitted.notes)
    learned = [c for c in fitted.curve if c["phase"] == "learn keep ratios"]
    assert 0 < len(learned) < 6, "fewer learning steps: the widths take part of the cut"
    assert len(fitted.curve) == 10
    token_goal = learned[-1]["goal_ms"]  # the chosen schedule's latency, over the job's goal
    assert token_goal > goal
    tokens_only = ctx.search.dense.model_copy(update={"tokens": fitted.arch.tokens})
    assert_learned_shape_at_the_goal(ctx, tokens_only, learned[-1]["keep"], token_goal)
    assert predictor.predict(fitted.arch) <= goal
    assert_hard_form_is_extraction(fitted.model, fitted.arch)


def test_learned_ratios_over_the_goal_are_scaled_down_together(job):
    """Over the goal by a little, learned ratios keep their shape (what the weights trained
    with); no scaling down to MIN_RATIO reaches a goal far below: None."""
    ctx, predictor = job()
    search = ctx.search
    learned = search.dense.model_copy(
        update={
            "tokens": keep_schedule(12, 0.8).model_copy(update={"keep": {3: 0.9, 6: 0.5, 9: 0.45}})
        }
    )
    goal = 0.97 * predictor.predict(learned)
    scaled = scaled_to(search, learned, goal)
    assert scaled is not None and predictor.predict(scaled) <= goal
    c = scaled.tokens.keep[3] / 0.9
    assert MIN_RATIO <= c < 1
    assert scaled.tokens.keep == pytest.approx({3: 0.9 * c, 6: 0.5 * c, 9: 0.45 * c})
    wider = {b: f * (c + 1e-3) / c for b, f in scaled.tokens.keep.items()}
    over = scaled.model_copy(update={"tokens": scaled.tokens.model_copy(update={"keep": wider})})
    assert predictor.predict(over) > goal, "the largest such scale, not any"
    assert scaled_to(search, learned, 0.2 * DENSE_MS) is None


def test_split_ratios_run_from_what_tokens_alone_allow_to_the_mildest(job):
    from vitprune.strategies.token import MILDEST, split_ratios

    ctx, predictor = job()
    search = ctx.search
    assert split_ratios(search, 1.1 * DENSE_MS) == []
    floor, mid, mildest = split_ratios(search, 0.3 * DENSE_MS)  # below the floor
    assert (floor, mid, mildest) == pytest.approx((MIN_RATIO, (MIN_RATIO + MILDEST) / 2, MILDEST))
    goal = 0.85 * DENSE_MS  # tokens alone meet it
    r = split_ratios(search, goal)[0]
    assert r == with_tokens(search, search.dense, goal).tokens.keep[3]


def test_the_split_between_tokens_and_widths_is_chosen_after_tuning(job, monkeypatch):
    """Each split is distilled on a copy, then scored; the lowest score wins and the job's
    own weights are untouched by the probes."""
    import torch

    from vitprune.strategies import token

    ctx, predictor = job(steps=6)
    floor, mid, mildest = token.split_ratios(ctx.search, 0.3 * DENSE_MS)
    before = {k: v.clone() for k, v in ctx.model.state_dict().items()}
    tuned: list[int] = []
    real_tune = token.tune_hard

    def counting(gated, spec, c, steps, curve, phase):
        if phase.startswith("probe"):
            tuned.append(steps)
        real_tune(gated, spec, c, steps, curve, phase)

    monkeypatch.setattr(token, "tune_hard", counting)
    monkeypatch.setattr(
        token, "teacher_kl", lambda g, t, b: lambda spec: abs(spec.tokens.keep[3] - mid)
    )
    fitted = get_strategy("token").fit(ctx, 0.3 * DENSE_MS)
    assert tuned == [1, 1, 1]
    assert any(f"r={mid:.2f} chosen" in n for n in fitted.notes), fitted.notes
    assert predictor.predict(fitted.arch) <= 0.3 * DENSE_MS
    for k, v in ctx.model.state_dict().items():
        assert torch.equal(v, before[k]), k


@pytest.mark.parametrize("favoured", ["mid", "mildest", "edge"])
def test_a_milder_split_is_probed_only_when_the_mildest_scores_best(job, monkeypatch, favoured):
    """The minimum at the mildest split tried may lie beyond it: EDGE is probed then, and wins
    when it scores lower; a minimum inside the range costs no extra probe."""
    from vitprune.strategies import token

    ctx, _ = job(steps=6)
    goal = 0.3 * DENSE_MS
    floor, mid, mildest = token.split_ratios(ctx.search, goal)
    target = {"mid": mid, "mildest": mildest, "edge": token.EDGE}[favoured]
    probed: list[float] = []
    real_tune = token.tune_hard

    def recording(gated, spec, c, steps, curve, phase):
        if phase.startswith("probe"):
            probed.append(float(phase.removeprefix("probe-")))
        real_tune(gated, spec, c, steps, curve, phase)

    monkeypatch.setattr(token, "tune_hard", recording)
    monkeypatch.setattr(  # the score of a split: how far its first keep ratio is from target
        token, "teacher_kl", lambda g, t, b: lambda spec: abs(spec.tokens.keep[3] - target)
    )
    fitted = get_strategy("token").fit(ctx, goal)
    edge_probed = favoured != "mid"
    expected = [floor, mid, mildest] + ([token.EDGE] if edge_probed else [])
    assert probed == pytest.approx(expected, abs=1e-4)
    assert any(f"r={target:.2f} chosen" in n for n in fitted.notes), fitted.notes
