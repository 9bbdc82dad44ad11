"""The PostgreSQL store's meta table edited by hand by someone with the app's database role: a
count, ceiling or key version written as something that is no number."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from server_support import PG_PASSWORD, PgCluster  # noqa: E402
from test_storage_server import Setup, fill, keyring, unit_rows  # noqa: E402,F401

from safeface.errors import IntegrityError  # noqa: E402


@pytest.mark.parametrize("key", ["vector_stamp", "vector_stamp_intended", "vector_rebuilds_noted", "committed_ceiling",
                                 "transform_version", "seal_version", "pseudonym_version"])
def test_a_meta_number_edited_into_text_is_named_not_a_bare_value_error(pg: PgCluster, tmp_path: Path, keyring: Any,
                                                                         key: str) -> None:
    """The operator writes "x" into a meta number: opening, searching or settling the store raised
    a bare ValueError naming nothing; each now raises IntegrityError naming the edited entry."""
    import psycopg

    setup = Setup(pg, "milvus-lite:vectors.db", tmp_path, keyring)
    x = unit_rows(2, seed=3)
    with setup.open() as store:
        fill(store, x)
    with psycopg.connect(setup.dsn, password=PG_PASSWORD, autocommit=True) as c:
        c.execute("INSERT INTO safeface.meta (k, v) VALUES (%s, 'x') ON CONFLICT (k) DO UPDATE SET v = 'x'", (key,))
    with pytest.raises(IntegrityError, match=key.split("_version")[0]):
        with setup.open() as store:
            store.search(x[0], "access")
            store.never_committed([1, 2, 3])


@pytest.mark.parametrize("mark", ["1:2:3", "7", ""])
def test_an_in_flight_mark_edited_out_of_shape_is_named(pg: PgCluster, tmp_path: Path, keyring: Any, mark: str) -> None:
    """The operator writes an enrolment's in-flight mark with three parts, one, or none, beside a
    row noted for a vector write: a search read the first two parts and went on; it is named now."""
    import psycopg

    setup = Setup(pg, "milvus-lite:vectors.db", tmp_path, keyring)
    x = unit_rows(2, seed=3)
    with setup.open() as store:
        fill(store, x)
        with psycopg.connect(setup.dsn, password=PG_PASSWORD, autocommit=True) as c:
            c.execute("INSERT INTO safeface.pending (row_id, op) SELECT min(row_id), 'upsert' FROM safeface.rows "
                      "ON CONFLICT (row_id) DO NOTHING")
            c.execute("INSERT INTO safeface.meta (k, v) VALUES ('enrolment_in_flight', %s) "
                      "ON CONFLICT (k) DO UPDATE SET v = EXCLUDED.v", (mark,))
        with pytest.raises(IntegrityError, match="enrolment_in_flight"):
            store.search(x[0], "access")
