"""The storage section of deployment.json, sealed: where the records and vectors live is written
by `safeface storage migrate` (or confirmed by `safeface storage confirm`) with a MAC under a key
derived from the keyring, and checked before any connection is made. Otherwise whoever can write
the file could point the workspace at a server of their own and receive the database password
(and, from then on, the audit entries and sealed rows)."""

from __future__ import annotations

import hmac
import json
from typing import Any, Mapping

from ..errors import ConfigError
from .keys import derived_key

STORAGE_MAC = b"safeface storage section MAC v1"
SEAL = "seal"


def _mac(keyring: Any, section: Mapping[str, Any]) -> str:
    body = json.dumps({k: str(v) for k, v in section.items() if k != SEAL}, sort_keys=True, separators=(",", ":"))
    return hmac.new(derived_key(keyring, STORAGE_MAC), body.encode("utf-8"), "sha256").hexdigest()


def sealed_storage(keyring: Any, section: Mapping[str, Any]) -> dict[str, Any]:
    """`section` with its seal."""
    out = {k: v for k, v in section.items() if k != SEAL}
    out[SEAL] = _mac(keyring, out)
    return out


def check_storage_seal(keyring: Any, section: Mapping[str, Any]) -> None:
    """Refuse a server storage section this workspace did not seal (a local one needs none: it
    connects nowhere)."""
    records = str(section.get("records", "sqlite"))
    if records == "sqlite":
        return
    seal = section.get(SEAL)
    if isinstance(seal, str) and hmac.compare_digest(seal.encode("ascii", "replace"), _mac(keyring, section).encode()):
        return
    raise ConfigError("deployment.json points the records at a server, but its storage section is not one this "
                      "workspace sealed (written or edited by hand): nothing was connected to. Only `safeface storage "
                      "migrate` moves a workspace to the servers; a workspace moved by an earlier safeface is confirmed "
                      "once with `safeface storage confirm WS --records URL --vectors V`, which needs the passphrase.")
