"""Store operations, keyword-only. Every state change that two processes could race on (leasing
a task, posting a result) is a compare-and-set UPDATE, so it is safe on SQLite and PostgreSQL
with any number of API processes."""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from collections.abc import Sequence
from datetime import timedelta
from typing import Literal

from sqlalchemy import exists, func, or_, select, update
from sqlalchemy.orm import Session

from budgetprune.schemas import AgentRegister, JobCreate, MeasureProtocol, TaskResult
from budgetprune.schemas.measurement import device_key
from budgetprune.store.models import (
    Agent,
    Job,
    JobEvent,
    MeasurementTask,
    User,
    new_id,
    utcnow,
)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_user(session: Session, *, name: str, is_admin: bool = False) -> tuple[User, str]:
    """A new user and its token; the token is returned once and only its hash is kept."""
    token = "bpu_" + secrets.token_urlsafe(32)
    user = User(name=name, is_admin=is_admin, token_sha256=hash_token(token))
    session.add(user)
    session.flush()
    return user, token


def user_by_token(session: Session, *, token: str) -> User | None:
    digest = hash_token(token)
    user = session.scalar(select(User).where(User.token_sha256 == digest))
    if user is None or not hmac.compare_digest(user.token_sha256, digest):
        return None
    return user


def create_job(
    session: Session,
    *,
    spec: JobCreate,
    owner_id: str | None = None,
    idempotency_key: str | None = None,
) -> Job:
    body = spec.model_dump_json()
    job = Job(
        spec_json=body,
        budget_ms=spec.budget_ms,
        owner_id=owner_id,
        idempotency_key=idempotency_key,
        request_sha256=hashlib.sha256(body.encode()).hexdigest(),
    )
    session.add(job)
    session.flush()
    return job


def job_by_idempotency_key(session: Session, *, owner_id: str | None, key: str) -> Job | None:
    return session.scalar(select(Job).where(Job.owner_id == owner_id, Job.idempotency_key == key))


def get_job(session: Session, *, job_id: str) -> Job | None:
    return session.get(Job, job_id)


def list_jobs(
    session: Session, *, owner_id: str | None = None, limit: int = 100, offset: int = 0
) -> tuple[list[Job], int]:
    """Jobs newest first; only `owner_id`'s when given (None: everyone's, for admins)."""
    where = [Job.owner_id == owner_id] if owner_id is not None else []
    count = session.scalar(select(func.count()).select_from(Job).where(*where)) or 0
    rows = session.scalars(
        select(Job).where(*where).order_by(Job.created_at.desc()).limit(limit).offset(offset)
    ).all()
    return list(rows), count


def update_job(session: Session, *, job_id: str, **fields: object) -> None:
    fields["updated_at"] = utcnow()
    session.execute(update(Job).where(Job.id == job_id).values(**fields))


def register_agent(session: Session, *, data: AgentRegister) -> tuple[Agent, str]:
    """A new agent and its own token: later calls prove they come from this agent."""
    token = "bpa_" + secrets.token_urlsafe(32)
    agent = Agent(
        token_sha256=hash_token(token),
        name=data.name,
        device_class=data.device_class,
        cpu_model=data.cpu_model,
        cores=data.cores,
        os=data.os,
        runtimes_json=json.dumps([r.model_dump() for r in data.runtimes]),
    )
    session.add(agent)
    session.flush()
    return agent, token


def touch_agent(session: Session, *, agent_id: str, extend_leases_s: int | None = None) -> bool:
    """Record that the agent is alive; with `extend_leases_s`, its running leases last that much
    longer from now, so a long measurement on a slow device is not handed to another agent
    while its agent still answers."""
    res = session.execute(update(Agent).where(Agent.id == agent_id).values(last_heartbeat=utcnow()))
    if res.rowcount == 1 and extend_leases_s:
        session.execute(
            update(MeasurementTask)
            .where(
                MeasurementTask.agent_id == agent_id,
                MeasurementTask.state == "leased",
                MeasurementTask.lease_expires_at >= utcnow(),
            )
            .values(lease_expires_at=utcnow() + timedelta(seconds=extend_leases_s))
        )
    return res.rowcount == 1


def list_agents(session: Session) -> list[Agent]:
    return list(session.scalars(select(Agent).order_by(Agent.registered_at)).all())


def agent_runtimes(agent: Agent) -> list[str]:
    return [r["name"] for r in json.loads(agent.runtimes_json)]


def agent_devices(agent: Agent) -> list[str]:
    """Every `device` a task may name for this agent to lease it: its id, its class, and its
    device keys (one per runtime it offers; see `device_key`)."""
    keys = [
        device_key(agent.device_class, agent.cpu_model, agent.cores, r["name"], r["version"])
        for r in json.loads(agent.runtimes_json or "[]")
    ]
    return [agent.id, agent.device_class, *keys]


def agents_for_device(session: Session, *, device: str) -> list[Agent]:
    """Agents that can serve `device`: a device class or one agent's id."""
    rows = session.scalars(
        select(Agent).where(or_(Agent.id == device, Agent.device_class == device))
    ).all()
    return list(rows)


def queued_task_count(session: Session, *, agent: Agent) -> int:
    return (
        session.scalar(
            select(func.count())
            .select_from(MeasurementTask)
            .where(
                MeasurementTask.state == "queued",
                MeasurementTask.device.in_(agent_devices(agent)),
            )
        )
        or 0
    )


def create_measurement(
    session: Session,
    *,
    job_id: str | None,
    device: str,
    runtime: str,
    protocol: MeasureProtocol,
    input_shape: list[int],
    model_path: str,
    model_sha256: str,
) -> MeasurementTask:
    task = MeasurementTask(
        job_id=job_id,
        device=device,
        runtime=runtime,
        protocol_json=protocol.model_dump_json(),
        input_shape_json=json.dumps(input_shape),
        model_path=model_path,
        model_sha256=model_sha256,
    )
    session.add(task)
    session.flush()
    return task


def expire_leases(session: Session) -> int:
    """Queue again every task whose lease ran out: its agent died or stalled."""
    res = session.execute(
        update(MeasurementTask)
        .where(MeasurementTask.state == "leased", MeasurementTask.lease_expires_at < utcnow())
        .values(state="queued", agent_id=None, lease_id=None, lease_expires_at=None)
    )
    return res.rowcount


def task_may_be_ready(session: Session, *, agent: Agent) -> bool:
    """Whether `lease_next_task` has something to do for `agent`: a queued task it may take, or
    a lapsed lease to put back in the queue. One read, so a long poll can look often without
    taking the store's write lock each time it finds nothing."""
    queued = select(MeasurementTask.id).where(
        MeasurementTask.state == "queued",
        MeasurementTask.device.in_(agent_devices(agent)),
        MeasurementTask.runtime.in_(agent_runtimes(agent)),
    )
    lapsed = select(MeasurementTask.id).where(
        MeasurementTask.state == "leased", MeasurementTask.lease_expires_at < utcnow()
    )
    return bool(session.scalar(select(exists(queued) | exists(lapsed))))


def lease_next_task(
    session: Session, *, agent: Agent, lease_seconds: int
) -> MeasurementTask | None:
    expire_leases(session)
    candidates = session.scalars(
        select(MeasurementTask.id)
        .where(
            MeasurementTask.state == "queued",
            MeasurementTask.device.in_(agent_devices(agent)),
            MeasurementTask.runtime.in_(agent_runtimes(agent)),
        )
        .order_by(MeasurementTask.created_at)
        .limit(5)
    ).all()
    for task_id in candidates:
        lease_id = new_id()
        res = session.execute(
            update(MeasurementTask)
            .where(MeasurementTask.id == task_id, MeasurementTask.state == "queued")
            .values(
                state="leased",
                agent_id=agent.id,
                lease_id=lease_id,
                lease_expires_at=utcnow() + timedelta(seconds=lease_seconds),
                attempts=MeasurementTask.attempts + 1,
            )
        )
        if res.rowcount == 1:
            session.flush()
            task = session.get(MeasurementTask, task_id)
            session.refresh(task)
            return task
    return None


def complete_task(session: Session, *, task_id: str, agent_id: str, result: TaskResult) -> bool:
    """Record a result if and only if the lease is still this agent's and still running."""
    values: dict[str, object] = {"state": "done" if result.ok else "failed"}
    if result.ok and result.result is not None:
        values["result_json"] = result.result.model_dump_json()
    else:
        values["error"] = result.error or "the agent reported a failure without a message"
    res = session.execute(
        update(MeasurementTask)
        .where(
            MeasurementTask.id == task_id,
            MeasurementTask.agent_id == agent_id,
            MeasurementTask.lease_id == result.lease_id,
            MeasurementTask.state == "leased",
            MeasurementTask.lease_expires_at >= utcnow(),
        )
        .values(**values)
    )
    return res.rowcount == 1


def get_task(session: Session, *, task_id: str) -> MeasurementTask | None:
    return session.get(MeasurementTask, task_id)


def cancel_job_tasks(session: Session, *, job_id: str) -> None:
    """Queued tasks are never handed out; leased ones keep their agent and lease id, so the
    agent's next heartbeat learns that its task was cancelled (`lease_states`)."""
    session.execute(
        update(MeasurementTask)
        .where(MeasurementTask.job_id == job_id, MeasurementTask.state.in_(["queued", "leased"]))
        .values(state="cancelled")
    )


LeaseState = Literal["held", "finished", "revoked"]


def lease_states(
    session: Session, *, agent_id: str, task_ids: Sequence[str]
) -> dict[str, LeaseState]:
    """Where each of the agent's tasks stands: `held` under a live lease of its own, `finished`
    (its result is recorded; a heartbeat may cross the result the agent just posted), or
    `revoked`: cancelled, lapsed, queued again, leased to another, or unknown. A result for a
    revoked task would be refused, so measuring it further only keeps the device from work."""
    states: dict[str, LeaseState] = dict.fromkeys(task_ids, "revoked")
    if not states:
        return states
    rows = session.execute(
        select(
            MeasurementTask.id,
            MeasurementTask.state,
            MeasurementTask.agent_id,
            MeasurementTask.lease_expires_at,
        ).where(MeasurementTask.id.in_(list(states)))
    ).all()
    now = utcnow()
    for task_id, state, holder, expires in rows:
        if holder != agent_id:
            continue
        if state == "leased" and expires is not None and expires >= now:
            states[task_id] = "held"
        elif state in ("done", "failed"):
            states[task_id] = "finished"
    return states


def add_job_event(session: Session, *, job_id: str, **fields: object) -> None:
    session.add(JobEvent(job_id=job_id, **fields))


def job_events(
    session: Session, *, job_id: str, after: int = 0, limit: int = 1000
) -> list[JobEvent]:
    return list(
        session.scalars(
            select(JobEvent)
            .where(JobEvent.job_id == job_id, JobEvent.id > after)
            .order_by(JobEvent.id)
            .limit(limit)
        ).all()
    )


def claim_job(session: Session, *, job_id: str, worker_id: str, lease_seconds: float) -> bool:
    """Take the job for `worker_id` unless another worker holds a live lease on it."""
    now = utcnow()
    res = session.execute(
        update(Job)
        .where(
            Job.id == job_id,
            Job.state.in_(["queued", "running"]),
            or_(
                Job.lease_expires_at.is_(None),
                Job.lease_expires_at < now,
                Job.worker_id == worker_id,
            ),
        )
        .values(
            state="running",
            worker_id=worker_id,
            lease_expires_at=now + timedelta(seconds=lease_seconds),
            attempts=Job.attempts + 1,
            error=None,
            updated_at=now,
        )
    )
    return res.rowcount == 1


def renew_job_lease(session: Session, *, job_id: str, worker_id: str, lease_seconds: float) -> bool:
    res = session.execute(
        update(Job)
        .where(Job.id == job_id, Job.worker_id == worker_id, Job.state == "running")
        .values(lease_expires_at=utcnow() + timedelta(seconds=lease_seconds))
    )
    return res.rowcount == 1


def orphaned_jobs(session: Session, *, queued_after_s: float) -> list[str]:
    """Jobs no worker holds: running with a lapsed lease, or queued for longer than
    `queued_after_s` since they were last enqueued (their message may be lost)."""
    now = utcnow()
    rows = session.scalars(
        select(Job.id).where(
            or_(
                (Job.state == "running") & (Job.lease_expires_at < now),
                (Job.state == "queued")
                & (Job.enqueued_at < now - timedelta(seconds=queued_after_s)),
            )
        )
    ).all()
    return list(rows)


def mark_enqueued(session: Session, *, job_id: str) -> None:
    session.execute(update(Job).where(Job.id == job_id).values(enqueued_at=utcnow()))
