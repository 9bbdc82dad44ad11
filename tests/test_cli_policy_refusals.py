"""The policy commands' refusals and exit codes (0 ok, 1 error, 2 usage, 3 refused), run in-process
through `safeface.cli.main` on a real demo workspace."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from input_file_support import fifo_at, sparse_file  # noqa: E402
from policy_support import PASSPHRASE, consent, images, legal_basis, make_workspace, open_sf  # noqa: E402

from safeface.cli import main  # noqa: E402


def run(capsys: Any, *args: Any) -> tuple[int, str, str]:
    try:
        rc = main([str(a) for a in args])
    except SystemExit as exc:  # argparse usage errors
        rc = int(exc.code or 0)
    out, err = capsys.readouterr()
    return rc, out, err


@pytest.fixture()
def ws(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("SAFEFACE_PASSPHRASE", PASSPHRASE)
    return make_workspace(tmp_path / "ws")


def test_the_role_given_on_the_command_line_limits_the_call(ws: Any, capsys: Any) -> None:
    """`--role kiosk` makes the call as a kiosk: an enrolment is refused by CN-16 (exit 3) and
    nothing is stored."""
    token = consent(ws, "alice")
    rc, _, err = run(capsys, "enroll", ws.root, images() / "obama.jpg", "--subject", "alice", "--purpose", "demo",
                     "--consent", token, "--role", "kiosk")
    assert rc == 3 and json.loads(err.strip().splitlines()[-1])["rule"] == "CN-16", err
    with open_sf(ws) as sf:
        assert sf.records() == []
        last = [e for e in sf.audit_entries() if e.operation == "enroll"][-1]
        assert (last.decision, last.rule) == ("refused", "CN-16")


def test_an_unreadable_token_file_is_an_error_not_a_call_without_consent(ws: Any, tmp_path: Path,
                                                                       capsys: Any) -> None:
    """`--consent @FILE` whose file cannot be read exits 1 naming the file; no call is made or
    audited."""
    missing = tmp_path / "no-such-token.txt"
    with open_sf(ws) as sf:
        before = len(sf.audit_entries())
    rc, _, err = run(capsys, "enroll", ws.root, images() / "obama.jpg", "--subject", "alice", "--purpose", "demo",
                     "--consent", f"@{missing}")
    assert rc == 1 and "the token file" in err and "no such file" in err and str(missing) in err, err
    with open_sf(ws) as sf:
        assert not [e for e in sf.audit_entries()[before:] if e.operation == "enroll"]


def test_identify_takes_a_consent_or_a_legal_basis_never_both(ws: Any, capsys: Any) -> None:
    """`identify` with both --consent and --legal-basis is a usage error (exit 2): the caller names
    one basis."""
    rc, _, err = run(capsys, "identify", ws.root, images() / "obama.jpg", "--purpose", "demo",
                     "--consent", consent(ws, "alice"), "--legal-basis", legal_basis(ws))
    assert rc == 2 and "not allowed with" in err, err


def test_keys_new_needs_an_explicit_kind(ws: Any, tmp_path: Path, capsys: Any) -> None:
    """`keys new` without --kind is a usage error (exit 2): no key is written or trusted under a
    guessed kind."""
    out = tmp_path / "issuer.pem"
    rc, _, err = run(capsys, "keys", "new", ws.root, "--out", out)
    assert rc == 2 and "--kind" in err and not out.exists(), err


def test_a_legal_basis_is_issued_for_identify_only_unless_told(ws: Any, capsys: Any) -> None:
    """`legal-basis issue` without --operations grants identify only, never enrol, verify or
    transmission."""
    from safeface.policy.tokens import b64d

    rc, out, err = run(capsys, "legal-basis", "issue", ws.root, "--authority", "police", "--provision", "Art. 1",
                       "--purpose", "demo")
    assert rc == 0, err
    claims = json.loads(b64d(out.strip().split(".")[1]))
    ops = next(v for k, v in claims.items() if k in ("ops", "operations"))
    assert ops == ["identify"], claims


def test_a_childs_consent_issued_with_a_guardian_is_usable(ws: Any, capsys: Any) -> None:
    """`consent issue --birth-date --guardian` signs the guardian into the token, so the guard lets
    a child's enrolment through CN-06."""
    import datetime as dt

    from safeface.policy.tokens import b64d

    born = (dt.date.today() - dt.timedelta(days=365 * 8)).isoformat()
    rc, out, err = run(capsys, "consent", "issue", ws.root, "--subject", "kid", "--purpose", "demo",
                       "--birth-date", born, "--guardian", "Parent Name")
    assert rc == 0, err
    token = out.strip()
    claims = json.loads(b64d(token.split(".")[1]))
    assert claims.get("guardian") == "Parent Name" and claims.get("birth_date") == born, claims
    rc, _, err = run(capsys, "enroll", ws.root, images() / "obama.jpg", "--subject", "kid", "--purpose", "demo",
                     "--consent", token)
    assert rc == 0, err


@pytest.mark.parametrize("days", ["nan", "inf", "1e12", "-1", "36526"])
def test_a_tokens_validity_must_be_a_sensible_number_of_days(ws: Any, capsys: Any, days: str) -> None:
    """`--days nan`, `inf` or `1e12` ended `consent issue` and `legal-basis issue` in a Python
    traceback, and a negative count signed a token that expired before it was issued: each is
    an error naming the bound (exit 1), and no token is printed."""
    for args in (["consent", "issue", ws.root, "--subject", "alice", "--purpose", "demo"],
                 ["legal-basis", "issue", ws.root, "--authority", "court", "--provision", "art. 1",
                  "--purpose", "demo"]):
        rc, out, err = run(capsys, *args, "--days", days)
        assert rc == 1 and "from 0 to 36525 days" in err and "Traceback" not in err, (rc, err)
        assert out.strip() == ""



@pytest.mark.parametrize("option", ["--jwks", "--checkpoint", "--issuer-key", "--authority-key", "--pad-model",
                                    "--tls-cert"])
def test_a_file_named_on_the_command_line_is_read_only_as_a_bounded_regular_file(
        ws: Any, tmp_path: Path, capsys: Any, option: str) -> None:
    """Every option that names a file to read takes it as `--consent @FILE` and a passphrase file
    are taken: a FIFO at the path made `keys import --jwks`, `audit verify --checkpoint`, the
    signing keys of `consent issue`/`legal-basis issue`, `liveness check --pad-model` and the TLS
    files of `serve` wait for ever, and /dev/zero or a huge file was read whole into memory.
    Each is now an error (exit 1) naming the path, before anything is read."""

    def command(path: Path) -> list[Any]:
        return {"--jwks": ["keys", "import", ws.root, "--kind", "consent-issuer", "--jwks", path],
                "--checkpoint": ["audit", "verify", ws.root, "--checkpoint", path],
                "--issuer-key": ["consent", "issue", ws.root, "--subject", "alice", "--purpose", "demo",
                                 "--issuer-key", path],
                "--authority-key": ["legal-basis", "issue", ws.root, "--authority", "a", "--provision", "p",
                                    "--purpose", "demo", "--authority-key", path],
                "--pad-model": ["liveness", "check", tmp_path / "clip.mp4", "--pad-model", path],
                "--tls-cert": ["serve", ws.root, "--tls-cert", path, "--tls-key", path, "--port", "1"]}[option]

    with fifo_at(tmp_path / "pipe") as fifo:
        rc, out, err = run(capsys, *command(fifo))
    assert rc == 1 and "not a regular file" in err and str(fifo) in err, (rc, out, err)
    huge = sparse_file(tmp_path / "huge.json", 64 << 20)
    rc, out, err = run(capsys, *command(huge))
    assert rc == 1 and "larger than" in err and str(huge) in err, (rc, out, err)


@pytest.mark.parametrize("option", ["--issuer-key", "--authority-key"])
def test_a_signing_key_of_an_unknown_algorithm_is_an_error_not_a_traceback(ws: Any, tmp_path: Path, capsys: Any,
                                                                           option: str) -> None:
    """A PEM private key whose algorithm cryptography does not know (its OID) raised a bare
    UnsupportedAlgorithm from `consent issue`/`legal-basis issue`: a traceback, where every other
    unreadable key is an error naming what to give. Its key bytes are never shown either."""
    import base64

    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = Ed25519PrivateKey.generate()
    der = key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    assert der[9:12] == bytes.fromhex("2b6570")  # the OID 1.3.101.112 (Ed25519) ...
    other = der[:10] + b"\xff" + der[11:]  # ... made one no library knows
    path = tmp_path / "other.pem"
    path.write_bytes(b"-----BEGIN PRIVATE KEY-----\n" + base64.encodebytes(other) + b"-----END PRIVATE KEY-----\n")
    path.chmod(0o600)
    args = {"--issuer-key": ["consent", "issue", ws.root, "--subject", "alice", "--purpose", "demo"],
            "--authority-key": ["legal-basis", "issue", ws.root, "--authority", "a", "--provision", "p",
                                "--purpose", "demo"]}[option]
    rc, out, err = run(capsys, *args, option, path)
    assert rc == 1 and "Ed25519" in err and "Traceback" not in err and out.strip() == "", (rc, out, err)
    seed = key.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption())
    assert seed.hex() not in err and base64.b64encode(other).decode()[:40] not in err
