"""The revocable template transform (ISO/IEC 24745: renewability and unlinkability).

From the template key, HKDF-SHA256 derives a seed; a ChaCha20 keystream under that seed gives a
Gaussian matrix, whose QR decomposition (with the signs of R's diagonal moved into Q, so Q is
Haar-distributed and unique) gives a secret orthogonal matrix, composed with a secret permutation
and sign flips. An orthogonal map keeps every inner product, so cosine scores between protected
templates equal those between raw embeddings, while templates made under two keys do not match.
Revoking a key and issuing a new one re-keys stored templates with ``new.apply(old.invert(t))``
without any image.

The keystream, not NumPy's random generators, feeds the matrix: NumPy does not promise the same
Gaussian stream across releases, and a changed matrix would orphan every stored template.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from ...errors import ConfigError
from .keyring import key_id_of


def _keystream(seed: bytes, nbytes: int) -> bytes:
    # ChaCha20 of zeros = the keystream; the 16-byte nonce (counter || nonce) is fixed because
    # each seed is used for exactly one stream.
    enc = Cipher(algorithms.ChaCha20(seed, b"\x00" * 16), mode=None).encryptor()
    stream: bytes = enc.update(b"\x00" * nbytes)
    return stream


def _uniform(stream: bytes) -> np.ndarray:
    """Doubles in (0, 1) from 64-bit words (53 bits each, offset by half a step to avoid 0)."""
    words = np.frombuffer(stream, dtype="<u8")
    out: np.ndarray = ((words >> np.uint64(11)).astype(np.float64) + 0.5) * (1.0 / 9007199254740992.0)
    return out


def _orthogonal(seed: bytes, dim: int) -> np.ndarray:
    n = dim * dim
    n_pairs = (n + 1) // 2
    perm_words = dim
    stream = _uniform(_keystream(seed, 8 * (2 * n_pairs + perm_words + dim)))
    u1, u2 = stream[:n_pairs], stream[n_pairs:2 * n_pairs]
    rest = stream[2 * n_pairs:]
    # Box-Muller: two independent standard normals from two uniforms.
    r = np.sqrt(-2.0 * np.log(u1))
    gauss = np.concatenate([r * np.cos(2 * np.pi * u2), r * np.sin(2 * np.pi * u2)])[:n]
    q, rr = np.linalg.qr(gauss.reshape(dim, dim))
    d = np.sign(np.diag(rr))
    d[d == 0] = 1.0
    q = q * d  # sign correction: column j times sign(R_jj)
    # Fisher-Yates permutation of the rows, then random sign flips.
    perm = np.arange(dim)
    for i in range(dim - 1, 0, -1):
        j = int(rest[i] * (i + 1))
        perm[i], perm[j] = perm[j], perm[i]
    signs = np.where(rest[dim:2 * dim] < 0.5, -1.0, 1.0)
    m = signs[:, None] * q[perm]
    return np.ascontiguousarray(m)


@dataclass(frozen=True, repr=False)
class TemplateTransform:
    """A keyed orthogonal map of `dim`-dimensional embeddings. `apply` protects, `invert` undoes
    (only `rekey` needs that, and only in memory)."""

    dim: int
    key_id: str
    _m: np.ndarray = field(compare=False)

    def __repr__(self) -> str:
        return f"TemplateTransform(dim={self.dim}, key_id={self.key_id!r})"

    @classmethod
    def from_key(cls, key: bytes, dim: int) -> "TemplateTransform":
        if not isinstance(key, (bytes, bytearray)) or len(key) < 32:
            raise ConfigError("the template key must be at least 32 bytes.")
        if not isinstance(dim, int) or dim <= 0 or dim > 4096:
            raise ConfigError(f"the template dimension must be a positive integer up to 4096, got {dim!r}.")
        seed = HKDF(algorithm=hashes.SHA256(), length=32, salt=None,
                    info=f"safeface template transform v1 dim={dim}".encode("ascii")).derive(bytes(key))
        m = _orthogonal(seed, dim)
        m.setflags(write=False)
        return cls(dim, key_id_of(bytes(key)), m)

    def _check(self, x: np.ndarray) -> np.ndarray:
        a = np.asarray(x)
        if a.shape[-1] != self.dim:
            raise ConfigError(f"embeddings have dimension {a.shape[-1]} but the transform has {self.dim}.")
        return a.astype(np.float64, copy=False)

    def apply(self, x: np.ndarray) -> np.ndarray:
        """Protected templates, float32, same shape as `x` ((dim,) or (n, dim))."""
        out: np.ndarray = (self._check(x) @ self._m.T).astype(np.float32)
        return out

    def invert(self, t: np.ndarray) -> np.ndarray:
        """The embeddings behind protected templates (the transpose undoes an orthogonal map)."""
        out: np.ndarray = (self._check(t) @ self._m).astype(np.float32)
        return out

    def rekey_to(self, new: "TemplateTransform", t: np.ndarray) -> np.ndarray:
        """Templates under this transform moved to `new`, in one product (no float32 round trip)."""
        if new.dim != self.dim:
            raise ConfigError("both transforms must have the same dimension.")
        out: np.ndarray = (self._check(t) @ (new._m @ self._m.T).T).astype(np.float32)
        return out
