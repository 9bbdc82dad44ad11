"""Where a workspace keeps its templates: `index rebuild` (Milvus from the records), `index
check` (Milvus against the records), and `storage migrate` (a local workspace to PostgreSQL and
Milvus)."""

from __future__ import annotations

import argparse
from typing import Any

from .common import EXIT_INTEGRITY, EXIT_OK, print_json
from .policy_cmds import _open, _ws


def register(sub: Any) -> None:
    p = sub.add_parser("index", help="the vector index of a workspace")
    ix = p.add_subparsers(dest="index_command", metavar="ACTION")
    r = ix.add_parser("rebuild", help="rebuild the vector index (Milvus) from the sealed records")
    _ws(r)
    r.set_defaults(func=_rebuild)
    c = ix.add_parser("check", help="compare the vector index (Milvus) with the sealed records; exit 4 when they "
                                    "differ, unless --repair fixed it")
    _ws(c)
    c.add_argument("--repair", action="store_true", help="write missing and stale vectors from the records and "
                                                         "delete orphans")
    c.set_defaults(func=_check)

    p = sub.add_parser("storage", help="where the workspace keeps its templates")
    st = p.add_subparsers(dest="storage_command", metavar="ACTION")
    m = st.add_parser("migrate", help="move a local workspace's templates to PostgreSQL and Milvus, then erase "
                                      "the local files")
    _ws(m)
    m.add_argument("--to", choices=("server",), required=True)
    m.add_argument("--records", required=True, help="postgresql://user@host:port/db (password from "
                                                    "$SAFEFACE_PG_PASSWORD or $SAFEFACE_PG_PASSWORD_FILE)")
    m.add_argument("--vectors", required=True, help="milvus:<uri> or milvus-lite:<file>")
    m.add_argument("--namespace", default=None)
    m.add_argument("--collection", default=None)
    m.set_defaults(func=_migrate)
    k = st.add_parser("confirm", help="seal the storage section of a workspace an earlier safeface moved to the "
                                      "servers (restate the targets; needs the passphrase)")
    _ws(k)
    k.add_argument("--records", required=True, help="the postgresql:// URL deployment.json should name")
    k.add_argument("--vectors", required=True, help="the milvus:<uri> or milvus-lite:<file> it should name")
    k.add_argument("--namespace", default=None)
    k.add_argument("--collection", default=None)
    k.set_defaults(func=_confirm)


def _rebuild(args: argparse.Namespace) -> int:
    with _open(args) as sf:
        print_json(sf.rebuild_index())
    return EXIT_OK


def _check(args: argparse.Namespace) -> int:
    with _open(args) as sf:
        out = sf.check_index(repair=args.repair)
    print_json(out)
    return EXIT_OK if out["consistent"] or out["repaired"] else EXIT_INTEGRITY


def _section(args: argparse.Namespace) -> dict[str, str]:
    section = {"records": args.records, "vectors": args.vectors}
    if args.namespace:
        section["namespace"] = args.namespace
    if args.collection:
        section["collection"] = args.collection
    return section


def _confirm(args: argparse.Namespace) -> int:
    from ..workspace.admin import confirm_storage

    print_json(confirm_storage(args.workspace, _section(args), args.passphrase_file))
    return EXIT_OK


def _migrate(args: argparse.Namespace) -> int:
    section = _section(args)
    with _open(args) as sf:
        out = sf.migrate_storage(section)
    print_json(out)
    return EXIT_OK
