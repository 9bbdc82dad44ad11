"""The README's examples, as a user copies them on the embedded defaults (SQLite, the in-process
index): the guardrails walkthrough and the service's key commands through the CLI, the command
line's output shapes, and the ```python blocks in this process. Each is read from README.md
itself, its placeholders (me.jpg, `passphrase=...`, ...) replaced by real images and values, and
checked against what the README says it does: exit codes, JSON keys, the rule of a refusal, a
signed erasure receipt, an intact audit log. Where a block needs a server or a model pack that a
test cannot fetch, its names and argument order are checked instead."""

from __future__ import annotations

import ast
import base64
import datetime as dt
import inspect
import json
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np
import pytest

from child_process import child_env

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def section(start: str, end: str) -> str:
    """The README from the heading `start` to the next `end` after it."""
    i = README.index(start)
    return README[i:README.index(end, i + len(start))]


def python_block(after: str) -> str:
    """The first ```python block after the text `after`."""
    rest = README[README.index(after):]
    rest = rest[rest.index("```python\n") + len("```python\n"):]
    return rest[:rest.index("```")]


def shell_lines(text: str) -> list[tuple[str, str]]:
    """The indented command lines of `text` as (command, comment); continuation and comment-only
    lines are left out."""
    out = []
    for line in text.splitlines():
        if not line.startswith("    ") or line.startswith("     ") or line.strip().startswith("#"):
            continue
        commented = re.fullmatch(r"(.*?)\s{2,}#\s*(.*)", line.strip())
        out.append((commented.group(1), commented.group(2)) if commented else (line.strip(), ""))
    return out


def exit_codes() -> dict[str, int]:
    """"Exit codes: 0 success, 1 error, ..." from the README's command-line section."""
    listed = re.search(r"Exit codes: (.*?)\.\n", README)
    assert listed, "the README's command-line section no longer lists the exit codes"
    return {m.group(2): int(m.group(1)) for m in re.finditer(r"(\d) ([a-z ]+)", listed.group(1))}


def run_block(src: str, ns: dict[str, Any]) -> list[tuple[str, Any]]:
    """Run a python block statement by statement in `ns`, as a user pasting it would; returns each
    statement's source with the value of an expression statement (None for the others)."""
    tree = ast.parse(src)
    done = []
    for node in tree.body:
        code = ast.get_source_segment(src, node) or ""
        if isinstance(node, ast.Expr):
            value = eval(compile(ast.Expression(node.value), "README.md", "eval"), ns)
        else:
            exec(compile(ast.Module([node], []), "README.md", "exec"), ns)
            value = None
        done.append((code, value))
    return done


def cli(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """`safeface ARGS` as the README runs it: the package the tests import (child_env), from a
    folder outside the checkout (`cwd`), whose source tree holds no compiled core."""
    return subprocess.run([sys.executable, "-m", "safeface.cli", *args], cwd=cwd, env=child_env(),
                          capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def photos(datasets: Path) -> dict[str, Path]:
    """The README's placeholder photos: me.jpg and me2.jpg are two LFW photos of one person (small,
    so the walkthrough stays quick), someone.jpg the second again."""
    person = datasets / "lfw-dev" / "images" / "Abdullah_Gul"
    me, me2 = person / "Abdullah_Gul_0013.jpg", person / "Abdullah_Gul_0014.jpg"
    return {"me.jpg": me, "me2.jpg": me2, "someone.jpg": me2, "group.jpg": me, "party.jpg": me}


def b64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


# -- the guardrails walkthrough and the service's keys, through the CLI --------------------------

def test_the_guardrails_walkthrough_runs_as_written(tmp_path: Path, photos: dict[str, Path]) -> None:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    from safeface import verify_receipt

    codes = exit_codes()
    refused_code = next(c for name, c in codes.items() if name.startswith("refused"))
    shell: dict[str, str] = {}
    seen: list[str] = []
    pseudonym: Optional[str] = None

    def word(w: str) -> str:
        if w.startswith("$"):
            return shell[w[1:]]
        return str(photos[w]) if w in photos else w

    for line, comment in shell_lines(section("## Compliance guardrails", "In Python:")):
        assigned = re.fullmatch(r"(\w+)=\$\((.*)\)", line)
        for part in (assigned.group(2) if assigned else line).split(" && "):  # each must pass for the next
            argv = [word(w) for w in shlex.split(part)]
            assert argv[0] == "safeface", line
            r = cli(argv[1:], tmp_path)
            step = argv[1]
            seen.append(step)
            refused = re.search(r"refused: (\S+) \(exit (\d)\)", comment)
            if refused:
                # "# refused: CN-18 (exit 3)": the exit code of a refusal, its rule in JSON on stderr
                assert int(refused.group(2)) == refused_code == r.returncode, (line, r.stderr)
                assert json.loads(r.stderr)["rule"] == refused.group(1), (line, r.stderr)
                continue
            assert r.returncode == codes["success"], (line, r.stdout, r.stderr)
            if assigned:
                shell[assigned.group(1)] = r.stdout.strip()
            if step == "init":  # '# sample deployment, purpose "demo"'
                purpose = re.search(r'purpose "(\w+)"', comment)
                assert purpose, comment
                config = json.loads((tmp_path / argv[2] / "deployment.json").read_text())
                assert purpose.group(1) in config["purposes"]
            elif step == "consent":  # a JWS compact token of the consent type (README, "Tokens")
                header = json.loads(b64url(r.stdout.strip().split(".")[0]))
                assert r.stdout.strip().count(".") == 2 and header["typ"] == "safeface-consent+jwt"
            elif step == "enroll":
                doc = json.loads(r.stdout)
                assert doc["enrolled"] is True
                pseudonym = doc["subject"]
            elif step == "verify":  # me2.jpg is the same person as me.jpg
                assert json.loads(r.stdout)["match"] is True, r.stdout
            elif step == "identify":
                assert pseudonym in [c["subject"] for c in json.loads(r.stdout)["candidates"]], r.stdout
            elif step == "erase":
                assert "signed erasure receipt" in comment
                receipt = json.loads(r.stdout)
                assert receipt["subjects"] == [pseudonym]
                public = (tmp_path / argv[2] / "keys" / "receipt_public.txt").read_text().strip()
                verify_receipt(receipt, Ed25519PublicKey.from_public_bytes(b64url(public)))  # raises unless signed
            elif step == "report":
                out = tmp_path / argv[argv.index("--out") + 1]
                assert {p.suffix for p in out.iterdir()} >= {".json", ".html"}
    assert set(seen) >= {"init", "consent", "enroll", "verify", "identify", "analyze", "erase", "audit", "report"}

    # The service section's key commands, on the same workspace (no server is started).
    service = section("## The service and the operator console", "Endpoints under `/v1`")
    lines = shell_lines(service)
    new_key = next(line for line, _ in lines if line.startswith("safeface apikey new"))
    # "[--expires 2027-06-30] [--rate 20]": the optional parts run too, the date kept in the future
    argv = shlex.split(re.sub(r"[\[\]]", "", new_key))
    expires = argv.index("--expires") + 1
    argv[expires] = max(argv[expires], (dt.date.today() + dt.timedelta(days=30)).isoformat())
    r = cli(argv[1:], tmp_path)
    assert r.returncode == 0 and r.stdout.strip().startswith("sfk_"), (new_key, r.stdout, r.stderr)  # printed once
    listing = next(line for line, _ in lines if line.startswith("safeface apikey list"))
    listed, revoke = (shlex.split(p) for p in listing.split(" ; "))
    r = cli(listed[1:], tmp_path)
    assert r.returncode == 0, (listing, r.stderr)
    key_id = json.loads(r.stdout)[0]["key_id"]
    r = cli([key_id if w == "KEY_ID" else w for w in revoke[1:]], tmp_path)
    assert r.returncode == 0 and json.loads(r.stdout)["revoked"], (listing, r.stdout, r.stderr)

    # The key its curl calls use is made with a role that may make every one of them.
    k_line = next(line for line, _ in lines if line.startswith("K="))
    made = re.fullmatch(r"K=\$\((.*)\)", k_line)
    assert made, k_line
    argv = shlex.split(made.group(1))
    r = cli(argv[1:], tmp_path)
    assert r.returncode == 0 and r.stdout.strip().startswith("sfk_"), (k_line, r.stderr)
    role = argv[argv.index("--role") + 1]
    roles = json.loads((tmp_path / "ws" / "deployment.json").read_text())["roles"]
    operation = {"enroll": "enroll", "verify": "verify", "identify": "identify", "erase": "erase",
                 "audit/verify": "report"}
    called = re.findall(r"\$K\b.*?http://[^/\s]+/v1/([a-z/]+)", service.replace("\\\n", " "))
    assert set(called) == set(operation), called
    assert {operation[c] for c in called} <= set(roles[role]), (role, roles[role])


def test_the_command_lines_json_shapes_are_as_the_readme_writes_them(tmp_path: Path,
                                                                   photos: dict[str, Path]) -> None:
    """`detect --json`, `embed --out` and `compare --json`, with the shapes their comments give."""
    lines = dict(shell_lines(section("## Command line", "## Compliance guardrails")))
    me, me2 = str(photos["me.jpg"]), str(photos["me2.jpg"])

    detect = next(line for line in lines if line.startswith("safeface detect"))
    r = cli([me if w == "IMAGE" else w for w in shlex.split(detect)[1:]], tmp_path)
    assert r.returncode == 0, (detect, r.stderr)
    face = json.loads(r.stdout)["faces"][0]
    assert set(face) == set(re.findall(r'"(\w+)": ', lines[detect])) - {"faces"}  # box, score, landmarks
    assert len(face["box"]) == 4 and len(face["landmarks"]) == 5 and all(len(p) == 2 for p in face["landmarks"])

    embed = next(line for line in lines if line.startswith("safeface embed"))
    blank = tmp_path / "blank.png"  # no face: a NaN row
    from PIL import Image

    Image.new("RGB", (120, 120), (128, 128, 128)).save(blank)
    argv = [w for w in shlex.split(embed)[1:]]
    at = argv.index("IMAGE...")
    argv[at:at + 1] = [me, str(blank), me2]
    argv[argv.index("FILE.npy")] = "out.npy"
    r = cli(argv, tmp_path)
    assert r.returncode == 0, (embed, r.stderr)
    rows = np.load(tmp_path / "out.npy")
    assert "(n, 128) float32" in lines[embed] and rows.shape == (3, 128) and rows.dtype == np.float32
    assert np.isnan(rows).all(axis=1).tolist() == [False, True, False]  # "NaN rows where no face"

    compare = next(line for line in lines if line.startswith("safeface compare"))
    r = cli([{"IMAGE1": me, "IMAGE2": me2}.get(w, w) for w in shlex.split(compare)[1:]], tmp_path)
    assert r.returncode == 0, (compare, r.stderr)
    doc = json.loads(r.stdout)
    assert set(doc) == set(re.findall(r'"(\w+)": ', lines[compare]))  # score, same, threshold
    assert doc["same"] is True and isinstance(doc["score"], float)


# -- the python blocks, in this process (the models load once) ------------------------------------

def test_the_recognition_pipeline_example(fr_images: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Its obama.jpg and obama2.jpg are the face_recognition library's own test photos."""
    src = python_block("## The recognition pipeline")
    for name in ("obama.jpg", "obama2.jpg"):
        src = src.replace(f'"{name}"', repr(str(fr_images / "test_images" / name)))
    run_block(src, {})
    assert capsys.readouterr().out == "True\n"


@pytest.fixture()
def demo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Callable[[str], tuple[str, str]]]:
    """A demo workspace made as `safeface init ws --demo` makes it, in the working folder, and a
    consent for it as `safeface consent issue` mints it: (passphrase, subject -> (token, token id))."""
    from safeface.policy.deployment import Deployment
    from safeface.policy.issuer import issue_consent
    from safeface.workspace.init import init_workspace
    from safeface.workspace.keys import issuer_signing_key

    monkeypatch.delenv("SAFEFACE_PASSPHRASE", raising=False)
    monkeypatch.chdir(tmp_path)
    paths = init_workspace(tmp_path / "ws", demo=True)

    def consent(subject: str) -> tuple[str, str]:
        wire, token = issue_consent(issuer_signing_key(paths, None, "issuer"), Deployment.load(paths.config),
                                    subject, ["demo"])
        return wire, token.token_id

    return paths.keys / "DEMO-INSECURE-passphrase.txt", consent


def test_the_safeface_open_example(demo: tuple[Path, Callable[[str], tuple[str, str]]],
                                   photos: dict[str, Path]) -> None:
    """The block under "Compliance guardrails", on the walkthrough's workspace "ws"; its
    `passphrase=...` is the demo's own, its `token_id=...` the consent's id."""
    from safeface import Candidate, Enrollment, ErasureReceipt, Verification

    passphrase_file, consent = demo
    token, token_id = consent("alice")
    src = python_block("In Python:\n")
    assert "passphrase=..." in src and "token_id=..." in src
    src = src.replace("passphrase=...", f"passphrase={passphrase_file.read_text().strip()!r}")
    src = src.replace("token_id=...", f"token_id={token_id!r}")
    ns = {"image": str(photos["me.jpg"]), "subject": "alice", "purpose": "demo", "consent": token, "token": token}
    results = dict(run_block(src, ns))
    sf = ns["sf"]
    try:
        enrolled = results["sf.enroll(image, subject, purpose, consent)"]
        assert isinstance(enrolled, Enrollment) and enrolled.purpose == "demo"
        verified = results["sf.verify(image, subject, purpose, consent)"]
        assert isinstance(verified, Verification) and verified.match
        found = results["sf.identify(image, purpose, consent=token)"]
        assert [c.subject for c in found if isinstance(c, Candidate)] == [enrolled.pseudonym]
        erased, revoked, report = (results[s] for s in ("sf.erase(subject)", f"sf.revoke(token_id={token_id!r})",
                                                        'sf.report("report/")'))
        assert isinstance(erased, ErasureReceipt) and erased.templates_removed == 1
        assert isinstance(revoked, ErasureReceipt) and revoked.reason == "revoke"
        assert Path(report["json"]).is_file() and Path(report["html"]).is_file()
    finally:
        sf.close()


def test_the_anonymizing_example(demo: tuple[Path, Callable[[str], tuple[str, str]]], photos: dict[str, Path],
                                 tmp_path: Path) -> None:
    """party.jpg is a real photo of one person, clip.mp4 a 4-frame clip of it; `sf` a handle on
    a demo workspace."""
    from safeface import SafeFace
    from video_fixtures import build_face_video

    build_face_video(tmp_path / "clip.mp4", [photos["me.jpg"]], frames=4, size=(320, 280), audio=False)
    src = python_block("## Anonymizing photos and video").replace('"party.jpg"', repr(str(photos["party.jpg"])))
    passphrase_file, _ = demo
    with SafeFace.open("ws", passphrase=passphrase_file.read_text().strip()) as sf:
        before = len(sf.audit_entries())
        ns: dict[str, Any] = {"sf": sf}
        lines = src.splitlines()
        run_block("\n".join(lines[:2]), ns)  # the import, then anonymize_image
        assert ns["pixels"].shape == (250, 250, 3) and ns["report"].face_count == 1
        run_block(lines[2], ns)  # anonymize_file, to a video
        assert ns["report"].kind == "video" and ns["report"].frames == 4 and (tmp_path / "clip_anon.mp4").is_file()
        assert ns["report"].mode == "solid" and ns["report"].margin == 0.5
        run_block("\n".join(lines[3:]), ns)  # sf.anonymize: the run is audited
        assert ns["report"].face_count == 1 and len(sf.audit_entries()) == before + 1


def test_the_matching_example(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((100, 128)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    ns: dict[str, Any] = {"ids": np.arange(100, dtype=np.int64), "vectors": vectors, "queries": vectors[[17, 42, 5]]}
    run_block(python_block("## Matching: `safeface.hazmat.index`"), ns)
    scores, ids = ns["scores"], ns["ids"]
    assert scores.shape == ids.shape == (3, 10) and scores.dtype == np.float32 and ids.dtype == np.int64
    assert ids[:, 0].tolist() == [17, 42, -1] and scores[2, 0] == -np.inf  # `allowed` filters inside the scan
    assert ids[0, 0] == 17 and scores[0, 0] > 0.99 and (ids[:, 1:] == -1).all()
    assert 42 not in ns["index"].ids() and len(ns["index"].ids()) == 99  # removed, saved sealed, loaded
    assert (tmp_path / "gallery.sfx").is_file()


def test_the_engine_example(photos: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    src = python_block("## Engines for vendors with their own detector")
    ns: dict[str, Any] = {}
    run_block(src.replace('"group.jpg"', repr(str(photos["group.jpg"]))), ns)
    vecs = ns["vecs"]
    assert len(ns["faces"]) == 1 and vecs.shape == (1, 128) and vecs.dtype == np.float32
    assert np.allclose(np.linalg.norm(vecs, axis=1), 1, atol=1e-5)  # unit vectors


# -- blocks that need a server or a fetched pack: their names and argument order ------------------

def test_the_client_example_calls_what_the_client_has() -> None:
    """It needs `safeface serve` running; here each call binds to the client's signature as
    written, and the result it reads (`.match`) is a field of what verify returns."""
    from safeface import Verification
    from safeface.client import Client

    src = python_block("From Python, `safeface.client.Client`")
    tree = ast.parse(src)
    (with_node,) = [n for n in tree.body if isinstance(n, ast.With)]
    opened = with_node.items[0].context_expr
    assert isinstance(opened, ast.Call) and ast.unparse(opened.func) == "Client"
    inspect.signature(Client).bind(*(ast.unparse(a) for a in opened.args))
    for stmt in with_node.body:
        call = stmt.value if isinstance(stmt, ast.Expr) else None
        attr = call.attr if isinstance(call, ast.Attribute) else None
        call = call.value if attr else call
        assert isinstance(call, ast.Call) and isinstance(call.func, ast.Attribute), ast.unparse(stmt)
        method = getattr(Client, call.func.attr)
        inspect.signature(method).bind(None, *call.args, **{k.arg: k.value for k in call.keywords if k.arg})
        if attr is not None:
            assert call.func.attr == "verify" and attr in Verification.__dataclass_fields__


def test_the_insightface_example_names_what_safeface_has() -> None:
    """Its pack is fetched from the network (`safeface models fetch buffalo_l`), which a test does
    not do: the names it imports and calls, and their arguments, are checked."""
    from safeface.hazmat.vision.insightface_engine import InsightFaceEngine

    src = python_block("## insightface model packs")
    ns: dict[str, Any] = {}
    imports = "\n".join(line for line in src.splitlines() if line.startswith("from "))
    exec(compile(imports, "README.md", "exec"), ns)
    assert ns["InsightFaceEngine"] is InsightFaceEngine
    for call in (n for n in ast.walk(ast.parse(src)) if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute)):
        if ast.unparse(call.func.value) == "engine":
            inspect.signature(getattr(InsightFaceEngine, call.func.attr)).bind(None, *call.args)
    inspect.signature(InsightFaceEngine).bind("buffalo_l")
