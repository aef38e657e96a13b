"""Ed25519 signatures over certificates.

Ed25519 rather than HMAC so anyone can verify a certificate with the public key alone; the
private key never leaves the server's data directory.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from budgetprune.errors import CertificateError
from budgetprune.schemas.certificate import Certificate, Signer

# Where the service publishes its public key (api/routes/keys.py), open to anyone.
SIGNING_KEY_PATH = "/.well-known/budgetprune-signing-key"


def canonical_bytes(cert: Certificate) -> bytes:
    """The signed message: canonical JSON of every field except the signature."""
    body = cert.model_dump(mode="json", exclude={"signature"})
    return json.dumps(body, sort_keys=True, separators=(",", ":")).encode()


class CertificateSigner:
    def __init__(self, private_key: Ed25519PrivateKey) -> None:
        self._key = private_key
        raw = private_key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        self.signer = Signer(key_id=hashlib.sha256(raw).hexdigest()[:16], public_key=raw.hex())

    @classmethod
    def load_or_create(cls, path: Path) -> CertificateSigner:
        """The key at `path`, created on first use. Several workers may start at once: each
        writes a private temporary file and links it into place, and only one link wins; the
        others load the winner's key, so every certificate names one published key."""
        if not path.exists():
            key = Ed25519PrivateKey.generate()
            pem = key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")  # mode 0600
            try:
                with os.fdopen(fd, "wb") as fh:
                    fh.write(pem)
                os.link(tmp, path)  # fails if another process created the key first
                return cls(key)
            except FileExistsError:
                pass
            finally:
                os.unlink(tmp)
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        if not isinstance(key, Ed25519PrivateKey):
            raise CertificateError(f"{path} holds no Ed25519 private key")
        return cls(key)

    def sign(self, cert: Certificate) -> Certificate:
        unsigned = cert.model_copy(update={"signer": self.signer, "signature": ""})
        return unsigned.model_copy(
            update={"signature": self._key.sign(canonical_bytes(unsigned)).hex()}
        )


def local_public_key(path: Path) -> str | None:
    """The public key of the signing key at `path` (this machine's server), if there is one;
    never creates a key."""
    if not path.is_file():
        return None
    try:
        return CertificateSigner.load_or_create(path).signer.public_key
    except (CertificateError, ValueError):
        return None


def check_signature(cert: Certificate, trusted_public_keys: list[str]) -> None:
    """Raise CertificateError unless the signature is valid AND made with a trusted key: the
    key a certificate carries proves nothing by itself (a forger re-signs with their own)."""
    if cert.signer.public_key not in trusted_public_keys:
        raise CertificateError(
            f"certificate signed by key {cert.signer.key_id} ({cert.signer.public_key}), which "
            "is not trusted here: pass --server URL (the service publishes its key at "
            "/.well-known/budgetprune-signing-key) or --public-key HEX"
            if trusted_public_keys
            else f"certificate signed by key {cert.signer.key_id}, but no trusted key was "
            "given: pass --server URL (the service publishes its key at "
            "/.well-known/budgetprune-signing-key) or --public-key HEX"
        )
    try:
        public = Ed25519PublicKey.from_public_bytes(bytes.fromhex(cert.signer.public_key))
        public.verify(bytes.fromhex(cert.signature), canonical_bytes(cert))
    except (InvalidSignature, ValueError) as exc:
        raise CertificateError("certificate signature does not match its contents") from exc
