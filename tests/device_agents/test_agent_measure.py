from __future__ import annotations

import hashlib
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from budgetprune.errors import MeasurementError
from budgetprune.schemas.measurement import DeviceFingerprint, MeasureProtocol
from device_agents.errors import MeasurementStoppedError, TaskCancelledError
from device_agents.measure import measure, resolve_input_shape
from device_agents.runtimes import Runtime, Session, register_runtime
from device_agents.runtimes import registry as registry_module
from device_agents.stats import p50s_agree

FAST = MeasureProtocol(warmup=2, runs=10, max_batches=3, stability_tolerance=1.0)


def test_measure_tiny_model(tiny_onnx: Path) -> None:
    result = measure(tiny_onnx, "onnxruntime", FAST)
    s = result.stats
    assert 0 < s.min_ms <= s.p50_ms <= s.p90_ms <= s.p99_ms <= s.max_ms
    assert s.min_ms <= s.mean_ms <= s.max_ms
    assert s.warmup == 2
    # every timed run of every batch counts
    assert s.runs == FAST.runs * len(result.batch_p50_ms)
    assert 2 <= len(result.batch_p50_ms) <= FAST.max_batches
    p50s = result.batch_p50_ms
    assert result.stable == p50s_agree(p50s[-2], p50s[-1], FAST.stability_tolerance)
    if len(p50s) < FAST.max_batches:
        assert result.stable  # only agreement ends the batches early
    assert result.model_sha256 == hashlib.sha256(tiny_onnx.read_bytes()).hexdigest()
    assert result.device.input_shape == [1, 16]
    assert result.device.runtime == "onnxruntime"
    assert result.device.threads == 1
    assert result.protocol == FAST


def test_one_batch_is_never_called_stable(tiny_onnx: Path) -> None:
    protocol = MeasureProtocol(warmup=0, runs=10, max_batches=1)
    result = measure(tiny_onnx, "onnxruntime", protocol)
    assert result.stable is False
    assert result.stats.runs == 10
    assert len(result.batch_p50_ms) == 1


def test_dynamic_batch_uses_protocol_batch_and_device_is_completed(dynamic_onnx: Path) -> None:
    protocol = MeasureProtocol(warmup=1, runs=10, max_batches=2, batch_size=3, threads=2)
    given = DeviceFingerprint(agent_id="a-7", device_class="mobile", threads=99, input_shape=[])
    result = measure(dynamic_onnx, "onnxruntime", protocol, device=given)
    assert result.device.input_shape == [3, 16]
    assert result.device.batch_size == 3
    assert result.device.threads == 2  # what actually ran, not what the caller claimed
    assert (result.device.agent_id, result.device.device_class) == ("a-7", "mobile")


def test_resolve_input_shape() -> None:
    assert resolve_input_shape((1, 3, 224, 224), 8) == [1, 3, 224, 224]
    assert resolve_input_shape((None, 3, None, None), 2, [1, 3, 160, 160]) == [2, 3, 160, 160]
    with pytest.raises(MeasurementError, match="does not fit"):
        resolve_input_shape((1, 3, 224, 224), 1, [1, 3, 160, 160])
    with pytest.raises(MeasurementError, match="dynamic"):
        resolve_input_shape((None, 3, None), 1)


class _ScriptedSession(Session):
    """Sleeps a scripted time per run so stability can be forced either way."""

    def __init__(self, schedule_ms: list[float], runs_per_batch: int) -> None:
        self.input_shape = (1, 4)
        self.input_dtype = np.dtype(np.float32)
        self._schedule = schedule_ms
        self._runs = runs_per_batch
        self.calls = 0

    def run(self, x: np.ndarray) -> None:
        batch = self.calls // self._runs
        self.calls += 1
        time.sleep(self._schedule[min(batch, len(self._schedule) - 1)] / 1000)

    def infer(self, x: np.ndarray) -> np.ndarray:
        self.run(x)
        return x


@pytest.fixture
def scripted_runtime():
    holder: dict[str, list[float]] = {"schedule": [1.0]}

    class Scripted(Runtime):
        def version(self) -> str:
            return "scripted-1"

        def load(self, path: Path, threads: int) -> Session:
            return _ScriptedSession(holder["schedule"], holder["runs"])

    register_runtime("test-scripted")(Scripted)
    yield holder
    registry_module._RUNTIMES.pop("test-scripted", None)


def test_unstable_until_max_batches(tiny_onnx: Path, scripted_runtime: dict) -> None:
    # p50 alternates 1 ms / 4 ms: consecutive batches never agree within 5 %
    scripted_runtime.update(schedule=[1.0, 4.0, 1.0, 4.0], runs=10)
    protocol = MeasureProtocol(warmup=0, runs=10, max_batches=4, stability_tolerance=0.05)
    result = measure(tiny_onnx, "test-scripted", protocol)
    assert result.stable is False
    assert len(result.batch_p50_ms) == 4
    assert result.batch_p50_ms[1] > 2 * result.batch_p50_ms[0]
    assert result.stats.runs == 40
    assert result.device.runtime_version == "scripted-1"


def test_stable_stops_early(tiny_onnx: Path, scripted_runtime: dict) -> None:
    scripted_runtime.update(schedule=[6.0, 2.0, 2.0, 2.0, 2.0], runs=10)
    protocol = MeasureProtocol(warmup=0, runs=10, max_batches=5, stability_tolerance=0.5)
    result = measure(tiny_onnx, "test-scripted", protocol)
    assert result.stable is True
    assert len(result.batch_p50_ms) == 3  # 6 vs 2 disagree, 2 vs 2 agree


def test_min_duration_adds_batches(tiny_onnx: Path, scripted_runtime: dict) -> None:
    scripted_runtime.update(schedule=[2.0], runs=10)
    protocol = MeasureProtocol(warmup=0, runs=10, max_batches=1, min_duration_s=0.15)
    started = time.perf_counter()
    result = measure(tiny_onnx, "test-scripted", protocol)
    assert time.perf_counter() - started >= 0.15
    assert len(result.batch_p50_ms) >= 2  # one batch is ~20 ms
    assert result.stats.runs == 10 * len(result.batch_p50_ms)


def test_stop_event_interrupts(tiny_onnx: Path, scripted_runtime: dict) -> None:
    scripted_runtime.update(schedule=[1.0], runs=10_000)
    stop = threading.Event()
    threading.Timer(0.1, stop.set).start()
    protocol = MeasureProtocol(warmup=0, runs=10_000, max_batches=1)
    started = time.perf_counter()
    with pytest.raises(MeasurementStoppedError):
        measure(tiny_onnx, "test-scripted", protocol, stop=stop)
    assert time.perf_counter() - started < 5.0


@pytest.mark.parametrize("at_s", [0.0, 0.1])
def test_cancel_event_ends_a_long_protocol_within_a_run(
    tiny_onnx: Path, scripted_runtime: dict, at_s: float
) -> None:
    """Set before loading or mid-batch: a protocol of minutes ends at the next run."""
    scripted_runtime.update(schedule=[2.0], runs=1000)
    protocol = MeasureProtocol(warmup=100, runs=1000, max_batches=4, min_duration_s=600)
    cancel = threading.Event()
    if at_s:
        threading.Timer(at_s, cancel.set).start()
    else:
        cancel.set()
    started = time.perf_counter()
    with pytest.raises(TaskCancelledError):
        measure(tiny_onnx, "test-scripted", protocol, cancel=cancel, stop=threading.Event())
    assert time.perf_counter() - started < at_s + 1.0
