"""`latency_table: auto` through a real agent: the first job on a device builds its lookup
table by sending the micro-benchmark graphs over the agent protocol, like any measurement, and
files it under the device's fingerprint; the next job there finds it under the fingerprint the
agent reports again (the pipeline's tests cover what a job does with a table it reuses)."""

from __future__ import annotations

import json

import pytest

from budgetprune.client import Client
from budgetprune.config import Settings
from budgetprune.schemas import JobCreate
from budgetprune.stack import Stack, stack_env
from budgetprune.store import MeasurementTask, session_scope
from latency_tables import load_table
from tests.utils.waiting import wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(300)]

# A small grid (tens of graphs, not hundreds) at 32x32: the same code path as the default one.
GRID = {
    "token_fractions": [1.0, 0.5],
    "dim_fractions": [0.5, 1.0],
    "hidden_fractions": [0.25, 1.0],
    "max_head_points": 2,
    "stack_depths": [1, 2],
    "deep_stack": 4,  # every block here is cheaper than its graph: all entries take it
    "evict_bytes": 1 << 20,
    "whole_models": 1,
    "context_rounds": 1,
}


def test_the_first_auto_job_builds_the_table_through_the_agent_and_the_next_reuses_it(
    tmp_path_factory,
):
    data = tmp_path_factory.mktemp("tables")
    env = stack_env(data, embedded=True, extra={"BUDGETPRUNE_TABLE_GRID": json.dumps(GRID)})
    with Stack(data, env) as stack:
        token = stack.start_all()
        # 0.9, not less: at 32x32 (5 tokens) per-op overhead dominates, so even a third of
        # the heads measured only ~19% faster, and 0.8 ended infeasible on a busy machine
        spec = JobCreate(
            model="deit_tiny_patch16_224", img_size=32, budget_fraction=0.9, latency_table="auto"
        )
        with Client(stack.url, token) as client:
            agent = client.devices().data[0]
            first = client.submit(spec)
            assert first.wait(timeout=240, poll_s=0.5).state == "succeeded", first.status.error
            report = json.loads(client.artifact(first.id, "report.json"))
            second = client.submit(spec)
            # past the baseline, a job has its table: built, or found under the fingerprint
            wait_until(
                lambda: second.refresh().phase in ("bounds", "search", "certify", "deliver"),
                what="the second job to pass its baseline",
            )
            events = client.events(second.id)
            client.cancel(second.id)
        store = Settings(data_dir=data.resolve(), agent_token=stack.agent_token).database_url
        with session_scope(store) as s:
            tasks = {
                j.id: s.query(MeasurementTask).filter_by(job_id=j.id).all() for j in (first, second)
            }
    (path,) = (data / "tables").glob("*.json")
    table = load_table(path)
    assert table.device.agent_id == agent.id, "measured by the agent, not the worker"
    assert table.device.cpu_model == agent.cpu_model and table.measurements >= 20
    assert table.deep_stack == GRID["deep_stack"], "the server's grid setting reached the builder"
    assert all(t.agent_id == agent.id and t.state == "done" for t in tasks[first.id])
    assert len(tasks[first.id]) >= table.measurements, "every graph went through the agent"
    assert len(tasks[second.id]) < table.measurements, "the second job did not rebuild it"
    assert "table" not in [e.phase for e in events], "the second job did not rebuild it"
    assert "table_s" in report["timings_s"]
    assert report["predictor"]["kind"] == "lookup-table"
    assert report["predictor"]["device"]["agent_id"] == agent.id
