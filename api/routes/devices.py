"""Devices: the registered agents and their state."""

from __future__ import annotations

import json

from fastapi import APIRouter, Depends
from sqlalchemy.orm import Session

from api.deps import SessionDep, SettingsDep, get_current_user
from api.problems import COMMON_ERRORS
from budgetprune.config import Settings
from budgetprune.schemas import AgentPublic, AgentsPublic, ProfilePublic, RuntimeInfo
from budgetprune.store import Agent, MeasurementTask, crud, utcnow
from latency_tables.fpga import PROFILES

router = APIRouter(
    responses=COMMON_ERRORS,
    prefix="/v1/devices",
    tags=["devices"],
    dependencies=[Depends(get_current_user)],
)


def agent_state(session: Session, agent: Agent, settings: Settings) -> str:
    age = (utcnow() - agent.last_heartbeat).total_seconds()
    if age > settings.agent_offline_after_s:
        return "offline"
    busy = session.query(MeasurementTask).filter_by(agent_id=agent.id, state="leased").count()
    return "busy" if busy else "online"


def agent_public(session: Session, agent: Agent, settings: Settings) -> AgentPublic:
    return AgentPublic(
        id=agent.id,
        name=agent.name,
        device_class=agent.device_class,  # type: ignore[arg-type]
        cpu_model=agent.cpu_model,
        cores=agent.cores,
        os=agent.os,
        runtimes=[RuntimeInfo(**r) for r in json.loads(agent.runtimes_json)],
        state=agent_state(session, agent, settings),  # type: ignore[arg-type]
        last_heartbeat=agent.last_heartbeat,
        queued_tasks=crud.queued_task_count(session, agent=agent),
    )


@router.get("", response_model=AgentsPublic)
def list_devices(session: SessionDep, settings: SettingsDep) -> AgentsPublic:
    agents = [agent_public(session, a, settings) for a in crud.list_agents(session)]
    profiles = [
        ProfilePublic(
            device=f"fpga:{p.name}", device_class="fpga", board=p.board, calibration=p.calibration
        )
        for p in PROFILES.values()
    ]
    return AgentsPublic(data=agents, count=len(agents), profiles=profiles)
