"""A thief holding a copy of gallery.db (and its -wal/-shm) taken after an erasure looks for what
is left of the erased person: the sealed blob of every version the row ever had (a touch that
moved the expiry re-sealed it), its look digests and token reference in the row and its indexes."""

from __future__ import annotations

import sqlite3
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from safeface.storage.gallery import Gallery  # noqa: E402
from safeface.hazmat.templates import PassphraseKeyring, ScryptParams  # noqa: E402

DIM = 128
FAST = ScryptParams(n=2**10, r=8, p=1)
T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
LATER = T0 + timedelta(days=365)


def _rows(n: int, seed: int) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((n, DIM)).astype(np.float32)
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def _bytes(db: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(db.parent.glob(db.name + "*")))


def _pieces(blob: bytes) -> list[bytes]:
    return [blob[i:i + 24] for i in range(0, len(blob) - 24, 97)]


def test_an_erased_row_leaves_no_version_of_its_seal_digests_or_token_in_the_files(tmp_path: Path) -> None:
    """A thief copies gallery.db and its side files after an erasure: no version of the erased row's
    seal, nor its look digests, token reference or pseudonym, is left in them."""
    db = tmp_path / "ws" / "gallery.db"
    keyring = PassphraseKeyring.create(tmp_path / "keys.json", "pass phrase", FAST)
    x = _rows(300, 7)
    with Gallery.open(db, keyring, DIM) as g:
        for i, v in enumerate(x):
            g.add(f"s{i}", v, ["access"], f"tok-s{i}-{'q' * 20}", LATER)
        victim = g.pseudonym("s150")
        c = sqlite3.connect(db)
        blobs = [bytes(c.execute("SELECT sealed FROM rows WHERE pseudonym = ?", (victim,)).fetchone()[0])]
        for days in (400, 500):
            g.touch("s150", now=T0, new_expiry=T0 + timedelta(days=days), purpose="access")
            blobs.append(bytes(c.execute("SELECT sealed FROM rows WHERE pseudonym = ?", (victim,)).fetchone()[0]))
        look, small, token = c.execute("SELECT look, look_small, token_id FROM rows WHERE pseudonym = ?",
                                       (victim,)).fetchone()
        other = c.execute("SELECT look FROM rows WHERE pseudonym = ?", (g.pseudonym("s151"),)).fetchone()[0]
        c.close()
        assert len(set(blobs)) == 3
        assert g.erase_subject("s150").count == 1
        for phase in ("open", "closed"):
            if phase == "closed":
                g.close()
            data = _bytes(db)
            assert str(other).encode() in data
            for k, blob in enumerate(blobs):
                left = [p for p in _pieces(blob) if p in data]
                assert not left, (phase, f"a piece of the erased row's seal version {k} is still on disk")
            for name, value in (("look", look), ("look_small", small), ("token reference", token),
                                ("pseudonym", victim)):
                assert str(value).encode() not in data, (phase, f"the erased row's {name} is still on disk")


def test_a_rekey_leaves_no_piece_of_a_seal_under_the_old_keys_in_the_files(tmp_path: Path) -> None:
    """A thief holding the leaked old seal key copies the files after a re-key: no piece of any
    seal under the old keys is left in them, open or closed."""
    db = tmp_path / "ws" / "gallery.db"
    keyring = PassphraseKeyring.create(tmp_path / "keys.json", "pass phrase", FAST)
    x = _rows(200, 8)
    with Gallery.open(db, keyring, DIM) as g:
        for i, v in enumerate(x):
            g.add(f"s{i}", v, ["access"], f"tok-s{i}", LATER)
        c = sqlite3.connect(db)
        old = [bytes(b) for (b,) in c.execute("SELECT sealed FROM rows")]
        c.close()
        keyring.rotate("transform", "seal")
        assert g.rekey().rows == 200
        for phase in ("open", "closed"):
            if phase == "closed":
                g.close()
            data = _bytes(db)
            left = sum(1 for blob in old for p in _pieces(blob) if p in data)
            assert left == 0, (phase, f"{left} pieces of seals under the retired keys are still on disk")
