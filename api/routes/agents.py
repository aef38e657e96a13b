"""The agent protocol: register, heartbeat, long-poll for a leased task, fetch, report.

Agents only ever call in, so news for an agent (its task was cancelled) rides on the answer to a
call it makes anyway: the heartbeat, which a busy agent holds open as a long poll."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response, status
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse

from api.deps import CallingAgent, SessionDep, SettingsDep, require_enrollment_token
from api.problems import COMMON_ERRORS, problem
from api.routes.devices import agent_public
from budgetprune.config import Settings
from budgetprune.schemas import (
    AgentHeartbeat,
    AgentRegister,
    AgentRegistered,
    HeartbeatReply,
    MeasureProtocol,
    TaskLease,
    TaskResult,
)
from budgetprune.store import Agent, crud, session_scope
from budgetprune.store.db import read_scope

router = APIRouter(responses=COMMON_ERRORS, prefix="/v1/agents", tags=["agents"])


@router.post(
    "/register",
    status_code=status.HTTP_201_CREATED,
    response_model=AgentRegistered,
    dependencies=[Depends(require_enrollment_token)],
)
def register(data: AgentRegister, session: SessionDep, settings: SettingsDep) -> AgentRegistered:
    """Enrol with the shared enrollment token; the answer carries this agent's own token,
    which every later call must use."""
    agent, token = crud.register_agent(session, data=data)
    return AgentRegistered(**agent_public(session, agent, settings).model_dump(), token=token)


def _beat(settings: Settings, agent_id: str) -> bool:
    with session_scope(settings.database_url) as session:
        return crud.touch_agent(session, agent_id=agent_id, extend_leases_s=settings.lease_seconds)


def _lease_states(settings: Settings, agent_id: str, task_ids: list[str]) -> dict[str, str]:
    with read_scope(settings.database_url) as session:
        return dict(crud.lease_states(session, agent_id=agent_id, task_ids=task_ids))


# A long poll still open when the API is stopping (`shutdown_grace_s` after SIGTERM)
RESTARTING = {503: {"description": "the server is restarting: poll again (Retry-After)"}}


@router.post("/{agent_id}/heartbeat", response_model=HeartbeatReply, responses=RESTARTING)
async def heartbeat(
    agent_id: str,
    agent: CallingAgent,
    settings: SettingsDep,
    request: Request,
    beat: AgentHeartbeat | None = None,
    wait: Annotated[
        float,
        Query(ge=0, le=60, description="long-poll seconds while a named task is still held"),
    ] = 0.0,
) -> HeartbeatReply:
    """Alive: extends the agent's running leases (a live agent keeps its tasks), and answers
    which of the tasks the body names the agent must drop (cancelled, or no longer its own).

    With `wait`, the answer is held until one of them is dropped or the wait is over, so a busy
    agent hears of a cancel within a poll interval while sending one request per heartbeat.
    The wait is capped at a third of the lease: the next heartbeat must come before the lease
    this one extended runs out."""
    task_ids = beat.task_ids if beat is not None else []
    if not await run_in_threadpool(_beat, settings, agent_id):
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"agent {agent_id} is not registered")
    if not task_ids:
        return HeartbeatReply()
    deadline = time.monotonic() + min(wait, settings.lease_seconds / 3)
    try:
        while True:
            states = await run_in_threadpool(_lease_states, settings, agent_id, task_ids)
            # also answer once a task finished: the agent has moved on and may watch another
            done = any(s != "held" for s in states.values()) or time.monotonic() >= deadline
            if done or await request.is_disconnected():
                return HeartbeatReply(
                    cancelled_task_ids=[t for t, s in states.items() if s == "revoked"]
                )
            await asyncio.sleep(min(settings.poll_interval_s, max(deadline - time.monotonic(), 0)))
    except asyncio.CancelledError:
        return _shutting_down(request)


def _try_lease(settings: Settings, agent: Agent) -> TaskLease | None:
    with session_scope(settings.database_url) as session:
        task = crud.lease_next_task(session, agent=agent, lease_seconds=settings.lease_seconds)
        if task is None:
            return None
        return TaskLease(
            task_id=task.id,
            lease_id=task.lease_id or "",
            lease_expires_at=task.lease_expires_at,
            runtime=task.runtime,
            protocol=MeasureProtocol.model_validate_json(task.protocol_json),
            input_shape=json.loads(task.input_shape_json),
            model_sha256=task.model_sha256,
            model_url=f"/v1/agents/{agent.id}/tasks/{task.id}/model",
        )


def _may_be_ready(settings: Settings, agent: Agent) -> bool:
    with read_scope(settings.database_url) as session:
        return crud.task_may_be_ready(session, agent=agent)


def _touch(settings: Settings, agent_id: str) -> None:
    with session_scope(settings.database_url) as session:
        crud.touch_agent(session, agent_id=agent_id)


@router.get(
    "/{agent_id}/tasks/next",
    response_model=TaskLease,
    responses={204: {"description": "no task within the wait"}, **RESTARTING},
)
async def next_task(
    agent_id: str,
    agent: CallingAgent,
    settings: SettingsDep,
    request: Request,
    wait: Annotated[float, Query(ge=0, le=60, description="long-poll seconds")] = 20.0,
) -> TaskLease | Response:
    deadline = time.monotonic() + wait
    await run_in_threadpool(_touch, settings, agent_id)  # polling is a sign of life
    try:
        while True:
            # An agent that went away (stopped, killed) must not be handed a task it will
            # never hear of (it would wait out the lease), nor hold the server's shutdown for
            # the rest of its wait.
            if await request.is_disconnected():
                return Response(status_code=status.HTTP_204_NO_CONTENT)
            # look with a read (often: a task waits at most a poll interval for its agent),
            # lease with a write only when there may be something to lease
            if await run_in_threadpool(_may_be_ready, settings, agent):
                lease = await run_in_threadpool(_try_lease, settings, agent)
                if lease is not None:
                    return lease
            if time.monotonic() >= deadline:
                return Response(status_code=status.HTTP_204_NO_CONTENT)
            await asyncio.sleep(min(settings.poll_interval_s, max(deadline - time.monotonic(), 0)))
    except asyncio.CancelledError:
        return _shutting_down(request)


def _shutting_down(request: Request) -> Response:
    """uvicorn cancels what still runs `shutdown_grace_s` after SIGTERM, and a cancelled
    handler answers a bare 500. Long polls are what is still running then, and an agent may
    simply ask again (it retries a 503)."""
    response = problem(
        status.HTTP_503_SERVICE_UNAVAILABLE, "the server is restarting: poll again", request
    )
    response.headers["Retry-After"] = "1"
    return response


@router.get("/{agent_id}/tasks/{task_id}/model", response_class=FileResponse)
def download_model(
    agent_id: str, task_id: str, agent: CallingAgent, session: SessionDep, settings: SettingsDep
) -> FileResponse:
    task = crud.get_task(session, task_id=task_id)
    if task is None or task.agent_id != agent_id or task.state != "leased":
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such task leased to this agent")
    root = settings.data_dir.resolve()
    path = (root / task.model_path).resolve()
    if not path.is_relative_to(root) or not path.is_file():
        raise HTTPException(status.HTTP_404_NOT_FOUND, "the task's model file is gone")
    return FileResponse(path, media_type="application/octet-stream", filename="model.onnx")


@router.post("/{agent_id}/tasks/{task_id}/result")
def post_result(
    agent_id: str, task_id: str, result: TaskResult, agent: CallingAgent, session: SessionDep
) -> dict[str, str]:
    if result.ok and result.result is None:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, "ok=true needs a result")
    if not crud.complete_task(session, task_id=task_id, agent_id=agent_id, result=result):
        raise HTTPException(
            status.HTTP_409_CONFLICT,
            "lease expired or not held by this agent; the task was handed to another agent",
        )
    return {"status": "recorded"}
