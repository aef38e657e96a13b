"""Cancelling a running job frees the device agent that measures it, on real processes.

The job's dense baseline is timed with the certification protocol (30 warm-up runs, then at
least two batches of 300), which takes DeiT-S at 224 most of a minute on one core. The user
cancels a few seconds into that measurement. A probe task, queued behind it for the same
device, shows when the agent is free again: without the cancel reaching the agent it would wait
for the rest of the protocol, tens of seconds; with it, a fraction of a second plus a
heartbeat's poll interval.
"""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

import onnx
import pytest
from onnx import TensorProto, helper

from budgetprune.client import Client
from budgetprune.schemas import JobCreate, MeasureProtocol
from budgetprune.stack import Stack, stack_env
from budgetprune.store import MeasurementTask, crud, session_scope
from tests.utils.waiting import wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(90)]

SPEC = JobCreate(model="deit_small_patch16_224", budget_fraction=0.5)
MEASURING_S = 4.0  # how long the agent measures before the user cancels
FREED_WITHIN_S = 5.0


def _probe_model(path: Path) -> str:
    """A one-node model: milliseconds to fetch, load and time."""
    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])],
        "probe",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 16])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save_model(model, str(path))
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _job_tasks(db: str, job_id: str) -> list[MeasurementTask]:
    with session_scope(db) as s:
        rows = s.query(MeasurementTask).filter_by(job_id=job_id).all()
        s.expunge_all()
        return rows


def _task(db: str, task_id: str) -> MeasurementTask:
    with session_scope(db) as s:
        task = crud.get_task(s, task_id=task_id)
        s.expunge(task)
        return task


def test_cancelling_a_running_job_frees_its_agent_at_once(tmp_path_factory):
    data = tmp_path_factory.mktemp("cancel")
    db = f"sqlite:///{(data / 'budgetprune.sqlite').resolve()}"  # the stack's embedded store
    with Stack(data, stack_env(data, embedded=True)) as stack:
        token = stack.start_all()
        with Client(stack.url, token) as client:
            job = client.submit(SPEC)
            (baseline,) = wait_until(
                lambda: [t for t in _job_tasks(db, job.id) if t.state == "leased"],
                timeout=45,
                what="the agent to lease the job's baseline measurement",
                poll_s=0.1,
            )
            sha = _probe_model(data / "probe" / "relu.onnx")
            with session_scope(db) as s:
                probe_id = crud.create_measurement(
                    s,
                    job_id=None,
                    device="cpu",
                    runtime="onnxruntime",
                    protocol=MeasureProtocol.quick(),
                    input_shape=[1, 16],
                    model_path="probe/relu.onnx",
                    model_sha256=sha,
                ).id
            time.sleep(MEASURING_S)
            assert _task(db, baseline.id).state == "leased", "still measuring when cancelled"
            assert _task(db, probe_id).state == "queued", "the only agent is busy"

            cancelled_at = time.monotonic()
            assert client.cancel(job.id).state == "running"  # the worker ends it
            wait_until(
                lambda: _task(db, probe_id).state != "queued",
                timeout=FREED_WITHIN_S,
                what=f"the agent to be free for the next task within {FREED_WITHIN_S} s",
                poll_s=0.1,
            )
            freed_s = time.monotonic() - cancelled_at
            probe = wait_until(
                lambda: (t := _task(db, probe_id)).state == "done" and t,
                timeout=30,
                what="the agent to measure the probe",
                poll_s=0.1,
            )
            status = job.wait(timeout=30, poll_s=0.3)
        agent_log = (data / "logs" / "agent-1.log").read_text()

    assert freed_s < FREED_WITHIN_S
    assert status.state == "cancelled" and status.phase == "cancelled"
    assert probe.result_json and probe.agent_id == baseline.agent_id
    dropped = _task(db, baseline.id)
    assert dropped.state == "cancelled" and dropped.result_json is None
    assert f"task {baseline.id} cancelled after" in agent_log
    assert "result refused (409)" not in agent_log, "the agent posted nothing for it"
