"""Runtime plug-ins: one file per runtime, each registering itself under the name leases use."""

from device_agents.runtimes import ort as _ort  # noqa: F401 - registers "onnxruntime"
from device_agents.runtimes import tvm as _tvm  # noqa: F401 - registers "tvm" where importable
from device_agents.runtimes.base import Runtime, Session
from device_agents.runtimes.onnx_file import check_self_contained
from device_agents.runtimes.registry import (
    available_runtimes,
    get_runtime,
    register_runtime,
    registered_names,
)

__all__ = [
    "Runtime",
    "Session",
    "available_runtimes",
    "check_self_contained",
    "get_runtime",
    "register_runtime",
    "registered_names",
]
