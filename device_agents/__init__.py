"""Device agents: measure ONNX latency on the machine a model is meant for, and report it.

Light by design so it runs on phones and boards: numpy, onnxruntime, httpx, pydantic and
budgetprune's schemas and errors only; never torch.

    budgetprune agent  ->  daemon.main -> Agent.run: register, heartbeat, lease, measure, post
    budgetprune measure ->  measure(): the same timing procedure, locally
"""

from device_agents.client import DEFAULT_MAX_MODEL_BYTES, AgentClient
from device_agents.daemon import Agent, main
from device_agents.errors import (
    AgentError,
    AgentStoppedError,
    AuthenticationError,
    MeasurementStoppedError,
    ModelDownloadError,
    ProtocolError,
    ServerUnavailableError,
    TaskCancelledError,
    UnknownAgentError,
    UnknownRuntimeError,
)
from device_agents.fingerprint import HostInfo, cpu_model, host_info, local_fingerprint
from device_agents.measure import measure, resolve_input_shape, sha256_file
from device_agents.runtimes import (
    Runtime,
    Session,
    available_runtimes,
    check_self_contained,
    get_runtime,
    register_runtime,
    registered_names,
)
from device_agents.stats import latency_stats, p50s_agree

__all__ = [
    "DEFAULT_MAX_MODEL_BYTES",
    "Agent",
    "AgentClient",
    "AgentError",
    "AgentStoppedError",
    "AuthenticationError",
    "HostInfo",
    "MeasurementStoppedError",
    "ModelDownloadError",
    "ProtocolError",
    "Runtime",
    "ServerUnavailableError",
    "Session",
    "TaskCancelledError",
    "UnknownAgentError",
    "UnknownRuntimeError",
    "available_runtimes",
    "check_self_contained",
    "cpu_model",
    "get_runtime",
    "host_info",
    "latency_stats",
    "local_fingerprint",
    "main",
    "measure",
    "p50s_agree",
    "register_runtime",
    "registered_names",
    "resolve_input_shape",
    "sha256_file",
]
