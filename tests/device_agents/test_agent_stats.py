from __future__ import annotations

import math

import pytest

from device_agents.stats import latency_stats, p50_ms, p50s_agree


def test_stats_on_known_numbers() -> None:
    stats = latency_stats([float(v) for v in range(1, 11)], warmup=7)  # 1..10 ms
    assert stats.runs == 10
    assert stats.warmup == 7
    assert stats.p50_ms == pytest.approx(5.5)
    assert stats.p90_ms == pytest.approx(9.1)  # linear: 1 + 0.9 * 9
    assert stats.p99_ms == pytest.approx(9.91)
    assert stats.mean_ms == pytest.approx(5.5)
    assert stats.std_ms == pytest.approx(math.sqrt(8.25))  # population std of 1..10
    assert (stats.min_ms, stats.max_ms) == (1.0, 10.0)


def test_stats_single_run_and_order_independence() -> None:
    one = latency_stats([3.0], warmup=0)
    assert (one.p50_ms, one.p99_ms, one.std_ms) == (3.0, 3.0, 0.0)
    assert latency_stats([5.0, 1.0, 3.0], 0) == latency_stats([1.0, 3.0, 5.0], 0)


def test_stats_refuse_empty() -> None:
    with pytest.raises(ValueError):
        latency_stats([], warmup=0)


def test_p50_agreement_is_symmetric_and_relative() -> None:
    assert p50_ms([1.0, 2.0, 30.0]) == 2.0
    assert p50s_agree(10.0, 10.4, 0.05)
    assert p50s_agree(10.4, 10.0, 0.05)
    assert not p50s_agree(10.0, 10.6, 0.05)
    assert not p50s_agree(10.6, 10.0, 0.05)
