"""Two workspaces on one PostgreSQL database, each in its own schema, sharing a keyring (one was
copied from the other before each moved to the server), as an operator with SQL access but no
passphrase would use them: rows, audit entries and policy state copied from one schema into the
other with plain SQL."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from policy_support import consent, images, legal_basis, make_workspace, open_sf  # noqa: E402
from safeface.errors import AuthenticationError  # noqa: E402
from server_support import PG_PASSWORD, PgCluster, server_modules  # noqa: E402


def _sql(dsn: str, query: str, params: tuple[Any, ...] = ()) -> list[Any]:
    import psycopg

    with psycopg.connect(dsn, password=PG_PASSWORD, autocommit=True, connect_timeout=10,
                         options="-c statement_timeout=30000") as c:
        cur = c.execute(query, params or None)
        return cur.fetchall() if cur.description else []


def _two_namespaces(pg: PgCluster, root: Path, subject: str = "alice") -> tuple[Any, Any, str]:
    """Workspace A with `subject` enrolled (row 1), and its copy B (the same keys), each moved to
    its own schema of one database ("a" and "b"), each with its own Milvus Lite file."""
    server_modules()
    imgs = images()
    ws = make_workspace(root / "a")
    with open_sf(ws) as sf:
        sf.enroll(imgs / "obama.jpg", subject, "demo", consent(ws, subject))
    shutil.copytree(ws.root, root / "b")
    copy = type(ws)(root / "b")
    dsn = pg.new_database()
    for w, ns in ((ws, "a"), (copy, "b")):
        with open_sf(w) as sf:
            sf.migrate_storage({"records": dsn, "vectors": "milvus-lite:vectors.db", "namespace": ns})
    return ws, copy, dsn


def _nowhere(ws: Any, sf: Any, image: Any, subject: str) -> None:
    """`subject` (in `image`) is not verified, not identified (under carol's consent) and has no
    record disclosed."""
    assert not sf.verify(image, subject, "demo", consent(ws, subject)).match
    assert sf.identify(image, "demo", consent=consent(ws, "carol")) == []
    assert sf.export(subject, "demo", "acme", legal_basis=legal_basis(ws, operations=["transmit"])).records == []


@pytest.mark.slow
def test_rows_and_keys_copied_from_the_other_schema_are_never_used(pg: PgCluster, tmp_path: Path) -> None:
    """B (a copy of A, the same keys) enrolled bob, and a masked dave; their sealed rows copied
    into A's schema with INSERT ... SELECT open there, but no enrolment in A's log names them: no
    identify (Milvus proposing them once `index check --repair` wrote their vectors from the
    records, or the records scored while a rebuild is noted), verify or export uses them, and the
    store check names them. alice's row put back from B after A erased her (B's copy is the same
    row, under the same consent), with A's notes of the erasure deleted, is not used either. An
    API key A issued, copied into B's key table, is refused there (B's log never issued it), and
    B's live row of it copied back over A's after A revoked it is refused in A."""
    from policy_support import masked_image

    ws, copy, dsn = _two_namespaces(pg, tmp_path)
    imgs = images()
    dave = masked_image(imgs / "biden.jpg", "n95")
    alice_token = consent(ws, "alice")
    with open_sf(copy) as sf:
        assert sf.enroll(imgs / "biden.jpg", "bob", "demo", consent(copy, "bob")).row_id == 2
        assert sf.enroll(dave, "dave", "demo", consent(copy, "dave")).row_id == 3
    _sql(dsn, "INSERT INTO a.rows SELECT * FROM b.rows WHERE row_id IN (2, 3)")
    _sql(dsn, "UPDATE a.meta SET v = '1' WHERE k = 'masked_enrolments_seen'")
    with open_sf(ws) as sf:
        assert sf.check_index(repair=True)["missing"] == [2, 3]  # Milvus now holds them too
        _nowhere(ws, sf, imgs / "biden.jpg", "bob")
        _nowhere(ws, sf, dave, "dave")
        key_info, key = sf.issue_api_key("operator", label="copied")
        problems = " ".join(sf.verify_store().problems)
        assert "row 2 has no" in problems and "row 3 has no" in problems, problems
    _sql(dsn, "INSERT INTO a.pending (row_id, op) VALUES (0, 'rebuild') ON CONFLICT (row_id) DO UPDATE SET op = 'rebuild'")
    with open_sf(ws) as sf:  # every row scored from the records
        _nowhere(ws, sf, imgs / "biden.jpg", "bob")
        assert sf.verify(imgs / "obama2.jpg", "alice", "demo", alice_token).match
        sf.erase("alice")
    _sql(dsn, "INSERT INTO a.rows SELECT * FROM b.rows WHERE row_id = 1")
    _sql(dsn, "DELETE FROM a.erased")
    with open_sf(ws) as sf:
        assert sf.identify(imgs / "obama2.jpg", "demo", consent=consent(ws, "carol")) == []
        assert sf.export("alice", "demo", "acme", legal_basis=legal_basis(ws, operations=["transmit"])).records == []
        assert "row 1 was removed" in " ".join(sf.verify_store().problems)
    _sql(dsn, "INSERT INTO b.service_apikeys SELECT * FROM a.service_apikeys")
    with open_sf(copy) as sf:
        with pytest.raises(AuthenticationError, match="never issued on the audit log"):
            sf.authenticate(key)
    with open_sf(ws) as sf:
        sf.revoke_api_key(key_info.key_id)
    _sql(dsn, "DELETE FROM a.service_apikeys")
    _sql(dsn, "INSERT INTO a.service_apikeys SELECT * FROM b.service_apikeys")
    with open_sf(ws) as sf:
        with pytest.raises(AuthenticationError, match="revoked"):
            sf.authenticate(key)
