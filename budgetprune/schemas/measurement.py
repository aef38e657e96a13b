"""How a latency is measured and what a measurement says.

Every latency the project quotes is one of these, carrying where (the device fingerprint) and how
(the protocol) it was taken.
"""

from __future__ import annotations

import hashlib
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class MeasureProtocol(BaseModel):
    """Warm-up, runs and the stability rule; recorded in every result."""

    model_config = ConfigDict(extra="forbid")

    warmup: int = Field(20, ge=0, le=10_000)
    runs: int = Field(200, ge=10, le=100_000, description="timed runs per batch")
    min_duration_s: float = Field(0.0, ge=0.0, le=600.0, description="keep running until this long")
    threads: int = Field(1, ge=1, le=256)
    batch_size: int = Field(1, ge=1, le=1024)
    max_batches: int = Field(
        4, ge=1, le=20, description="repeat batches until two consecutive p50s agree"
    )
    stability_tolerance: float = Field(0.05, gt=0.0, le=1.0)

    @classmethod
    def quick(cls, threads: int = 1) -> MeasureProtocol:
        """Search candidates: two batches of 100 runs (200 in all, the least any whole model
        is timed with), a loose agreement rule; never used for a certificate."""
        return cls(warmup=10, runs=100, max_batches=2, stability_tolerance=0.1, threads=threads)

    @classmethod
    def certify(cls, threads: int = 1) -> MeasureProtocol:
        return cls(warmup=30, runs=300, max_batches=4, stability_tolerance=0.03, threads=threads)

    @classmethod
    def mlperf_single_stream(cls, threads: int = 1) -> MeasureProtocol:
        """MLPerf Mobile single-stream: at least 1024 queries and 60 s, 90th percentile."""
        return cls(warmup=50, runs=1024, min_duration_s=60.0, max_batches=1, threads=threads)


class LatencyStats(BaseModel):
    model_config = ConfigDict(extra="forbid")

    runs: int
    warmup: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    mean_ms: float
    std_ms: float
    min_ms: float
    max_ms: float


class DeviceFingerprint(BaseModel):
    """Where a latency was measured; `measured` is false for an analytical profile."""

    model_config = ConfigDict(extra="allow")

    agent_id: str | None = None
    device_class: Literal["cpu", "mobile", "fpga"] = "cpu"
    cpu_model: str = "unknown"
    cores: int = 1
    os: str = "unknown"
    runtime: str = "onnxruntime"
    runtime_version: str = "unknown"
    threads: int = 1
    batch_size: int = 1
    input_shape: list[int] = Field(default_factory=list)
    measured: bool = True

    @property
    def key(self) -> str:
        return device_key(
            self.device_class, self.cpu_model, self.cores, self.runtime, self.runtime_version
        )


def device_key(
    device_class: str, cpu_model: str, cores: int, runtime: str, runtime_version: str
) -> str:
    """Agents with one key time a model alike (same CPU, core count, runtime and version). A
    job names its baseline's key for every later measurement, so its budget, its candidates
    and its certificate all come from one kind of device even when a class mixes machines."""
    what = "\0".join([cpu_model, str(cores), runtime, runtime_version])
    return f"{device_class}@{hashlib.sha256(what.encode()).hexdigest()[:16]}"


class MeasurementResult(BaseModel):
    model_config = ConfigDict(extra="forbid")

    stats: LatencyStats
    protocol: MeasureProtocol
    device: DeviceFingerprint
    stable: bool = Field(description="two consecutive batches agreed within the tolerance")
    batch_p50_ms: list[float] = Field(default_factory=list)
    model_sha256: str
