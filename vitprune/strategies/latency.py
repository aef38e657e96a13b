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
from vitprune.gates import GatedViT, expected_macs

__all__ = ["expected_ms_fn"]


def expected_ms_fn(
    predictor: LinearMacsPredictor | LutPredictor,
) -> Callable[[GatedViT], torch.Tensor]:
    """Expected milliseconds of the sub-network the gates sample. The predictor is read at
    every call, so refits during the job are seen."""
    if isinstance(predictor, LutPredictor):
        from latency_tables.torch_expect import expected_latency, gate_probs

        return lambda gated: expected_latency(predictor, gated.spec_template, gate_probs(gated))
    if isinstance(predictor, LinearMacsPredictor):
        return lambda gated: predictor.intercept + predictor.slope * expected_macs(gated) / 1e9
    raise TypeError(f"no differentiable form for {type(predictor).__name__}")
