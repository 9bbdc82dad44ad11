"""deployment.json edited by hand into settings the code cannot use (a matching section that is
no object, a name no setting reads, a number too large for a float): each is a ConfigError naming
it, so processing stops while erasure, the report and `safeface assess` go on (README, "Erasure,
revocation, purging and reports work even when the deployment may not process")."""

from __future__ import annotations

import datetime as dt
import json
import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from policy_support import PASSPHRASE, consent, demo_deployment, images, make_workspace, open_sf  # noqa: E402

from safeface import ConfigError, PolicyViolation  # noqa: E402
from safeface.policy.deployment import Deployment  # noqa: E402
from safeface.workspace.admin import record_assessment  # noqa: E402


def _write(path: Path, edit: Any) -> str:
    text = path.read_text()
    raw = json.loads(text)
    edit(raw)
    path.write_text(json.dumps(raw, indent=2))
    return text


@pytest.mark.parametrize("matching", ["strict", [{"threshold": 0.99}], 1, True])
def test_a_matching_section_that_is_no_object_stops_processing_but_not_erasure(tmp_path: Path,
                                                                                  matching: Any) -> None:
    """An operator writes "matching": "strict" by hand: it raised a bare AttributeError at every
    load, so an open workspace refused alice's erasure as a backend error. It is a ConfigError."""
    imgs = images()
    ws = make_workspace(tmp_path / "ws")
    with open_sf(ws) as sf:
        t = consent(ws, "alice")
        sf.enroll(imgs / "obama.jpg", "alice", "demo", t)
        _write(ws.config, lambda raw: raw.update(matching=matching))
        with pytest.raises(ConfigError, match="matching"):
            sf.verify(imgs / "obama2.jpg", "alice", "demo", t)
        assert sf.erase("alice").templates_removed == 1
    with pytest.raises(ConfigError, match="matching"):
        open_sf(ws)


def test_a_threshold_too_large_for_a_float_is_a_config_error() -> None:
    """A threshold written as a 400-digit whole number: reading it raised a bare OverflowError,
    which crashed the validation `safeface assess` and the report run. A ConfigError names it."""
    big = "1" + "0" * 400
    dep = demo_deployment(dt.date.today())
    text = json.dumps(dep.raw).replace('"threshold": null', f'"threshold": {big}', 1)
    assert big in text
    bad = Deployment.load_bytes(text.encode(), Path("deployment.json"))
    with pytest.raises(ConfigError, match="matching.threshold"):
        bad.match_threshold
    assert any("matching.threshold" in f.message for f in bad.problems(dt.date.today()))


def test_a_threshold_too_large_for_a_float_does_not_stop_the_report(tmp_path: Path) -> None:
    """The same threshold written into an open workspace: the compliance report, which must be
    written whatever the deployment says, crashed on it."""
    ws = make_workspace(tmp_path / "ws")
    with open_sf(ws) as sf:
        text = ws.config.read_text().replace('"threshold": null', '"threshold": 1' + "0" * 400, 1)
        ws.config.write_text(text)
        sf.report(tmp_path / "report")


@pytest.mark.parametrize("key", ["thresh\u043eld", "threshold ", "masked_treshold", "Threshold"])
def test_a_matching_setting_the_code_does_not_read_is_refused(key: str) -> None:
    """An operator writes "threshоld": 0.99 (a Cyrillic о) or a misspelt masked_threshold: a
    reviewer of deployment.json reads a strict bar while the default 0.91 applies, as with a
    name written twice. A name the matching section does not know is a ConfigError."""
    with pytest.raises(ConfigError, match="matching"):
        demo_deployment(dt.date.today(), edit=lambda raw: raw["matching"].update({key: 0.99}))


@pytest.mark.parametrize("edit", [
    lambda raw: raw["purposes"]["demo"].update(retention_days=10 ** 400),
    lambda raw: raw["purposes"]["demo"].update(capture_quality="required", quality={"min_eye_distance": 10 ** 400}),
    lambda raw: raw["filing"].update(threshold=10 ** 400),
], ids=["retention", "quality-floor", "filing"])
def test_a_400_digit_number_written_into_an_open_workspace_stops_processing_but_not_erasure(
        tmp_path: Path, edit: Any) -> None:
    """Someone who can write deployment.json sets a retention, a quality floor or the filing
    threshold to a 400-digit number: each raised a bare OverflowError at the next load, so an
    open workspace refused alice's erasure. Processing stops; her erasure goes on."""
    imgs = images()
    ws = make_workspace(tmp_path / "ws")
    with open_sf(ws) as sf:
        t = consent(ws, "alice")
        sf.enroll(imgs / "obama.jpg", "alice", "demo", t)
        _write(ws.config, edit)
        with pytest.raises((ConfigError, PolicyViolation)):
            sf.verify(imgs / "obama2.jpg", "alice", "demo", t)
        assert sf.erase("alice").templates_removed == 1


def _at_depth(frames: int, call: Any) -> Any:
    """`call()` from `frames` frames deeper than here: a caller further down its stack."""
    return call() if frames == 0 else _at_depth(frames - 1, call)


def test_a_deployment_nested_deep_is_refused_whatever_the_callers_depth(tmp_path: Path) -> None:
    """How deep deployment.json could nest was Python's stack: notes nested 700 deep loaded from a
    shallow caller and were a ConfigError from one a few hundred frames deeper, so one file could
    let a call in and stop the next. Deeper than any deployment is refused from any depth."""
    raw = json.loads(demo_deployment(dt.date(2026, 6, 1)).text())
    raw["notes"] = [[[{"a": [1]}]]]
    shallow = json.dumps(raw).encode()
    assert Deployment.load_bytes(shallow, tmp_path / "deployment.json").deployment_id
    deep = shallow[:-1] + b', "deep": ' + b"[" * 700 + b"]" * 700 + b"}"
    for frames in (0, 250):
        with pytest.raises(ConfigError, match="nested deeper than any deployment"):
            _at_depth(frames, lambda: Deployment.load_bytes(deep, tmp_path / "deployment.json"))
