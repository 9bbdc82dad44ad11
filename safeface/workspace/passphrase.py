"""The keyring passphrase, and opening the workspace's keyring with it."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Optional

from ..errors import ConfigError
from .paths import WorkspacePaths

PASSPHRASE_ENV = "SAFEFACE_PASSPHRASE"


def resolve_passphrase(root: Path, passphrase: Optional[str] = None, passphrase_file: Optional[Path] = None) -> str:
    """The keyring passphrase: given, else from a file, else (demo workspaces only) the insecure
    demo passphrase stored in the workspace, else $SAFEFACE_PASSPHRASE."""
    if passphrase:
        return passphrase
    if passphrase_file is not None:
        try:
            text = Path(passphrase_file).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigError(f"cannot read the passphrase file {passphrase_file} ({exc.strerror}).") from None
        if not text:
            raise ConfigError(f"the passphrase file {passphrase_file} is empty.")
        return text
    # A demo workspace's own passphrase comes before the environment's, which is meant for real
    # workspaces: a user with $SAFEFACE_PASSPHRASE set can still try the demo.
    demo = WorkspacePaths(Path(root)).demo_passphrase
    if demo.is_file():
        return demo.read_text(encoding="utf-8").strip()
    env = os.environ.get(PASSPHRASE_ENV)
    if env:
        return env
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
    return PassphraseKeyring.open(paths.keyring, resolve_passphrase(paths.root, passphrase, passphrase_file))
