"""Distillation of a fixed sub-network inside the gated model (gates hard, weights train).

Token and ratio_search fine-tune this way instead of on the extracted model: the dense shapes
stay, so the trained weights go back to the pipeline as a dense model the certification loop
can still shrink, and the hard gated form equals `extract_subnet` of the spec by construction.
"""

from __future__ import annotations

from budgetprune.schemas import ArchSpec
from vitprune.gates import GatedViT
from vitprune.strategies.base import TrainContext
from vitprune.train import StepLog, TrainConfig, finetune

__all__ = ["tune_hard"]


def tune_hard(
    gated: GatedViT,
    spec: ArchSpec,
    ctx: TrainContext,
    steps: int,
    curve: list[dict[str, object]],
    phase: str,
) -> None:
    """Mask `gated` to `spec` and distil the teacher into it for `steps` steps (none without
    data), checkpointed under `phase` so a killed worker resumes. Appends to `curve` (from the
    resumed step on, after a restart); `ctx.progress` may cancel."""
    gated.apply_spec(spec)
    if ctx.train is None or steps == 0:
        return
    cfg = TrainConfig(
        steps=steps,
        lr=ctx.lr,
        warmup_steps=min(20, steps // 10),
        log_every=1,
        checkpoint_every=max(steps // 10, 1),
    )
    offset = len(curve)

    def log(entry: StepLog) -> None:
        curve.append({"step": offset + entry.step, "loss": entry.loss, "phase": phase})
        ctx.progress(
            entry.step / steps,
            training={"loop": phase, "step": entry.step + 1, "steps": steps, "loss": entry.loss},
        )

    finetune(
        gated, ctx.train, cfg, teacher=ctx.teacher, on_log=log, checkpoint=ctx.checkpoint(phase)
    )
    gated.apply_spec(spec)
