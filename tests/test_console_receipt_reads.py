"""How the console reads a receipt under reports/receipts: a folder swapped for a link between
its check and the file's open is not followed, and a receipt nested past the JSON parser's
depth is a 404, not a 500."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from service_support import console_login, keyed_client  # noqa: E402

SECRET = "passphrase that only the service may read"


def test_a_receipts_folder_swapped_for_a_link_as_the_receipt_opens_is_not_followed(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Someone who may write reports/ swaps reports/receipts for a link to their own folder in the
    instant the console opens a receipt (here: as its open starts): their file is not served."""
    client, ws, (aud,) = keyed_client(tmp_path, "auditor")
    folder = ws.root / "reports" / "receipts"
    folder.mkdir(parents=True)
    (folder / "swapped-receipt.json").write_text('{"reason": "erase", "templates_removed": 1}')
    planted = tmp_path / "planted"
    planted.mkdir()
    (planted / "swapped-receipt.json").write_text(SECRET)
    real_open = os.open

    def swapping_open(path: Any, flags: int, *args: Any, **kw: Any) -> int:
        if str(path).endswith("swapped-receipt.json") and not folder.is_symlink():
            os.rename(folder, folder.with_name("receipts.old"))  # the other process, at this instant
            os.symlink(planted, folder)
        return real_open(path, flags, *args, **kw)

    with client:
        assert console_login(client, aud).status_code == 303
        monkeypatch.setattr(os, "open", swapping_open)
        raw = client.get("/receipts/swapped-receipt.json")
        monkeypatch.undo()
    assert folder.is_symlink()  # the swap happened
    assert SECRET not in raw.text, raw.text[:200]


def test_a_receipt_nested_past_the_parsers_depth_is_a_404(tmp_path: Path) -> None:
    """A receipt rewritten by hand as 200,000 nested arrays: the receipt page is 404, not a 500."""
    client, ws, (aud,) = keyed_client(tmp_path, "auditor")
    folder = ws.root / "reports" / "receipts"
    folder.mkdir(parents=True)
    (folder / "deep-receipt.json").write_text("[" * 200_000)
    with client:
        assert console_login(client, aud).status_code == 303
        shown = client.get("/receipts/deep-receipt")
    assert shown.status_code == 404, shown.text[:200]
