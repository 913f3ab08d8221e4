"""Service tokens: generation, hashing, the constant-time check, and encryption at rest.

No Django in here: the gateway imports this module in a process without settings. The control
plane passes its key (``settings.EMS_SECRETS_KEY``) to :func:`encrypt` / :func:`decrypt`.

A token is 256 random bits, URL-safe base64 (43 characters). The gateway and Redis only ever
see ``sha256(token)`` as 64 hex digits; an optional expiry per hash (``not_after``, Unix
seconds) is how a rotated-out token stays valid for its grace period.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Iterable, Mapping

from cryptography.fernet import Fernet, InvalidToken

TOKEN_BYTES = 32  # 256 bits

__all__ = [
    "InvalidToken",
    "check_token",
    "decrypt",
    "encrypt",
    "generate_token",
    "matching_hash",
    "rotate_hashes",
    "token_sha256",
]


def generate_token() -> str:
    """A fresh 256-bit token, URL-safe base64 without padding."""
    return secrets.token_urlsafe(TOKEN_BYTES)


def token_sha256(token: str | bytes) -> str:
    """The SHA-256 of a token as lowercase hex: what routes carry instead of the token."""
    raw = token.encode() if isinstance(token, str) else token
    return hashlib.sha256(raw).hexdigest()


def check_token(
    token: str | bytes | None,
    hashes: Iterable[str],
    not_after: Mapping[str, float] | None = None,
    now: float | None = None,
) -> bool:
    """True when ``token`` hashes to one of ``hashes`` that has not expired.

    Every hash is compared (``hmac.compare_digest``), so the time taken depends on how many
    hashes there are, never on which one matched or how much of one did.
    """
    matched = matching_hash(token, hashes)
    if matched is None:
        return False
    if not_after and matched in not_after:
        return (time.time() if now is None else now) < not_after[matched]
    return True


def matching_hash(token: str | bytes | None, hashes: Iterable[str]) -> str | None:
    """The one of ``hashes`` that ``token`` hashes to (expiry not checked), else None.

    Every hash is compared with ``hmac.compare_digest``, whichever matches."""
    if not token:
        return None
    digest = token_sha256(token)
    matched = None
    for candidate in hashes:
        if hmac.compare_digest(digest, candidate):
            matched = candidate
    return matched


def rotate_hashes(
    hashes: Iterable[str],
    not_after: Mapping[str, float] | None,
    new_hash: str,
    grace_seconds: float,
    now: float | None = None,
) -> tuple[list[str], dict[str, float]]:
    """The route's token fields after a rotation: ``new_hash`` added, every other unexpired
    hash kept until ``now + grace_seconds`` (or its own earlier expiry), expired ones dropped.
    """
    now = time.time() if now is None else now
    limit = now + grace_seconds
    out_hashes, out_after = [new_hash], {}
    for h in hashes:
        if h == new_hash:
            continue
        expiry = min((not_after or {}).get(h, limit), limit)
        if expiry > now:
            out_hashes.append(h)
            out_after[h] = expiry
    return out_hashes, out_after


def _fernet(key: str | bytes) -> Fernet:
    if not key:
        raise ValueError("no secrets key: set EMS_SECRETS_KEY to a Fernet key")
    return Fernet(key)


def encrypt(token: str, key: str | bytes) -> str:
    """Encrypt a token (or any secret string) for storage; the result is ASCII."""
    return _fernet(key).encrypt(token.encode()).decode()


def decrypt(ciphertext: str, key: str | bytes) -> str:
    """Decrypt what :func:`encrypt` produced; raises :class:`InvalidToken` on a wrong key."""
    return _fernet(key).decrypt(ciphertext.encode()).decode()
