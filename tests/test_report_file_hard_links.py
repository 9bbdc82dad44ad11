"""A hard link planted under reports/ by whoever may write there is another name for the file
it links (deployment.json, a key file): the console does not serve it, and the report does not
copy it among its plots."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from policy_support import make_workspace, open_sf  # noqa: E402
from service_support import console_login, keyed_client  # noqa: E402


def test_a_hard_link_planted_among_the_receipts_is_not_served(tmp_path: Path) -> None:
    """Someone who may write reports/ hard-links deployment.json as receipts/<id>.json: an
    auditor's console download of that "receipt" is 404, never the deployment's bytes."""
    client, ws, (aud,) = keyed_client(tmp_path, "auditor")
    folder = ws.root / "reports" / "receipts"
    folder.mkdir(parents=True)
    os.link(ws.config, folder / "planted-receipt.json")
    with client:
        assert console_login(client, aud).status_code == 303
        raw = client.get("/receipts/planted-receipt.json")
    assert raw.status_code == 404 and "safeface-deployment" not in raw.text, raw.text[:200]


def test_a_hard_link_among_the_plots_is_not_copied_into_the_report(tmp_path: Path) -> None:
    """reports/evaluation/roc.svg is a hard link to deployment.json: the report is refused, naming
    it, and no file of the report folder (which the console serves) holds the deployment."""
    from safeface.errors import ConfigError

    ws = make_workspace(tmp_path / "ws")
    ev = ws.root / "reports" / "evaluation"
    ev.mkdir(parents=True)
    (ev / "latest.json").write_text('{"kind": "verify", "metrics": {"eer": 0.01}}')
    os.link(ws.config, ev / "roc.svg")
    out = tmp_path / "report"
    with open_sf(ws) as sf, pytest.raises(ConfigError, match="hard link"):
        sf.report(out)
    assert not any("safeface-deployment" in p.read_text(errors="replace") for p in out.rglob("*") if p.is_file())
