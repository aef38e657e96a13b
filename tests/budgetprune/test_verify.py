"""`verify --remeasure` on a machine that is busy: the real measurement runs in test_cli.py;
here the device's readings are scripted, since a test cannot make a CPU busy on cue."""

from __future__ import annotations

import sys

import pytest

import device_agents.measure  # noqa: F401  (the package re-exports its function)
from budgetprune.schemas import DeviceFingerprint, LatencyStats, MeasurementResult
from budgetprune.verify import REMEASURE_ATTEMPTS, verify_dir


def _readings(monkeypatch, readings: list[tuple[float, bool]]) -> list[float]:
    calls: list[float] = []

    def fake_measure(path, runtime, protocol, device):
        p90, stable = readings[len(calls)]
        calls.append(p90)
        stats = LatencyStats(
            runs=protocol.runs,
            warmup=protocol.warmup,
            p50_ms=p90 * 0.9,
            p90_ms=p90,
            p99_ms=p90 * 1.1,
            mean_ms=p90,
            std_ms=0.1,
            min_ms=p90 * 0.8,
            max_ms=p90 * 1.2,
        )
        return MeasurementResult(
            stats=stats,
            protocol=protocol,
            device=DeviceFingerprint(cpu_model="Test CPU"),
            stable=stable,
            model_sha256="0" * 64,
        )

    monkeypatch.setattr(sys.modules["device_agents.measure"], "measure", fake_measure)
    return calls


@pytest.mark.parametrize(
    ("readings", "expected", "stable"),
    [
        ([(4.3, True)], 4.3, True),
        ([(7.0, False), (4.4, True)], 4.4, True),  # a busy first reading is retaken
        # never quiet: the lowest
        ([(7.0, False), (5.5, False), (6.0, False), (5.9, False), (6.1, False)], 5.5, False),
        ([(5.4, True), (4.6, True)], 4.6, True),  # a miss is retaken: one slow reading is load
        # a miss that holds up on every attempt fails, at its lowest reading
        ([(5.4, True), (5.3, True), (5.6, False), (5.2, True), (5.5, True)], 5.2, True),
    ],
)
def test_remeasure_retakes_unstable_or_missed_readings(
    delivered,
    monkeypatch,
    readings,
    expected,
    stable,
):
    out, signer = delivered
    calls = _readings(monkeypatch, readings)
    body = verify_dir(
        out, remeasure=True, trusted_public_keys=[signer.signer.public_key], pause_s=0.0
    )
    again = body["remeasured"]
    assert len(calls) == len(readings) <= REMEASURE_ATTEMPTS
    assert again["p90_ms"] == expected and again["stable"] is stable
    assert again["within_budget"] is (expected <= 5.0)
    assert again["attempts_p_ms"] == [r for r, _ in readings]
