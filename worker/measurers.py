"""Where the pipeline's latencies come from: a device agent (through the job store), this
machine (the local `budgetprune prune`), or an analytical FPGA profile.

All hand back the same MeasurementResult, so the pipeline cannot tell them apart; only the
agent path crosses the network, and only the profile's results say `"measured": false`.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Protocol

from budgetprune.config import Settings
from budgetprune.errors import JobCancelledError, MeasurementError
from budgetprune.hashing import sha256_file
from budgetprune.schemas import (
    DeviceFingerprint,
    LatencyStats,
    MeasurementResult,
    MeasureProtocol,
)
from budgetprune.store import crud, session_scope
from budgetprune.store.db import read_scope


class Measurer(Protocol):
    def measure(
        self, onnx_path: Path, protocol: MeasureProtocol, input_shape: list[int]
    ) -> MeasurementResult: ...

    def pin(self, device: DeviceFingerprint) -> None:
        """Measure everything from now on where `device` (the baseline's) was measured."""


class LocalMeasurer:
    """Measures in this process with the agent's own runtimes and protocol."""

    def __init__(self, runtime: str) -> None:
        self.runtime = runtime

    def pin(self, device: DeviceFingerprint) -> None:
        """Every measurement is on this machine already."""

    def measure(
        self, onnx_path: Path, protocol: MeasureProtocol, input_shape: list[int]
    ) -> MeasurementResult:
        from device_agents.fingerprint import local_fingerprint
        from device_agents.measure import measure

        device = local_fingerprint(
            runtime=self.runtime,
            threads=protocol.threads,
            batch_size=protocol.batch_size,
            input_shape=input_shape,
        )
        return measure(onnx_path, self.runtime, protocol, device)


class AnalyticalMeasurer:
    """Estimates with an FPGA profile (`latency_tables.fpga`) from the exported file itself.

    A model is deterministic, so every percentile is the estimate and the result is stable by
    construction; its device fingerprint carries the profile's name and parameters and
    `measured: false`, which the certificate and report repeat."""

    def __init__(self, profile: str) -> None:
        from latency_tables.fpga import get_profile

        self.profile = get_profile(profile)

    def pin(self, device: DeviceFingerprint) -> None:
        """One profile, deterministic."""

    def measure(
        self, onnx_path: Path, protocol: MeasureProtocol, input_shape: list[int]
    ) -> MeasurementResult:
        from latency_tables.fpga import estimate_onnx

        ms = estimate_onnx(onnx_path, self.profile).latency_ms
        device = self.profile.fingerprint().model_copy(
            update={
                "threads": protocol.threads,
                "batch_size": protocol.batch_size,
                "input_shape": input_shape,
            }
        )
        stats = LatencyStats(
            runs=1, warmup=0, p50_ms=ms, p90_ms=ms, p99_ms=ms, mean_ms=ms, std_ms=0.0,
            min_ms=ms, max_ms=ms,
        )  # fmt: skip
        return MeasurementResult(
            stats=stats,
            protocol=protocol,
            device=device,
            stable=True,
            batch_p50_ms=[ms],
            model_sha256=sha256_file(onnx_path),
        )


class AgentMeasurer:
    """Queues a measurement task for the job's device and waits for an agent's result."""

    def __init__(self, settings: Settings, job_id: str, device: str, runtime: str) -> None:
        self.settings = settings
        self.job_id = job_id
        self.device = device
        self.runtime = runtime
        self.pinned: DeviceFingerprint | None = None
        self.spool = settings.jobs_dir / job_id / "measure"

    def pin(self, device: DeviceFingerprint) -> None:
        """A job that names a device class may find machines of several kinds in it: after the
        baseline only agents with the baseline's device key (CPU, cores, runtime and version)
        lease its tasks. A job that named one agent stays on that agent."""
        self.pinned = device
        if self.device == device.device_class:
            self.device = device.key

    def measure(
        self, onnx_path: Path, protocol: MeasureProtocol, input_shape: list[int]
    ) -> MeasurementResult:
        sha = sha256_file(onnx_path)
        self.spool.mkdir(parents=True, exist_ok=True)
        spooled = self.spool / f"{sha}.onnx"
        if not spooled.exists():
            tmp = spooled.with_suffix(".tmp")
            shutil.copyfile(onnx_path, tmp)
            tmp.replace(spooled)
        with session_scope(self.settings.database_url) as session:
            task = crud.create_measurement(
                session,
                job_id=self.job_id,
                device=self.device,
                runtime=self.runtime,
                protocol=protocol,
                input_shape=input_shape,
                model_path=str(spooled.resolve().relative_to(self.settings.data_dir.resolve())),
                model_sha256=sha,
            )
            task_id = task.id
        return self._wait(task_id, sha)

    def _wait(self, task_id: str, sha: str) -> MeasurementResult:
        deadline = time.monotonic() + self.settings.measurement_timeout_s
        while time.monotonic() < deadline:
            with read_scope(self.settings.database_url) as session:  # looked at 10x a second
                task = crud.get_task(session, task_id=task_id)
                job = crud.get_job(session, job_id=self.job_id)
                if job is not None and job.cancel_requested:
                    with session_scope(self.settings.database_url) as writer:
                        crud.cancel_job_tasks(writer, job_id=self.job_id)
                    raise JobCancelledError("cancelled by the user")
                if task is not None and task.state == "done" and task.result_json:
                    result = MeasurementResult.model_validate_json(task.result_json)
                    if result.model_sha256 != sha:
                        raise MeasurementError("the agent measured other bytes than were sent")
                    return result
                if task is not None and task.state == "failed":
                    raise MeasurementError(f"the device agent failed to measure: {task.error}")
            time.sleep(self.settings.poll_interval_s)
        where = f"device {self.device!r}"
        if self.pinned is not None and self.device == self.pinned.key:
            p = self.pinned
            where = (
                f"a {p.device_class} agent like the one that measured this job's baseline "
                f"({p.cpu_model}, {p.cores} cores, {p.runtime} {p.runtime_version})"
            )
        raise MeasurementError(
            f"no agent for {where} finished a measurement within "
            f"{self.settings.measurement_timeout_s:.0f} s; is one running "
            "('budgetprune agent --server URL --token T')?"
        )
