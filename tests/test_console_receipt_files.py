"""The erasure receipts the console serves from reports/receipts: only regular files it wrote
there, never a link's target, and a receipt edited by hand is neither markup nor a 500."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from service_support import console_login, csrf_of, keyed_client  # noqa: E402

SECRET = "passphrase that only the service may read"


def test_a_link_planted_among_the_receipts_is_not_served(tmp_path: Path) -> None:
    """Someone who may write reports/ plants receipts/<id>.json linking to the service's passphrase
    file: an auditor's console download of that "receipt" is 404, never the file's bytes."""
    client, ws, (aud,) = keyed_client(tmp_path, "auditor")
    secret = tmp_path / "passphrase.txt"
    secret.write_text(SECRET)
    folder = ws.root / "reports" / "receipts"
    folder.mkdir(parents=True)
    (folder / "planted-receipt.json").symlink_to(secret)
    with client:
        assert console_login(client, aud).status_code == 303
        raw = client.get("/receipts/planted-receipt.json")
        shown = client.get("/receipts/planted-receipt")
    assert raw.status_code == 404 and SECRET not in raw.text, raw.text[:200]
    assert shown.status_code == 404 and SECRET not in shown.text, shown.text[:200]


def test_a_receipts_folder_that_is_a_link_is_not_served(tmp_path: Path) -> None:
    """reports/receipts is replaced by a link to the workspace's own folder: the console's
    /receipts/deployment.json is not the deployment file, and says the folder is refused (409)."""
    client, ws, (aud,) = keyed_client(tmp_path, "auditor")
    (ws.root / "reports").mkdir(exist_ok=True)
    (ws.root / "reports" / "receipts").symlink_to(ws.root)
    with client:
        assert console_login(client, aud).status_code == 303
        raw = client.get("/receipts/deployment.json")
    assert raw.status_code == 409 and "safeface-deployment" not in raw.text, raw.text[:200]


def test_a_receipt_edited_by_hand_shows_no_markup_and_is_no_server_error(tmp_path: Path) -> None:
    """A receipt file rewritten with markup in its count (a refresh to another site), or as no
    JSON object at all: the page escapes the markup, and the unreadable one is a 404, not a 500."""
    client, ws, (aud,) = keyed_client(tmp_path, "auditor")
    folder = ws.root / "reports" / "receipts"
    folder.mkdir(parents=True)
    trap = "<meta http-equiv='refresh' content='0;url=https://phish.example/login'>"
    edited = {"reason": "erase", "templates_removed": trap}
    (folder / "edited-receipt.json").write_text(json.dumps(edited))
    (folder / "broken-receipt.json").write_text("[1, 2")
    with client:
        assert console_login(client, aud).status_code == 303
        shown = client.get("/receipts/edited-receipt")
        broken = client.get("/receipts/broken-receipt")
    assert "<meta http-equiv" not in shown.text, shown.text[:400]
    assert broken.status_code == 404, broken.text[:200]


def test_a_report_plot_folder_that_is_a_link_serves_no_face_photo(tmp_path: Path) -> None:
    """Someone who may write reports/ links reports/console/assessment to a folder of face photos:
    an auditor's console request for /report/assessment/<photo>.png is 404, never the photo."""
    client, ws, (aud,) = keyed_client(tmp_path, "auditor")
    photos = tmp_path / "photos"
    photos.mkdir()
    (photos / "alice.png").write_bytes(b"\x89PNG\r\n\x1a\n a face")
    (ws.root / "reports" / "console").mkdir(parents=True)
    (ws.root / "reports" / "console" / "assessment").symlink_to(photos)
    with client:
        assert console_login(client, aud).status_code == 303
        r = client.get("/report/assessment/alice.png")
    assert r.status_code == 404 and b"a face" not in r.content, r.content[:100]


def _erase_from_the_console(client: Any, key: str) -> str:
    """Log in with `key`, erase a pseudonym from the subjects page, and give the receipt's id."""
    assert console_login(client, key).status_code == 303
    page = client.get("/subjects")
    done = client.post("/subjects/erase", data={"csrf": csrf_of(page.text), "pseudonym": "ab" * 32},
                       follow_redirects=False)
    return str(done.headers["location"].rsplit("/", 1)[1])


def test_a_receipt_written_by_hand_is_not_shown_as_an_erasure(tmp_path: Path) -> None:
    """Someone who may write reports/ (not the keyring) puts a receipt of their own among the real
    ones, claiming a subject's templates were erased: the console showed it as an erasure receipt
    ("3 template(s) removed") with a link to "the signed receipt". A receipt whose signature does
    not verify under the workspace's receipt key is neither shown nor served; a real one is."""
    client, ws, (op,) = keyed_client(tmp_path, "operator")
    with client:
        real_id = _erase_from_the_console(client, op)
        real = json.loads((ws.root / "reports" / "receipts" / f"{real_id}.json").read_text())
        forged = {**real, "receipt_id": "forged-receipt", "subjects": ["cd" * 32], "templates_removed": 3}
        (ws.root / "reports" / "receipts" / "forged-receipt.json").write_text(json.dumps(forged))
        shown = client.get("/receipts/forged-receipt")
        raw = client.get("/receipts/forged-receipt.json")
        genuine = client.get(f"/receipts/{real_id}")
    assert shown.status_code == 409 and "template(s) removed" not in shown.text, shown.text[:300]
    assert raw.status_code == 409 and "cd" * 32 not in raw.text, raw.text[:300]
    assert genuine.status_code == 200 and "template(s) removed" in genuine.text, genuine.text[:300]


def test_a_receipt_in_a_folder_others_may_write_says_so_rather_than_none(tmp_path: Path) -> None:
    """An older release made reports/receipts with mkdir under the host's umask: 0777 under umask
    000. The console now refuses to read through such a folder, as it should, but it said "No
    receipt has that id" of every receipt in it: the operator is told what to change instead."""
    client, ws, (op,) = keyed_client(tmp_path, "operator")
    with client:
        real_id = _erase_from_the_console(client, op)
        (ws.root / "reports" / "receipts").chmod(0o777)
        shown = client.get(f"/receipts/{real_id}")
        raw = client.get(f"/receipts/{real_id}.json")
    assert shown.status_code == 409 and "chmod go-w" in shown.text, shown.text[:300]
    assert raw.status_code == 409 and "chmod go-w" in raw.text, raw.text[:300]
