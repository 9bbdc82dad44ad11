"""`safeface liveness` and `safeface eval pad` from the command line."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from policy_support import PASSPHRASE, consent, images, make_workspace  # noqa: E402
from test_cli_policy import Cli  # noqa: E402

from safeface.evaluate.pad import waved_attack, write_clip  # noqa: E402
from safeface.imageio import load_image  # noqa: E402


@pytest.fixture()
def cli(capsys: Any) -> Cli:
    return Cli(capsys)


@pytest.fixture(scope="module")
def print_clip(tmp_path_factory: Any) -> Path:
    frames = waved_attack(load_image(images() / "obama.jpg"), "print", seed=4)[::2]
    return write_clip(frames, tmp_path_factory.mktemp("clips") / "print.mp4", fps=15)


def test_check_without_a_workspace_answers_in_json(cli: Cli, print_clip: Path) -> None:
    out, _ = cli("liveness", "check", print_clip, "--json")
    body = json.loads(out)
    assert set(body) >= {"live", "decision", "score", "checks"}
    assert body["live"] is False and body["decision"] in ("attack", "inconclusive") and body["score"] < 0.5
    assert "physics" in body["checks"] and "replay" in body["checks"] and "evidence" not in body
    cli("liveness", "check", print_clip, "--challenge", "x", code=1)  # a challenge needs its workspace


def test_challenge_then_check_in_a_workspace(tmp_path: Path, cli: Cli, print_clip: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SAFEFACE_PASSPHRASE", PASSPHRASE)
    ws = make_workspace(tmp_path / "ws", edit=lambda r: r["purposes"]["demo"].__setitem__("liveness", "required"))
    out, _ = cli("liveness", "challenge", ws.root, "--json")
    ch = json.loads(out)
    assert ch["steps"] and ch["expires_at"] > ch["issued_at"] and "turn your head" in ch["instruction"].lower()
    out, _ = cli("liveness", "check", ws.root, print_clip, f"--challenge={ch['challenge']}", "--json")
    body = json.loads(out)
    assert body["live"] is False and "evidence" not in body
    cli.refused("PA-01", "liveness", "check", ws.root, print_clip, f"--challenge={ch['challenge']}")
    cli("liveness", "check", ws.root, print_clip, code=1)  # no --challenge
    token = consent(ws, "alice")
    cli.refused("PA-01", "enroll", ws.root, images() / "obama.jpg", "--subject", "alice", "--purpose", "demo",
                "--consent", token)
    cli.refused("PA-01", "verify", ws.root, images() / "obama.jpg", "--subject", "alice", "--purpose", "demo",
                "--consent", token, "--liveness", "sflv1.forged.evidence")


def test_eval_pad_reports_apcer_and_bpcer(tmp_path: Path, cli: Cli, print_clip: Path) -> None:
    root = tmp_path / "pad"
    (root / "attack" / "print").mkdir(parents=True)
    (root / "live").mkdir()
    (root / "attack" / "print" / "a.mp4").write_bytes(print_clip.read_bytes())
    (root / "live" / "b.mp4").write_bytes(print_clip.read_bytes())  # a "live" clip that is a print
    out, _ = cli("eval", "pad", "--root", root, "--json")
    body = json.loads(out)
    assert body["apcer"] == {"print": 0.0} and body["bpcer"] == 1.0 and body["acer"] == 0.5
    assert Path(body["det_plot"]).is_file() and (root / "pad.json").is_file()
    cli("eval", "pad", "--root", tmp_path / "nothing", code=1)


@pytest.mark.slow
def test_check_without_a_workspace_takes_a_pinned_pad_model_that_can_veto(tmp_path: Path, cli: Cli) -> None:
    from test_liveness import _hamilton, _pad_onnx

    clip = write_clip(_hamilton(84), tmp_path / "live.mp4", fps=29.97)  # real head motion, one shot
    out, _ = cli("liveness", "check", clip, "--json")
    assert json.loads(out)["decision"] == "live"
    sha = _pad_onnx(tmp_path / "veto.onnx", -50.0)
    spec = tmp_path / "pad.json"
    spec.write_text(json.dumps({"file": "veto.onnx", "sha256": sha, "licence": "test-only", "input_size": 16}))
    out, _ = cli("liveness", "check", clip, "--pad-model", spec, "--json")
    body = json.loads(out)
    assert body["decision"] == "attack" and body["checks"]["pad_model"]["licence"] == "test-only"
    assert body["checks"]["pad_model"]["live_probability"] < 0.01
    # The model file swapped for another: it no longer matches its pin, and nothing is checked.
    _pad_onnx(tmp_path / "veto.onnx", 50.0)
    _, err = cli("liveness", "check", clip, "--pad-model", spec, "--json", code=1)
    assert "pinned SHA-256" in err
