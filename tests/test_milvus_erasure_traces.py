"""A thief holding a copy of Milvus Lite's files (and, one day, the keyring) taken after an
erasure's receipt looks there for the erased person's protected vector: Milvus keeps a deleted
vector's bytes in its segments, their index files and its write-ahead log until it compacts them,
which Milvus Lite does only on its own schedule (its manual compaction does nothing)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from policy_support import consent, images, legal_basis, open_sf  # noqa: E402
from server_support import PgCluster  # noqa: E402
from test_server_store_attacks import _server_ws  # noqa: E402


def _traces(folder: Path, vector: np.ndarray) -> list[str]:
    """The files under `folder` that hold a piece of `vector` (float32, as Milvus stores it), as
    bytes on disk or inside a Parquet or Arrow file once decoded (compression hides no piece)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    raw = vector.astype("<f4").tobytes()
    pieces = [raw[i:i + 32] for i in range(0, len(raw) - 32, 96)]
    found = []
    for p in sorted(q for q in folder.rglob("*") if q.is_file()):
        data = p.read_bytes()
        if any(piece in data for piece in pieces):
            found.append(f"{p.relative_to(folder)} (bytes)")
            continue
        try:
            tables = [pq.read_table(p)] if p.suffix == ".parquet" else \
                [pa.Table.from_batches(list(pa.ipc.open_stream(data)))] if p.suffix == ".arrow" else []
        except (pa.ArrowException, OSError):
            continue
        for t in tables:
            for col in t.itercolumns():
                if pa.types.is_list(col.type) or pa.types.is_fixed_size_list(col.type):
                    flat = np.asarray(col.combine_chunks().flatten(), dtype=np.float32)
                    if any(piece in flat.astype("<f4").tobytes() for piece in pieces):
                        found.append(f"{p.relative_to(folder)} (decoded)")
    return found


@pytest.mark.parametrize("how", ["erase", "revoke"])
def test_milvus_lites_files_hold_no_piece_of_an_erased_vector_after_the_receipt(pg: PgCluster, tmp_path: Path,
                                                                             how: str) -> None:
    """Alice is erased (or her consent revoked) on the server store: once the receipt is signed,
    no file of Milvus Lite holds a piece of her protected vector; bob's vector is still there."""
    from safeface.storage.vectors import MilvusVectors

    ws, _ = _server_ws(pg, tmp_path)
    img = images()
    with open_sf(ws) as sf:
        alice = sf.enroll(img / "obama.jpg", "alice", "demo", consent(ws, "alice"))
        bob = sf.enroll(img / "biden.jpg", "bob", "demo", consent(ws, "bob"))
        direct = MilvusVectors.connect("milvus-lite:vectors.db", ws.root, "safeface_templates", 128)
        held = direct.fetch([alice.row_id, bob.row_id])
        direct.close()
        folder = ws.root / "vectors.db"
        assert _traces(folder, held[alice.row_id][0]), "the test would find nothing"
        receipt = sf.erase("alice") if how == "erase" else sf.revoke(token_id=alice.token_id)
        assert receipt.templates_removed == 1 and receipt.vectors == "removed"
        assert _traces(folder, held[alice.row_id][0]) == []
        assert _traces(folder, held[bob.row_id][0])
        assert sf.identify(img / "obama2.jpg", "demo", legal_basis=legal_basis(ws)) == []
        assert sf.audit_verify().entries > 0
