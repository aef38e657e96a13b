"""Scale-out on one machine: two workers on one Redis, two agents of one device class, the
job store on PostgreSQL. Jobs are spread, and none runs twice."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import redis

from budgetprune.client import Client
from budgetprune.schemas import JobCreate
from budgetprune.stack import Stack, stack_env
from budgetprune.store import Job, MeasurementTask, session_scope

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from conftest import REDIS_TEST_URL, redis_available  # noqa: E402

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(400)]


def test_two_workers_two_agents_share_the_work(tmp_path, pg_database_url):
    if not redis_available():
        pytest.skip("Redis is not running on 127.0.0.1:6379")
    url = REDIS_TEST_URL.rsplit("/", 1)[0] + "/12"
    redis.Redis.from_url(url).flushdb()
    env = stack_env(
        tmp_path, embedded=False, extra={"REDIS_URL": url, "DATABASE_URL": pg_database_url}
    )
    with Stack(tmp_path, env) as stack:
        token = stack.start_all(workers=("worker-a", "worker-b"), agents=("agent-a", "agent-b"))
        with Client(stack.url, token) as client:
            # Budgets the dense model meets: each job is a baseline and a certification.
            jobs = [
                client.submit(
                    JobCreate(
                        model="deit_tiny_patch16_224", img_size=32, budget_ms=1000.0, margin=0.0
                    )
                )
                for _ in range(4)
            ]
            states = [job.wait(timeout=300, poll_s=0.5).state for job in jobs]
    assert states == ["succeeded"] * 4
    with session_scope(pg_database_url) as s:
        rows = [s.get(Job, job.id) for job in jobs]
        assert all(r.attempts == 1 for r in rows), "a job ran twice"
        workers = {r.worker_id.split(":")[1] for r in rows}  # the worker's pid
        tasks = s.query(MeasurementTask).all()
        odd = [
            (t.id, t.job_id, t.state, t.attempts, t.agent_id, t.created_at, t.error)
            for t in tasks
            if t.state != "done" or t.attempts != 1
        ]
    assert len(workers) == 2, "both workers took jobs"
    # seen once in a suite on a slow host (2026-12-07) and not since: say which task and how
    assert not odd, f"a task was measured twice or not finished: {odd}"
    # Over a dozen tasks (a baseline and two certification runs per job): each agent took some.
    assert len(tasks) >= 12
    assert len({t.agent_id for t in tasks}) == 2, "both agents measured"
