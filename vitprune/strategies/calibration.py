"""How far a cut moves the model from its teacher, on a few fixed batches, before any tuning.

Weight magnitude says which unit of one kind matters least; it does not say what a head is
worth against a slab of head dims or a chunk of MLP neurons. The KL divergence from the
teacher's outputs on calibration batches does, for whole candidate sub-networks, and costs a
few forward passes: strategies that choose between candidates of equal predicted latency
(ratio_search's attention/FFN pairs, netadapt's exchange rates between kinds) choose by it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from itertools import islice

import torch
import torch.nn.functional as F
from torch import nn

from budgetprune.schemas import ArchSpec
from vitprune.gates import GatedViT

__all__ = ["CALIBRATION_BATCHES", "calibration_batches", "teacher_kl"]

CALIBRATION_BATCHES = 4


def calibration_batches(
    train: Iterable[tuple[torch.Tensor, torch.Tensor]], n: int = CALIBRATION_BATCHES
) -> list[torch.Tensor]:
    return [x for x, _y in islice(train, n)]


@torch.no_grad()
def teacher_kl(
    gated: GatedViT, teacher: nn.Module, batches: list[torch.Tensor]
) -> Callable[[ArchSpec], float]:
    """KL(teacher || `gated` hardened to a spec), averaged over `batches`. Leaves `gated` in
    train mode, masked to the last spec scored (the caller applies the one it picks)."""
    targets = [F.softmax(teacher(x), dim=-1) for x in batches]

    def loss(spec: ArchSpec) -> float:
        gated.apply_spec(spec)
        gated.eval()
        total = sum(
            F.kl_div(F.log_softmax(gated(x), dim=-1), t, reduction="batchmean").item()
            for x, t in zip(batches, targets, strict=True)
        )
        gated.train()
        return total / len(batches)

    return loss
