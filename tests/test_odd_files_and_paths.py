"""Attacks on opening a workspace and on the CLI's file arguments: odd passphrases and paths,
a token or passphrase file that is not text, and a token "file" that never ends. Each must
come back as one of safeface's typed errors (a CLI exit code and one line, no traceback)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from child_process import child_env  # noqa: E402
from policy_support import PASSPHRASE, images, make_workspace  # noqa: E402

from safeface import SafeFace, SafeFaceError  # noqa: E402


@pytest.mark.parametrize("kind", ["surrogate passphrase", "bytes passphrase", "passphrase file not utf-8",
                                  "workspace with a nul", "workspace not a path"])
def test_opening_with_an_odd_passphrase_or_path_is_a_typed_error(tmp_path: Path, kind: str) -> None:
    """The app opens a workspace with a passphrase holding a lone surrogate (a JSON "\\ud800"
    from a config file), a passphrase given as bytes, a passphrase file that is not UTF-8, or a
    workspace path with a NUL or of the wrong type. It must get a SafeFaceError
    (InvalidArgument or ConfigError), never a bare UnicodeError, AttributeError, TypeError or
    ValueError."""
    ws = make_workspace(tmp_path / "ws")
    binary = tmp_path / "pass.bin"
    binary.write_bytes(b"\xff\xfe\x00 not text")
    binary.chmod(0o600)  # private, as a passphrase file must be: judged for its text
    calls: dict[str, Any] = {
        "surrogate passphrase": lambda: SafeFace.open(ws.root, "pass\ud800word"),
        "bytes passphrase": lambda: SafeFace.open(ws.root, PASSPHRASE.encode()),
        "passphrase file not utf-8": lambda: SafeFace.open(ws.root, passphrase_file=binary),
        "workspace with a nul": lambda: SafeFace.open(str(ws.root) + "\x00x", PASSPHRASE),
        "workspace not a path": lambda: SafeFace.open(5, PASSPHRASE),  # type: ignore[arg-type]
    }
    with pytest.raises(SafeFaceError):
        calls[kind]().close()


def test_a_token_file_that_is_not_text_is_a_typed_cli_error(tmp_path: Path, capsys: Any) -> None:
    """The operator passes `--consent @FILE` naming a binary file (a photo by mistake, or a file
    planted in the token folder). The CLI must exit with its error code and one line, not a
    Python traceback."""
    from safeface.cli import main

    ws = make_workspace(tmp_path / "ws")
    pf = tmp_path / "pass.txt"
    pf.write_text(PASSPHRASE)
    pf.chmod(0o600)  # passphrase files must be private
    rc = main(["verify", str(ws.root), str(images() / "obama.jpg"), "--subject", "alice", "--purpose", "demo",
               "--consent", f"@{images() / 'obama.jpg'}", "--passphrase-file", str(pf)])
    err = capsys.readouterr().err
    assert rc != 0 and "Traceback" not in err


def test_a_token_file_that_never_ends_is_refused_without_reading_it_all(tmp_path: Path) -> None:
    """The operator (or a script fed a path) passes `--consent @/dev/zero`. The CLI must refuse
    it as no regular file, or stop at a token's size, instead of reading until memory runs out
    (the child runs under a 1.5 GiB address-space limit and 60 s, so a failure costs nothing)."""
    ws = make_workspace(tmp_path / "ws")
    pf = tmp_path / "pass.txt"
    pf.write_text(PASSPHRASE)
    pf.chmod(0o600)  # passphrase files must be private
    code = ("import resource, sys; resource.setrlimit(resource.RLIMIT_AS, (3 << 29, 3 << 29)); "
            "from safeface.cli import main; sys.exit(main(sys.argv[1:]))")
    try:
        proc = subprocess.run([sys.executable, "-c", code, "verify", str(ws.root), str(images() / "obama.jpg"),
                               "--subject", "alice", "--purpose", "demo", "--consent", "@/dev/zero",
                               "--passphrase-file", str(pf)], cwd=tmp_path, env=child_env(), capture_output=True,
                              text=True, timeout=60)
    except subprocess.TimeoutExpired:
        pytest.fail("the CLI kept reading /dev/zero as a token file")
    assert proc.returncode in (1, 2, 3), proc.stderr[-500:]
    assert "Traceback" not in proc.stderr and "MemoryError" not in proc.stderr, proc.stderr[-500:]


def test_raw_embeddings_are_not_written_into_a_workspace(tmp_path: Path, capsys: Any) -> None:
    """A workspace holds protected templates only; the evaluation cache and `keys export` are
    refused inside one. The user runs `safeface embed photo --out WS/faces.npy`: raw,
    unprotected embeddings would then sit in the folder a thief copies as the workspace. The
    command must refuse, and write nothing there."""
    from safeface.cli import main

    ws = make_workspace(tmp_path / "ws")
    rc = main(["embed", str(images() / "obama.jpg"), "--out", str(ws.root / "faces.npy")])
    capsys.readouterr()
    assert not (ws.root / "faces.npy").exists(), "raw embeddings were written inside the workspace"
    assert rc != 0


def test_a_raw_embeddings_file_is_owner_only(tmp_path: Path, capsys: Any) -> None:
    """`safeface embed --out FILE.npy` writes raw face embeddings (biometric data in the clear).
    Another local user of the machine reads files the umask leaves world-readable. The file
    must be owner-only (0600), as the evaluation cache's shards and the workspace's keys are."""
    import os

    from safeface.cli import main

    old = os.umask(0o022)
    try:
        rc = main(["embed", str(images() / "obama.jpg"), "--out", str(tmp_path / "faces.npy")])
    finally:
        os.umask(old)
    capsys.readouterr()
    assert rc == 0
    mode = (tmp_path / "faces.npy").stat().st_mode
    assert mode & 0o077 == 0, f"raw embeddings written with mode {oct(mode & 0o777)}"


def test_a_workspace_named_through_a_linked_folder_and_dotdot_opens_its_own_databases(tmp_path: Path) -> None:
    """The workspace is named `home/link/../ws` where `link` is a link to `data/deep`: the system
    reads that as `data/ws`, where the workspace is. Its databases were opened at `home/ws` (the
    `..` taken off the name's text, as no open takes it): refused as unusable, or, with another
    workspace there, that one's databases read beside this one's keys."""
    ws = make_workspace(tmp_path / "data" / "ws")
    (tmp_path / "data" / "deep").mkdir()
    (tmp_path / "home").mkdir()
    (tmp_path / "home" / "link").symlink_to(tmp_path / "data" / "deep")
    with SafeFace.open(tmp_path / "home" / "link" / ".." / "ws", PASSPHRASE) as sf:
        assert sf.records() == []
    assert not (tmp_path / "home" / "ws").exists()
    assert ws.gallery.exists()
