"""Probes and metrics, open without a token so orchestrators and Prometheus can reach them;
they reveal counts, never job contents."""

from __future__ import annotations

from fastapi import APIRouter, Response, status
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import PlainTextResponse
from sqlalchemy import func, select, text

from api.deps import CeleryDep, SessionDep, SettingsDep
from api.routes.devices import agent_state
from budgetprune.store import Job, MeasurementTask, crud
from worker.celery_app import BROKER_LOCK

router = APIRouter(tags=["health"])

JOB_STATES = ("queued", "running", "succeeded", "failed", "infeasible", "cancelled")


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """The process answers."""
    return {"status": "ok"}


@router.get("/readyz", responses={503: {"description": "the store or the broker is down"}})
async def readyz(session: SessionDep, celery: CeleryDep, response: Response) -> dict[str, str]:
    """Ready when the job store and the broker both answer."""
    checks: dict[str, str] = {}
    try:
        await run_in_threadpool(session.execute, text("SELECT 1"))
        checks["database"] = "ok"
    except Exception as exc:  # any failure means not ready
        checks["database"] = f"down: {type(exc).__name__}"
    try:
        await run_in_threadpool(_ping_broker, celery)
        checks["broker"] = "ok"
    except Exception as exc:
        checks["broker"] = f"down: {type(exc).__name__}"
    if any(v != "ok" for v in checks.values()):
        response.status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    return checks


def _ping_broker(celery) -> None:
    with BROKER_LOCK, celery.connection_for_write() as conn:
        conn.ensure_connection(max_retries=1, timeout=2)


@router.get("/metrics", response_class=PlainTextResponse)
def metrics(session: SessionDep, settings: SettingsDep) -> str:
    """Prometheus text format, computed from the store at scrape time (so every API process
    reports the same numbers)."""
    lines: list[str] = []

    def gauge(name: str, help_: str, samples: list[tuple[str, float]]) -> None:
        lines.extend([f"# HELP {name} {help_}", f"# TYPE {name} gauge"])
        lines.extend(f"{name}{labels} {value}" for labels, value in samples)

    by_state = dict(session.execute(select(Job.state, func.count()).group_by(Job.state)).all())
    gauge(
        "budgetprune_jobs",
        "Jobs by state.",
        [(f'{{state="{s}"}}', by_state.get(s, 0)) for s in JOB_STATES],
    )
    tasks = dict(
        session.execute(
            select(MeasurementTask.state, func.count()).group_by(MeasurementTask.state)
        ).all()
    )
    gauge(
        "budgetprune_measurement_queue_depth",
        "Measurement tasks waiting for an agent.",
        [("", tasks.get("queued", 0))],
    )
    gauge(
        "budgetprune_measurements_leased",
        "Measurement tasks held by an agent.",
        [("", tasks.get("leased", 0))],
    )
    agents = crud.list_agents(session)
    states = [agent_state(session, a, settings) for a in agents]
    gauge(
        "budgetprune_agents",
        "Registered agents by state.",
        [(f'{{state="{s}"}}', states.count(s)) for s in ("online", "busy", "offline")],
    )
    done = session.execute(
        select(MeasurementTask.created_at, MeasurementTask.updated_at).where(
            MeasurementTask.state == "done"
        )
    ).all()
    seconds = [(u - c).total_seconds() for c, u in done]
    lines += [
        "# HELP budgetprune_measurement_seconds Time from queuing a measurement to its result.",
        "# TYPE budgetprune_measurement_seconds summary",
        f"budgetprune_measurement_seconds_count {len(seconds)}",
        f"budgetprune_measurement_seconds_sum {sum(seconds):.6f}",
    ]
    return "\n".join(lines) + "\n"
