"""Secret files an operator names (the keyring's passphrase file, $SAFEFACE_PG_PASSWORD_FILE, a
token issuer's private key) are refused when another account on the host may read or write
them, as serve's TLS key already was: one that others may read is no secret, and one that
others may write is theirs to choose. The error says what to run."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any, Callable

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from policy_support import PASSPHRASE, make_workspace  # noqa: E402

from safeface.errors import ConfigError  # noqa: E402


def _passphrase(path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    from safeface.workspace.passphrase import resolve_passphrase

    path.write_text(PASSPHRASE)
    return lambda: resolve_passphrase(path.parent, passphrase_file=path)


def _pg_password(path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    from safeface.storage.factory import secret_from_env

    path.write_text("pg-secret")
    monkeypatch.delenv("SAFEFACE_PG_PASSWORD", raising=False)
    monkeypatch.setenv("SAFEFACE_PG_PASSWORD_FILE", str(path))
    return lambda: secret_from_env("SAFEFACE_PG_PASSWORD")


def _signing_key(path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from safeface.policy.tokens import private_key_pem
    from safeface.workspace.keys import read_signing_key

    path.write_bytes(private_key_pem(Ed25519PrivateKey.generate()))
    return lambda: read_signing_key(path)


@pytest.mark.parametrize("reader", [_passphrase, _pg_password, _signing_key])
@pytest.mark.parametrize("mode", [0o644, 0o604, 0o620])
def test_a_secret_file_others_may_read_or_write_is_refused_naming_the_chmod(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, reader: Callable[..., Any], mode: int) -> None:
    """The operator left the file as the umask made it (0644), or readable by all, or writable by
    the group: refused, saying `chmod 600 FILE`; once private, it is read."""
    path = tmp_path / "secret"
    read = reader(path, monkeypatch)
    path.chmod(mode)
    with pytest.raises(ConfigError, match=rf"chmod 600 {path}$"):
        read()
    path.chmod(0o600)
    assert read()


def test_the_cli_refuses_a_passphrase_file_others_may_read(tmp_path: Path, capsys: Any) -> None:
    """`safeface keys list --passphrase-file F` with F readable by all: the command fails with a
    configuration error (exit 1) naming the chmod, and the passphrase is never shown."""
    from safeface.cli import main

    ws = make_workspace(tmp_path / "ws")
    pf = tmp_path / "pass.txt"
    pf.write_text(PASSPHRASE)
    pf.chmod(0o644)
    assert main(["keys", "list", str(ws.root), "--passphrase-file", str(pf)]) == 1
    err = capsys.readouterr().err
    assert f"chmod 600 {pf}" in err and PASSPHRASE not in err, err
    pf.chmod(0o600)
    assert main(["keys", "list", str(ws.root), "--passphrase-file", str(pf)]) == 0


@pytest.mark.parametrize("reader", [_passphrase, _pg_password, _signing_key])
@pytest.mark.parametrize("planted", ["a link another user made", "a folder others may write"])
def test_a_secret_file_reached_through_a_name_another_user_may_change_is_refused(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, reader: Callable[..., Any], planted: str) -> None:
    """The secret file is this account's and private, but its name is not: another user put a link
    there to another private file of this account's (a private key, a password), or may put one
    in a folder on the way (writable by all, not sticky). The file passed as this account's own:
    its text was taken as the passphrase, or sent to the database server as the password. Refused
    as deployment.json's link is, naming where; a name only this account or root may change is
    read."""
    if os.geteuid() != 0:
        pytest.skip("a link of another user's needs root to make")
    (tmp_path / "private").mkdir(mode=0o700)
    shared = tmp_path / "shared"
    shared.mkdir()
    name = shared / "secret"
    name.symlink_to(tmp_path / "private" / "the-file")
    read = reader(name, monkeypatch)  # written through the link
    (tmp_path / "private" / "the-file").chmod(0o600)
    if planted == "a link another user made":
        os.lchown(name, 1000, 1000)
    else:
        shared.chmod(0o777)
    with pytest.raises(ConfigError, match="another user"):
        read()
    shared.chmod(0o755)
    os.lchown(name, 0, 0)
    assert read()


def test_a_secret_file_named_through_a_linked_folder_and_dotdot_is_read(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """The passphrase file is named `home/link/../pass`, `link` leading to `data/deep`: the system
    reads `data/pass`. Its name was judged with the `..` taken off the text (`home/pass`, where
    nothing is) and the file refused as swapped while it was read."""
    (tmp_path / "data" / "deep").mkdir(parents=True)
    (tmp_path / "home").mkdir()
    (tmp_path / "home" / "link").symlink_to(tmp_path / "data" / "deep")
    read = _passphrase(tmp_path / "data" / "pass", monkeypatch)
    (tmp_path / "data" / "pass").chmod(0o600)
    from safeface.workspace.passphrase import resolve_passphrase

    assert resolve_passphrase(tmp_path, passphrase_file=tmp_path / "home" / "link" / ".." / "pass") == read()
