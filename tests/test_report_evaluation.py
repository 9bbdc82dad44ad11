"""The evaluation summary the compliance report embeds, as an operator's own tool may write it."""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from policy_support import open_sf  # noqa: E402
from service_support import keyed_client  # noqa: E402


def test_the_report_survives_nan_and_infinity_in_the_evaluation_summary(tmp_path: Path) -> None:
    """latest.json holds NaN and Infinity: /v1/report is 200, compliance.json strict JSON."""
    client, ws, (aud,) = keyed_client(tmp_path, "auditor")
    ev = ws.root / "reports" / "evaluation"
    ev.mkdir(parents=True, exist_ok=True)
    # As Python's json.dump writes them (NaN, Infinity), and a number too large for a float.
    (ev / "latest.json").write_text('{"kind": "verify", "metrics": {"fmr": NaN, "eer": Infinity, "fnmr": 0.02, '
                                    '"far": 1e999}}')
    with client:
        html = client.get("/v1/report?format=html", headers={"X-API-Key": aud})
        r = client.get("/v1/report", headers={"X-API-Key": aud})
    assert html.status_code == 200
    assert r.status_code == 200 and r.json()["format"] == "safeface-compliance-report/1", r.text[:200]
    with open_sf(ws) as sf:
        files = sf.report(tmp_path / "report")

    def refuse(name: str) -> None:
        raise ValueError(name)

    doc = json.loads(Path(files["json"]).read_text(encoding="utf-8"), parse_constant=refuse)
    assert doc["assessment"]["metrics"] == {"fmr": None, "eer": None, "fnmr": 0.02, "far": None}
    assert "not finite" in doc["assessment"]["non_finite"]
