"""What the compliance report states: strict JSON whatever deployment.json holds, and a standard
rule called measured only by a run that measures it."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from policy_support import make_workspace, open_sf  # noqa: E402


def _strict(text: str) -> dict:
    def refuse(name: str) -> None:
        raise ValueError(f"{name} is not JSON")

    return dict(json.loads(text, parse_constant=refuse))


@pytest.mark.parametrize("value", ["NaN", "Infinity", "1e999"])
def test_a_non_finite_filing_threshold_leaves_the_report_strict_json(tmp_path: Path, value: str) -> None:
    """deployment.json's filing threshold edited to NaN or infinity: compliance.json stays JSON."""
    ws = make_workspace(tmp_path / "ws")
    raw = json.loads(ws.config.read_text())
    raw.setdefault("filing", {})["threshold"] = "@@"
    ws.config.write_text(json.dumps(raw, indent=2).replace('"@@"', value))
    with open_sf(ws) as sf:
        files = sf.report(tmp_path / "report")
    doc = _strict(Path(files["json"]).read_text(encoding="utf-8"))
    assert doc["filing"]["threshold"] is None
    assert doc["can_process"] is False  # the findings say what is wrong with it


def test_a_verification_run_does_not_count_as_measuring_every_standard_rule(tmp_path: Path) -> None:
    """Only `eval verify` was run: ST-04 is measured, demographics (ST-05) and protection are not."""
    ws = make_workspace(tmp_path / "ws")
    ev = ws.root / "reports" / "evaluation"
    ev.mkdir(parents=True)
    (ev / "latest.json").write_text(json.dumps({"kind": "verify", "metrics": {"eer": 0.01},
                                                "runs": {"verify": {"kind": "verify"}}}))
    with open_sf(ws) as sf:
        files = sf.report(tmp_path / "report")
    states = {r["id"]: r["state"] for r in _strict(Path(files["json"]).read_text(encoding="utf-8"))["rules"]}
    assert states["ST-04"] == "measured"
    assert states["ST-02"] == states["ST-03"] == states["ST-05"] == "not measured", states


def test_an_unreadable_evaluation_summary_measures_nothing(tmp_path: Path) -> None:
    """latest.json is no JSON: no standard rule is called measured."""
    ws = make_workspace(tmp_path / "ws")
    ev = ws.root / "reports" / "evaluation"
    ev.mkdir(parents=True)
    (ev / "latest.json").write_text("{not json")
    with open_sf(ws) as sf:
        files = sf.report(tmp_path / "report")
    doc = _strict(Path(files["json"]).read_text(encoding="utf-8"))
    assert "not readable" in doc["assessment"]["error"]
    assert {r["state"] for r in doc["rules"] if r["id"] in ("ST-02", "ST-03", "ST-04", "ST-05")} == {"not measured"}
