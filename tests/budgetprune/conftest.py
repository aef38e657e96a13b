"""A signed, delivered folder (fake model bytes) for the certificate and verify tests."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from budgetprune.hashing import sha256_file
from budgetprune.schemas import (
    ArchSpec,
    Certificate,
    DeviceFingerprint,
    LatencyStats,
    MeasureProtocol,
    Signer,
)
from budgetprune.signing import CertificateSigner


def _cert(model_sha: str, arch_sha: str) -> Certificate:
    stats = LatencyStats(
        runs=600,
        warmup=30,
        p50_ms=4.0,
        p90_ms=4.2,
        p99_ms=4.9,
        mean_ms=4.05,
        std_ms=0.2,
        min_ms=3.9,
        max_ms=6.0,
    )
    return Certificate(
        job_id="j1",
        model_sha256=model_sha,
        arch_sha256=arch_sha,
        budget_ms=5.0,
        margin=0.05,
        measured=stats,
        measured_repeats_p=[4.1, 4.2],
        certified_ms=4.2,
        predicted_ms=4.0,
        passed=True,
        stable=True,
        protocol=MeasureProtocol.certify(),
        device=DeviceFingerprint(agent_id="a1", cpu_model="Test CPU"),
        issued_at=datetime.now(UTC),
        signer=Signer(key_id="", public_key=""),
    )


@pytest.fixture
def delivered(tmp_path):
    signer = CertificateSigner.load_or_create(tmp_path / "keys" / "k")
    out = tmp_path / "out"
    out.mkdir()
    (out / "model.onnx").write_bytes(b"model bytes")
    arch = ArchSpec.dense("deit_tiny_patch16_224", img_size=32)
    (out / "arch.json").write_text(arch.model_dump_json())
    cert = signer.sign(_cert(sha256_file(out / "model.onnx"), arch.sha256()))
    (out / "certificate.json").write_text(cert.model_dump_json())
    return out, signer
