"""Keys of a workspace other than the keyring's own: the Ed25519 signing keys of a consent
service or an authority (private halves kept off the workspace, except in a demo), and the MAC
keys the workspace derives from its keyring for the files it must authenticate."""

from __future__ import annotations

import hmac
from pathlib import Path
from typing import Any, Optional

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from ..errors import ConfigError, IntegrityError
from ..policy.tokens import load_private_key, private_key_pem
from ..atomicfile import make_dirs, write_new
from ..regularfile import read_text, read_workspace_file
from .paths import WorkspacePaths

# Each file authenticated by the workspace gets its own key, so a MAC made for one kind of file
# never verifies as another.
TRUST_MAC = b"safeface trust store MAC v1"
ANCHOR_MAC = b"safeface audit anchor MAC v1"
POLICY_MAC = b"safeface policy state liveness rows MAC v1"
ASSESSMENT_MAC = b"safeface impact assessment MAC v1"
DEMO_MARK = b"safeface demo workspace mark v1"


def derived_key(keyring: Any, label: bytes) -> bytes:
    """A 32-byte key for `label`, derived from the keyring's pseudonym key: that key is never
    rotated (rows are keyed by it), so what it authenticates stays checkable for the life of the
    deployment, and it never leaves the keyring (a KMS-held key works the same)."""
    key: bytes = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=label).derive(keyring.key("pseudonym"))
    return key


def new_signing_key(out: Path) -> Ed25519PrivateKey:
    """Generate an Ed25519 key and write its private half (PEM, mode 0600) to `out`."""
    key = Ed25519PrivateKey.generate()
    out = Path(out)
    make_dirs(out.parent)
    try:
        write_new(out, private_key_pem(key))
    except FileExistsError:
        raise ConfigError(f"{out} already exists; choose another path.") from None
    return key


# A PEM private key is a few hundred bytes.
MAX_SIGNING_KEY_BYTES = 64 * 1024


def read_signing_key(path: Path) -> Ed25519PrivateKey:
    # As every file a user names is read: a regular file, bounded (a FIFO waited for ever).
    # A private key: refused where others on the host may read or replace it, as serve's TLS key.
    text = read_text(Path(path), f"the signing key {path}", MAX_SIGNING_KEY_BYTES, private=True)
    return load_private_key(text.encode("utf-8"))


def issuer_signing_key(paths: WorkspacePaths, given: Optional[Path], kind: str) -> Ed25519PrivateKey:
    """The private key that signs tokens of `kind` ("issuer" or "authority"): the file given, or
    the demo key a demo workspace keeps."""
    if given is not None:
        return read_signing_key(given)
    demo = paths.demo_issuer if kind == "issuer" else paths.demo_authority
    if demo.is_file():
        return read_signing_key(demo)
    raise ConfigError(f"issuing needs the {kind}'s private key: pass it with --{kind}-key (only a demo "
                      "workspace keeps one inside the workspace).")


def _demo_mac(keyring: Any) -> bytes:
    return hmac.new(derived_key(keyring, DEMO_MARK), b"a --demo workspace: its clock may be set", "sha256").digest()


def mark_demo(paths: WorkspacePaths, keyring: Any) -> None:
    """Mark a workspace created with --demo: a MAC under a key derived from its keyring, so that
    no one without the keys can turn a real workspace into a demo (whose clock a caller sets)."""
    write_new(paths.demo_mark, (_demo_mac(keyring).hex() + "\n").encode())


def _key_text(path: Path, label: str) -> Optional[str]:
    """The short ASCII text of a key file, or None where it is missing or is no such file. Read
    as a workspace file: a link to a FIFO or to /dev/zero at its name made `audit verify` (also on
    a read-only copy, which keeps links) and every open wait for ever or read without end."""
    try:
        data = read_workspace_file(path, f"{label} {path}", 4096)
        return None if data is None else data.decode("ascii").strip()
    except (IntegrityError, UnicodeDecodeError):
        return None


def is_demo(paths: WorkspacePaths, keyring: Any) -> bool:
    """Whether the workspace carries a genuine demo mark (a planted or copied one does not verify)."""
    text = _key_text(paths.demo_mark, "the demo mark")
    if text is None:
        return False
    return hmac.compare_digest(text.encode("ascii"), _demo_mac(keyring).hex().encode("ascii"))


def receipt_file_problem(paths: WorkspacePaths, public_text: str) -> Optional[str]:
    """Why keys/receipt_public.txt is not this workspace's receipt key (`public_text`, derived
    from the keyring), or None. It is what others check receipts and checkpoints with, so a file
    swapped for someone else's key would let their forgeries pass and the genuine ones fail."""
    got = _key_text(paths.receipt_public, "the receipt public key")
    if got is not None and hmac.compare_digest(got.encode("ascii"), public_text.strip().encode("ascii")):
        return None
    return (f"{paths.receipt_public} does not hold this workspace's receipt public key (missing or replaced); "
            f"receipts and checkpoints are checked with {public_text.strip()}: write that back to the file.")
