"""The job store on SQLite and on PostgreSQL: leases, expiry, late results."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import update

from budgetprune.schemas import (
    AgentRegister,
    DeviceFingerprint,
    JobCreate,
    LatencyStats,
    MeasurementResult,
    MeasureProtocol,
    RuntimeInfo,
    TaskResult,
)
from budgetprune.store import Job, MeasurementTask, User, crud, session_scope, utcnow


def _agent(session, device_class="cpu", runtimes=("onnxruntime",)):
    agent, _token = crud.register_agent(
        session,
        data=AgentRegister(
            name="a",
            device_class=device_class,
            runtimes=[RuntimeInfo(name=r, version="1") for r in runtimes],
        ),
    )
    return agent


def _task(session, device="cpu", runtime="onnxruntime", job_id=None):
    return crud.create_measurement(
        session,
        job_id=job_id,
        device=device,
        runtime=runtime,
        protocol=MeasureProtocol.quick(),
        input_shape=[1, 3, 32, 32],
        model_path="x.onnx",
        model_sha256="0" * 64,
    )


def _result(lease_id: str) -> TaskResult:
    stats = LatencyStats(
        runs=30,
        warmup=5,
        p50_ms=1,
        p90_ms=2,
        p99_ms=3,
        mean_ms=1.5,
        std_ms=0.1,
        min_ms=0.9,
        max_ms=3.1,
    )
    return TaskResult(
        lease_id=lease_id,
        ok=True,
        result=MeasurementResult(
            stats=stats,
            protocol=MeasureProtocol.quick(),
            device=DeviceFingerprint(),
            stable=True,
            model_sha256="0" * 64,
        ),
    )


def test_job_round_trip(db_settings):
    url = db_settings.database_url
    with session_scope(url) as s:
        job = crud.create_job(s, spec=JobCreate(model="deit_tiny_patch16_224", budget_ms=5))
        job_id = job.id
    with session_scope(url) as s:
        crud.update_job(s, job_id=job_id, state="running", progress=0.5)
    with session_scope(url) as s:
        job = crud.get_job(s, job_id=job_id)
        assert (job.state, job.progress) == ("running", 0.5)
        assert job.created_at.tzinfo is not None
        rows, count = crud.list_jobs(s)
        assert count == 1 and rows[0].id == job_id


def test_lease_matches_class_and_runtime(db_settings):
    url = db_settings.database_url
    with session_scope(url) as s:
        cpu, mobile = _agent(s), _agent(s, device_class="mobile")
        tvm_task = _task(s, runtime="tvm")
        cpu_task = _task(s)
    with session_scope(url) as s:
        assert crud.lease_next_task(s, agent=mobile, lease_seconds=60) is None
        leased = crud.lease_next_task(s, agent=cpu, lease_seconds=60)
        assert leased.id == cpu_task.id and leased.state == "leased" and leased.lease_id
        # the TVM task waits for an agent that has TVM; the CPU task is taken
        assert crud.lease_next_task(s, agent=cpu, lease_seconds=60) is None
        assert tvm_task.id


def test_one_task_is_leased_once(db_settings):
    url = db_settings.database_url
    with session_scope(url) as s:
        a, b = _agent(s), _agent(s)
        _task(s)
    with session_scope(url) as s:
        first = crud.lease_next_task(s, agent=a, lease_seconds=60)
        second = crud.lease_next_task(s, agent=b, lease_seconds=60)
    assert first is not None and second is None


def test_expired_lease_is_requeued_and_late_result_refused(db_settings):
    url = db_settings.database_url
    with session_scope(url) as s:
        a, b = _agent(s), _agent(s)
        _task(s)
    with session_scope(url) as s:
        old = crud.lease_next_task(s, agent=a, lease_seconds=60)
        s.execute(update(MeasurementTask).values(lease_expires_at=utcnow() - timedelta(seconds=1)))
    with session_scope(url) as s:
        new = crud.lease_next_task(s, agent=b, lease_seconds=60)
        assert new is not None and new.agent_id == b.id and new.attempts == 2
    with session_scope(url) as s:
        assert not crud.complete_task(
            s, task_id=old.id, agent_id=a.id, result=_result(old.lease_id)
        )
        assert crud.complete_task(s, task_id=new.id, agent_id=b.id, result=_result(new.lease_id))
    with session_scope(url) as s:
        task = crud.get_task(s, task_id=new.id)
        assert task.state == "done"
        assert MeasurementResult.model_validate_json(task.result_json).stats.p90_ms == 2


def test_a_long_poll_reads_whether_leasing_could_find_work(db_settings):
    """`task_may_be_ready` says yes when `lease_next_task` has something to do: a queued task
    the agent may take, or a lapsed lease to put back in the queue; it only reads."""
    url = db_settings.database_url
    with session_scope(url) as s:
        cpu, mobile = _agent(s), _agent(s, device_class="mobile")
    with session_scope(url) as s:
        assert not crud.task_may_be_ready(s, agent=cpu)
        _task(s, runtime="tvm")  # cpu offers no TVM
    with session_scope(url) as s:
        assert not crud.task_may_be_ready(s, agent=cpu)
        _task(s)
    with session_scope(url) as s:
        assert crud.task_may_be_ready(s, agent=cpu) and not crud.task_may_be_ready(s, agent=mobile)
        assert crud.lease_next_task(s, agent=cpu, lease_seconds=60) is not None
    with session_scope(url) as s:
        assert not crud.task_may_be_ready(s, agent=cpu), "leased and held"
        s.execute(update(MeasurementTask).values(lease_expires_at=utcnow() - timedelta(seconds=1)))
    with session_scope(url) as s:
        assert crud.task_may_be_ready(s, agent=mobile), "a lapsed lease goes back to the queue"


def test_cancel_job_tasks(db_settings):
    url = db_settings.database_url
    with session_scope(url) as s:
        job = crud.create_job(s, spec=JobCreate(model="deit_tiny_patch16_224", budget_ms=5))
        task = _task(s, job_id=job.id)
    with session_scope(url) as s:
        crud.cancel_job_tasks(s, job_id=job.id)
    with session_scope(url) as s:
        assert crud.get_task(s, task_id=task.id).state == "cancelled"


def test_lease_states_say_which_tasks_an_agent_must_drop(db_settings):
    """What a heartbeat answers: a cancelled job's leased task is revoked for its agent, so the
    agent stops measuring; a lapsed lease too; its own finished work is not."""
    url = db_settings.database_url
    with session_scope(url) as s:
        a, b = _agent(s), _agent(s)
        job = crud.create_job(s, spec=JobCreate(model="deit_tiny_patch16_224", budget_ms=5))
        for _ in range(3):
            _task(s, job_id=job.id)
        other_job = crud.create_job(s, spec=JobCreate(model="deit_tiny_patch16_224", budget_ms=5))
        _task(s, job_id=other_job.id)
    with session_scope(url) as s:
        cancelled, lapsed, done = (
            crud.lease_next_task(s, agent=a, lease_seconds=60) for _ in "abc"
        )
        theirs = crud.lease_next_task(s, agent=b, lease_seconds=60)
        ids = [cancelled.id, lapsed.id, done.id, theirs.id, "no-such-task"]
        assert crud.complete_task(s, task_id=done.id, agent_id=a.id, result=_result(done.lease_id))
        states = crud.lease_states(s, agent_id=a.id, task_ids=ids)
        assert states == {
            cancelled.id: "held",
            lapsed.id: "held",
            done.id: "finished",
            theirs.id: "revoked",
            "no-such-task": "revoked",
        }
        s.execute(
            update(MeasurementTask)
            .where(MeasurementTask.id == lapsed.id)
            .values(lease_expires_at=utcnow() - timedelta(seconds=1))
        )
    with session_scope(url) as s:
        crud.cancel_job_tasks(s, job_id=job.id)
    with session_scope(url) as s:
        states = crud.lease_states(s, agent_id=a.id, task_ids=ids[:3])
        assert states == {cancelled.id: "revoked", lapsed.id: "revoked", done.id: "finished"}
        assert crud.lease_states(s, agent_id=b.id, task_ids=[theirs.id]) == {theirs.id: "held"}
        assert crud.lease_states(s, agent_id=a.id, task_ids=[]) == {}


def test_heartbeat_extends_running_leases_only(db_settings):
    url = db_settings.database_url
    with session_scope(url) as s:
        a = _agent(s)
        _task(s)
    with session_scope(url) as s:
        task = crud.lease_next_task(s, agent=a, lease_seconds=5)
        first_expiry = task.lease_expires_at
    with session_scope(url) as s:
        assert crud.touch_agent(s, agent_id=a.id, extend_leases_s=600)
    with session_scope(url) as s:
        assert crud.get_task(s, task_id=task.id).lease_expires_at > first_expiry + timedelta(
            seconds=500
        )
        assert not crud.touch_agent(s, agent_id="nobody", extend_leases_s=600)


def test_user_tokens_are_stored_hashed(db_settings):
    url = db_settings.database_url
    with session_scope(url) as s:
        user, token = crud.create_user(s, name="alice")
    with session_scope(url) as s:
        stored = s.get(User, user.id)
        assert token not in stored.token_sha256 and len(stored.token_sha256) == 64
        assert crud.user_by_token(s, token=token).id == user.id
        assert crud.user_by_token(s, token=token + "x") is None


def test_a_job_is_held_by_one_worker_at_a_time(db_settings):
    url = db_settings.database_url
    with session_scope(url) as s:
        job = crud.create_job(s, spec=JobCreate(model="deit_tiny_patch16_224", budget_ms=5))
    with session_scope(url) as s:
        assert crud.claim_job(s, job_id=job.id, worker_id="w1", lease_seconds=60)
        assert not crud.claim_job(s, job_id=job.id, worker_id="w2", lease_seconds=60)
        assert crud.renew_job_lease(s, job_id=job.id, worker_id="w1", lease_seconds=60)
        assert not crud.renew_job_lease(s, job_id=job.id, worker_id="w2", lease_seconds=60)
        assert crud.orphaned_jobs(s, queued_after_s=3600) == []
        s.execute(update(Job).values(lease_expires_at=utcnow() - timedelta(seconds=1)))
    with session_scope(url) as s:
        assert crud.orphaned_jobs(s, queued_after_s=3600) == [job.id]
        assert crud.claim_job(s, job_id=job.id, worker_id="w2", lease_seconds=60)
        assert crud.get_job(s, job_id=job.id).attempts == 2


def test_long_queued_jobs_are_orphans(db_settings):
    url = db_settings.database_url
    with session_scope(url) as s:
        job = crud.create_job(s, spec=JobCreate(model="deit_tiny_patch16_224", budget_ms=5))
    with session_scope(url) as s:
        assert crud.orphaned_jobs(s, queued_after_s=60) == []
        s.execute(update(Job).values(enqueued_at=utcnow() - timedelta(seconds=120)))
    with session_scope(url) as s:
        assert crud.orphaned_jobs(s, queued_after_s=60) == [job.id]
        crud.mark_enqueued(s, job_id=job.id)
    with session_scope(url) as s:
        assert crud.orphaned_jobs(s, queued_after_s=60) == []


def test_a_pinned_task_goes_only_to_agents_like_the_baseline(db_settings):
    """A class can mix machines; a job's tasks after its baseline name the baseline's device
    key, so another CPU of the same class never measures them."""
    url = db_settings.database_url
    with session_scope(url) as s:
        kinds = {}
        for cpu in ("EPYC 9B14", "Xeon 8481C"):
            agent, _ = crud.register_agent(
                s,
                data=AgentRegister(
                    name=cpu,
                    device_class="cpu",
                    cpu_model=cpu,
                    cores=2,
                    runtimes=[RuntimeInfo(name="onnxruntime", version="1.32.0")],
                ),
            )
            kinds[cpu] = agent
        baseline = DeviceFingerprint(
            device_class="cpu", cpu_model="EPYC 9B14", cores=2, runtime_version="1.32.0"
        )
        _task(s, device=baseline.key)
    with session_scope(url) as s:
        xeon = s.get(type(kinds["Xeon 8481C"]), kinds["Xeon 8481C"].id)
        assert crud.queued_task_count(s, agent=xeon) == 0
        assert crud.lease_next_task(s, agent=xeon, lease_seconds=60) is None
    with session_scope(url) as s:
        epyc = s.get(type(kinds["EPYC 9B14"]), kinds["EPYC 9B14"].id)
        assert crud.queued_task_count(s, agent=epyc) == 1
        assert crud.lease_next_task(s, agent=epyc, lease_seconds=60) is not None
    other_version = baseline.model_copy(update={"runtime_version": "1.31.0"})
    assert other_version.key != baseline.key, "a runtime release is another device"


def test_a_store_from_an_older_version_gets_its_new_nullable_columns(db_settings):
    """Columns added since (training_json) are added in place; the old rows keep their data."""
    from sqlalchemy import inspect, text

    from budgetprune.store.db import add_missing_columns, get_engine

    engine = get_engine(db_settings.database_url)
    with session_scope(db_settings.database_url) as s:
        job_id = crud.create_job(s, spec=JobCreate(model="deit_tiny_patch16_224", budget_ms=5)).id
    with engine.begin() as conn:  # as an older version made it
        conn.execute(text('ALTER TABLE "jobs" DROP COLUMN "training_json"'))
    assert "training_json" not in {c["name"] for c in inspect(engine).get_columns("jobs")}
    assert add_missing_columns(engine) == ["jobs.training_json"]
    assert add_missing_columns(engine) == [], "a second start adds nothing"
    with session_scope(db_settings.database_url) as s:
        assert crud.get_job(s, job_id=job_id).training_json is None
