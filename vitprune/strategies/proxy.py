"""Judging candidate sub-networks on data before training: the KL of each candidate's outputs
to the teacher's on a few calibration batches, the loss its fine-tuning starts from.

Magnitude scores rank units inside one kind (neurons against neurons); they cannot say whether a
cut is better spent on attention dims or on FFN neurons. Running the candidates on real images
can, for a few forward passes each.
"""

from __future__ import annotations

from itertools import islice

import torch
import torch.nn.functional as F

from budgetprune.schemas import ArchSpec
from vitprune.gates import GatedViT
from vitprune.strategies.base import TrainContext

__all__ = ["CALIBRATION_BATCHES", "Judged", "calibration_batches", "gated_gap"]

CALIBRATION_BATCHES = 4

Judged = list[tuple[torch.Tensor, torch.Tensor]]  # (images, the teacher's logits on them)


@torch.no_grad()
def calibration_batches(ctx: TrainContext) -> Judged:
    """The first CALIBRATION_BATCHES training batches with the teacher's logits; [] without
    data."""
    if ctx.train is None:
        return []
    ctx.teacher.eval()
    return [(x, ctx.teacher(x).float()) for x, _y in islice(ctx.train, CALIBRATION_BATCHES)]


@torch.no_grad()
def gated_gap(gated: GatedViT, spec: ArchSpec, judged: Judged) -> float:
    """Mean KL(teacher || `gated` hardened to `spec`) over `judged`; leaves `gated` in that
    hard form (its weights untouched)."""
    gated.apply_spec(spec)
    was_training = gated.training
    gated.eval()
    gaps = [
        F.kl_div(
            F.log_softmax(gated(x).float(), -1), F.softmax(t, -1), reduction="batchmean"
        ).item()
        for x, t in judged
    ]
    gated.train(was_training)
    return sum(gaps) / len(gaps)
