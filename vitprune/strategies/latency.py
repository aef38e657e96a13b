"""The differentiable latency a training strategy optimises, from the job's predictor.

One function owns the choice so the pipeline's predictor decides it: a lookup-table predictor
gives the table's expected latency (`latency_tables.torch_expect`, the device's own block
costs); the linear-in-MACs predictor gives its line applied to the gates' expected MACs. Both
equal `predictor.predict(spec)` on a hard spec, so the goal means the same thing in training
and in the search.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from latency_tables import LinearMacsPredictor, LutPredictor
from vitprune.cost import macs_at
from vitprune.gates import GatedViT, expected_macs
from vitprune.soft_tokens import SoftTokenViT

__all__ = ["expected_ms_fn"]


def expected_ms_fn(
    predictor: LinearMacsPredictor | LutPredictor,
) -> Callable[[GatedViT | SoftTokenViT], torch.Tensor]:
    """Expected milliseconds of the sub-network the gates sample, or of the learned token
    counts of a SoftTokenViT. The predictor is read at every call, so refits during the job are
    seen."""
    if isinstance(predictor, LutPredictor):
        from latency_tables.torch_expect import dense_probs, expected_latency, gate_probs

        def lut(model: GatedViT | SoftTokenViT) -> torch.Tensor:
            if isinstance(model, SoftTokenViT):
                probs = dense_probs(model.dense, model.share_logits.device)
                return expected_latency(predictor, model.dense, probs, model.counts())
            return expected_latency(predictor, model.spec_template, gate_probs(model))

        return lut
    if isinstance(predictor, LinearMacsPredictor):

        def linear(model: GatedViT | SoftTokenViT) -> torch.Tensor:
            if isinstance(model, SoftTokenViT):
                counts = model.counts()
                selectors = [n for n, _ in counts.selectors]
                work = macs_at(model.dense, counts.per_block, selectors)
            else:
                work = expected_macs(model)
            return predictor.intercept + predictor.slope * work / 1e9

        return linear
    raise TypeError(f"no differentiable form for {type(predictor).__name__}")
