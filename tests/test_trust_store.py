"""The trust store (keys/trust.json): only the keyring holder can trust a key, every change is
audited, and a file edited by hand, copied in or put back from an older copy is refused.
Keys are named by RFC 7638 thumbprints and travel as JWK Sets (RFC 7517).

Each test is an attack a person who can write the workspace, but does not hold the passphrase,
would try; or a check of the standard formats against an independent computation."""

from __future__ import annotations

import base64
import hashlib
import json
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

sys.path.insert(0, str(Path(__file__).resolve().parent))
from policy_support import CachedPipeline  # noqa: E402

from safeface.cli import main  # noqa: E402
from safeface.errors import ConfigError, IntegrityError  # noqa: E402
from safeface.policy.tokens import key_id  # noqa: E402
from safeface.sdk import SafeFace  # noqa: E402
from safeface.workspace.admin import audit_verify, keys_export, keys_import, keys_list, keys_new, keys_remove  # noqa: E402
from safeface.workspace.init import init_workspace  # noqa: E402
from safeface.workspace.keys import read_signing_key  # noqa: E402
from safeface.workspace.paths import WorkspacePaths  # noqa: E402
from safeface.workspace.session import opened  # noqa: E402
from safeface.workspace.trust import load_trust, public_jwk, thumbprint  # noqa: E402

# RFC 8037 appendix A.2/A.3: an Ed25519 public key and its RFC 7638 thumbprint.
RFC8037_JWK = {"kty": "OKP", "crv": "Ed25519", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}
RFC8037_THUMBPRINT = "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"


def demo(tmp_path: Path, name: str = "ws") -> WorkspacePaths:
    return init_workspace(tmp_path / name, demo=True)


def blank(tmp_path: Path, monkeypatch: Any, name: str = "blank") -> WorkspacePaths:
    monkeypatch.setenv("SAFEFACE_PASSPHRASE", "the real passphrase of this test")
    return init_workspace(tmp_path / name)


def cli(capsys: Any, *args: Any) -> tuple[int, str, str]:
    try:
        rc = main([str(a) for a in args])
    except SystemExit as exc:
        rc = int(exc.code or 0)
    out, err = capsys.readouterr()
    return rc, out, err


def entries(paths: WorkspacePaths) -> list[Any]:
    with opened(paths) as r:
        return list(r.audit.entries())


def trusted(paths: WorkspacePaths) -> dict[str, dict[str, Any]]:
    with opened(paths) as r:
        return load_trust(paths, r.keyring, r.audit).for_guard()


def independent_thumbprint(jwk: dict[str, str]) -> str:
    """RFC 7638 section 3 by hand: the required members in lexicographic order, no spaces."""
    canon = json.dumps({k: jwk[k] for k in ("crv", "kty", "x")}, separators=(",", ":"), sort_keys=True)
    return base64.urlsafe_b64encode(hashlib.sha256(canon.encode()).digest()).rstrip(b"=").decode()


# -- only the keyring holder --------------------------------------------------------------------
def test_keys_new_without_the_passphrase_is_refused(tmp_path: Path, monkeypatch: Any, capsys: Any) -> None:
    paths = blank(tmp_path, monkeypatch)
    before = paths.trust.read_bytes()
    monkeypatch.delenv("SAFEFACE_PASSPHRASE")
    rc, _, err = cli(capsys, "keys", "new", paths.root, "--kind", "consent-issuer", "--out", tmp_path / "k.pem")
    assert rc == 1 and "passphrase" in err
    monkeypatch.setenv("SAFEFACE_PASSPHRASE", "a guess")
    rc, _, err = cli(capsys, "keys", "new", paths.root, "--kind", "consent-issuer", "--out", tmp_path / "k.pem")
    assert rc == 4 and "passphrase is wrong" in json.loads(err)["message"]
    assert not (tmp_path / "k.pem").exists() and paths.trust.read_bytes() == before
    jwks = tmp_path / "set.json"
    jwks.write_text(json.dumps({"keys": [RFC8037_JWK]}))
    rc, _, _ = cli(capsys, "keys", "import", paths.root, "--kind", "consent-issuer", "--jwks", jwks)
    assert rc == 4 and paths.trust.read_bytes() == before


def test_a_trust_change_is_audited(tmp_path: Path, monkeypatch: Any, capsys: Any) -> None:
    paths = blank(tmp_path, monkeypatch)
    rc, out, _ = cli(capsys, "keys", "new", paths.root, "--kind", "consent-issuer", "--out", tmp_path / "k.pem")
    assert rc == 0
    key = read_signing_key(tmp_path / "k.pem")
    tp = thumbprint(key.public_key())
    assert tp in out
    last = entries(paths)[-1]
    assert (last.operation, last.decision) == ("trust-add", "allowed") and tp in (last.note or "")
    assert key_id(key.public_key()) in trusted(paths)["consent_issuers"]
    removed = keys_remove(paths.root, "consent-issuer", tp)
    assert removed.removed is not None
    last = entries(paths)[-1]
    assert last.operation == "trust-remove" and tp in (last.note or "")
    assert trusted(paths)["consent_issuers"] == {}
    listed = keys_list(paths.root)
    assert [(k["thumbprint"], bool(k["removed"])) for k in listed] == [(tp, True)]  # history kept


# -- the file itself ----------------------------------------------------------------------------
def test_a_copied_in_trust_store_is_refused(tmp_path: Path, capsys: Any) -> None:
    mine, theirs = demo(tmp_path, "mine"), demo(tmp_path, "theirs")
    shutil.copy2(theirs.trust, mine.trust)  # a genuine store, MACed by another workspace
    with pytest.raises(IntegrityError, match="trust.json"):
        SafeFace.open(mine.root, pipeline=CachedPipeline())
    with pytest.raises(IntegrityError, match="trust.json"):
        audit_verify(mine.root)
    rc, _, err = cli(capsys, "audit", "verify", mine.root)
    assert rc == 4 and "trust.json" in json.loads(err)["message"]


def test_a_hand_edited_trust_store_is_refused(tmp_path: Path) -> None:
    paths = demo(tmp_path)
    attacker = Ed25519PrivateKey.generate().public_key()
    doc = json.loads(paths.trust.read_text())
    forged = dict(doc["keys"][0])
    forged.update(jwk=public_jwk(attacker), thumbprint=thumbprint(attacker), label="my issuer")
    doc["keys"].append(forged)
    paths.trust.write_text(json.dumps(doc))
    with pytest.raises(IntegrityError, match="edited by hand"):
        SafeFace.open(paths.root, pipeline=CachedPipeline())
    with pytest.raises(IntegrityError, match="trust.json"):
        audit_verify(paths.root)
    with pytest.raises(IntegrityError):  # nor can a change be made on top of it
        keys_import(paths.root, "consent-issuer", _jwks_file(tmp_path, RFC8037_JWK))


def _removed_then_put_back(tmp_path: Path) -> tuple[Any, dict[str, Any]]:
    """A demo workspace whose consent issuer was removed, then its trust.json from before the
    removal put back: (paths, the removed issuer's listing)."""
    paths = demo(tmp_path)
    backup = tmp_path / "trust.bak"
    shutil.copy2(paths.trust, backup)
    issuer = next(k for k in keys_list(paths.root) if k["kind"] == "consent-issuer")
    keys_remove(paths.root, "consent-issuer", issuer["thumbprint"])
    shutil.copy2(backup, paths.trust)
    return paths, issuer


def test_an_older_trust_store_put_back_is_refused(tmp_path: Path) -> None:
    """Re-trusting a removed (say, leaked) issuer key by restoring the file from a backup: the
    copy is genuinely MACed, but it is not what the audit log's last trust change produced."""
    paths, issuer = _removed_then_put_back(tmp_path)
    with pytest.raises(IntegrityError, match="older copy"):
        SafeFace.open(paths.root, pipeline=CachedPipeline())
    with pytest.raises(IntegrityError, match="older copy"):
        audit_verify(paths.root)


def test_a_change_made_on_an_older_trust_store_put_back_does_not_trust_a_removed_key_again(tmp_path: Path) -> None:
    """The older copy is refused at open with the advice to repeat the interrupted change; an
    operator who then makes any change (a new key) wrote the old copy forward: the removed,
    leaked key was trusted again, with no entry adding it, and `audit verify` passed. A change
    now builds only on the store the log names, or on one whose missing changes it repeats."""
    paths, issuer = _removed_then_put_back(tmp_path)
    with pytest.raises(IntegrityError, match=f"--kind consent-issuer --thumbprint {issuer['thumbprint']}"):
        keys_new(paths.root, "consent-issuer", tmp_path / "new.pem")
    keys_remove(paths.root, "consent-issuer", issuer["thumbprint"])  # the change it lacks, repeated
    keys_new(paths.root, "consent-issuer", tmp_path / "second.pem")
    assert issuer["thumbprint"] not in {key_id(k) for k in trusted(paths)["consent_issuers"].values()}
    audit_verify(paths.root)


def test_a_trust_change_whose_file_was_never_written_is_mended_by_repeating_it(tmp_path: Path,
                                                                             monkeypatch: Any) -> None:
    """The honest case the older-copy check leaves open: a change recorded its entries, then the
    process died before writing trust.json; repeating the same change mends the store."""
    from safeface.workspace.trust import TrustStore

    paths = demo(tmp_path)
    jwks = tmp_path / "keys.jwks.json"
    jwks.write_text(json.dumps({"keys": [public_jwk(Ed25519PrivateKey.generate().public_key()) for _ in range(2)]}))
    write = TrustStore._write

    def killed(self: Any, keyring: Any, audit_seq: int) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(TrustStore, "_write", killed)
    with pytest.raises(KeyboardInterrupt):
        keys_import(paths.root, "authority", jwks)
    monkeypatch.setattr(TrustStore, "_write", write)
    with pytest.raises(IntegrityError, match="interrupted"):
        SafeFace.open(paths.root, pipeline=CachedPipeline())
    assert len(keys_import(paths.root, "authority", jwks)) == 2
    assert len(trusted(paths)["authorities"]) == 3
    audit_verify(paths.root)


def test_an_older_trust_store_put_back_under_an_open_handle_fails_its_audit(tmp_path: Path) -> None:
    """A running service's handle read the trust store when it opened; `audit verify` through it
    then read the file again without holding it to the log, so a backup put back since (a
    removed key trusted again) passed the check. The check now reads the file once, held to
    the log's last trust change as an open is."""
    paths = demo(tmp_path)
    backup = tmp_path / "trust.bak"
    shutil.copy2(paths.trust, backup)
    issuer = next(k for k in keys_list(paths.root) if k["kind"] == "consent-issuer")
    keys_remove(paths.root, "consent-issuer", issuer["thumbprint"])
    with SafeFace.open(paths.root, pipeline=CachedPipeline()) as sf:
        sf.audit_verify()
        shutil.copy2(backup, paths.trust)
        with pytest.raises(IntegrityError, match="older copy"):
            sf.audit_verify()


def test_a_deleted_trust_store_is_refused(tmp_path: Path) -> None:
    paths = demo(tmp_path)
    paths.trust.unlink()
    with pytest.raises(IntegrityError, match="deleted"):
        SafeFace.open(paths.root, pipeline=CachedPipeline())


def test_the_old_unauthenticated_format_asks_to_re_trust(tmp_path: Path) -> None:
    paths = demo(tmp_path)
    paths.trust.write_text(json.dumps({"consent_issuers": [{"kid": "x", "public_key": RFC8037_JWK["x"]}],
                                       "authorities": []}))
    with pytest.raises(ConfigError, match="keys import"):
        SafeFace.open(paths.root, pipeline=CachedPipeline())


# -- standard formats -----------------------------------------------------------------------------
def _jwks_file(tmp_path: Path, *jwks: dict[str, Any]) -> Path:
    f = tmp_path / f"set-{len(list(tmp_path.glob('set-*')))}.json"
    f.write_text(json.dumps({"keys": list(jwks)}))
    return f


def test_rfc7638_thumbprint_of_the_rfc8037_example() -> None:
    from joserfc.jwk import OKPKey

    pk = OKPKey.import_key(RFC8037_JWK).public_key
    assert thumbprint(pk) == RFC8037_THUMBPRINT == independent_thumbprint(RFC8037_JWK)


def test_jwks_round_trip(tmp_path: Path, monkeypatch: Any) -> None:
    source = demo(tmp_path, "source")
    out = tmp_path / "issuers.json"
    assert keys_export(source.root, "consent-issuer", out) == 1
    exported = json.loads(out.read_text())["keys"]
    assert set(exported[0]) >= {"kty", "crv", "x", "kid"} and "d" not in exported[0]
    assert exported[0]["kid"] == independent_thumbprint(exported[0])
    target = blank(tmp_path, monkeypatch, "target")
    added = keys_import(target.root, "consent-issuer", out)
    assert [k.thumbprint for k in added] == [exported[0]["kid"]]
    assert keys_import(target.root, "consent-issuer", out) == []  # already trusted: no change, no entry
    again = tmp_path / "again.json"
    keys_export(target.root, "consent-issuer", again)
    assert json.loads(again.read_text())["keys"] == exported
    # The imported key verifies the source's tokens: the guard gets it under the tokens' key id.
    issuer = read_signing_key(source.demo_issuer).public_key()
    assert list(trusted(target)["consent_issuers"]) == [key_id(issuer)]


def test_a_jwks_holding_a_private_key_or_another_curve_is_refused(tmp_path: Path) -> None:
    paths = demo(tmp_path)
    from joserfc.jwk import OKPKey

    private = OKPKey.generate_key("Ed25519").as_dict(private=True)
    with pytest.raises(ConfigError, match="PRIVATE"):
        keys_import(paths.root, "authority", _jwks_file(tmp_path, private))
    x25519 = OKPKey.generate_key("X25519").as_dict(private=False)
    with pytest.raises(ConfigError, match="Ed25519"):
        keys_import(paths.root, "authority", _jwks_file(tmp_path, x25519))



def test_a_jwks_with_a_member_written_twice_or_nested_without_end_is_refused(tmp_path: Path) -> None:
    """A vendor's key set read by eye shows the first `x`; the import trusted the last one. And a
    set nested thousands deep stopped `keys import` with a bare RecursionError."""
    paths = demo(tmp_path)
    shown, hidden = (public_jwk(Ed25519PrivateKey.generate().public_key())["x"] for _ in range(2))
    twice = tmp_path / "twice.json"
    twice.write_text('{"keys": [{"kty": "OKP", "crv": "Ed25519", "x": "%s", "x": "%s"}]}' % (shown, hidden))
    deep = tmp_path / "deep.json"
    deep.write_text('{"keys": ' + "[" * 5000 + "]" * 5000 + "}")
    before = keys_list(paths.root)
    with pytest.raises(ConfigError, match="twice"):
        keys_import(paths.root, "authority", twice)
    with pytest.raises(ConfigError, match="nested"):
        keys_import(paths.root, "authority", deep)
    assert keys_list(paths.root) == before


def test_a_jwks_nested_deep_is_refused_whatever_the_callers_depth(tmp_path: Path) -> None:
    """A key set with a member nested 700 deep was imported from a shallow caller and refused
    (a ConfigError about recursion) from one a few hundred frames deeper: how deep it could nest
    was Python's stack. Deeper than any key set is refused from any depth, nothing trusted."""
    paths = demo(tmp_path)
    jwk = dict(public_jwk(Ed25519PrivateKey.generate().public_key()), ext=[[[{"a": [1]}]]])
    keys_import(paths.root, "authority", _jwks_file(tmp_path, jwk))  # a few levels are a key set
    before = keys_list(paths.root)
    deep = tmp_path / "deep-member.json"
    member = "[" * 700 + "]" * 700
    deep.write_text(json.dumps({"keys": [public_jwk(Ed25519PrivateKey.generate().public_key())]})[:-3]
                    + f', "ext": {member}}}]}}')
    json.loads(deep.read_text())  # valid JSON, from this depth
    for frames in (0, 250):
        with pytest.raises(ConfigError, match="nested deeper than any key set"):
            _at_depth(frames, lambda: keys_import(paths.root, "authority", deep))
    assert keys_list(paths.root) == before


def _at_depth(frames: int, call: Any) -> Any:
    """`call()` from `frames` frames deeper than here: a caller further down its stack."""
    return call() if frames == 0 else _at_depth(frames - 1, call)


def test_the_report_lists_every_trusted_key(tmp_path: Path) -> None:
    paths = demo(tmp_path)
    keys_import(paths.root, "authority", _jwks_file(tmp_path, RFC8037_JWK), label="Bureau key 2026")
    with SafeFace.open(paths.root, pipeline=CachedPipeline()) as sf:
        files = sf.report(tmp_path / "report")
    report = json.loads(Path(files["json"]).read_text())
    listed = {(k["kind"], k["thumbprint"]): k for k in report["trusted_keys"]}
    assert len(listed) == 3 and ("authority", RFC8037_THUMBPRINT) in listed
    assert listed[("authority", RFC8037_THUMBPRINT)]["label"] == "Bureau key 2026"
    assert all(k["added"] for k in listed.values())
    html = Path(files["html"]).read_text()
    assert RFC8037_THUMBPRINT in html and "Trusted keys" in html


# -- keys under which anyone can sign ----------------------------------------------------------
# Edwards25519 (RFC 8032 5.1): -x^2 + y^2 = 1 + d x^2 y^2 over GF(p), computed here apart from
# the module under test.
P = 2 ** 255 - 19
D = -121665 * pow(121666, P - 2, P) % P
I = pow(2, (P - 1) // 4, P)  # a square root of -1


def _sqrt(a: int) -> int | None:
    r = pow(a, (P + 3) // 8, P)
    r = r if (r * r - a) % P == 0 else r * I % P
    return r if (r * r - a) % P == 0 else None


def _on_curve(x: int, y: int) -> bool:
    return (-x * x + y * y - 1 - D * x * x * y * y) % P == 0


def _encoding(x: int, y: int) -> bytes:
    return (y % P | (x % P & 1) << 255).to_bytes(32, "little")


def small_order_points() -> dict[str, tuple[int, int]]:
    """The eight points whose multiple by 8 is the identity, from the curve equation: the identity;
    (0, -1) of order 2; (±sqrt(-1), 0) of order 4, where y = 0; and the four of order 8, whose
    double has y = 0, so y^2 = -x^2, hence -2x^2 = 1 - d x^4: x^2 = (1 ± sqrt(1 + d)) / d."""
    points = {"identity": (0, 1), "order 2": (0, P - 1), "order 4 +": (I, 0), "order 4 -": (P - I, 0)}
    root = _sqrt((1 + D) % P)
    assert root is not None
    for s in (root, P - root):
        x = _sqrt((1 + s) * pow(D, P - 2, P) % P)
        if x is None:
            continue
        for sx in (x, P - x):
            for sy in (I, P - I):
                points[f"order 8 ({len(points) - 3})"] = (sx, sx * sy % P)
    assert len(points) == 8 and all(_on_curve(x, y) for x, y in points.values())
    return points


def _okp(raw: bytes) -> dict[str, Any]:
    return {"kty": "OKP", "crv": "Ed25519", "x": base64.urlsafe_b64encode(raw).rstrip(b"=").decode()}


@pytest.mark.parametrize("name,point", sorted(small_order_points().items()))
def test_a_small_order_key_is_refused_on_import(tmp_path: Path, name: str, point: tuple[int, int]) -> None:
    """A JWK Set whose key is a point of small order (the identity "AQAA...", or any of the seven
    others): under it a consent signed with R a small-order point and S = 0 verifies without any
    private key, so once trusted anyone could mint consents. It was imported; now it is refused
    and nothing is trusted or audited."""
    paths = demo(tmp_path)
    before = (paths.trust.read_bytes(), len(entries(paths)))
    with pytest.raises(ConfigError, match="small order"):
        keys_import(paths.root, "consent-issuer", _jwks_file(tmp_path, _okp(_encoding(*point))))
    assert (paths.trust.read_bytes(), len(entries(paths))) == before


@pytest.mark.parametrize("raw", [(P + 1).to_bytes(32, "little"),  # y = p + 1: the identity's y, not reduced
                                 (1 | 1 << 255).to_bytes(32, "little"),  # "-0": the identity with x's sign set
                                 (2).to_bytes(32, "little")],  # y = 2: no x on the curve
                         ids=["y-not-reduced", "negative-zero", "not-on-curve"])
def test_a_key_that_is_not_a_canonical_curve_point_is_refused(tmp_path: Path, raw: bytes) -> None:
    """Other encodings of small-order points (y not reduced mod p, a sign bit on x = 0), and 32
    bytes that name no curve point, are refused as well."""
    y = int.from_bytes(raw, "little") & ((1 << 255) - 1)
    assert y >= P or raw[31] & 0x80 or _sqrt((y * y - 1) * pow(D * y * y + 1, P - 2, P) % P) is None
    with pytest.raises(ConfigError, match="canonical encoding"):
        keys_import(demo(tmp_path).root, "authority", _jwks_file(tmp_path, _okp(raw)))


def test_genuine_keys_are_still_trusted(tmp_path: Path) -> None:
    """Keys made by a signing library are of large order: imported as before, and the guard gets
    each under its thumbprint."""
    paths = demo(tmp_path)
    keys = [Ed25519PrivateKey.generate().public_key() for _ in range(5)]
    added = keys_import(paths.root, "consent-issuer", _jwks_file(tmp_path, *(public_jwk(k) for k in keys)))
    assert [k.thumbprint for k in added] == [thumbprint(k) for k in keys]
    assert {key_id(k) for k in keys} <= set(trusted(paths)["consent_issuers"])
    from safeface.workspace.ed25519_points import decode, encode, multiply

    for k in keys:  # the decoder round-trips a genuine key, and it is not killed by the cofactor
        raw = base64.urlsafe_b64decode(public_jwk(k)["x"] + "=")
        point = decode(raw)
        assert point is not None and encode(point) == raw and _on_curve(*point) and multiply(point, 8) != (0, 1)


def test_a_small_order_key_trusted_before_the_check_is_refused_until_removed(tmp_path: Path, monkeypatch: Any) -> None:
    """A store that already trusts the identity key (imported before keys were judged, so its MAC
    and audit record are genuine): the workspace does not open, nor are the keys exported, until
    the key is removed, which the error says how to do; a key added programmatically is judged
    too."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    from safeface.workspace import trust

    paths = demo(tmp_path)
    weak = _okp(_encoding(0, 1))
    monkeypatch.setattr(trust, "key_problem", lambda key: None, raising=False)  # as before keys were judged
    (added,) = keys_import(paths.root, "consent-issuer", _jwks_file(tmp_path, weak))
    monkeypatch.undo()
    with pytest.raises(ConfigError, match=f"small order.*--thumbprint {added.thumbprint}"):
        SafeFace.open(paths.root, pipeline=CachedPipeline())
    with pytest.raises(ConfigError, match="small order"):
        keys_export(paths.root, "consent-issuer", tmp_path / "out.json")
    assert added.thumbprint in {k["thumbprint"] for k in keys_list(paths.root)}
    keys_remove(paths.root, "consent-issuer", added.thumbprint)
    assert key_id(added.public_key) not in trusted(paths)["consent_issuers"]
    with opened(paths) as r:
        from safeface.workspace.trust import change_trust

        with pytest.raises(ConfigError, match="small order"):
            change_trust(paths, r.keyring, r.audit,
                         add=[("authority", Ed25519PublicKey.from_public_bytes(_encoding(0, P - 1)), "x")])


def test_an_export_through_a_link_into_the_workspace_replaces_nothing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`--out exports/keyring.json`, where exports links to the workspace's keys folder: the path
    is judged where it leads."""
    from policy_support import PASSPHRASE, make_workspace

    monkeypatch.setenv("SAFEFACE_PASSPHRASE", PASSPHRASE)
    ws = make_workspace(tmp_path / "ws")
    keyring = (ws.root / "keys" / "keyring.json").read_bytes()
    (tmp_path / "exports").symlink_to(ws.root / "keys")
    with pytest.raises(ConfigError, match="inside the workspace"):
        keys_export(ws.root, "consent-issuer", tmp_path / "exports" / "keyring.json")
    assert (ws.root / "keys" / "keyring.json").read_bytes() == keyring
    (tmp_path / "l1.json").symlink_to(tmp_path / "l2.json")
    (tmp_path / "l2.json").symlink_to(tmp_path / "l1.json")
    with pytest.raises(ConfigError, match="cannot be followed"):
        keys_export(ws.root, "consent-issuer", tmp_path / "l1.json")


def test_a_store_naming_a_trust_change_the_log_lacks_is_refused(tmp_path: Path, monkeypatch: Any) -> None:
    from safeface.workspace.trust import TrustStore, load_trust

    monkeypatch.setenv("SAFEFACE_PASSPHRASE", "the real passphrase of this test")
    paths = init_workspace(tmp_path / "blank")
    with opened(paths) as r:
        assert r.audit.last_entry(("trust-add", "trust-remove")) is None
        TrustStore(paths, (), 0)._write(r.keyring, 7)  # MACed with the keys, naming entry 7
        with pytest.raises(IntegrityError, match="copied in"):
            load_trust(paths, r.keyring, r.audit)


def test_a_removed_key_is_not_removed_again(tmp_path: Path) -> None:
    """A second removal would write a second entry and a later removal time."""
    paths = init_workspace(tmp_path / "ws", demo=True)
    issuer = next(k for k in keys_list(paths.root) if k["kind"] == "consent-issuer")
    first = keys_remove(paths.root, "consent-issuer", issuer["thumbprint"])
    with opened(paths) as r:
        before = len(list(r.audit.entries()))
    with pytest.raises(ConfigError, match="no consent-issuer key"):
        keys_remove(paths.root, "consent-issuer", issuer["thumbprint"])
    with opened(paths) as r:
        assert len(list(r.audit.entries())) == before
    assert next(k for k in keys_list(paths.root) if k["thumbprint"] == issuer["thumbprint"])["removed"] == first.removed


def test_one_key_is_trusted_under_both_kinds_and_again_after_its_removal(tmp_path: Path) -> None:
    from safeface.workspace.trust import change_trust, load_trust, thumbprint

    paths = init_workspace(tmp_path / "ws", demo=True)
    pk, again = Ed25519PrivateKey.generate().public_key(), Ed25519PrivateKey.generate().public_key()
    with opened(paths) as r:
        assert len(change_trust(paths, r.keyring, r.audit, add=[("consent-issuer", pk, "a")])) == 1
        assert len(change_trust(paths, r.keyring, r.audit, add=[("authority", pk, "b")])) == 1
        store = load_trust(paths, r.keyring, r.audit)
        assert {k.kind for k in store.active() if k.thumbprint == thumbprint(pk)} == {"consent-issuer", "authority"}
        change_trust(paths, r.keyring, r.audit, add=[("consent-issuer", again, "c")])
        change_trust(paths, r.keyring, r.audit, remove=[("consent-issuer", thumbprint(again))])
        assert len(change_trust(paths, r.keyring, r.audit, add=[("consent-issuer", again, "c again")])) == 1
        store = load_trust(paths, r.keyring, r.audit)
        assert thumbprint(again) in {k.thumbprint for k in store.active("consent-issuer")}
