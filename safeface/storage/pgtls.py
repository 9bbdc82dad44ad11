"""TLS to a PostgreSQL record store on another machine.

libpq's default (`sslmode=prefer`) asks for TLS and, when the server declines, carries on in the
clear: a relay on the path that declines gets the user and database names, every pseudonym, the
sealed rows and the audit notes, and can change any statement. So a connection to another machine
asks for `sslmode=require` unless the DSN or $PGSSLMODE already says require, verify-ca or
verify-full, and a DSN or $PGSSLMODE that settles for less there is refused before anything is
sent. A Unix socket, a loopback address or the name "localhost" crosses no network and is left as
written (not "localhost." or ip6-localhost, which the resolver may ask DNS about). Hosts come
from the DSN, or from $PGHOST / $PGHOSTADDR where it names none, as libpq reads them; a
connection service file (`service=`) is not read here."""

from __future__ import annotations

import os
from typing import Mapping, Optional

from ..errors import ConfigError
from ..netaddr import is_loopback_everywhere
from .factory import dsn_parts

TLS_MODES = ("require", "verify-ca", "verify-full")


def far_hosts(parts: Mapping[str, str], env: Mapping[str, str]) -> list[str]:
    """The hosts among libpq's reading of a DSN (`parts`) that lie on another machine: for each
    entry of the host list, its numeric address where hostaddr gives one (libpq connects there),
    else its name; a socket folder ("/...", "@...") or an empty entry is this machine's."""
    hosts = (parts.get("host") or env.get("PGHOST") or "").split(",")
    addrs = (parts.get("hostaddr") or env.get("PGHOSTADDR") or "").split(",")
    far = []
    for i in range(max(len(hosts), len(addrs))):
        addr = addrs[i].strip() if i < len(addrs) else ""
        name = hosts[i].strip() if i < len(hosts) else ""
        where = addr or name
        if where and not where.startswith(("/", "@")) and not is_loopback_everywhere(where):
            far.append(where)
    return far


def tls_mode(dsn: str, env: Optional[Mapping[str, str]] = None) -> Optional[str]:
    """The sslmode a connection through `dsn` must be given ("require"), or None to leave the
    DSN's own (this machine only, or TLS already asked for). ConfigError when the DSN or
    $PGSSLMODE asks for less than TLS to another machine; the message names the host and the
    mode, never the DSN (which may hold a password)."""
    env = os.environ if env is None else env
    parts = dsn_parts(dsn)
    if parts is None:
        return None  # libpq refuses it at the connection, sending nothing
    far = far_hosts(parts, env)
    if not far:
        return None
    mode = parts.get("sslmode") or env.get("PGSSLMODE") or ("require" if parts.get("requiressl") == "1" else "")
    if mode in TLS_MODES:
        return None
    if mode:
        source = "storage.records" if parts.get("sslmode") else "$PGSSLMODE"
        raise ConfigError(f"the PostgreSQL record store at {far[0]} is on another machine, and {source} asks for "
                          f"sslmode={mode[:40]!r}, which goes on without TLS when the server or anyone on the path "
                          "declines it: the records, pseudonyms and audit notes would cross the network in the "
                          "clear. Use sslmode=verify-full (with sslrootcert naming the server's CA) or "
                          "sslmode=require, or reach it on this machine.")
    return "require"
