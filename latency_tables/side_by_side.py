"""Latency as a ratio to a reference model timed around it.

A shared host's speed drifts by tens of percent over minutes (a 2-core VM here read one dense
model 0.87-1.42x its median in consecutive timings), so absolute times taken minutes apart do
not compare. A model timed between two timings of a reference shares their speed: a slow phase
that outlasts the three timings hits all alike and the ratio holds. The table builder times its
whole models this way, and the benchmarks compare models by it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

__all__ = ["between_references"]


def between_references(
    time_ms: Callable[[Path], float], paths: Sequence[Path], reference: Path, rounds: int
) -> tuple[list[float], list[list[float]]]:
    """Each of `paths` timed between two timings of `reference`, `rounds` times over. Returns
    the reference's times (1 + rounds x len(paths) of them, in order) and, per path, its time
    over the mean of the two reference timings around it, one ratio a round."""
    reference_ms = [time_ms(reference)]
    ratios: list[list[float]] = [[] for _ in paths]
    for _ in range(rounds):
        for i, path in enumerate(paths):
            ms = time_ms(path)
            reference_ms.append(time_ms(reference))
            ratios[i].append(ms / ((reference_ms[-2] + reference_ms[-1]) / 2))
    return reference_ms, ratios
