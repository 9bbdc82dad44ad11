"""The one place a workspace's template store is chosen, from deployment.json's "storage" section:

    "storage": {"records": "sqlite" | "postgresql://user@host:port/db",
                "vectors": "local" | "milvus:<uri>" | "milvus-lite:<file>",
                "namespace": "safeface", "collection": "safeface_templates", "vector_index": "FLAT"}

"sqlite" + "local" (the default) is the SQLite gallery searched in memory; "postgresql://..." +
a Milvus target is the server store. Credentials never sit in deployment.json: the PostgreSQL
password comes from $SAFEFACE_PG_PASSWORD or the file named by $SAFEFACE_PG_PASSWORD_FILE (or
libpq's own PGPASSWORD / ~/.pgpass), the Milvus token from $SAFEFACE_MILVUS_TOKEN or
$SAFEFACE_MILVUS_TOKEN_FILE."""

from __future__ import annotations

import os
import re
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Optional

from ..errors import ConfigError
from ..hazmat.templates.keyring import Keyring
from ..regularfile import read_text

DEFAULT_COLLECTION = "safeface_templates"
MAX_SECRET_FILE_BYTES = 64 * 1024  # a password or token file holds one secret; anything larger is the wrong file


@dataclass(frozen=True)
class StorageConfig:
    records: str = "sqlite"
    vectors: str = "local"
    namespace: str = "safeface"
    collection: str = DEFAULT_COLLECTION
    vector_index: str = "FLAT"

    @property
    def server(self) -> bool:
        return self.records != "sqlite"

    @classmethod
    def from_section(cls, section: Mapping[str, Any]) -> "StorageConfig":
        # "seal" is checked by the workspace (workspace/storage_seal.py) before anything connects.
        unknown = sorted(set(section) - {"records", "vectors", "namespace", "collection", "vector_index", "seal"})
        if unknown:
            raise ConfigError(f"deployment.json's storage section has unknown fields {unknown}.")
        cfg = cls(**{k: str(v) for k, v in section.items() if k != "seal"})
        if cfg.records == "sqlite":
            if cfg.vectors != "local":
                raise ConfigError("storage.vectors must be 'local' when storage.records is 'sqlite' (Milvus indexes "
                                  "a PostgreSQL record store).")
            return cfg
        if not cfg.records.startswith(("postgresql://", "postgres://")):
            # Not the value: a URL that fails this check may still hold a password.
            scheme = cfg.records.split("://", 1)[0] if "://" in cfg.records else ""
            got = (f"a URL of scheme {scheme!r}" if re.fullmatch(r"[A-Za-z][A-Za-z0-9+.-]{0,39}", scheme)
                   else "something else")
            raise ConfigError(f"storage.records must be 'sqlite' or a 'postgresql://...' URL (lower case, nothing "
                              f"before it), got {got}.")
        if _holds_password(cfg.records):
            raise ConfigError("storage.records holds a password; credentials never go in deployment.json. Remove it "
                              "and set SAFEFACE_PG_PASSWORD or SAFEFACE_PG_PASSWORD_FILE instead.")
        if not cfg.vectors.startswith(("milvus:", "milvus-lite:")):
            raise ConfigError("storage.vectors must be 'milvus:<uri>' or 'milvus-lite:<file>' with a PostgreSQL "
                              "record store.")
        if milvus_userinfo(cfg.vectors):
            raise ConfigError("storage.vectors holds user information (a user or password before '@'); credentials "
                              "never go in deployment.json.")
        if not re.match(r"^[A-Za-z_][A-Za-z0-9_]{0,200}$", cfg.collection):
            raise ConfigError(f"storage.collection must be a plain name, got {cfg.collection!r}.")
        return cfg


def dsn_parts(dsn: str) -> Optional[dict[str, str]]:
    """libpq's own reading of `dsn` (through psycopg), or None when psycopg is missing or libpq
    cannot read it."""
    try:
        import psycopg

        return {str(k): str(v) for k, v in psycopg.conninfo.conninfo_to_dict(dsn).items()}
    except Exception:  # noqa: BLE001 - no psycopg, or no DSN libpq can read
        return None


def misread(parts: Mapping[str, str]) -> bool:
    """Whether libpq read the user information otherwise than it was written: a password holding
    "@", or "/" and then "?", leaves an "@" in a part or a port that is no port."""
    return "@" in "".join(parts.get(k, "") for k in ("user", "host", "port", "dbname")) or not re.fullmatch(
        r"[0-9,]*", parts.get("port", ""))


def _holds_password(dsn: str) -> bool:
    """Whether libpq would read a password (or a client key's password) from `dsn`, however it is
    written: in the user information, or as a parameter whose name is percent-encoded."""
    parts = dsn_parts(dsn)
    if parts is None:  # libpq will refuse it at connection; here, only what shows
        return "password" in dsn.lower() or re.search(r"://[^/@]*:[^@]*@", dsn) is not None
    return "password" in parts or "sslpassword" in parts or misread(parts)


def milvus_userinfo(target: str) -> bool:
    """Whether a Milvus target names a user or password before '@', as Python's URL parser (which
    pymilvus reads it with) finds them: it drops tabs and line breaks anywhere first, so
    "http:\\t//root:pw@m" sends a password that no "://" in the text shows, and every message
    naming the target showed it."""
    return re.search(r"://[^/?#]*@", re.sub(r"[\t\r\n]", "", target)) is not None


def secret_from_env(name: str) -> Optional[str]:
    """$NAME, or the contents of the file $NAME_FILE; None when neither is set. ConfigError when
    the file is no small regular file of UTF-8 text (a FIFO, /dev/zero, a photo), or the value
    cannot be sent as UTF-8 (an environment in another encoding); the value is never shown."""
    value = os.environ.get(name)
    source = name
    if not value:
        path = os.environ.get(name + "_FILE")
        if not path:
            return None
        source = f"{name}_FILE"
        value = read_text(Path(path), f"{source} ({path})", MAX_SECRET_FILE_BYTES, private=True)
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ConfigError(f"{source} is not UTF-8 text (a character of another encoding); set it again in UTF-8."
                          ) from None
    return value


def open_store(cfg: StorageConfig, root: Path, gallery_path: Path, keyring: Keyring, dim: int) -> Any:
    """The workspace's TemplateStore."""
    if not cfg.server:
        from .gallery import Gallery

        return Gallery.open(gallery_path, keyring, dim, own=True)
    from .server import ServerStore
    from .vectors import MilvusVectors

    token = secret_from_env("SAFEFACE_MILVUS_TOKEN")
    return ServerStore.open(
        cfg.records, secret_from_env("SAFEFACE_PG_PASSWORD"),
        lambda: MilvusVectors.connect(cfg.vectors, root, cfg.collection, dim, cfg.vector_index, token, wait=False),
        keyring, dim, cfg.namespace)


def server_write_lock(cfg: StorageConfig, lock_wait: float) -> AbstractContextManager[None]:
    """Both halves of the server store's write lock, taken without opening the store
    (server.held_write_lock), waiting at most `lock_wait` seconds in all."""
    from .server import held_write_lock

    return held_write_lock(cfg.records, secret_from_env("SAFEFACE_PG_PASSWORD"), cfg.namespace, lock_wait)
