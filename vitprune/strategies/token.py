"""Computation-aware soft token pruning (SPViT family): keep ratios trained against the latency
predictor, dropped tokens merged into a package token, then distillation.

Stages sit at a quarter, half and three quarters of the depth (`strategies.token_schedule`).
How much of the latency cut tokens take is chosen on data (`strategies.token_split`): a quarter,
half, three quarters or all of it, each made into a whole sub-network (widths take the rest by
the ratio search's attention/FFN split), and the one that starts closest to the teacher wins.

With data and steps, the first LEARN_SHARE of the steps then train each stage's keep fraction by
gradient (`vitprune.soft_tokens`): distillation loss plus the latency Lagrangian
(`strategies.lagrangian`) on E[ms], the predictor's expected latency at the soft token counts,
held to the tokens' part of the cut (dense widths). So a stage whose tokens matter keeps more of
them and another pays for it, at the same predicted latency. Widths are then narrowed for the
rest of the cut and the rest of the steps distil the hard, extracted form. Without data the
tokens take the whole cut (the mildest schedule that meets it, widths only past the schedule's
floor) and the schedule alone is the result; the notes say what happened.
"""

from __future__ import annotations

import math
from typing import ClassVar

import torch

from budgetprune.schemas.arch import TokenSpec
from vitprune.compute import autocast, placed
from vitprune.gates import make_gated
from vitprune.soft_tokens import SoftTokenViT
from vitprune.strategies.base import Fitted, TrainContext, register_strategy
from vitprune.strategies.lagrangian import LatencyLagrangian
from vitprune.strategies.netadapt import NetAdapt
from vitprune.strategies.token_schedule import scaled_to
from vitprune.strategies.token_split import SHARES, Split, split_cut, widths_to
from vitprune.strategies.tune import tune_hard
from vitprune.train import (
    TrainConfig,
    checkpoint_due,
    distill_loss,
    forever,
    resume,
    save_checkpoint,
)

__all__ = ["TokenPruning"]

LEARN_SHARE = 0.6  # of a job's steps spent learning keep ratios; the rest distil the hard form
KEEP_LR = 0.05  # Adam on the keep logits: a share moves ~0.01 per step
GOAL_SLACK = 0.02  # aim this far under the goal, so rounding to whole tokens rarely crosses it


@register_strategy("token")
class TokenPruning(NetAdapt):
    """Works without data (the schedule alone); with data the keep ratios are trained and the
    pruned network is distilled."""

    shares: ClassVar[tuple[float, ...]] = SHARES  # of the cut tokens may take (token_split)

    def fit(self, ctx: TrainContext, goal_ms: float) -> Fitted:
        search = ctx.search
        chosen, tried = split_cut(ctx, goal_ms, self.propose, self.shares)
        notes = [_split_note(chosen, tried)] if len(tried) > 1 else []
        spec = chosen.spec
        curve: list[dict[str, object]] = []
        model = ctx.model
        learn = int(ctx.steps * LEARN_SHARE) if ctx.train is not None else 0
        if learn > 0 and spec.tokens is not None:
            # Learn where the tokens go at the tokens' part of the cut (dense widths), then
            # let widths take the rest.
            token_plan = search.dense.model_copy(update={"tokens": spec.tokens})
            token_goal = search.predict_ms(token_plan)
            soft = _learn_keep(ctx, spec.tokens, token_goal, learn, curve)
            learned = search.dense.model_copy(update={"tokens": soft.token_spec()})
            notes.append(f"keep ratios learned in {learn} steps: {_ratios(learned.tokens)}")
            if search.predict_ms(learned) > token_goal:
                scaled = scaled_to(search, learned, token_goal)
                notes.append(
                    "learned ratios were over the goal: "
                    + ("scaled down together" if scaled else "binary-search schedule kept")
                )
                learned = scaled or token_plan
            spec = widths_to(search, learned, goal_ms, self.propose)
            model = soft.dense_model()
        notes.insert(0, f"token keep ratios {_ratios(spec.tokens)}")
        if spec.blocks != search.dense.blocks:
            notes.append("tokens did not take the whole cut: widths narrowed for the rest")
        gated = make_gated(model, search.dense, tokens=spec.tokens)
        tune_hard(gated, spec, ctx, ctx.steps - learn, curve, "distill")
        if ctx.train is None:
            notes.append("no data set: token schedule only, no distillation")
        return Fitted(spec, gated.dense_model(), curve, notes)


def _split_note(chosen: Split, tried: list[Split]) -> str:
    gaps = ", ".join(f"{s.share:.2f}: {s.gap:.3f}" for s in tried)
    return (
        f"tokens take {chosen.share:.0%} of the cut: the candidate closest to the teacher before "
        f"training (KL by token share: {gaps})"
    )


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
