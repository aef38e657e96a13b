"""Where a latency was measured: the facts about this host that make a number reproducible.

Reads only what every Linux (including Android under Termux) and other OSes expose without
extra packages: /proc/cpuinfo, os.cpu_count() and the platform module.
"""

from __future__ import annotations

import os
import platform
from dataclasses import dataclass
from pathlib import Path

from budgetprune.schemas.agent import DeviceClass
from budgetprune.schemas.measurement import DeviceFingerprint
from device_agents.runtimes import get_runtime

__all__ = ["HostInfo", "cpu_model", "host_info", "local_fingerprint"]

_CPUINFO = Path("/proc/cpuinfo")
_DEVICE_TREE_MODEL = Path("/proc/device-tree/model")


@dataclass(frozen=True)
class HostInfo:
    cpu_model: str
    cores: int
    os: str


def _cpuinfo_field(text: str, key: str) -> str | None:
    for line in text.splitlines():
        name, sep, value = line.partition(":")
        if sep and name.strip().lower() == key and value.strip():
            return value.strip()
    return None


def _x86_generation(text: str) -> str:
    """' (family F, model M, stepping S)' where /proc/cpuinfo has them. Hypervisors often show
    one name for every generation ("AMD EPYC", "Intel(R) Xeon(R) Processor"): here a Zen 5
    EPYC ran DeiT-T in half the time of another "AMD EPYC", and a table or a job pinned to the
    name alone would mix them."""
    parts = [(k, _cpuinfo_field(text, k)) for k in ("cpu family", "model", "stepping")]
    if any(v is None for _, v in parts):
        return ""
    return " (" + ", ".join(f"{k.removeprefix('cpu ')} {v}" for k, v in parts) + ")"


def cpu_model(cpuinfo: Path = _CPUINFO, device_tree_model: Path = _DEVICE_TREE_MODEL) -> str:
    """Best available CPU/SoC name.

    x86 has "model name"; ARM Linux usually lacks it and may name the SoC in "Hardware" (older
    kernels, many phones) or the board in the device tree (Raspberry Pi, Jetson). platform's
    answers come last because on ARM they are often just the architecture.
    """
    text = ""
    try:
        text = cpuinfo.read_text(errors="replace")
    except OSError:
        pass
    name = _cpuinfo_field(text, "model name")
    if name:
        return (name + _x86_generation(text))[:200]
    value = _cpuinfo_field(text, "hardware")
    if value:
        return value[:200]
    try:
        board = device_tree_model.read_bytes().rstrip(b"\0").decode(errors="replace").strip()
    except OSError:
        board = ""
    if board:
        return board[:200]
    return (platform.processor() or platform.machine() or "unknown")[:200]


def host_info() -> HostInfo:
    return HostInfo(
        cpu_model=cpu_model(), cores=os.cpu_count() or 1, os=platform.platform()[:200] or "unknown"
    )


def local_fingerprint(
    runtime: str,
    threads: int,
    batch_size: int,
    input_shape: list[int],
    agent_id: str | None = None,
    device_class: DeviceClass = "cpu",
) -> DeviceFingerprint:
    host = host_info()
    return DeviceFingerprint(
        agent_id=agent_id,
        device_class=device_class,
        cpu_model=host.cpu_model,
        cores=host.cores,
        os=host.os,
        runtime=runtime,
        runtime_version=get_runtime(runtime).version(),
        threads=threads,
        batch_size=batch_size,
        input_shape=list(input_shape),
        measured=True,
    )
