"""Where a job's files live, and which of them the API serves."""

from __future__ import annotations

from pathlib import Path

from budgetprune.config import Settings

ARTIFACT_NAMES: tuple[str, ...] = (
    "model.onnx",
    "model.safetensors",
    "arch.json",
    "certificate.json",
    "report.json",
    "latency.svg",
    "training.svg",
)


def job_dir(settings: Settings, job_id: str) -> Path:
    return settings.jobs_dir / job_id


def job_out_dir(settings: Settings, job_id: str) -> Path:
    return job_dir(settings, job_id) / "out"
