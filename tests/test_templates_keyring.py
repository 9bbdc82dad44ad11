"""Keyrings: passphrase-wrapped key file and host-supplied keys; rotation; keys never shown."""

from __future__ import annotations

import base64
import json
import stat
from pathlib import Path

import pytest

from safeface.errors import ConfigError, IntegrityError
from safeface.hazmat.templates import PURPOSES, HostKeyring, Keyring, PassphraseKeyring, ScryptParams, StaticKeyProvider
from safeface.hazmat.templates.keyring import key_id_of

FAST = ScryptParams(n=2**10, r=8, p=1)
PASS = "a long passphrase for tests"


def secret_forms(key: bytes) -> list[str]:
    return [key.hex(), base64.b64encode(key).decode(), repr(key)]


def test_create_open_and_file_contents(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    kr = PassphraseKeyring.create(path, PASS, FAST)
    assert isinstance(kr, Keyring)
    keys = {p: kr.key(p) for p in PURPOSES}
    assert all(len(k) == 32 for k in keys.values()) and len(set(keys.values())) == 4
    assert all(kr.version(p) == 1 and kr.key_id(p) == key_id_of(keys[p]) for p in PURPOSES)
    again = PassphraseKeyring.open(path, PASS)
    assert {p: again.key(p) for p in PURPOSES} == keys
    text = path.read_text()
    doc = json.loads(text)
    assert doc["kdf"] == {"name": "scrypt", "n": 2**10, "r": 8, "p": 1, "salt": doc["kdf"]["salt"]}
    assert doc["wrap"] == "AES-256-GCM"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    for k in keys.values():
        for form in secret_forms(k):
            assert form not in text
            assert form not in repr(kr) and form not in str(kr)
    assert PASS not in text
    with pytest.raises(ConfigError, match="already exists"):
        PassphraseKeyring.create(path, PASS, FAST)


def test_wrong_passphrase_and_altered_file(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    kr = PassphraseKeyring.create(path, PASS, FAST)
    with pytest.raises(IntegrityError, match="passphrase is wrong or the file was altered") as err:
        PassphraseKeyring.open(path, "not the passphrase")
    assert "not the passphrase" not in str(err.value) and PASS not in str(err.value)
    for k in (kr.key(p) for p in PURPOSES):
        assert all(f not in str(err.value) for f in secret_forms(k))
    # A flipped bit in a wrapped key.
    doc = json.loads(path.read_text())
    w = bytearray(base64.b64decode(doc["keys"]["seal"][0]["wrapped"]))
    w[3] ^= 1
    doc["keys"]["seal"][0]["wrapped"] = base64.b64encode(bytes(w)).decode()
    path.write_text(json.dumps(doc))
    with pytest.raises(IntegrityError):
        PassphraseKeyring.open(path, PASS)
    # Entries swapped between purposes: the wrap binds each key to its purpose and version.
    path2 = tmp_path / "keys2.json"
    PassphraseKeyring.create(path2, PASS, FAST)
    doc = json.loads(path2.read_text())
    doc["keys"]["seal"], doc["keys"]["transform"] = doc["keys"]["transform"], doc["keys"]["seal"]
    path2.write_text(json.dumps(doc))
    with pytest.raises(IntegrityError):
        PassphraseKeyring.open(path2, PASS)
    with pytest.raises(ConfigError, match="no keyring"):
        PassphraseKeyring.open(tmp_path / "missing.json", PASS)
    (tmp_path / "junk.json").write_text("{not json")
    with pytest.raises(ConfigError, match="unreadable"):
        PassphraseKeyring.open(tmp_path / "junk.json", PASS)
    with pytest.raises(ConfigError, match="empty"):
        PassphraseKeyring.create(tmp_path / "k3.json", "", FAST)


def test_rotate_retire_refresh(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    kr = PassphraseKeyring.create(path, PASS, FAST)
    t1 = kr.key("transform")
    assert kr.rotate() == {"transform": 2, "seal": 2}
    assert kr.versions("transform") == [1, 2] and kr.key("transform", 1) == t1 != kr.key("transform")
    assert kr.version("audit") == 1 and kr.rotate("audit") == {"audit": 2}
    with pytest.raises(ConfigError, match="cannot be rotated"):
        kr.rotate("pseudonym")
    other = PassphraseKeyring.open(path, PASS)
    kr.rotate("transform")
    assert other.versions("transform") == [1, 2]
    other.refresh()  # picks up the version another holder added
    assert other.versions("transform") == [1, 2, 3] and other.key("transform") == kr.key("transform")
    # A holder that never saw version 3 rotates: it starts from the file, so version 3 survives.
    stale = PassphraseKeyring.open(path, PASS)
    kr.rotate("transform")
    assert stale.rotate("transform") == {"transform": 5}
    assert PassphraseKeyring.open(path, PASS).versions("transform") == [1, 2, 3, 4, 5]
    assert PassphraseKeyring.open(path, PASS).key("transform", 4) == kr.key("transform", 4)
    with pytest.raises(ConfigError, match="newest"):
        stale.retire("transform", 5)
    kr.retire("transform", 1)
    assert PassphraseKeyring.open(path, PASS).versions("transform") == [2, 3, 4, 5]
    with pytest.raises(ConfigError, match="no transform key version 1"):
        kr.key("transform", 1)
    with pytest.raises(ConfigError, match="unknown key purpose"):
        kr.key("marketing")


def test_a_keyring_file_restored_from_before_a_rotation_is_not_rotated_over(tmp_path: Path) -> None:
    """The file is put back from a copy made before a rotation while a process that holds the new
    version is open. Its next rotation started from the old file and wrote another key under the
    same version number: the key the rows were moved to was left only in that process's memory.
    Now it is refused, the file untouched, and the keys in memory kept."""
    path = tmp_path / "keys.json"
    kr = PassphraseKeyring.create(path, PASS, FAST)
    before = path.read_bytes()
    kr.rotate()
    moved_to = kr.key("transform", 2)
    path.write_bytes(before)
    with pytest.raises(ConfigError, match="restored from an older copy"):
        kr.rotate()
    assert path.read_bytes() == before and kr.key("transform", 2) == moved_to
    # A version retired by another holder is not a restore: the older versions may go.
    path.write_bytes(before)
    fresh = PassphraseKeyring.open(path, PASS)
    fresh.rotate()
    # The copy put back, then rotated by another process: another key under version 2. Taken
    # for this process's own, its next rotation wrote the file without the key the rows were
    # moved to, and no copy of it was left.
    with pytest.raises(ConfigError, match="another transform key under version 2"):
        kr.rotate()
    assert kr.key("transform", 2) == moved_to
    other = PassphraseKeyring.open(path, PASS)
    fresh.retire("transform", 1)
    other.refresh()
    assert other.versions("transform") == [2]


def test_host_keyring_provider_and_callback() -> None:
    kept: list[Any] = []
    provider = StaticKeyProvider.generate(keep=kept.append)
    kr = HostKeyring(provider)
    assert isinstance(kr, Keyring)
    assert kr.key("seal") == provider.key("seal", 1) and kr.version("seal") == 1
    assert kr.rotate("transform") == {"transform": 2} and kr.version("transform") == 2
    assert kept == [{"transform": (2, kr.key("transform"))}]  # handed over before it was used

    def full(new: Any) -> None:
        raise OSError("the secrets manager is full")

    stuck = StaticKeyProvider.generate(keep=full)
    with pytest.raises(OSError):
        stuck.rotate()
    assert stuck.versions("transform") == stuck.versions("seal") == [1]  # nothing made that was not kept
    with pytest.raises(ConfigError, match="only in memory"):
        StaticKeyProvider.generate().rotate()
    assert "StaticKeyProvider" in repr(kr)
    for p in PURPOSES:
        assert all(f not in repr(kr) + repr(provider) for f in secret_forms(kr.key(p)))
    calls: list[tuple[str, int]] = []
    store = {p: bytes([i + 1]) * 32 for i, p in enumerate(PURPOSES)}

    def get_key(purpose: str, version: int) -> bytes:
        calls.append((purpose, version))
        return store[purpose]

    cb = HostKeyring.from_callback(get_key)
    assert cb.key("audit") == store["audit"] and calls == [("audit", 1)]
    with pytest.raises(ConfigError, match="cannot rotate"):
        cb.rotate()
    bad = HostKeyring.from_callback(lambda p, v: b"\x07" * 16)
    with pytest.raises(ConfigError, match="must be 32 bytes, got 16") as err:
        bad.key("seal")
    assert "07" * 16 not in str(err.value)


@pytest.mark.slow
def test_two_processes_creating_one_keyring_one_wins(tmp_path: Path) -> None:
    """Two `init`s racing on one path: exactly one keyring is written, whole, and it opens with
    the winner's passphrase; the loser is told the file exists (nothing is overwritten)."""
    import subprocess
    import sys
    import textwrap

    from tests.child_process import child_env

    path = tmp_path / "keyring.json"
    script = textwrap.dedent(f"""
        import sys
        from safeface.errors import ConfigError
        from safeface.hazmat.templates.keyring import PassphraseKeyring, ScryptParams
        try:
            PassphraseKeyring.create({str(path)!r}, sys.argv[1], ScryptParams(n=2**10))
            print("created")
        except ConfigError as exc:
            print("refused" if "already exists" in str(exc) else exc)
    """)
    kids = [subprocess.Popen([sys.executable, "-c", script, f"pass-{i}"], env=child_env(), cwd=tmp_path,
                             stdout=subprocess.PIPE, text=True) for i in range(6)]
    outcomes = [k.communicate(timeout=120)[0].strip() for k in kids]
    assert sorted(outcomes) == ["created"] + ["refused"] * 5
    winner = outcomes.index("created")
    assert PassphraseKeyring.open(path, f"pass-{winner}").versions("seal") == [1]
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.endswith(".lock")) == ["keyring.json"]


@pytest.mark.parametrize("kdf", [{"p": 10**6}, {"n": 3000}, {"n": 2**40}, {"r": 10**5}, {"n": 2**20, "r": 8}])
def test_scrypt_settings_edited_in_the_file_are_refused_before_any_work(tmp_path: Path, kdf: dict[str, int]) -> None:
    """The scrypt settings sit in the file unauthenticated (they derive the key that checks it):
    a huge p made every open spin for hours, an n that is no power of two raised a bare
    ValueError."""
    import time

    path = tmp_path / "keys.json"
    PassphraseKeyring.create(path, PASS, FAST)
    doc = json.loads(path.read_text())
    doc["kdf"].update(kdf)
    path.write_text(json.dumps(doc))
    started = time.monotonic()
    with pytest.raises(ConfigError, match="edited"):
        PassphraseKeyring.open(path, PASS)
    assert time.monotonic() - started < 5


def test_keyring_entries_swapped_between_versions_are_refused(tmp_path: Path) -> None:
    """Someone with the file and no passphrase swaps transform v1 and v2, their version numbers
    left in place: each wrapped key is bound to its version, so the file no longer opens
    (otherwise the newest version would silently be the old key)."""
    path = tmp_path / "keys.json"
    PassphraseKeyring.create(path, PASS, FAST).rotate("transform")
    doc = json.loads(path.read_text())
    a, b = doc["keys"]["transform"]
    for field in ("nonce", "wrapped", "key_id"):
        a[field], b[field] = b[field], a[field]
    path.write_text(json.dumps(doc))
    with pytest.raises(IntegrityError):
        PassphraseKeyring.open(path, PASS)


def test_a_host_keyring_never_rotates_the_pseudonym_key() -> None:
    """A rotated pseudonym key would change every pseudonym, and an erasure by subject id would
    miss every stored row."""
    kept: list[object] = []
    provider = StaticKeyProvider.generate(keep=kept.append)
    with pytest.raises(ConfigError, match="cannot be rotated"):
        HostKeyring(provider).rotate("pseudonym")
    assert provider.versions("pseudonym") == [1] and kept == []


@pytest.mark.parametrize("edit, error, words", [
    (lambda doc: doc["keys"].__setitem__("audit", []), ConfigError, "holds no audit key"),
    (lambda doc: doc["keys"]["seal"][0].__setitem__("key_id", "0" * 16), IntegrityError, "recorded key id")])
def test_a_keyring_edited_by_hand_is_refused_at_open(tmp_path: Path, edit: object, error: type, words: str) -> None:
    """A purpose's keys emptied, or a key id the listings show that is not the key's."""
    path = tmp_path / "keys.json"
    PassphraseKeyring.create(path, PASS, FAST)
    doc = json.loads(path.read_text())
    edit(doc)  # type: ignore[operator]
    path.write_text(json.dumps(doc))
    with pytest.raises(error, match=words):
        PassphraseKeyring.open(path, PASS)


def test_a_new_keyring_outside_the_tests_derives_at_interactive_login_strength(tmp_path: Path) -> None:
    """The test session lowers the default for speed (conftest.py); a process of its own, as an
    app's, keeps scrypt at n=2**15, r=8, p=1 and records it in the file."""
    import subprocess
    import sys

    path = tmp_path / "keys.json"
    code = ("import sys; from safeface.hazmat.templates import PassphraseKeyring; "
            "PassphraseKeyring.create(sys.argv[1], 'a passphrase')")
    subprocess.run([sys.executable, "-c", code, str(path)], check=True, timeout=120)
    kdf = json.loads(path.read_text())["kdf"]
    assert (kdf["n"], kdf["r"], kdf["p"]) == (2**15, 8, 1)
    assert ScryptParams() == ScryptParams(2**15, 8, 1)


def test_a_keyring_nested_past_the_parsers_stack_is_a_config_error(tmp_path: Path) -> None:
    """Brackets nested thousands deep written over the keyring file (no key needed) made every open
    raise a bare RecursionError: the file is refused as unreadable, as other damage is."""
    path = tmp_path / "keys.json"
    path.write_text("[" * 5000 + "]" * 5000)
    with pytest.raises(ConfigError, match="unreadable"):
        PassphraseKeyring.open(path, PASS)
