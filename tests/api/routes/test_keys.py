"""The published signing key: open, stable, and the key the worker signs with."""

from __future__ import annotations

from budgetprune.signing import SIGNING_KEY_PATH, CertificateSigner


def test_the_key_is_public_and_is_the_workers(client, settings):
    r = client.get(SIGNING_KEY_PATH, headers={"Authorization": ""})
    assert r.status_code == 200
    worker = CertificateSigner.load_or_create(settings.signing_key_path).signer
    assert r.json() == worker.model_dump()
    assert client.get(SIGNING_KEY_PATH).json() == r.json(), "one key, not one per request"
