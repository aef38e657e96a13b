"""Jobs: submit, poll, list, cancel, download artifacts."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Annotated

from celery import Celery
from fastapi import APIRouter, Header, HTTPException, Query, Request, Response, status
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, StreamingResponse
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from api.deps import CeleryDep, CurrentUser, SessionDep, SettingsDep
from api.problems import COMMON_ERRORS
from budgetprune.artifacts import ARTIFACT_NAMES, job_out_dir
from budgetprune.catalog import get_model_info
from budgetprune.checkpoints import check_checkpoint_fits
from budgetprune.config import Settings
from budgetprune.filecheck import UnsafeFileError
from budgetprune.schemas import (
    TERMINAL_STATES,
    JobCreate,
    JobEventPublic,
    JobEventsPublic,
    JobPublic,
    JobsPublic,
    TrainingProgress,
)
from budgetprune.store import Job, JobEvent, User, crud, session_scope
from budgetprune.store.db import read_scope, session_factory
from latency_tables.fpga import PROFILES, profile_devices
from worker.celery_app import enqueue_job

router = APIRouter(responses=COMMON_ERRORS, prefix="/v1/jobs", tags=["jobs"])

DEVICE_CLASSES = ("cpu", "mobile", "fpga")


def job_public(job: Job, settings: Settings) -> JobPublic:
    out = job_out_dir(settings, job.id)
    artifacts = [n for n in ARTIFACT_NAMES if (out / n).is_file()] if out.is_dir() else []
    spec = JobCreate.model_validate_json(job.spec_json)
    return JobPublic(
        id=job.id,
        state=job.state,  # type: ignore[arg-type]
        phase=job.phase,
        progress=job.progress,
        spec=spec,
        budget_ms=job.budget_ms,
        measured_ms=job.measured_ms,
        measured=spec.fpga_profile is None,
        predicted_ms=job.predicted_ms,
        training=TrainingProgress.model_validate_json(job.training_json)
        if job.training_json
        else None,
        error=job.error,
        artifacts=artifacts,
        created_at=job.created_at,
        updated_at=job.updated_at,
    )


def event_public(event: JobEvent) -> JobEventPublic:
    return JobEventPublic(
        id=event.id,
        at=event.at,
        phase=event.phase,
        progress=event.progress,
        measured_ms=event.measured_ms,
        predicted_ms=event.predicted_ms,
        budget_ms=event.budget_ms,
        training=TrainingProgress.model_validate_json(event.training_json)
        if event.training_json
        else None,
    )


def _check_device(session: Session, spec: JobCreate) -> None:
    if spec.device.startswith("fpga:"):
        if spec.fpga_profile not in PROFILES:
            raise HTTPException(
                status.HTTP_422_UNPROCESSABLE_CONTENT,
                f"no FPGA profile {spec.device.partition(':')[2]!r}; profiles: "
                + profile_devices(),
            )
        return
    agents = crud.agents_for_device(session, device=spec.device)
    if not agents:
        if spec.device == "fpga":
            raise HTTPException(
                status.HTTP_422_UNPROCESSABLE_CONTENT,
                "no FPGA board runs an agent here; for an analytical estimate (measured: false) "
                "name a profile: " + profile_devices(),
            )
        if spec.device in DEVICE_CLASSES:
            raise HTTPException(
                status.HTTP_422_UNPROCESSABLE_CONTENT,
                f"no agent of device class {spec.device!r} is registered; start one with "
                f"'budgetprune agent --server URL --token T --device-class {spec.device}'",
            )
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            f"unknown device {spec.device!r}: give a device class ({', '.join(DEVICE_CLASSES)}) "
            "or the id of a registered agent (GET /v1/devices)",
        )
    if not any(spec.runtime in crud.agent_runtimes(a) for a in agents):
        offered = sorted({r for a in agents for r in crud.agent_runtimes(a)})
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            f"no agent for device {spec.device!r} offers runtime {spec.runtime!r}; "
            f"they offer: {', '.join(offered)}",
        )


def _check_paths(settings: Settings, spec: JobCreate, user: User) -> None:
    """Jobs may name files only inside the user's own uploads or the server's data roots."""
    roots = settings.allowed_roots(user.id)
    named = (
        ("dataset", spec.dataset),
        ("checkpoint", spec.checkpoint),
        ("latency_table", spec.latency_table),
    )
    for field, value in named:
        if value is None or (field == "latency_table" and value == "auto"):
            continue
        path = Path(value).resolve()
        if not any(path.is_relative_to(root) for root in roots):
            raise HTTPException(
                status.HTTP_422_UNPROCESSABLE_CONTENT,
                f"{field} must be inside one of the server's data roots "
                f"({', '.join(str(r) for r in roots)}); set BUDGETPRUNE_DATA_ROOTS to allow more",
            )
        if not path.exists():
            raise HTTPException(
                status.HTTP_422_UNPROCESSABLE_CONTENT, f"{field} {value} does not exist"
            )


@router.post(
    "",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=JobPublic,
    responses={
        200: {"description": "the job an earlier request with this Idempotency-Key created"},
        422: {"description": "unknown model or device, bad budget, or a reused key"},
    },
)
async def create_job(
    spec: JobCreate,
    request: Request,
    response: Response,
    user: CurrentUser,
    settings: SettingsDep,
    celery: CeleryDep,
    idempotency_key: Annotated[str | None, Header(max_length=200)] = None,
) -> JobPublic:
    """Queue a job. With an `Idempotency-Key`, a retried request returns the same job instead
    of a second one; the same key with another body is refused."""
    # One thread hop per submission, and only `submit_concurrency` at once: every thread that
    # runs Python takes the interpreter from the event loop, which serves the status reads.
    async with _submit_slots(request, settings):
        job, replayed = await run_in_threadpool(
            _submit, settings, celery, spec, user, idempotency_key
        )
    if replayed:
        response.status_code = status.HTTP_200_OK
    response.headers["Location"] = f"/v1/jobs/{job.id}"
    return job


def _submit_slots(request: Request, settings: Settings) -> asyncio.Semaphore:
    """The process's submission slots, made in the loop that serves it (a semaphore belongs
    to one event loop; tests start many)."""
    loop = asyncio.get_running_loop()
    slots = getattr(request.app.state, "submit_slots", None)
    if slots is None or slots[0] is not loop:
        slots = (loop, asyncio.Semaphore(settings.submit_concurrency))
        request.app.state.submit_slots = slots
    return slots[1]


def _submit(
    settings: Settings,
    celery: Celery,
    spec: JobCreate,
    user: User,
    idempotency_key: str | None,
) -> tuple[JobPublic, bool]:
    """Validate, store and enqueue in one session; (the job, whether it was an earlier one)."""
    with session_factory(settings.database_url)() as session:
        if idempotency_key:
            earlier = crud.job_by_idempotency_key(session, owner_id=user.id, key=idempotency_key)
            if earlier is not None:
                return _replayed(earlier, spec, settings), True
        _check_device(session, spec)
        _check_paths(settings, spec, user)
        _check_checkpoint(spec)
        try:
            job = crud.create_job(
                session, spec=spec, owner_id=user.id, idempotency_key=idempotency_key
            )
            session.commit()  # the worker must find the row before it sees the message
        except IntegrityError:
            # Two requests with one key raced past the lookup; the unique constraint let one in.
            session.rollback()
            key = idempotency_key or ""
            earlier = crud.job_by_idempotency_key(session, owner_id=user.id, key=key)
            if earlier is None:
                raise
            return _replayed(earlier, spec, settings), True
        enqueue_job(celery, job.id)
        return job_public(job, settings), False


def _replayed(earlier: Job, spec: JobCreate, settings: Settings) -> JobPublic:
    """The job an earlier request with this Idempotency-Key created, if it asked the same."""
    if earlier.spec_json != spec.model_dump_json():
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            "this Idempotency-Key was used with another request body; use a new key",
        )
    return job_public(earlier, settings)


def _check_checkpoint(spec: JobCreate) -> None:
    """A safetensors checkpoint that cannot fit the model is refused now, naming the tensors;
    a .pt is checked by the worker when it loads it (its shapes are inside a pickle)."""
    if spec.checkpoint is None or Path(spec.checkpoint).suffix.lower() != ".safetensors":
        return
    info = get_model_info(spec.model)
    img_size = spec.img_size or info.img_size
    num_classes = info.num_classes if spec.num_classes is None else spec.num_classes
    try:
        check_checkpoint_fits(Path(spec.checkpoint), info, img_size, num_classes)
    except UnsafeFileError as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, f"checkpoint: {exc}") from None


@router.get("", response_model=JobsPublic)
def list_jobs(
    user: CurrentUser,
    session: SessionDep,
    settings: SettingsDep,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    offset: Annotated[int, Query(ge=0, le=2**31 - 1)] = 0,
) -> JobsPublic:
    owner = None if user.is_admin else user.id
    rows, count = crud.list_jobs(session, owner_id=owner, limit=limit, offset=offset)
    return JobsPublic(data=[job_public(j, settings) for j in rows], count=count)


def _get_or_404(session: Session, job_id: str, user: User) -> Job:
    """Another user's job is as invisible as a missing one."""
    job = crud.get_job(session, job_id=job_id)
    if job is None or not (user.is_admin or job.owner_id == user.id):
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no job {job_id}")
    return job


def _read_job(settings: Settings, job_id: str, user: User) -> JobPublic:
    with read_scope(settings.database_url) as session:
        return job_public(_get_or_404(session, job_id, user), settings)


@router.get("/{job_id}", response_model=JobPublic)
async def get_job(job_id: str, user: CurrentUser, settings: SettingsDep) -> JobPublic:
    """The page every client polls: one thread-pool hop and one autocommit read (a hop and a
    transaction's round trips cost more than the query on a small VM, and a hundred pollers
    pay them every second)."""
    return await run_in_threadpool(_read_job, settings, job_id, user)


@router.post("/{job_id}/cancel", status_code=status.HTTP_202_ACCEPTED, response_model=JobPublic)
@router.delete("/{job_id}", status_code=status.HTTP_202_ACCEPTED, response_model=JobPublic)
def cancel_job(
    job_id: str, user: CurrentUser, session: SessionDep, settings: SettingsDep
) -> JobPublic:
    """Ask the job to stop; a queued job stops at once, a running one at its next step."""
    job = _get_or_404(session, job_id, user)
    if job.state not in TERMINAL_STATES:
        fields: dict[str, object] = {"cancel_requested": True}
        if job.state == "queued":
            fields |= {"state": "cancelled", "phase": "cancelled"}
        crud.update_job(session, job_id=job_id, **fields)
        crud.cancel_job_tasks(session, job_id=job_id)
        session.commit()
        session.refresh(job)
    return job_public(job, settings)


@router.get("/{job_id}/artifacts/{name}", response_class=FileResponse)
def get_artifact(
    job_id: str, name: str, user: CurrentUser, session: SessionDep, settings: SettingsDep
):
    _get_or_404(session, job_id, user)
    if name not in ARTIFACT_NAMES:
        raise HTTPException(
            status.HTTP_404_NOT_FOUND,
            f"no artifact {name!r}; artifacts are: {', '.join(ARTIFACT_NAMES)}",
        )
    path = job_out_dir(settings, job_id) / name
    if not path.is_file():
        raise HTTPException(
            status.HTTP_404_NOT_FOUND, f"{name} is not ready: the job has not finished"
        )
    return FileResponse(path, filename=name)


@router.get("/{job_id}/events", response_model=JobEventsPublic)
def list_events(
    job_id: str,
    user: CurrentUser,
    session: SessionDep,
    after: Annotated[
        int, Query(ge=0, le=2**31 - 1, description="only events with a larger id")
    ] = 0,
) -> JobEventsPublic:
    """The job's progress history (phase, progress, measured/predicted/budget ms)."""
    _get_or_404(session, job_id, user)
    rows = crud.job_events(session, job_id=job_id, after=after)
    data = [event_public(r) for r in rows]
    return JobEventsPublic(data=data, count=len(data))


@router.get(
    "/{job_id}/stream",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}}},
)
async def stream(
    job_id: str, request: Request, user: CurrentUser, settings: SettingsDep
) -> StreamingResponse:
    """Server-sent events: `event: job` with the job's status whenever it changes, `event:
    progress` for each new history entry; the stream ends when the job does."""
    with session_scope(settings.database_url) as session:
        _get_or_404(session, job_id, user)

    def snapshot(after: int) -> tuple[JobPublic, list[JobEventPublic]]:
        with read_scope(settings.database_url) as s:
            job = crud.get_job(s, job_id=job_id)
            events = crud.job_events(s, job_id=job_id, after=after)
            return job_public(job, settings), [event_public(e) for e in events]

    async def events() -> AsyncIterator[str]:
        last_seen, last_event = None, 0
        while not await request.is_disconnected():
            status_, new = await run_in_threadpool(snapshot, last_event)
            for event in new:
                last_event = event.id
                yield f"event: progress\ndata: {event.model_dump_json()}\n\n"
            if status_.updated_at != last_seen or new:
                last_seen = status_.updated_at
                yield f"event: job\ndata: {status_.model_dump_json()}\n\n"
            if status_.state in TERMINAL_STATES:
                return
            await asyncio.sleep(max(settings.poll_interval_s * 2, 0.5))

    return StreamingResponse(
        events(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"}
    )
