"""Latency statistics from raw run durations: a pure function so the numbers can be checked by hand.

Percentiles use numpy's default linear interpolation between order statistics, the convention
of most benchmark tools; std is the population std (ddof=0) of the runs taken, so a single run
has std 0 rather than NaN.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from budgetprune.schemas.measurement import LatencyStats

__all__ = ["latency_stats", "p50_ms", "p50s_agree"]


def latency_stats(durations_ms: Sequence[float] | np.ndarray, warmup: int) -> LatencyStats:
    """Summarise timed runs (milliseconds); `warmup` is only recorded, never subtracted."""
    d = np.asarray(durations_ms, dtype=np.float64)
    if d.ndim != 1 or d.size == 0:
        raise ValueError("latency_stats needs a non-empty 1-D sequence of durations")
    p50, p90, p99 = np.percentile(d, [50, 90, 99])
    return LatencyStats(
        runs=int(d.size),
        warmup=warmup,
        p50_ms=float(p50),
        p90_ms=float(p90),
        p99_ms=float(p99),
        mean_ms=float(d.mean()),
        std_ms=float(d.std()),
        min_ms=float(d.min()),
        max_ms=float(d.max()),
    )


def p50_ms(durations_ms: Sequence[float] | np.ndarray) -> float:
    return float(np.percentile(np.asarray(durations_ms, dtype=np.float64), 50))


def p50s_agree(a_ms: float, b_ms: float, tolerance: float) -> bool:
    """Symmetric relative agreement: the larger p50 is within `tolerance` of the smaller one.

    Symmetric so that the order of the two batches (warming up or throttling) does not matter.
    """
    lo, hi = sorted((a_ms, b_ms))
    if lo <= 0.0:
        return hi <= 0.0
    return hi / lo - 1.0 <= tolerance
