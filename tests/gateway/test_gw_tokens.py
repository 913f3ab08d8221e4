"""Token primitives: generation, hashing, the expiring check, rotation, encryption."""

from __future__ import annotations

import pytest
from cryptography.fernet import Fernet

from gateway.routes import store_url_from_env
from gateway.tokens import (
    InvalidToken,
    check_token,
    decrypt,
    encrypt,
    generate_token,
    rotate_hashes,
    token_sha256,
)


def test_generate_is_256_bit_urlsafe_and_unique():
    tokens = {generate_token() for _ in range(100)}
    assert len(tokens) == 100
    for t in tokens:
        assert len(t) == 43 and set(t) <= set(
            "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
        )
    assert token_sha256("abc") == (
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    )


def test_check_with_expiry():
    a, b = generate_token(), generate_token()
    hashes = [token_sha256(a), token_sha256(b)]
    assert check_token(a, hashes) and check_token(b.encode(), hashes)
    assert not check_token(None, hashes) and not check_token("", hashes)
    assert not check_token(generate_token(), hashes)
    assert not check_token(a, [])
    expiry = {token_sha256(a): 100.0}
    assert check_token(a, hashes, expiry, now=99.9)
    assert not check_token(a, hashes, expiry, now=100.0)
    assert not check_token(a, hashes, expiry, now=100.1)  # after the expiry, not only at it
    assert check_token(b, hashes, expiry, now=1e12)


def test_rotate_keeps_old_for_grace_then_drops_it():
    old, new, newer = (token_sha256(generate_token()) for _ in range(3))
    hashes, after = rotate_hashes([old], None, new, 60, now=1000)
    assert hashes == [new, old] and after == {old: 1060}
    hashes, after = rotate_hashes(hashes, after, newer, 600, now=1030)
    assert hashes == [newer, new, old] and after == {new: 1630, old: 1060}  # old keeps its own
    hashes, after = rotate_hashes(hashes, after, newer, 0, now=1100)  # revoke all but newer
    assert hashes == [newer] and after == {}


def test_rotate_to_a_hash_already_listed_keeps_every_other_one():
    """The new hash may already be in the list (a retried rotation) and sort anywhere: it is
    listed once, first, and every other hash keeps its grace."""
    old_z, old_b = "z" * 64, "b" * 64
    new = "".join(["m" * 32, "m" * 32])  # equal to the listed one, not the same object
    hashes, after = rotate_hashes([old_z, "m" * 64, old_b], None, new, 60, now=1000)
    assert hashes == [new, old_z, old_b] and after == {old_z: 1060, old_b: 1060}


def test_encrypt_roundtrip_and_wrong_key():
    key = Fernet.generate_key().decode()
    token = generate_token()
    box = encrypt(token, key)
    assert token not in box and decrypt(box, key) == token
    with pytest.raises(InvalidToken):
        decrypt(box, Fernet.generate_key())
    with pytest.raises(ValueError, match="EMS_SECRETS_KEY"):
        encrypt(token, "")


def test_store_url_from_env():
    assert store_url_from_env({"EMS_GATEWAY_ROUTES": "redis://x/1", "REDIS_URL": "redis://y"}) == (
        "redis://x/1"
    )
    assert store_url_from_env({"REDIS_URL": "redis://y/0"}) == "redis://y/0"
    assert store_url_from_env({"EMS_DATA_DIR": "/srv/ems"}) == "file:///srv/ems/routes.json"
