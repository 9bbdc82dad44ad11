"""The shared primitives every store builds on: one AES-GCM seal/open, one atomic write, one
file hash, one ONNX Runtime session factory. Each is attacked the way a thief or a crash would."""

from __future__ import annotations

import hashlib
import io
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from safeface.aead import NONCE_BYTES, TAG_BYTES, Aead
from safeface.atomicfile import atomic_path, atomic_writer, new_file_mode, write_atomic
from safeface.errors import ConfigError, IntegrityError, ModelError
from safeface.hashing import TooLarge, copy_hashed, read_verified, sha256_file, sha256_file_cached
from tests.child_process import child_env

KEY = bytes(range(32))


# -- AES-GCM -------------------------------------------------------------------------------------
def test_every_bit_of_a_sealed_blob_is_checked() -> None:
    aead = Aead(KEY)
    blob = aead.seal(b"template bytes", b"row 7")
    assert aead.open(blob, b"row 7") == b"template bytes"
    assert len(blob) == NONCE_BYTES + len(b"template bytes") + TAG_BYTES
    for i in range(len(blob)):  # nonce, ciphertext and tag: flipping any bit is refused
        bad = bytearray(blob)
        bad[i] ^= 0x01
        with pytest.raises(IntegrityError):
            aead.open(bytes(bad), b"row 7")


def test_a_blob_moved_to_another_context_or_key_or_cut_is_refused() -> None:
    aead = Aead(KEY)
    blob = aead.seal(b"x" * 40, b"row 7")
    with pytest.raises(IntegrityError, match="row 8 refused"):
        aead.open(blob, b"row 8", refused="row 8 refused")
    with pytest.raises(IntegrityError):
        Aead(os.urandom(32)).open(blob, b"row 7")
    for cut in (0, 5, NONCE_BYTES + TAG_BYTES - 1, len(blob) - 1):
        with pytest.raises(IntegrityError):
            aead.open(blob[:cut], b"row 7")
    with pytest.raises(IntegrityError):
        aead.open(blob + b"\x00", b"row 7")
    # The same plaintext never seals to the same bytes (fresh nonce each time).
    assert aead.seal(b"x" * 40, b"row 7")[:NONCE_BYTES] != blob[:NONCE_BYTES]


def test_framing_is_the_one_files_were_written_with() -> None:
    """Rows, cache shards and index chunks sealed before this module existed keep opening:
    nonce || AESGCM(ciphertext || tag), and explicit-nonce chunks, byte for byte."""
    nonce = os.urandom(12)
    old_blob = nonce + AESGCM(KEY).encrypt(nonce, b"old row", b"aad")
    assert Aead(KEY).open(old_blob, b"aad") == b"old row"
    assert AESGCM(KEY).decrypt(nonce, Aead(KEY).encrypt(nonce, b"chunk", b"hdr"), b"hdr") == b"chunk"
    new_blob = Aead(KEY).seal(b"new row", b"aad")
    assert AESGCM(KEY).decrypt(new_blob[:12], new_blob[12:], b"aad") == b"new row"


def test_a_bad_key_is_refused_without_echoing_it() -> None:
    for bad in (b"short secret key", b"k" * 33, "a string key of 32 characters!!!", None):
        with pytest.raises(ConfigError, match="32 random bytes") as err:
            Aead(bad, "the seal key")  # type: ignore[arg-type]
        assert "secret" not in str(err.value) and "string key" not in str(err.value)
        assert str(err.value).startswith("the seal key")
    assert "Aead()" == repr(Aead(KEY))


# -- atomic write ----------------------------------------------------------------------------------
def test_an_exception_before_the_rename_leaves_the_old_file_and_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "index.bin"
    target.write_bytes(b"old content")
    with pytest.raises(RuntimeError, match="disk on fire"):
        with atomic_writer(target) as fh:
            fh.write(b"new content, half")
            raise RuntimeError("disk on fire")
    assert target.read_bytes() == b"old content"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["index.bin"]
    write_atomic(target, b"new content")
    assert target.read_bytes() == b"new content"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["index.bin"]


def test_a_writer_killed_mid_write_leaves_the_old_file_whole(tmp_path: Path) -> None:
    target = tmp_path / "registry.json"
    target.write_text('{"old": true}\n')
    script = textwrap.dedent(f"""
        import sys, time
        from safeface.atomicfile import atomic_writer
        with atomic_writer({str(target)!r}) as fh:
            fh.write(b"{{\\"new\\": tr")
            fh.flush()
            print("written", flush=True)
            time.sleep(60)
    """)
    child = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, env=child_env(),
                             cwd=tmp_path, text=True)
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "written"
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
    assert child.returncode == -signal.SIGKILL
    assert target.read_text() == '{"old": true}\n'
    # What a killed writer leaves is only its own hidden temporary file, never the target.
    leftovers = [p.name for p in tmp_path.iterdir() if p.name != "registry.json"]
    assert len(leftovers) == 1 and leftovers[0].startswith(".registry.json.tmp-")


def test_atomic_files_get_the_requested_permissions(tmp_path: Path) -> None:
    write_atomic(tmp_path / "secret.key", os.urandom(32), mode=0o600)
    write_atomic(tmp_path / "report.json", "{}\n")
    assert (tmp_path / "secret.key").stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "report.json").stat().st_mode & 0o777 == new_file_mode()
    assert (tmp_path / "report.json").read_text() == "{}\n"
    with atomic_path(tmp_path / "clip.mp4") as tmp:  # the suffix survives for format sniffing
        assert tmp.suffix == ".mp4" and tmp.parent == tmp_path
        tmp.write_bytes(b"video")
    assert (tmp_path / "clip.mp4").read_bytes() == b"video"


# -- file hash -------------------------------------------------------------------------------------
def test_file_hash_matches_hashlib_and_notices_a_rewrite(tmp_path: Path) -> None:
    path = tmp_path / "model.onnx"
    data = os.urandom(3 * (1 << 20) + 17)  # several chunks and a partial one
    path.write_bytes(data)
    assert sha256_file(path) == sha256_file_cached(path) == hashlib.sha256(data).hexdigest()
    altered = bytes([data[0] ^ 1]) + data[1:]
    path.write_bytes(altered)
    os.utime(path, ns=(1, 1))  # a new mtime: the cache must not answer for the old bytes
    assert sha256_file_cached(path) == hashlib.sha256(altered).hexdigest()


def test_read_verified_returns_only_the_bytes_it_hashed(tmp_path: Path) -> None:
    path = tmp_path / "det.onnx"
    path.write_bytes(b"weights")
    good = hashlib.sha256(b"weights").hexdigest()
    assert read_verified(path, good, "changed") == b"weights"
    path.write_bytes(b"swapped")
    with pytest.raises(ModelError, match="det.onnx changed"):
        read_verified(path, good, f"{path.name} changed")


def test_copy_hashed_stops_at_its_limit() -> None:
    out = io.BytesIO()
    assert copy_hashed(io.BytesIO(b"abc" * 1000), out) == (hashlib.sha256(b"abc" * 1000).hexdigest(), 3000)
    assert out.getvalue() == b"abc" * 1000
    with pytest.raises(TooLarge):
        copy_hashed(io.BytesIO(b"x" * 5000), io.BytesIO(), limit=4999)


# -- ONNX Runtime sessions -------------------------------------------------------------------------
def test_session_factory_builds_from_bytes_and_types_its_errors() -> None:
    onnx = pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    import numpy as np
    from onnx import TensorProto, helper

    from safeface.hazmat.vision.ort_session import default_providers, new_session

    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    sess = new_session(model.SerializeToString(), "a test graph", intra_op_threads=1, spin=False)
    assert sess.run(None, {"x": np.array([-1.0, 2.0], np.float32)})[0].tolist() == [0.0, 2.0]
    assert "CPUExecutionProvider" in default_providers()
    with pytest.raises(ModelError, match="ONNX Runtime cannot load my model"):
        new_session(b"not an onnx model", "my model")
    assert onnx is not None


# -- no assert as a runtime check ---------------------------------------------------------------
def test_no_runtime_assert_in_the_package() -> None:
    """`python -O` strips asserts, so a check written as one vanishes in production. (sdk/ and
    the guard are being rewritten apart and checked there.)"""
    import ast

    import safeface

    root = Path(safeface.__file__).resolve().parent
    found = []
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root).as_posix()
        if rel.startswith("sdk/") or rel == "policy/guard.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Assert):
                found.append(f"{rel}:{node.lineno}")
    assert found == []


def test_write_new_never_overwrites_and_never_shows_half_a_file(tmp_path: Path) -> None:
    from safeface.atomicfile import write_new

    key = tmp_path / "eval-cache.key"
    write_new(key, b"k" * 32)
    assert key.read_bytes() == b"k" * 32 and key.stat().st_mode & 0o777 == 0o600
    with pytest.raises(FileExistsError):
        write_new(key, b"x" * 32)
    assert key.read_bytes() == b"k" * 32
    assert sorted(p.name for p in tmp_path.iterdir()) == ["eval-cache.key"]


@pytest.mark.slow
def test_racing_processes_agree_on_one_created_key(tmp_path: Path) -> None:
    """Eight processes create the evaluation-cache key at once: all read the same 32 bytes."""
    script = "from safeface.evaluate.embedcache import cache_key; print(cache_key().hex())"
    env = child_env(SAFEFACE_HOME=str(tmp_path / "home"))
    kids = [subprocess.Popen([sys.executable, "-c", script], env=env, cwd=tmp_path, stdout=subprocess.PIPE, text=True)
            for _ in range(8)]
    keys = {k.communicate(timeout=120)[0].strip() for k in kids}
    assert [k.returncode for k in kids] == [0] * 8
    assert len(keys) == 1 and len(keys.pop()) == 64


def test_a_lock_file_planted_as_a_link_is_not_followed(tmp_path: Path) -> None:
    """A link planted in a lock file's place (a shared witness folder) made safeface create an
    empty file wherever it pointed."""
    from safeface.atomicfile import exclusive_lock
    from safeface.errors import ConfigError
    from safeface.storage.lock import WriteLock

    for n, take in enumerate((lambda p: exclusive_lock(p), lambda p: WriteLock(p).held())):
        target, link = tmp_path / f"elsewhere-{n}", tmp_path / f"store-{n}.lock"
        link.symlink_to(target)
        with pytest.raises(ConfigError, match="symbolic link"):
            with take(link):
                pass
        assert not target.exists()
