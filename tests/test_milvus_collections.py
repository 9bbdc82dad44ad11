"""Protected vectors in Milvus: the expiry filter at its boundary, collections not made by safeface,
and the IVF probe count where the filter allows half the cells' worth of rows."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from safeface.errors import ConfigError
from safeface.storage.vectors import INDEX_KINDS, SEARCH_PARAMS, MilvusVectors, search_params

DIM = 16


def _vectors(milvus: Any, root: Path) -> MilvusVectors:
    return MilvusVectors.connect(f"milvus:{milvus.uri}", root, "c_" + uuid.uuid4().hex[:10], DIM)


def test_a_row_expiring_at_the_search_time_is_not_returned(milvus: Any, tmp_path: Path) -> None:
    """A row whose expiry equals the search time is expired: Milvus's filter does not return it."""
    v = _vectors(milvus, tmp_path)
    v.ensure()
    x = np.zeros((1, DIM), np.float32)
    x[0, 0] = 1.0
    v.upsert([7], x, [["access"]], [1_000_000])
    assert [r for r, _ in v.search(x[0], "access", 999_999, 5)] == [7]
    assert v.search(x[0], "access", 1_000_000, 5) == []
    v.drop()
    v.close()


def test_a_collection_with_a_field_safeface_never_makes_is_refused(milvus: Any, tmp_path: Path) -> None:
    """A collection holding a field beyond id, vector, purposes and expiry (a subject id) is not
    taken for safeface's."""
    from pymilvus import DataType, MilvusClient

    name = "c_" + uuid.uuid4().hex[:10]
    client = MilvusClient(uri=milvus.uri)
    schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
    schema.add_field("id", DataType.INT64, is_primary=True)
    schema.add_field("vector", DataType.FLOAT_VECTOR, dim=DIM)
    schema.add_field("purposes", DataType.VARCHAR, max_length=256)
    schema.add_field("expires_us", DataType.INT64)
    schema.add_field("subject", DataType.VARCHAR, max_length=256)
    client.create_collection(name, schema=schema)
    try:
        with pytest.raises(ConfigError, match="not made by safeface"):
            MilvusVectors.connect(f"milvus:{milvus.uri}", tmp_path, name, DIM)
    finally:
        client.drop_collection(name)
        client.close()


def test_ivf_probes_every_cell_once_the_widened_probe_reaches_half_of_them() -> None:
    """An IVF search whose widened probe is exactly half the cells probes them all (exact over the allowed rows)."""
    nlist, base = INDEX_KINDS["IVF_FLAT"]["nlist"], SEARCH_PARAMS["IVF_FLAT"]["nprobe"]
    assert search_params("IVF_FLAT", base / (nlist // 2)) == {"nprobe": nlist}
