"""Liveness evidence tokens: the live face inside is sealed with the shared AES-GCM (bound to the
challenge nonce) and the whole token signed; tokens keep the framing they had before."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from safeface.capture import evidence as ev
from safeface.errors import IntegrityError

SECRET = b"s" * 32


def _token(keys: ev.EvidenceKeys, nonce: str = "n-1") -> str:
    emb = np.random.default_rng(0).normal(size=128).astype(np.float32)
    return keys.issue(nonce=nonce, clip_sha256="c" * 64, now=1000.0, decision="live", score=0.9,
                      challenge=("left", "right"), embedding=emb)


def _resign(keys: ev.EvidenceKeys, body: dict[str, object]) -> str:
    """What a holder of the signing key could mint: used to reach the seal behind the signature."""
    head = ev.PREFIX + "." + ev._b64e(json.dumps(body, sort_keys=True, separators=(",", ":")).encode())
    return head + "." + ev._b64e(keys._sign.sign(head.encode("ascii")))


def test_the_sealed_face_opens_only_under_its_own_nonce() -> None:
    keys = ev.EvidenceKeys(SECRET)
    token = _token(keys)
    got = keys.read(token)
    emb = np.random.default_rng(0).normal(size=128).astype(np.float32)
    np.testing.assert_allclose(got.face, keys.protect(emb), atol=1e-6)
    body = json.loads(ev._b64d(token.split(".")[1]))
    # The face moved to another challenge's token does not open, even when re-signed.
    with pytest.raises(IntegrityError, match="not genuine"):
        keys.read(_resign(keys, {**body, "nonce": "n-2"}))
    face = bytearray(ev._b64d(body["face"]))
    face[-1] ^= 1
    with pytest.raises(IntegrityError, match="not genuine"):
        keys.read(_resign(keys, {**body, "face": ev._b64e(bytes(face))}))
    with pytest.raises(IntegrityError, match="not genuine"):
        ev.EvidenceKeys(b"t" * 32).read(token)


def test_a_face_sealed_in_the_earlier_framing_opens() -> None:
    keys = ev.EvidenceKeys(SECRET)
    body = json.loads(ev._b64d(_token(keys).split(".")[1]))
    face = keys.protect(np.ones(128, np.float32)).tobytes()
    iv = os.urandom(12)  # before the shared AES-GCM: iv || AESGCM(face, aad=nonce)
    old = iv + AESGCM(ev._derive(SECRET, b"safeface liveness evidence face key v1")).encrypt(iv, face, b"n-1")
    got = keys.read(_resign(keys, {**body, "face": ev._b64e(old)}))
    assert got.face.tobytes() == face


def test_a_face_of_another_dimension_is_not_the_probes() -> None:
    """Evidence issued before the deployment's matching dimension changed, used within its
    60 s: its face matches no probe."""
    rng = np.random.default_rng(0)
    token = ev.EvidenceKeys(b"s" * 32, 128).issue(nonce="n-1", clip_sha256="c" * 64, now=1000.0, decision="live",
                                                  score=0.9, challenge=("left", "right"),
                                                  embedding=rng.normal(size=128).astype(np.float32))
    keys = ev.EvidenceKeys(b"s" * 32, 64)
    assert keys.similarity(keys.read(token), rng.normal(size=64).astype(np.float32)) < 0
