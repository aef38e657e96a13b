"""Computation-aware soft token pruning (SPViT family): keep ratios trained against the latency
predictor, dropped tokens merged into a package token, then distillation.

Stages sit at a quarter, half and three quarters of the depth. The schedule starts as r, r^2,
r^3 of the patches with r the largest value (binary search) whose predicted latency meets the
goal; with a lookup-table predictor that is the device's own cost of fewer tokens.

With data and steps, the first LEARN_SHARE of the steps then train each stage's keep fraction by
gradient (`vitprune.soft_tokens`): distillation loss plus the latency Lagrangian
(`strategies.lagrangian`) on E[ms], the predictor's expected latency at the soft token counts.
So a stage whose tokens matter keeps more of them and another pays for it, at the same
predicted latency. The rest of the steps distil the hard, extracted form. Without data the
schedule alone is the result. When the chosen schedule (below) is too slow, the keep ratios are
learned at its latency and widths take the rest: ratio_search's staged cut under the token
schedule (the uniform dims/neurons pair closest to the teacher at each of three rising goals,
each distilled), with the learning phase shortened to the share of the cut the tokens take.
The widths were cut by NetAdapt before (whole heads and MLP chunks, at calibrated exchange
rates): at 35% on CIFAR-10 that took half the heads and ended 5.7 points under the uniform
baseline (63.53% against 69.18%, bench/README.md, 2026-12-06).

How much of the cut tokens take is chosen, with data, by a short tuned probe: the schedule the
goal allows by tokens alone (the floor, r = MIN_RATIO, when none does) and milder ones up to
r = MILDEST, widths taking the rest at once (the pair closest to the teacher), each distilled
for a sixth of the job's steps on a throwaway copy and scored by its KL to the teacher on
calibration batches; the lowest wins. Scored before any tuning the KL ranks token cuts far
better than width cuts (at 35% of the latency on CIFAR-10, NetAdapt widths: 0.46 for the
strongest schedule with widths taking the rest, 1.18 for r = 0.9), while after training
width-only cuts were 3-7 points more accurate on two hosts: a token cut loses little at once
and a width cut recovers much, so the splits are compared after some tuning. When the
mildest scores best the minimum may lie beyond it, so one milder split (r = EDGE) is tried
too: at 70% of the latency on CIFAR-10 the three KLs fell towards r = MILDEST on two hosts
(0.083, 0.065, 0.064 and 0.120, 0.078, 0.059). The probes are search compute (like the KL
scoring): the delivered weights never see their steps.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import replace

import torch

from budgetprune.schemas import ArchSpec
from budgetprune.schemas.arch import TokenSpec
from vitprune.compute import autocast, placed
from vitprune.gates import GatedViT, make_gated
from vitprune.soft_tokens import SoftTokenViT
from vitprune.strategies.base import Fitted, SearchContext, TrainContext, register_strategy
from vitprune.strategies.calibration import calibration_batches, teacher_kl
from vitprune.strategies.lagrangian import LatencyLagrangian
from vitprune.strategies.ratio_search import PROBE_SHARE, RatioSearch, pair_kl
from vitprune.strategies.tune import tune_hard
from vitprune.train import (
    TrainConfig,
    checkpoint_due,
    distill_loss,
    forever,
    resume,
    save_checkpoint,
)

__all__ = ["TokenPruning", "keep_schedule", "scaled_to", "split_ratios", "with_tokens"]

MIN_RATIO = 0.5
MILDEST = 0.9  # the mildest schedule a probe tries first: 90%, 81%, 73% of the patches kept
EDGE = 0.95  # tried too when MILDEST scores best: 95%, 90%, 86% kept
SEARCH_STEPS = 12
LEARN_SHARE = 0.6  # of a job's steps spent learning keep ratios; the rest distil the hard form
KEEP_LR = 0.05  # Adam on the keep logits: a share moves ~0.01 per step
GOAL_SLACK = 0.02  # aim this far under the goal, so rounding to whole tokens rarely crosses it


def keep_schedule(depth: int, ratio: float) -> TokenSpec:
    """Keep ratios r, r^2, r^3 (of the patch count) from a quarter, half, three quarters deep."""
    blocks = [depth // 4, depth // 2, 3 * depth // 4]
    return TokenSpec(keep={b: ratio ** (i + 1) for i, b in enumerate(blocks)})


def _scheduled(spec: ArchSpec) -> Callable[[float], ArchSpec]:
    depth = len(spec.blocks)
    return lambda r: spec.model_copy(update={"tokens": keep_schedule(depth, r)})


def with_tokens(ctx: SearchContext, spec: ArchSpec, goal_ms: float) -> ArchSpec:
    """`spec` with the mildest token schedule the predictor puts under `goal_ms` (the strongest
    allowed one when none is)."""
    if ctx.predict_ms(spec) <= goal_ms:
        return spec
    at = _scheduled(spec)
    return at(_largest(ctx, at, goal_ms) or MIN_RATIO)


def split_ratios(ctx: SearchContext, goal_ms: float) -> list[float]:
    """Token schedules a probe tries: the mildest that meets `goal_ms` by tokens alone (the
    floor when none does), and milder ones up to MILDEST with widths taking the rest; empty
    when the dense model meets the goal."""
    if ctx.predict_ms(ctx.dense) <= goal_ms:
        return []
    r = _largest(ctx, _scheduled(ctx.dense), goal_ms) or MIN_RATIO
    return [r] if r >= MILDEST else [r, (r + MILDEST) / 2, MILDEST]


def _largest(
    ctx: SearchContext, at: Callable[[float], ArchSpec], goal_ms: float, hi: float = 1.0
) -> float | None:
    """The largest r in [MIN_RATIO, hi] (binary search) whose spec `at(r)` the predictor puts
    under `goal_ms`; None when even MIN_RATIO is over."""
    lo = MIN_RATIO
    if ctx.predict_ms(at(lo)) > goal_ms:
        return None
    if ctx.predict_ms(at(hi)) <= goal_ms:
        return hi
    for _ in range(SEARCH_STEPS):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if ctx.predict_ms(at(mid)) <= goal_ms else (lo, mid)
    return lo


@register_strategy("token")
class TokenPruning(RatioSearch):
    """Works without data (the schedule alone); with data the keep ratios are trained and the
    pruned network is distilled."""

    def fit(self, ctx: TrainContext, goal_ms: float) -> Fitted:
        search = ctx.search
        notes: list[str] = []
        ratios = split_ratios(search, goal_ms)
        if ctx.train is not None and len(ratios) > 1:
            spec = self._probed(ctx, ratios, goal_ms, notes)
        else:
            spec = with_tokens(search, search.dense, goal_ms)
        curve: list[dict[str, object]] = []
        model = ctx.model
        learn = _learn_steps(ctx, spec, goal_ms)
        if learn > 0 and spec.tokens is not None:
            # At the schedule's floor tokens alone cannot reach the goal: learn where the
            # tokens go at the floor's latency, and let widths take the rest below.
            token_goal = max(goal_ms, search.predict_ms(spec))
            soft = _learn_keep(ctx, spec.tokens, token_goal, learn, curve)
            learned = search.dense.model_copy(update={"tokens": soft.token_spec()})
            notes.append(f"keep ratios learned in {learn} steps: {_ratios(learned.tokens)}")
            scaled = scaled_to(search, learned, token_goal)
            if scaled is None:
                notes.append("learned ratios were over the goal: binary-search schedule kept")
            else:
                ratios = _ratios(scaled.tokens)
                notes.append(f"learned ratios scaled together to the goal: {ratios}")
            spec = scaled or spec
            model = soft.dense_model()
        notes.insert(0, f"token keep ratios {_ratios(spec.tokens)}")
        gated = make_gated(model, search.dense, tokens=spec.tokens)
        if search.predict_ms(spec) > goal_ms:
            notes.append("tokens alone could not meet the goal: widths cut in stages too")
            spec = self.staged(ctx, gated, spec, goal_ms, ctx.steps - learn, curve, notes, "widths")
        else:
            tune_hard(gated, spec, ctx, ctx.steps - learn, curve, "distill")
        if ctx.train is None:
            notes.append("no data set: token schedule only, no distillation")
        return Fitted(spec, gated.dense_model(), curve, notes)

    def _probed(
        self, ctx: TrainContext, ratios: list[float], goal_ms: float, notes: list[str]
    ) -> ArchSpec:
        """The dense spec at the schedule of `ratios` whose cut (widths taking what tokens
        leave: the uniform pair closest to the teacher) is closest to the teacher after a short
        distillation."""
        search = ctx.search
        at = _scheduled(search.dense)
        batches = calibration_batches(ctx.train)
        steps = max(1, int(ctx.steps * PROBE_SHARE))
        # the job's progress stays at the fit's start while probing (still checked: a cancel
        # stops a probe at its next step)
        probing = replace(ctx, progress=lambda _fraction, **values: ctx.progress(0.0, **values))

        def probe(r: float) -> tuple[float, float]:
            spec = at(r)
            gated = make_gated(ctx.model, search.dense, tokens=spec.tokens)
            if search.predict_ms(spec) > goal_ms:
                spec = self._widths_cut(search, gated, ctx.teacher, batches, spec, goal_ms)
            tune_hard(gated, spec, probing, steps, [], f"probe-{r:.4f}")
            return teacher_kl(gated, ctx.teacher, batches)(spec), r

        scored = [probe(r) for r in ratios]
        if min(scored)[1] == ratios[-1] < EDGE:
            scored.append(probe(EDGE))  # the minimum sat at the mildest split tried
        kl, best = min(scored)
        tried = ", ".join(f"r={r:.2f}: {loss:.4f}" for loss, r in scored)
        notes.append(
            f"token schedule r={best:.2f} chosen by the KL to the teacher after {steps} "
            f"distillation steps of each split ({tried})"
        )
        return at(best)

    def _widths_cut(
        self,
        search: SearchContext,
        gated: GatedViT,
        teacher: torch.nn.Module,
        batches: list[torch.Tensor],
        base: ArchSpec,
        goal_ms: float,
    ) -> ArchSpec:
        """`base` (dense widths under a token schedule) cut at once to `goal_ms` by the pair
        whose sub-network is closest to the teacher (greedy when no pair is fast enough)."""
        return self.cut(search, base, base, goal_ms, pair_kl(gated, teacher, batches, base))[0]


def _learn_steps(ctx: TrainContext, spec: ArchSpec, goal_ms: float) -> int:
    """LEARN_SHARE of the steps, scaled by the share of the cut the token schedule takes: the
    rest train the widths that take the remainder."""
    if ctx.train is None or spec.tokens is None:
        return 0
    dense_ms = ctx.search.predict_ms(ctx.search.dense)
    token_ms = max(goal_ms, ctx.search.predict_ms(spec))
    share = min(1.0, max(0.0, (dense_ms - token_ms) / max(dense_ms - goal_ms, 1e-9)))
    return math.ceil(ctx.steps * LEARN_SHARE * share)  # a share of a few steps: at least one


def scaled_to(ctx: SearchContext, spec: ArchSpec, goal_ms: float) -> ArchSpec | None:
    """`spec` with every keep fraction multiplied by the largest c in [MIN_RATIO, 1 / the
    largest fraction] that the predictor puts under `goal_ms`. The learning decides how the
    tokens are shared between stages (the weights trained with that), the goal how many there
    are: learned ratios a little over the goal are scaled down instead of being thrown away,
    and ratios under it scaled up. Adam moves the keep logits by about KEEP_LR a step whatever
    the size of the gradient, so the latency term's push carried the ratios 4-6% of the latency
    under the goal in 18-47 steps on CIFAR-10 (keep 82/67/54% from a 90/81/73% schedule):
    width the later stages then had to cut instead. None when even c = MIN_RATIO is over."""
    assert spec.tokens is not None

    def at(c: float) -> ArchSpec:
        keep = {b: f * c for b, f in spec.tokens.keep.items()}
        return spec.model_copy(update={"tokens": spec.tokens.model_copy(update={"keep": keep})})

    c = _largest(ctx, at, goal_ms, hi=1.0 / max(spec.tokens.keep.values()))
    return None if c is None else at(c)


def _ratios(tokens: TokenSpec | None) -> dict[int, float]:
    return {b: round(r, 3) for b, r in tokens.keep.items()} if tokens else {}


def _learn_keep(
    ctx: TrainContext,
    start: TokenSpec,
    goal_ms: float,
    steps: int,
    curve: list[dict[str, object]],
) -> SoftTokenViT:
    """Train the keep fractions (and the weights) from the binary-search schedule `start`."""
    blocks = sorted(start.keep)
    previous, shares = 1.0, []
    for b in blocks:
        shares.append(start.keep[b] / previous)
        previous = start.keep[b]
    soft = SoftTokenViT(ctx.model, ctx.search.dense, blocks, shares)
    optimizer = torch.optim.AdamW(
        [
            {"params": soft.weight_parameters(), "lr": ctx.lr, "weight_decay": 0.05},
            {"params": [soft.share_logits], "lr": KEEP_LR, "weight_decay": 0.0},
        ]
    )
    with placed(soft, ctx.teacher) as device:
        _train_keep(device, soft, optimizer, ctx, goal_ms, steps, curve)
    soft.eval()
    return soft


def _train_keep(
    device: torch.device,
    soft: SoftTokenViT,
    optimizer: torch.optim.Optimizer,
    ctx: TrainContext,
    goal_ms: float,
    steps: int,
    curve: list[dict[str, object]],
) -> None:
    cfg = TrainConfig(steps=steps, lr=ctx.lr)
    ctx.teacher.eval()
    soft.train()
    with torch.no_grad():
        start_ms = float(ctx.expected_ms(soft))
    # the schedule starts at the goal already: no warm-up; lam1 starts at 1 so that the task
    # loss cannot lift the counts off the goal before the multipliers have grown
    lagrangian = LatencyLagrangian(goal_ms * (1 - GOAL_SLACK), start_ms, warmup=0.0, lam1=1.0)
    start = 0
    ckpt = ctx.checkpoint("token-keep")
    if ckpt is not None and ckpt.exists():
        start, extra = resume(ckpt, soft, optimizer)
        lagrangian.restore(extra["lagrangian"])
        curve[:] = list(extra["curve"])
    batches = forever(ctx.train)
    for step in range(start, steps):
        optimizer.param_groups[0]["lr"] = ctx.lr * 0.5 * (1 + math.cos(math.pi * step / steps))
        x, y = (b.to(device, non_blocking=True) for b in next(batches))
        with autocast(device):
            with torch.no_grad():
                teacher_logits = ctx.teacher(x).float()
            task = distill_loss(soft(x).float(), y, teacher_logits, cfg)
        expected = ctx.expected_ms(soft)
        t = step / max(steps - 1, 1)
        loss = task + lagrangian.term(expected, t)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(soft.weight_parameters(), 5.0)
        optimizer.step()
        lagrangian.ascend(expected, t)
        curve.append(
            {
                "step": step,
                "loss": float(loss.detach()),
                "task": float(task.detach()),
                "expected_ms": float(expected.detach()),
                "goal_ms": goal_ms,
                "keep": [round(float(f), 4) for f in soft.fractions().detach()],
                "phase": "learn keep ratios",
            }
        )
        if ckpt is not None and checkpoint_due(step, steps):
            extra = {"lagrangian": lagrangian.state(), "curve": curve}
            save_checkpoint(ckpt, soft, optimizer, step + 1, extra)
        ctx.progress(
            (step + 1) / ctx.steps,
            predicted_ms=float(expected.detach()),
            training={
                "loop": "keep ratios",
                "step": step + 1,
                "steps": steps,
                "loss": float(loss.detach()),
                "expected_ms": float(expected.detach()),
                "keep": [round(float(f), 4) for f in soft.fractions().detach()],
            },
        )
