"""Edwards25519 points, just enough to judge an Ed25519 public key before it is trusted.

A public key A of small order (the identity, or one of the seven other points whose multiple
by 8 is the identity) lets anyone sign without a private key: with S = 0 and R a small-order
point, the check [S]B = R + [k]A holds whenever [k]A = -R, always for the identity and for one
try in a few otherwise. The signing libraries load such keys without complaint, so the trust
store decodes every key as RFC 8032 (5.1.3) does and refuses those of small order, along with
encodings that are not the canonical one of a point on the curve.

Affine coordinates on -x^2 + y^2 = 1 + d x^2 y^2 over GF(2^255 - 19); the addition law is
complete for this curve (a = -1 is a square, d is not), so no case needs treating apart. Speed
does not matter: a key is judged once, when it is imported or read from the store."""

from __future__ import annotations

from typing import Optional

P = 2 ** 255 - 19
D = (-121665 * pow(121666, P - 2, P)) % P
SQRT_M1 = pow(2, (P - 1) // 4, P)  # a square root of -1 mod p
COFACTOR = 8
IDENTITY = (0, 1)

Point = tuple[int, int]


def _inv(a: int) -> int:
    return pow(a, P - 2, P)


def on_curve(point: Point) -> bool:
    x, y = point
    return (-x * x + y * y - 1 - D * x * x * y * y) % P == 0


def add(p1: Point, p2: Point) -> Point:
    x1, y1 = p1
    x2, y2 = p2
    t = D * x1 * x2 * y1 * y2 % P
    return ((x1 * y2 + x2 * y1) * _inv(1 + t) % P, (y1 * y2 + x1 * x2) * _inv(1 - t) % P)


def multiply(point: Point, n: int) -> Point:
    """[n]point by doubling and adding (n >= 0)."""
    out = IDENTITY
    while n:
        if n & 1:
            out = add(out, point)
        point = add(point, point)
        n >>= 1
    return out


def recover_x(y: int, sign: int) -> Optional[int]:
    """The x of the curve point with this y whose low bit is `sign`, or None when there is none
    (RFC 8032 5.1.3, steps 2-4)."""
    if not 0 <= y < P:
        return None
    u = (y * y - 1) % P
    v = (D * y * y + 1) % P
    x = u * pow(v, 3, P) * pow(u * pow(v, 7, P), (P - 5) // 8, P) % P
    if (v * x * x - u) % P != 0:
        if (v * x * x + u) % P != 0:
            return None  # u/v is not a square: no point has this y
        x = x * SQRT_M1 % P
    if x == 0 and sign:
        return None  # "-0": a second encoding of a point whose x is 0
    return P - x if x & 1 != sign else x


def decode(encoded: bytes) -> Optional[Point]:
    """The point a 32-byte Ed25519 encoding names, or None when it is not the canonical encoding
    of a curve point (y not below p, no x for it, or the sign bit set on x = 0)."""
    if len(encoded) != 32:
        return None
    n = int.from_bytes(encoded, "little")
    y, sign = n & ((1 << 255) - 1), n >> 255
    if y >= P:
        return None
    x = recover_x(y, sign)
    return None if x is None else (x, y)


def encode(point: Point) -> bytes:
    x, y = point
    return (y | ((x & 1) << 255)).to_bytes(32, "little")


def public_key_problem(encoded: bytes) -> Optional[str]:
    """Why these 32 bytes cannot be a trusted Ed25519 public key, or None when they can."""
    point = decode(encoded)
    if point is None:
        return "it is not the canonical encoding of a point on the Ed25519 curve"
    if multiply(point, COFACTOR) == IDENTITY:
        return "it is a point of small order, under which anyone can make signatures that verify, without a private key"
    return None


__all__ = ["P", "D", "IDENTITY", "COFACTOR", "on_curve", "add", "multiply", "recover_x", "decode", "encode",
           "public_key_problem"]
