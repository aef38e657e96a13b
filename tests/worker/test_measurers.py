"""The agent measurer through the real job store: what a task names, and what a job that lost
its devices is told."""

from __future__ import annotations

import pytest

from budgetprune.errors import MeasurementError
from budgetprune.schemas import DeviceFingerprint, MeasureProtocol
from budgetprune.store import MeasurementTask, session_scope
from worker.measurers import AgentMeasurer

BASELINE = DeviceFingerprint(
    agent_id="a1", device_class="cpu", cpu_model="EPYC 9B14", cores=2, runtime_version="1.32.0"
)


def _tasks(settings) -> list[str]:
    with session_scope(settings.database_url) as s:
        return [t.device for t in s.query(MeasurementTask).order_by(MeasurementTask.created_at)]


def _measure(measurer: AgentMeasurer, tmp_path) -> None:
    onnx = tmp_path / "m.onnx"
    onnx.write_bytes(b"model")
    measurer.measure(onnx, MeasureProtocol.quick(), [1, 3, 32, 32])


def test_after_the_baseline_tasks_name_its_device_key(settings, tmp_path):
    settings.measurement_timeout_s = 0.3
    settings.poll_interval_s = 0.05
    measurer = AgentMeasurer(settings, "job1", device="cpu", runtime="onnxruntime")
    with pytest.raises(MeasurementError, match="no agent for device 'cpu'"):
        _measure(measurer, tmp_path)
    measurer.pin(BASELINE)
    with pytest.raises(MeasurementError, match=r"like the one that measured .*EPYC 9B14"):
        _measure(measurer, tmp_path)
    assert _tasks(settings) == ["cpu", BASELINE.key]


def test_a_job_that_named_one_agent_stays_on_it(settings, tmp_path):
    settings.measurement_timeout_s = 0.2
    settings.poll_interval_s = 0.05
    measurer = AgentMeasurer(settings, "job1", device="a1", runtime="onnxruntime")
    measurer.pin(BASELINE)
    with pytest.raises(MeasurementError, match="device 'a1'"):
        _measure(measurer, tmp_path)
    assert _tasks(settings) == ["a1"]
