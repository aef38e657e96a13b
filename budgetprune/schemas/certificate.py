"""The certificate a job delivers (contracts.md section 3)."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from budgetprune.schemas.measurement import DeviceFingerprint, LatencyStats, MeasureProtocol


class Signer(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "algorithm": "ed25519",
                    "key_id": "9f86d081884c7d65",
                    "public_key": "d75a9801" * 8,
                }
            ]
        }
    )

    algorithm: str = "ed25519"
    key_id: str
    public_key: str = Field(description="raw Ed25519 public key, hex")


class Certificate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    job_id: str
    model_sha256: str
    arch_sha256: str
    budget_ms: float
    percentile: int = 90
    margin: float = Field(
        description="certified_ms is at most budget_ms * (1 - margin): headroom for re-measures"
    )
    measured: LatencyStats
    measured_repeats_p: list[float] = Field(
        description="the percentile in each independent repeat; the certified value is the max"
    )
    certified_ms: float
    predicted_ms: float | None
    passed: bool
    stable: bool
    protocol: MeasureProtocol
    device: DeviceFingerprint
    issued_at: datetime
    signer: Signer
    signature: str = ""
