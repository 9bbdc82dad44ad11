"""The evaluation summary the compliance report embeds, against the deployment it reports on: a
summary measured at another threshold, or copied from another deployment, is not shown as this
deployment's measurement."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Optional

sys.path.insert(0, str(Path(__file__).resolve().parent))
from policy_support import make_workspace, open_sf  # noqa: E402


def _summary(kind: str, threshold: float, deployment: Any = None) -> dict[str, Any]:
    """A summary as `safeface eval ... --workspace` writes it."""
    run: dict[str, Any] = {"generated_at": "2026-12-01T00:00:00+00:00", "kind": kind, "dataset": {"root": "lfw"},
                           "engine": "onnx", "options": {"engine": "onnx", "threshold": threshold},
                           "metrics": {"at_default_threshold": {"threshold": threshold, "fmr": {"value": 0.0001}}},
                           "plots": {}}
    if deployment is not None:
        run["deployment"] = deployment
    return {**run, "runs": {kind: run}}


def _report(tmp_path: Path, ws: Any, summary: dict[str, Any]) -> tuple[dict[str, Any], str]:
    ev = ws.root / "reports" / "evaluation"
    ev.mkdir(parents=True, exist_ok=True)
    (ev / "latest.json").write_text(json.dumps(summary))
    with open_sf(ws) as sf:
        files = sf.report(tmp_path / "report")
    return json.loads(Path(files["json"]).read_text()), Path(files["html"]).read_text()


def _deployment_id(ws: Any) -> str:
    return str(json.loads(ws.config.read_text())["id"])


def test_a_summary_measured_at_another_threshold_is_not_called_measured(tmp_path: Path) -> None:
    """latest.json's verification run was measured at 0.6 (a stranger matches far more often) while
    calls are matched at 0.91: ST-04 was reported "measured", its FMR read as the deployment's."""
    ws = make_workspace(tmp_path / "ws")
    doc, html = _report(tmp_path, ws, _summary("verify", 0.6, _deployment_id(ws)))
    row = {r["id"]: r for r in doc["rules"]}["ST-04"]
    assert row["state"] == "not measured", row
    assert "threshold 0.6, not the 0.91 in force" in row["detail"]
    assert doc["assessment_check"]["in_force"]["threshold"] == 0.91
    assert doc["assessment_check"]["runs"]["verify"]["differs"] == ["threshold 0.6, not the 0.91 in force"]
    assert "NOT MEASURED IN THIS DEPLOYMENT" in html


def test_a_summary_copied_from_another_deployment_is_not_called_measured(tmp_path: Path) -> None:
    """latest.json copied from another deployment's workspace (same threshold): it names that
    deployment, and the report says so instead of calling ST-05 measured."""
    ws = make_workspace(tmp_path / "ws")
    doc, html = _report(tmp_path, ws, _summary("demographics", 0.91, "another-deployment"))
    row = {r["id"]: r for r in doc["rules"]}["ST-05"]
    assert row["state"] == "not measured", row
    assert "measured for deployment 'another-deployment'" in row["detail"]
    assert "another-deployment" in html and "NOT MEASURED IN THIS DEPLOYMENT" in html


def test_a_summary_of_this_deployment_at_the_threshold_in_force_is_measured(tmp_path: Path) -> None:
    ws = make_workspace(tmp_path / "ws")
    doc, html = _report(tmp_path, ws, _summary("verify", 0.91, _deployment_id(ws)))
    assert {r["id"]: r for r in doc["rules"]}["ST-04"]["state"] == "measured"
    assert doc["assessment_check"]["runs"]["verify"]["differs"] == []
    assert "NOT MEASURED IN THIS DEPLOYMENT" not in html


def _eval_finish(tmp_path: Path, ws: Any, threshold: float, root: str = "lfw",
                 plots: Optional[dict[str, Path]] = None, passphrase_file: Optional[Path] = None) -> None:
    """`safeface eval verify ... --workspace WS --threshold T` past its measuring: what it writes."""
    from safeface.cli import eval_cmds

    args = argparse.Namespace(threshold=threshold, workspace=ws.root, out=tmp_path / "eval", json=False,
                              mask_probe=None, masked_threshold=None, both_masked_threshold=None,
                              passphrase_file=passphrase_file)
    options = SimpleNamespace(engine="onnx", to_dict=lambda: {"engine": "onnx"})
    stats = SimpleNamespace(embedded=0, from_cache=0)
    eval_cmds._finish(args, "verify", {"root": root}, SimpleNamespace(options=options),
                      {"at_default_threshold": {"threshold": threshold}}, plots or {}, time.perf_counter(), stats)


def test_eval_names_the_threshold_and_deployment_it_measured(tmp_path: Path) -> None:
    """The summary `eval --workspace` writes names its threshold and the workspace's deployment, so
    the report can hold it against the ones in force: at the threshold in force it is measured, at
    another one it is not."""
    ws = make_workspace(tmp_path / "ws")
    _eval_finish(tmp_path, ws, 0.91)
    latest = json.loads((ws.root / "reports" / "evaluation" / "latest.json").read_text())
    assert latest["options"]["threshold"] == 0.91 and latest["deployment"] == _deployment_id(ws)
    with open_sf(ws) as sf:
        doc = json.loads(Path(sf.report(tmp_path / "r1")["json"]).read_text())
    assert {r["id"]: r for r in doc["rules"]}["ST-04"]["state"] == "measured"
    _eval_finish(tmp_path, ws, 0.8)
    with open_sf(ws) as sf:
        doc = json.loads(Path(sf.report(tmp_path / "r2")["json"]).read_text())
    assert {r["id"]: r for r in doc["rules"]}["ST-04"]["state"] == "not measured"


def _on_record_ws(tmp_path: Path, monkeypatch: Any) -> Any:
    from policy_support import PASSPHRASE

    monkeypatch.setenv("SAFEFACE_PASSPHRASE", PASSPHRASE)
    return make_workspace(tmp_path / "ws")


def test_a_hand_edited_evaluation_summary_is_shown_as_not_on_record(tmp_path: Path, monkeypatch: Any) -> None:
    """`eval --workspace` puts the summary's SHA-256 on record; whoever may write reports/ then
    lowers its FMR by hand (threshold and deployment kept): the report showed the edited figure as
    measured. Now it says the summary is not on record, in JSON and HTML."""
    ws = _on_record_ws(tmp_path, monkeypatch)
    _eval_finish(tmp_path, ws, 0.91)
    with open_sf(ws) as sf:
        doc = json.loads(Path(sf.report(tmp_path / "r1")["json"]).read_text())
    assert doc["assessment_check"]["on_record"] is True
    assert "not on record" not in {r["id"]: r for r in doc["rules"]}["ST-04"]["detail"]
    latest = ws.root / "reports" / "evaluation" / "latest.json"
    edited = json.loads(latest.read_text())
    edited["metrics"]["at_default_threshold"]["fmr"] = {"value": 0.0}
    latest.write_text(json.dumps(edited, indent=2) + "\n")
    with open_sf(ws) as sf:
        files = sf.report(tmp_path / "r2")
    doc = json.loads(Path(files["json"]).read_text())
    assert doc["assessment"]["metrics"]["at_default_threshold"]["fmr"] == {"value": 0.0}
    assert doc["assessment_check"]["on_record"] is False
    assert doc["assessment_check"]["provenance"].startswith("NOT ON RECORD")
    assert doc["records_verified"] is True  # the log holds: the report itself tells
    assert "not on record" in {r["id"]: r for r in doc["rules"]}["ST-04"]["detail"]
    assert "NOT ON RECORD" in Path(files["html"]).read_text()


def test_an_older_summary_put_back_over_a_newer_run_is_not_the_one_on_record(tmp_path: Path,
                                                                                 monkeypatch: Any) -> None:
    """Two runs on record; the first run's latest.json copied back over the second's: it is on
    record, but not as the latest measurement, and the report says so."""
    ws = _on_record_ws(tmp_path, monkeypatch)
    latest = ws.root / "reports" / "evaluation" / "latest.json"
    _eval_finish(tmp_path, ws, 0.91)
    first = latest.read_bytes()
    _eval_finish(tmp_path, ws, 0.91, root="lfw-second")
    assert latest.read_bytes() != first
    latest.write_bytes(first)
    with open_sf(ws) as sf:
        files = sf.report(tmp_path / "r")
    doc = json.loads(Path(files["json"]).read_text())
    assert doc["assessment_check"]["on_record"] is False
    assert doc["assessment_check"]["provenance"].startswith("NOT THE SUMMARY ON RECORD")
    assert "NOT THE SUMMARY ON RECORD" in Path(files["html"]).read_text()


def test_a_plot_swapped_in_the_workspace_is_left_out_of_the_report(tmp_path: Path, monkeypatch: Any) -> None:
    """The plots of `eval --workspace` are copied into the report (and served by the console) from
    reports/evaluation/: one replaced there (another deployment's ROC), or added, was shown as this
    summary's. The summary names each plot's SHA-256; others are left out and named."""
    ws = _on_record_ws(tmp_path, monkeypatch)
    (tmp_path / "eval").mkdir()
    roc = tmp_path / "eval" / "verify-roc.png"
    roc.write_bytes(b"\x89PNG\r\n\x1a\nmeasured")
    _eval_finish(tmp_path, ws, 0.91, plots={"roc": roc})
    ev = ws.root / "reports" / "evaluation"
    with open_sf(ws) as sf:
        doc = json.loads(Path(sf.report(tmp_path / "r1")["json"]).read_text())
    assert doc["assessment_plots"] == ["assessment/verify-roc.png"]
    assert doc["assessment_check"]["plots_left_out"] == []
    (ev / "verify-roc.png").write_bytes(b"\x89PNG\r\n\x1a\nanother deployment")
    (ev / "verify-det.png").write_bytes(b"\x89PNG\r\n\x1a\nadded")
    with open_sf(ws) as sf:
        files = sf.report(tmp_path / "r2")
    doc = json.loads(Path(files["json"]).read_text())
    assert doc["assessment_check"]["on_record"] is True  # latest.json itself is untouched
    assert doc["assessment_plots"] == []
    assert doc["assessment_check"]["plots_left_out"] == ["verify-det.png", "verify-roc.png"]
    assert not (tmp_path / "r2" / "assessment" / "verify-roc.png").exists()
    assert "Plots left out" in Path(files["html"]).read_text()


def test_eval_puts_its_summary_on_record_with_a_passphrase_file(tmp_path: Path, monkeypatch: Any) -> None:
    """Without $SAFEFACE_PASSPHRASE, `eval --workspace` could not open the workspace, so a real
    measurement was shown as NOT ON RECORD and no option let it be put there. `--passphrase-file`
    opens it as the other commands do."""
    from policy_support import PASSPHRASE

    monkeypatch.delenv("SAFEFACE_PASSPHRASE", raising=False)
    ws = make_workspace(tmp_path / "ws")
    _eval_finish(tmp_path, ws, 0.91)
    with open_sf(ws) as sf:
        doc = json.loads(Path(sf.report(tmp_path / "r1")["json"]).read_text())
    assert doc["assessment_check"]["on_record"] is False
    secret = tmp_path / "passphrase"
    secret.write_text(PASSPHRASE)
    secret.chmod(0o600)
    _eval_finish(tmp_path, ws, 0.91, root="lfw-again", passphrase_file=secret)
    with open_sf(ws) as sf:
        doc = json.loads(Path(sf.report(tmp_path / "r2")["json"]).read_text())
    assert doc["assessment_check"]["on_record"] is True
    assert doc["assessment_check"]["provenance"].startswith("written by `safeface eval --workspace`")
