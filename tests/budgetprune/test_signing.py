from __future__ import annotations

import json

import pytest

from budgetprune.errors import CertificateError
from budgetprune.schemas import (
    ArchSpec,
    Certificate,
)
from budgetprune.signing import CertificateSigner, check_signature
from budgetprune.verify import verify_dir


def test_key_is_created_once_and_reloaded(tmp_path):
    path = tmp_path / "k"
    a = CertificateSigner.load_or_create(path)
    b = CertificateSigner.load_or_create(path)
    assert a.signer.public_key == b.signer.public_key
    assert oct(path.stat().st_mode & 0o777) == "0o600"


def test_verify_accepts_the_delivered_folder(delivered):
    out, signer = delivered
    body = verify_dir(out, trusted_public_keys=[signer.signer.public_key])
    assert body["ok"] and body["certified_ms"] == 4.2


@pytest.mark.parametrize("field", ["budget_ms", "certified_ms", "passed"])
def test_a_changed_field_breaks_the_signature(delivered, field):
    out, signer = delivered
    body = json.loads((out / "certificate.json").read_text())
    body[field] = {"budget_ms": 50.0, "certified_ms": 1.0, "passed": True}[field]
    if field == "passed":
        body["job_id"] = "other"
    (out / "certificate.json").write_text(json.dumps(body))
    with pytest.raises(CertificateError, match="signature"):
        verify_dir(out, trusted_public_keys=[signer.signer.public_key])


def test_changed_model_bytes_fail(delivered):
    out, signer = delivered
    (out / "model.onnx").write_bytes(b"model bytez")
    with pytest.raises(CertificateError, match="model_sha256"):
        verify_dir(out, trusted_public_keys=[signer.signer.public_key])


def test_changed_arch_fails(delivered):
    out, signer = delivered
    arch = ArchSpec.dense("deit_tiny_patch16_224", img_size=64)
    (out / "arch.json").write_text(arch.model_dump_json())
    with pytest.raises(CertificateError, match="arch_sha256"):
        verify_dir(out, trusted_public_keys=[signer.signer.public_key])


def test_untrusted_signer_fails(delivered, tmp_path):
    out, _ = delivered
    other = CertificateSigner.load_or_create(tmp_path / "other")
    with pytest.raises(CertificateError, match="not trusted"):
        verify_dir(out, trusted_public_keys=[other.signer.public_key])


def test_a_forged_certificate_re_signed_with_its_own_key_fails(delivered, tmp_path):
    """The forger changes the budget and signs with a key of their own: the signature matches
    the key the certificate carries, which is exactly why that key cannot be the trust anchor."""
    out, signer = delivered
    forger = CertificateSigner.load_or_create(tmp_path / "forger")
    cert = Certificate.model_validate_json((out / "certificate.json").read_text())
    forged = forger.sign(cert.model_copy(update={"budget_ms": 50.0}))
    (out / "certificate.json").write_text(forged.model_dump_json())
    check_signature(forged, [forger.signer.public_key])  # consistent with its own key
    with pytest.raises(CertificateError, match="not trusted"):
        verify_dir(out, trusted_public_keys=[signer.signer.public_key])


def test_no_trusted_key_says_where_to_get_one(delivered):
    out, _ = delivered
    with pytest.raises(CertificateError, match="--server URL"):
        verify_dir(out, trusted_public_keys=[])


def test_workers_starting_together_share_one_key(tmp_path):
    """Two workers creating the key at once once failed a job (both renamed one temp file)."""
    import threading
    from concurrent.futures import ThreadPoolExecutor

    path = tmp_path / "keys" / "signing.ed25519"
    start = threading.Barrier(8)

    def create(_: int) -> str:
        start.wait()
        return CertificateSigner.load_or_create(path).signer.public_key

    with ThreadPoolExecutor(8) as pool:
        keys = set(pool.map(create, range(8)))
    assert keys == {CertificateSigner.load_or_create(path).signer.public_key}
    assert [p.name for p in path.parent.iterdir()] == ["signing.ed25519"], "no temp file left"
    assert oct(path.stat().st_mode & 0o777) == "0o600"
