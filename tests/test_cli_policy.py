"""A stranger's scenario through the `safeface` command: what a new user would try, with the
exit codes and messages of the contract (0 ok, 1 error, 2 usage, 3 refused, 4 integrity)."""

from __future__ import annotations

import datetime as dt
import json
import os
import sqlite3
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from child_process import child_env  # noqa: E402
from policy_support import images  # noqa: E402

from safeface.cli import main  # noqa: E402



class Cli:
    def __init__(self, capsys: Any) -> None:
        self.capsys = capsys

    def __call__(self, *args: Any, code: int = 0) -> tuple[str, str]:
        rc = _run(list(map(str, args)))
        out, err = self.capsys.readouterr()
        assert rc == code, (args, rc, out, err)
        return out, err

    def refused(self, rule: str, *args: Any) -> dict[str, str]:
        _, err = self(*args, code=3)
        body = json.loads(err.strip().splitlines()[-1])
        assert body["error"] == "PolicyViolation" and body["rule"] == rule, body
        assert len(body["message"]) > 20
        return body


def _run(argv: list[str]) -> int:
    try:
        return main(argv)
    except SystemExit as exc:  # argparse usage errors
        return int(exc.code or 0)


@pytest.fixture()
def cli(capsys: Any) -> Cli:
    return Cli(capsys)


def edit(ws: Path, fn: Any) -> None:
    raw = json.loads((ws / "deployment.json").read_text())
    fn(raw)
    (ws / "deployment.json").write_text(json.dumps(raw, indent=2))


def jws_parts(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    from safeface.policy.tokens import b64d

    head, payload, _ = token.split(".")
    return json.loads(b64d(head)), json.loads(b64d(payload))


@pytest.mark.slow
def test_stranger_scenario(tmp_path: Path, cli: Cli) -> None:
    img = images()
    ws = tmp_path / "ws"
    out, err = cli("init", ws, "--demo")
    assert "INSECURE" in err and (ws / "deployment.json").is_file()
    cli("init", ws, "--demo", code=1)  # never overwrites a deployment

    token = cli("consent", "issue", ws, "--subject", "alice", "--purpose", "demo")[0].strip()
    header, claims = jws_parts(token)  # a standard JWS, addressed to this deployment
    assert header["alg"] == "EdDSA" and header["typ"] == "safeface-consent+jwt"
    assert claims["aud"] == json.loads((ws / "deployment.json").read_text())["id"] and claims["sub"] == "alice"

    # No consent, then the wrong purpose.
    cli.refused("CN-04", "enroll", ws, img / "obama.jpg", "--subject", "alice", "--purpose", "demo", "--json")
    cli.refused("CN-01", "enroll", ws, img / "obama.jpg", "--subject", "alice", "--purpose", "payments",
                "--consent", token)
    # Someone else's consent.
    cli.refused("CN-04", "enroll", ws, img / "obama.jpg", "--subject", "bob", "--purpose", "demo", "--consent", token)
    # A forged token: payload changed, signature kept.
    head, payload, sig = token.split(".")
    cli.refused("CN-04", "enroll", ws, img / "obama.jpg", "--subject", "alice", "--purpose", "demo",
                "--consent", f"{head}.{payload[:-4]}AAAA.{sig}")
    # Expired.
    expired = cli("consent", "issue", ws, "--subject", "alice", "--purpose", "demo", "--days", "0")[0].strip()
    body = cli.refused("CN-04", "enroll", ws, img / "obama.jpg", "--subject", "alice", "--purpose", "demo",
                       "--consent", expired)
    assert "expired" in body["message"]
    # A child without guardian consent; with it the guard lets it through (checked in test_sdk).
    child = cli("consent", "issue", ws, "--subject", "kid", "--purpose", "demo", "--birth-date", "2019-05-01")[0].strip()
    cli.refused("CN-06", "enroll", ws, img / "obama.jpg", "--subject", "kid", "--purpose", "demo", "--consent", child)

    # The compliant path.
    out, _ = cli("enroll", ws, img / "obama.jpg", "--subject", "alice", "--purpose", "demo", "--consent", token, "--json")
    enrolled = json.loads(out)
    assert enrolled["enrolled"] and "alice" not in enrolled["subject"]
    out, _ = cli("verify", ws, img / "obama2.jpg", "--subject", "alice", "--purpose", "demo", "--consent", token, "--json")
    v = json.loads(out)
    assert v["match"] is True and v["score"] >= v["threshold"]
    out, _ = cli("identify", ws, img / "obama3.jpg", "--purpose", "demo", "--consent", token, "--json")
    assert [c["subject"] for c in json.loads(out)["candidates"]] == [enrolled["subject"]]

    # Export without transmit consent; sensitive attributes in several spellings.
    cli.refused("CN-07", "export", ws, "--subject", "alice", "--purpose", "demo", "--recipient", "acme",
                "--consent", token)
    for attribute in ("race", "Skin Tone", "religion", "health", "social class"):
        cli.refused("CN-18", "analyze", ws, img / "obama.jpg", "--attribute", attribute)
    cli.refused("CN-06", "analyze", ws, img / "obama.jpg", "--attribute", "age")

    # Revoked consent, by token id.
    other = cli("consent", "issue", ws, "--subject", "joe", "--purpose", "demo", "--json")[0]
    joe = json.loads(other)
    out, _ = cli("consent", "revoke", ws, "--token-id", joe["token_id"])
    assert json.loads(out)["reason"] == "revoke"
    cli.refused("CN-05", "enroll", ws, img / "biden.jpg", "--subject", "joe", "--purpose", "demo",
                "--consent", joe["token"])

    # Stale notice: the operator changes the notice; old consents no longer count.
    edit(ws, lambda r: r["notice"].__setitem__("retention", "90 days"))
    cli.refused("CN-02", "verify", ws, img / "obama2.jpg", "--subject", "alice", "--purpose", "demo", "--consent", token)
    fresh = cli("consent", "issue", ws, "--subject", "alice", "--purpose", "demo")[0].strip()

    # Erasure, then verify.
    out, _ = cli("erase", ws, "--subject", "alice", "--json")
    receipt = json.loads(out)
    assert receipt["templates_removed"] == 1 and receipt["signature"]
    cli.refused("CN-05", "verify", ws, img / "obama2.jpg", "--subject", "alice", "--purpose", "demo", "--consent", fresh)

    # The report and the audit log.
    out, _ = cli("report", ws, "--out", tmp_path / "report")
    files = json.loads(out)
    report = json.loads(Path(files["json"]).read_text())
    assert report["refusals_by_rule"]["CN-04"] >= 4 and report["refusals_by_rule"]["CN-18"] == 5
    assert len(report["rules"]) >= 35 and Path(files["html"]).is_file()
    out, _ = cli("audit", "verify", ws)
    assert "intact" in out

    db = sqlite3.connect(str(ws / "audit.db"))
    db.execute("DELETE FROM entries WHERE seq = 5")
    db.commit()
    db.close()
    _, err = cli("audit", "verify", ws, code=4)
    assert json.loads(err)["error"] == "IntegrityError"


@pytest.mark.parametrize("name,change,rule", [
    ("private space", lambda r: r["location"].__setitem__("class", "hotel-room"), "CN-15"),
    ("missing assessment", lambda r: r["assessment"].update({"reference": "", "date": None}), "CN-09"),
    ("missing alternative", lambda r: r["purposes"]["demo"].__setitem__("alternatives", []), "CN-11"),
    ("public place without signs", lambda r: (r["location"].update({"class": "public-place", "capture_area": "hall"}),
                                              r["purposes"]["demo"].__setitem__("public_safety", True)), "CN-14"),
])
def test_deployment_that_cannot_process(tmp_path: Path, cli: Cli, name: str, change: Any, rule: str) -> None:
    img = images()
    ws = tmp_path / "ws"
    cli("init", ws, "--demo")
    token = cli("consent", "issue", ws, "--subject", "alice", "--purpose", "demo")[0].strip()
    edit(ws, change)
    if rule == "CN-15":  # refused at registration too: no assessment is recorded for it
        cli.refused(rule, "assess", ws, "--reference", "PIA-2", "--date", dt.date.today().isoformat())
    elif rule != "CN-09":  # a changed configuration is re-assessed, so only the rule under test fails
        cli("assess", ws, "--reference", "PIA-2", "--date", dt.date.today().isoformat(), "--accept-changes")
    for argv in (("enroll", ws, img / "obama.jpg", "--subject", "alice", "--purpose", "demo", "--consent", token),
                 ("identify", ws, img / "obama.jpg", "--purpose", "demo", "--consent", token)):
        body = cli.refused(rule, *argv)
        assert "cannot process" in body["message"]


@pytest.mark.parametrize("profiles", [("cn-2025",), ("eu", "cn-2025")])
@pytest.mark.parametrize("location", [{"class": "hotel-room"}, {"class": "public-bath"}, {"class": "changing-room"},
                                      {"class": "public-place", "kind": "toilet", "capture_area": "hall",
                                       "signage_attested": True}])
def test_private_space_refused_at_registration_cn15(tmp_path: Path, cli: Cli, profiles: Any, location: Any) -> None:
    ws = tmp_path / "ws"
    cli("init", ws, "--demo", *[a for p in profiles for a in ("--profile", p)])
    edit(ws, lambda r: r["location"].update(location))
    before = (ws / "deployment.json").read_text()
    body = cli.refused("CN-15", "assess", ws, "--reference", "PIA-2", "--date", dt.date.today().isoformat())
    assert "private space" in body["message"]
    assert (ws / "deployment.json").read_text() == before  # nothing recorded
    # Moved out of the private space, the same deployment registers.
    edit(ws, lambda r: r["location"].update({"class": "premises", "kind": ""}))
    out, _ = cli("assess", ws, "--reference", "PIA-2", "--date", dt.date.today().isoformat(), "--accept-changes")
    assert "changed since the last assessment: location." in out
    assert "PIA-2" in out and json.loads((ws / "deployment.json").read_text())["assessment"]["reference"] == "PIA-2"


@pytest.mark.slow
def test_filing_threshold_through_the_cli(tmp_path: Path, cli: Cli) -> None:
    img = images()
    ws = tmp_path / "ws"
    cli("init", ws, "--demo")
    edit(ws, lambda r: r["filing"].__setitem__("threshold", 1))
    cli("assess", ws, "--reference", "PIA-2", "--date", dt.date.today().isoformat(), "--accept-changes")  # covered
    a = cli("consent", "issue", ws, "--subject", "alice", "--purpose", "demo")[0].strip()
    b = cli("consent", "issue", ws, "--subject", "bob", "--purpose", "demo")[0].strip()
    cli("enroll", ws, img / "obama.jpg", "--subject", "alice", "--purpose", "demo", "--consent", a)
    body = cli.refused("CN-17", "enroll", ws, img / "biden.jpg", "--subject", "bob", "--purpose", "demo", "--consent", b)
    assert "filing" in body["message"]
    out, _ = cli("report", ws, "--out", tmp_path / "r")
    filing = json.loads(Path(json.loads(out)["json"]).read_text())["filing"]
    assert filing["crossed_on"] and filing["deadline"] > filing["crossed_on"] and filing["reference"] is None


def test_blank_workspace_refuses_until_complete(tmp_path: Path, cli: Cli, monkeypatch: Any) -> None:
    img = images()
    monkeypatch.setenv("SAFEFACE_PASSPHRASE", "a real passphrase for this test")
    ws = tmp_path / "ws"
    cli("init", ws)
    assert not list((ws / "keys").glob("DEMO-INSECURE*"))
    _, err = cli("consent", "issue", ws, "--subject", "alice", "--purpose", "demo", code=1)
    assert "private key" in err
    cli("keys", "new", ws, "--kind", "consent-issuer", "--out", tmp_path / "issuer.pem")
    # A consent names a purpose the deployment declares, though only as the blank one's placeholder.
    _, err = cli("consent", "issue", ws, "--subject", "alice", "--purpose", "demo",
                 "--issuer-key", tmp_path / "issuer.pem", code=1)
    assert "declares no purpose 'demo'" in err
    token = cli("consent", "issue", ws, "--subject", "alice", "--purpose", "PURPOSE-NAME",
                "--issuer-key", tmp_path / "issuer.pem")[0].strip()
    _, err = cli("enroll", ws, img / "obama.jpg", "--subject", "alice", "--purpose", "PURPOSE-NAME", "--consent", token,
                 code=3)
    assert "cannot process" in json.loads(err)["message"]
    monkeypatch.setenv("SAFEFACE_PASSPHRASE", "the wrong passphrase")
    cli("audit", "verify", ws, code=4)


def test_usage_errors_exit_2(cli: Cli, tmp_path: Path) -> None:
    cli("enroll", tmp_path, code=2)
    cli("consent", "revoke", tmp_path, code=2)
    cli("init", tmp_path / "w", "--profile", "mars", code=2)


@pytest.mark.slow
def test_module_entry_point_and_exit_codes(tmp_path: Path) -> None:
    """`python -m safeface.cli` in a fresh process, as a user runs it."""
    env = child_env()
    ws = tmp_path / "ws"

    def run(*args: Any) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "safeface.cli", *map(str, args)], capture_output=True, text=True,
                              env=env, cwd=tmp_path, timeout=120)

    assert run("init", ws, "--demo", "--profile", "eu", "--profile", "cn-2025").returncode == 0
    r = run("analyze", ws, "/nonexistent.jpg", "--attribute", "Emotions")
    assert r.returncode == 3 and json.loads(r.stderr)["rule"] == "EU-03"
    r = run("enroll", ws, "/nonexistent.jpg", "--subject", "a", "--purpose", "demo")
    assert r.returncode == 3 and json.loads(r.stderr)["rule"] == "EU-05"
    assert run("audit", "verify", ws).returncode == 0


def test_the_environments_passphrase_comes_before_a_demo_passphrase(tmp_path: Path, cli: Cli,
                                                                     monkeypatch: Any) -> None:
    """A demo made with $SAFEFACE_PASSPHRASE set is keyed by it; one made without keeps its own,
    which is used only while the variable is unset (a workspace file never overrides the caller's
    passphrase: see test_demo_marks.py)."""
    secret = "the passphrase of some real workspace"
    monkeypatch.setenv("SAFEFACE_PASSPHRASE", secret)
    cli("init", tmp_path / "ws", "--demo")
    assert not (tmp_path / "ws" / "keys" / "DEMO-INSECURE-passphrase.txt").exists()
    out, _ = cli("audit", "verify", tmp_path / "ws")
    assert "intact" in out
    monkeypatch.delenv("SAFEFACE_PASSPHRASE")
    cli("init", tmp_path / "own", "--demo")
    assert "intact" in cli("audit", "verify", tmp_path / "own")[0]
    monkeypatch.setenv("SAFEFACE_PASSPHRASE", secret)
    _, err = cli("audit", "verify", tmp_path / "own", code=4)
    assert "not your own demo workspace" in err and secret not in err


@pytest.mark.slow
@pytest.mark.parametrize("delay", [0.5, 1.5, 3.0])
def test_enrol_killed_mid_call_leaves_no_unrecorded_template(tmp_path: Path, cli: Cli, delay: float) -> None:
    """Whenever the process dies, the log verifies and every stored template has its record
    (the allowed decision is written before the template)."""
    import signal
    import time

    from safeface.workspace.audit import AuditLog
    from safeface.workspace.passphrase import resolve_passphrase
    from safeface.workspace.paths import WorkspacePaths
    from safeface.hazmat.templates.keyring import PassphraseKeyring

    img = images()
    ws = tmp_path / "ws"
    cli("init", ws, "--demo")
    token = cli("consent", "issue", ws, "--subject", "alice", "--purpose", "demo")[0].strip()
    env = child_env()
    proc = subprocess.Popen([sys.executable, "-m", "safeface.cli", "enroll", str(ws), str(img / "obama.jpg"),
                             "--subject", "alice", "--purpose", "demo", "--consent", token],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, cwd=tmp_path)
    time.sleep(delay)
    proc.send_signal(signal.SIGKILL)
    proc.wait(30)
    paths = WorkspacePaths(ws)
    keyring = PassphraseKeyring.open(paths.keyring, resolve_passphrase(ws))
    with AuditLog(paths.audit, keyring.key("audit")) as log:
        log.verify()
        allowed = [e for e in log.entries() if e.operation == "enroll" and e.decision == "allowed"]
    from safeface.sdk import SafeFace

    with SafeFace.open(ws) as sf:  # what the next caller does after the crash
        stored = len(sf.records())
    assert stored <= len(allowed) <= 1
    cli("audit", "verify", ws)


def test_token_for_another_workspace_refused(tmp_path: Path, cli: Cli) -> None:
    """One consent service (and one authority) trusted by two workspaces: a token minted for A
    is refused in B, by its audience, though its signature is good there."""
    img = images()
    a, b = tmp_path / "a", tmp_path / "b"
    cli("init", a, "--demo")
    cli("init", b, "--demo")
    for kind in ("consent-issuer", "authority"):  # B trusts A's keys too, as JWKS (RFC 7517)
        cli("keys", "export", a, "--kind", kind, "--out", tmp_path / f"{kind}.jwks")
        cli("keys", "import", b, "--kind", kind, "--jwks", tmp_path / f"{kind}.jwks", "--label", "A's service")
    ids = [json.loads((w / "deployment.json").read_text())["id"] for w in (a, b)]
    assert ids[0] != ids[1]
    for_a = cli("consent", "issue", a, "--subject", "alice", "--purpose", "demo")[0].strip()
    body = cli.refused("CN-04", "enroll", b, img / "obama.jpg", "--subject", "alice", "--purpose", "demo",
                       "--consent", for_a)
    assert "another deployment" in body["message"] and ids[1] in body["message"]
    lb_a = cli("legal-basis", "issue", a, "--authority", "Bureau", "--provision", "PIPL 13(1)(3)",
               "--purpose", "demo")[0].strip()
    body = cli.refused("CN-16b", "identify", b, img / "obama.jpg", "--purpose", "demo", "--legal-basis", lb_a)
    assert "another deployment" in body["message"]
    # The same service's token minted for B is accepted there.
    for_b = cli("consent", "issue", b, "--subject", "alice", "--purpose", "demo",
                "--issuer-key", a / "keys" / "DEMO-INSECURE-consent-issuer.pem")[0].strip()
    assert jws_parts(for_b)[1]["aud"] == ids[1]
    cli("enroll", b, img / "obama.jpg", "--subject", "alice", "--purpose", "demo", "--consent", for_b)


def test_workspace_without_id_is_told_to_add_one(tmp_path: Path, cli: Cli) -> None:
    """A workspace made before deployments had ids: nothing is minted for it, and a token that
    names an audience cannot be checked against it, until the operator adds one."""
    img = images()
    ws = tmp_path / "ws"
    cli("init", ws, "--demo")
    token = cli("consent", "issue", ws, "--subject", "alice", "--purpose", "demo")[0].strip()
    # The id is covered by the assessment: drop it and record the assessment again, as an
    # operator upgrading such a workspace would, so that only the missing id is left.
    edit(ws, lambda raw: raw.pop("id"))
    cli("assess", ws, "--reference", "DPIA-upgrade", "--date", json.loads((ws / "deployment.json").read_text())
        ["assessment"]["date"], "--accept-changes")
    _, err = cli("consent", "issue", ws, "--subject", "alice", "--purpose", "demo", code=1)
    assert '"id"' in err and "deployment.json" in err
    _, err = cli("legal-basis", "issue", ws, "--authority", "B", "--provision", "P", "--purpose", "demo", code=1)
    assert '"id"' in err
    _, err = cli("enroll", ws, img / "obama.jpg", "--subject", "alice", "--purpose", "demo", "--consent", token, code=1)
    assert '"id"' in err


def test_an_output_path_that_cannot_be_written_is_an_error_and_none_replaces_a_workspace_file(
        tmp_path: Path, cli: Cli) -> None:
    """`keys export --out WS/keys/keyring.json` (one mistyped path) replaced the keyring with a
    public JWK Set, and every later command failed; an output folder that does not exist, a
    folder where the file should go, a place no file can be made (/proc) or a link loop ended
    in a raw traceback. Each is now an error naming the path, and nothing in the workspace is
    replaced."""
    ws = tmp_path / "ws"
    cli("init", ws, "--demo")
    keyring = (ws / "keys" / "keyring.json").read_bytes()
    for inside in (ws / "keys" / "keyring.json", ws / "audit.db", ws / "keys" / ".." / "deployment.json"):
        _, err = cli("keys", "export", ws, "--kind", "consent-issuer", "--out", inside, code=1)
        assert "inside the workspace" in err, err
    assert (ws / "keys" / "keyring.json").read_bytes() == keyring
    assert "intact" in cli("audit", "verify", ws)[0]
    (tmp_path / "a-folder").mkdir()
    (tmp_path / "l1.png").symlink_to(tmp_path / "l2.png")
    (tmp_path / "l2.png").symlink_to(tmp_path / "l1.png")
    missing = tmp_path / "no-such-folder"
    for args in (("keys", "export", ws, "--kind", "consent-issuer", "--out", missing / "a.json"),
                 ("keys", "export", ws, "--kind", "consent-issuer", "--out", tmp_path / "a-folder"),
                 ("audit", "checkpoint", ws, "--out", missing / "cp.json"),
                 ("keys", "new", ws, "--kind", "authority", "--out", "/proc/k.pem"),
                 ("anonymize", images() / "obama.jpg", tmp_path / "l1.png")):
        _, err = cli(*args, code=1)
        assert err.startswith("safeface: error: ") and ("cannot" in err or "not a regular file" in err), (args, err)
    assert not missing.exists() and not list((tmp_path / "a-folder").iterdir())
    # A pipe, or a link to one, in the output's place (as /dev/stdout and /dev/null are): renamed
    # over, it became a plain file for every other program, and the export reached no one.
    os.mkfifo(tmp_path / "pipe")
    (tmp_path / "stdout").symlink_to(tmp_path / "pipe")
    for out in (tmp_path / "pipe", tmp_path / "stdout"):
        _, err = cli("keys", "export", ws, "--kind", "consent-issuer", "--out", out, code=1)
        assert "not a regular file" in err, err
    assert stat.S_ISFIFO((tmp_path / "pipe").lstat().st_mode) and (tmp_path / "stdout").is_symlink()
