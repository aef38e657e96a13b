"""Pydantic models at every boundary: job spec, arch spec, agent protocol, certificate."""

from budgetprune.schemas.agent import (
    AgentHeartbeat,
    AgentPublic,
    AgentRegister,
    AgentRegistered,
    AgentsPublic,
    HeartbeatReply,
    ProfilePublic,
    RuntimeInfo,
    TaskLease,
    TaskResult,
)
from budgetprune.schemas.arch import ArchSpec, BlockSpec, TokenSpec, load_arch
from budgetprune.schemas.certificate import Certificate, Signer
from budgetprune.schemas.job import (
    TERMINAL_STATES,
    JobCreate,
    JobEventPublic,
    JobEventsPublic,
    JobPublic,
    JobsPublic,
    JobState,
    TrainingProgress,
)
from budgetprune.schemas.measurement import (
    DeviceFingerprint,
    LatencyStats,
    MeasurementResult,
    MeasureProtocol,
)

__all__ = [
    "TERMINAL_STATES",
    "AgentHeartbeat",
    "AgentPublic",
    "AgentRegister",
    "AgentRegistered",
    "AgentsPublic",
    "ProfilePublic",
    "ArchSpec",
    "BlockSpec",
    "Certificate",
    "DeviceFingerprint",
    "HeartbeatReply",
    "JobCreate",
    "JobEventPublic",
    "JobEventsPublic",
    "JobPublic",
    "JobState",
    "JobsPublic",
    "LatencyStats",
    "MeasureProtocol",
    "MeasurementResult",
    "RuntimeInfo",
    "Signer",
    "TaskLease",
    "TaskResult",
    "TokenSpec",
    "TrainingProgress",
    "load_arch",
]
