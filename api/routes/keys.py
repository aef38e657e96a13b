"""The public key certificates are signed with, open like the probes: whoever received a
certificate (a user's customer, a CI job) checks it against this key, not against the key the
certificate carries, which anyone re-signing a forged certificate would replace."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.concurrency import run_in_threadpool

from api.deps import SettingsDep
from budgetprune.schemas import Signer
from budgetprune.signing import SIGNING_KEY_PATH, CertificateSigner

router = APIRouter(tags=["certificates"])


@router.get(SIGNING_KEY_PATH, response_model=Signer)
async def signing_key(settings: SettingsDep) -> Signer:
    """Ed25519 public key (hex) of this service's certificates; `budgetprune verify DIR
    --server URL` trusts it."""
    signer = await run_in_threadpool(CertificateSigner.load_or_create, settings.signing_key_path)
    return signer.signer
