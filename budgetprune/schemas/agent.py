"""The agent protocol: what device agents and the API say to each other over HTTP.

Agents pull: they register, then long-poll for a leased task, download its ONNX file, measure and
post the result. An agent never talks to the database or the broker, so one behind NAT works.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from budgetprune.schemas.measurement import MeasurementResult, MeasureProtocol

DeviceClass = Literal["cpu", "mobile", "fpga"]


class RuntimeInfo(BaseModel):
    name: str
    version: str


class AgentRegister(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "name": "pixel-8",
                    "device_class": "mobile",
                    "cpu_model": "Google Tensor G3",
                    "cores": 9,
                    "os": "Android 14",
                    "runtimes": [{"name": "onnxruntime", "version": "1.32.0"}],
                }
            ]
        },
    )

    name: str = Field(min_length=1, max_length=100)
    device_class: DeviceClass = "cpu"
    cpu_model: str = Field("unknown", max_length=200)
    cores: int = Field(1, ge=1, le=4096)
    os: str = Field("unknown", max_length=200)
    runtimes: list[RuntimeInfo] = Field(min_length=1)


_AGENT_EXAMPLE = {
    "id": "4b7e9f0c2d1a4e6b8c3f5a7d9e1b2c4d",
    "name": "cpu-agent-1",
    "device_class": "cpu",
    "cpu_model": "AMD EPYC",
    "cores": 2,
    "os": "Linux-6.18-x86_64-with-glibc2.36",
    "runtimes": [{"name": "onnxruntime", "version": "1.32.0"}],
    "state": "busy",
    "last_heartbeat": "2026-11-23T19:40:40Z",
    "queued_tasks": 1,
}
_PROFILE_EXAMPLE = {
    "device": "fpga:zcu102-int8",
    "device_class": "fpga",
    "board": "Xilinx ZCU102",
    "calibration": "published DeiT-B latency on the ZCU102",
    "measured": False,
}


class AgentPublic(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [_AGENT_EXAMPLE]})

    id: str
    name: str
    device_class: DeviceClass
    cpu_model: str
    cores: int
    os: str
    runtimes: list[RuntimeInfo]
    state: Literal["online", "busy", "offline"]
    last_heartbeat: datetime
    queued_tasks: int = 0


class AgentRegistered(AgentPublic):
    model_config = ConfigDict(
        json_schema_extra={"examples": [_AGENT_EXAMPLE | {"state": "online", "token": "bpa_..."}]}
    )

    token: str = Field(description="this agent's own token; send it on every later call")


class ProfilePublic(BaseModel):
    """An analytical device: jobs name it as `device`; its latencies are estimates."""

    model_config = ConfigDict(json_schema_extra={"examples": [_PROFILE_EXAMPLE]})

    device: str = Field(description="what a job names as its device, e.g. fpga:zcu102-int8")
    device_class: DeviceClass
    board: str
    calibration: str = Field(description="the published latency the profile is fitted to")
    measured: bool = False


class AgentsPublic(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"data": [_AGENT_EXAMPLE], "count": 1, "profiles": [_PROFILE_EXAMPLE]}]
        }
    )

    data: list[AgentPublic]
    count: int
    profiles: list[ProfilePublic] = Field(
        default_factory=list, description="analytical profiles (no agent, estimates only)"
    )


class TaskLease(BaseModel):
    """A measurement task leased to one agent until `lease_expires_at`."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "task_id": "9d1c0b2a3e4f5a6b7c8d9e0f1a2b3c4d",
                    "lease_id": "5f0c1d2e3f4a5b6c7d8e9f0a1b2c3d4e",
                    "lease_expires_at": "2026-11-23T19:45:40Z",
                    "runtime": "onnxruntime",
                    "protocol": MeasureProtocol.certify().model_dump(),
                    "input_shape": [1, 3, 224, 224],
                    "model_sha256": "3a7bd3e2" * 8,
                    "model_url": "/v1/agents/4b7e9f0c/tasks/9d1c0b2a/model",
                }
            ]
        }
    )

    task_id: str
    lease_id: str
    lease_expires_at: datetime
    runtime: str
    protocol: MeasureProtocol
    input_shape: list[int]
    model_sha256: str
    model_url: str = Field(description="path on the API server to download the ONNX file")


TaskId = Annotated[str, Field(min_length=1, max_length=64)]


class AgentHeartbeat(BaseModel):
    """The body of a heartbeat: the tasks the agent is working on now (none when idle).

    Naming them lets the answer say which to drop, without the server keeping track of what
    each agent was last told."""

    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"task_ids": ["9d1c..."]}]}
    )

    task_ids: list[TaskId] = Field(default_factory=list, max_length=16)


class HeartbeatReply(BaseModel):
    """The answer to a heartbeat."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"cancelled_task_ids": []}]})

    cancelled_task_ids: list[str] = Field(
        default_factory=list,
        description="of the tasks the heartbeat named, those the agent must stop at once and "
        "not report: cancelled with their job, or no longer leased to this agent (the lease "
        "lapsed and the task went back to the queue); a result for them would get 409",
    )


class TaskResult(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"lease_id": "5f0c...", "ok": False, "error": "model failed to load"}]
        },
    )

    lease_id: str
    ok: bool
    result: MeasurementResult | None = None
    error: str | None = Field(None, max_length=4000)
