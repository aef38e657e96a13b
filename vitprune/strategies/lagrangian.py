"""The latency constraint of the training strategies, as a Lagrangian (after CoFi, Xia et al.
2022): term = lam1 * r + lam2 * r^2 with r = E[ms] / goal - 1, the multipliers raised by
gradient ascent (lam1 += rate * r, lam2 += rate * r^2) every step, against a goal that moves
linearly from the dense model's expected latency to the job's over the first `warmup` share of
the steps (CoFi's sparsity warm-up).

Why not a hinge (lam * relu(r), lam only rising)? Adam's momentum and a lam that grew while the
goal was far carry the gates well past it, and a hinge has nothing to pull them back: the
smoke benchmark's HiAP delivered 0.8 ms at a 3.7 ms goal. Here lam1 falls, and turns negative,
while the expectation is under the goal, so the term then pays for reopening units; lam2 only
grows, pinning the expectation at the goal more firmly as training goes on. The moving goal
keeps the gap small all along, so the multipliers never wind up far from what holding the
goal needs (with the goal fixed from step 0 they did, and 100 steps of a synthetic job closed
every unit). The fit lands at the goal (an equality), which is what a budget wants: every
millisecond left unused is accuracy given away.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

__all__ = ["LatencyLagrangian"]


@dataclass
class LatencyLagrangian:
    goal_ms: float
    start_ms: float  # the expected latency before training: where the moving goal starts
    warmup: float = 0.5  # share of the steps over which the goal moves to goal_ms
    rate: float = 0.5
    lam1: float = 0.0
    lam2: float = 5.0  # from the start: a restoring force that grows with the gap either way

    def goal_at(self, t: float) -> float:
        """The goal at training progress t in [0, 1]."""
        w = min(1.0, t / self.warmup) if self.warmup > 0 else 1.0
        return self.start_ms + (self.goal_ms - self.start_ms) * w

    def gap(self, expected_ms: torch.Tensor, t: float) -> torch.Tensor:
        return expected_ms / self.goal_at(t) - 1.0

    def term(self, expected_ms: torch.Tensor, t: float) -> torch.Tensor:
        r = self.gap(expected_ms, t)
        return self.lam1 * r + self.lam2 * r * r

    def ascend(self, expected_ms: torch.Tensor, t: float) -> None:
        r = float(self.gap(expected_ms, t).detach())
        self.lam1 += self.rate * r
        self.lam2 += self.rate * r * r

    def state(self) -> dict[str, float]:
        return {"lam1": self.lam1, "lam2": self.lam2}

    def restore(self, state: dict[str, float]) -> None:
        self.lam1, self.lam2 = float(state["lam1"]), float(state["lam2"])
