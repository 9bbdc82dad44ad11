"""The keyring passphrase, and opening the workspace's keyring with it."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Optional

from ..errors import ConfigError
from ..regularfile import read_text
from .paths import WorkspacePaths

# A passphrase file holds one passphrase; anything larger is the wrong file.
MAX_PASSPHRASE_FILE_BYTES = 64 * 1024


def _encodes(text: str) -> bool:
    """Whether `text` is UTF-8 encodable (no lone surrogate, as a JSON "\\ud800" gives)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


PASSPHRASE_ENV = "SAFEFACE_PASSPHRASE"


def resolve_passphrase(root: Path, passphrase: Optional[str] = None, passphrase_file: Optional[Path] = None) -> str:
    """The keyring passphrase: given, else from a file, else $SAFEFACE_PASSPHRASE, else (demo
    workspaces only) the insecure demo passphrase stored in the workspace."""
    return _resolved(root, passphrase, passphrase_file)[0]


def _resolved(root: Path, passphrase: Optional[str], passphrase_file: Optional[Path]) -> tuple[str, str]:
    """(the passphrase, where it came from: "given", "file", "environment" or "demo")."""
    if passphrase is not None:
        # An empty one is refused, not taken as "none given" (which would fall through to a demo's).
        if not isinstance(passphrase, str) or not _encodes(passphrase):
            raise ConfigError("the passphrase must be text (a str of Unicode characters).")
        if not passphrase:
            raise ConfigError("the passphrase given is empty.")
        return passphrase, "given"
    if passphrase_file is not None:
        # Judged as serve's TLS key is: a passphrase others on the host may read is no secret, and
        # one they may write is theirs to choose (the keyring then sealed under their passphrase).
        text = read_text(Path(passphrase_file), f"the passphrase file {passphrase_file}", MAX_PASSPHRASE_FILE_BYTES,
                         private=True)
        if not text:
            raise ConfigError(f"the passphrase file {passphrase_file} is empty.")
        return text, "file"
    # The caller's passphrase always comes first: were a file inside the workspace read before it,
    # whoever can write the folder could swap in a workspace of their own, with a "demo"
    # passphrase, and an app holding the real one would seal new templates under their keys.
    env = os.environ.get(PASSPHRASE_ENV)
    if env:
        if not _encodes(env):  # bytes that are no UTF-8, which Python keeps as lone surrogates
            raise ConfigError(f"${PASSPHRASE_ENV} is not UTF-8 text.")
        return env, "environment"
    demo = WorkspacePaths(Path(root)).demo_passphrase
    if demo.is_file():
        return demo.read_text(encoding="utf-8").strip(), "demo"
    raise ConfigError(f"the workspace keyring needs its passphrase: set ${PASSPHRASE_ENV} or pass --passphrase-file.")


def open_keyring(paths: WorkspacePaths, passphrase: Optional[str] = None,
                 passphrase_file: Optional[Path] = None) -> Any:
    """The workspace's PassphraseKeyring (a wrong passphrase raises IntegrityError)."""
    from ..hazmat.templates.keyring import PassphraseKeyring

    if not paths.config.is_file():
        raise ConfigError(f"{paths.root} is not a safeface workspace (no deployment.json); create one with "
                          "`safeface init`.")
    if not paths.keyring.is_file():
        raise ConfigError(f"{paths.keyring} is missing: the workspace has no keys. Restore it from a backup.")
    from ..errors import IntegrityError

    secret, source = _resolved(paths.root, passphrase, passphrase_file)
    try:
        return PassphraseKeyring.open(paths.keyring, secret)
    except IntegrityError as exc:
        if source == "environment" and paths.demo_passphrase.is_file():
            # No advice on opening it: this may be a workspace swapped in for the real one.
            raise IntegrityError(f"{exc} ${PASSPHRASE_ENV} is set and comes before the demo passphrase stored in "
                                 f"{paths.demo_passphrase.name}: if this is not your own demo workspace, it may have "
                                 "been put in place of yours; check the folder before using it.") from None
        raise
