"""A right revoked from the PostgreSQL role safeface connects as, told as such: SQLSTATE 42501
("permission denied for table rows") becomes SchemaOwnerNeeded naming the rights the role lacks
and the GRANT to run as the schema's owner, for every store on PostgreSQL (the key store's and the
audit log's tables, sqltables.PgTables; the gallery's, server.ServerStore). The gallery's own
tables let psycopg's error through (a 500), and the others named all four rights, unable to ask
which one was missing while the refusal had aborted their transaction: such a refusal is asked
again once that transaction is rolled back (named_after_rollback)."""

from __future__ import annotations

import re
from typing import Any, Optional

from ..errors import SchemaOwnerNeeded

INSUFFICIENT_PRIVILEGE = "42501"  # psycopg's InsufficientPrivilege
# The rights the service uses on each of its tables: what it reads, appends, updates and prunes.
RIGHTS = ("SELECT", "INSERT", "UPDATE", "DELETE")
_PLAIN_NAME = re.compile(r"[a-z_][a-z0-9_]*")
# The object a refusal names ("permission denied for table audit_entries").
_DENIED = re.compile(r"permission denied for (table|relation|view|sequence|schema) \"?([A-Za-z0-9_]+)\"?")


class _Unnamed(SchemaOwnerNeeded):
    """A refusal met inside a transaction it aborted, where no query (which right?) can run: all
    the rights are named until named_after_rollback asks."""

    def __init__(self, message: str, statement: str, conn: Any, table: str, role: str) -> None:
        super().__init__(message, statement)
        self.conn, self.table, self.role = conn, table, role


def refused_right(conn: Any, exc: BaseException, ns: str) -> Optional[SchemaOwnerNeeded]:
    """The SchemaOwnerNeeded for `exc` if it is a right refused to the role connected on `conn`
    on an object of the schema `ns`; None for any other error, and for another refusal of that
    SQLSTATE (a row-level security policy someone added: the tables were altered, and a GRANT
    mends nothing). The message names the object, its schema and the role only (a caller of the
    service may read it), never the server's address."""
    if getattr(exc, "sqlstate", None) != INSUFFICIENT_PRIVILEGE:
        return None
    found = _DENIED.search(str(getattr(getattr(exc, "diag", None), "message_primary", None) or exc))
    if found is None:
        return None
    user = str(conn.info.user)  # no query: the transaction may be aborted by the refusal
    role = user if _PLAIN_NAME.fullmatch(user) else '"' + user.replace('"', '""') + '"'  # as quote_ident
    if found.group(1) == "schema":
        statement = f"GRANT USAGE ON SCHEMA {ns} TO {role}"
        return SchemaOwnerNeeded(f"the service's database role {role} was refused a right on the schema {ns} "
                                 f"(permission denied): a right was revoked from it, the tables are as they were. Run "
                                 f"`{statement}` once as the schema's owner.", statement)
    table = f"{ns}.{found.group(2)}"
    if found.group(1) == "sequence" or not _idle(conn):
        statement = _grant(table, RIGHTS, role)
        message = (f"the service's database role {role} was refused a right on {table} (permission denied): a right "
                   f"was revoked from it, the tables are as they were. Run `{statement}` once as the schema's owner.")
        return _Unnamed(message, statement, conn, table, role) if found.group(1) != "sequence" else \
            SchemaOwnerNeeded(message, statement)
    return _named(conn, table, role)


def named_after_rollback(exc: BaseException) -> BaseException:
    """`exc`, or for a refusal met inside a transaction that is rolled back by now, the same
    refusal naming the rights the role lacks."""
    if isinstance(exc, _Unnamed) and _idle(exc.conn):
        return _named(exc.conn, exc.table, exc.role)
    return exc


def _named(conn: Any, table: str, role: str) -> SchemaOwnerNeeded:
    statement = _grant(table, RIGHTS, role)
    try:
        missing = [r for r in RIGHTS if not conn.execute("SELECT has_table_privilege(%s, %s)", (table, r)).fetchone()[0]]
    except Exception:  # the connection lost meanwhile: which right is unknown
        missing = []
    lacks = f"lacks {', '.join(missing)} on {table}" if missing else f"was refused a right on {table}"
    return SchemaOwnerNeeded(f"the service's database role {role} {lacks} (permission denied): a right was revoked "
                             f"from it, the tables are as they were. Run `{statement}` once as the schema's owner.",
                             statement)


def _grant(table: str, rights: tuple[str, ...], role: str) -> str:
    return f"GRANT {', '.join(rights)} ON {table} TO {role}"


def _idle(conn: Any) -> bool:
    """Whether `conn` is outside any transaction (a query can run on it)."""
    from psycopg.pq import TransactionStatus

    return bool(conn.info.transaction_status == TransactionStatus.IDLE)
