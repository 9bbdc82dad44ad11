"""The `safeface` command's recognition subcommands, run as a user runs them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from safeface.cli import main


def test_detect_t1_json(datasets: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["detect", str(datasets / "insightface" / "t1.jpg"), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert len(out["faces"]) == 6
    for f in out["faces"]:
        x1, y1, x2, y2 = f["box"]
        assert x2 > x1 and y2 > y1
        assert len(f["landmarks"]) == 5 and all(len(p) == 2 for p in f["landmarks"])
        assert isinstance(f["score"], float)


@pytest.mark.slow
def test_compare_same_and_different(fr_images: Path, capsys: pytest.CaptureFixture[str]) -> None:
    t = fr_images / "test_images"
    assert main(["compare", str(t / "obama.jpg"), str(t / "obama2.jpg"), "--json"]) == 0
    same = json.loads(capsys.readouterr().out)
    assert same["same"] is True and same["score"] >= same["threshold"]
    assert main(["compare", str(t / "obama.jpg"), str(t / "biden.jpg"), "--json"]) == 0
    diff = json.loads(capsys.readouterr().out)
    assert diff["same"] is False and diff["score"] < diff["threshold"]


@pytest.mark.slow
def test_embed_writes_rows_in_order_with_nan_for_no_face(
    fr_images: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from PIL import Image

    blank = tmp_path / "blank.png"
    Image.fromarray(np.full((100, 100, 3), 200, dtype=np.uint8)).save(blank)
    out = tmp_path / "e.npy"
    t = fr_images / "test_images"
    code = main(["embed", str(t / "obama.jpg"), str(blank), str(t / "biden.jpg"), "--out", str(out), "--detector", "hog"])
    assert code == 0
    arr = np.load(out, allow_pickle=False)
    assert arr.shape == (3, 128) and arr.dtype == np.float32
    assert np.isnan(arr[1]).all() and not np.isnan(arr[0]).any() and not np.isnan(arr[2]).any()
    assert abs(float(np.linalg.norm(arr[0])) - 1) < 1e-5
    assert "1 with no face" in capsys.readouterr().err


@pytest.mark.slow
def test_usage_and_error_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["detect"])
    assert exc.value.code == 2
    with pytest.raises(SystemExit) as exc:
        main(["no-such-command"])
    assert exc.value.code == 2
    assert main(["detect", str(tmp_path / "missing.jpg")]) == 1
    assert "no such file" in capsys.readouterr().err
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0garbage")
    assert main(["detect", str(bad), "--json"]) == 1
    assert main([]) == 2


@pytest.mark.slow
def test_compare_without_face_is_an_error(fr_images: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from PIL import Image

    blank = tmp_path / "blank.png"
    Image.fromarray(np.full((80, 80, 3), 10, dtype=np.uint8)).save(blank)
    code = main(["compare", str(fr_images / "test_images" / "obama.jpg"), str(blank), "--detector", "hog"])
    assert code == 1
    assert "no face found" in capsys.readouterr().err


@pytest.mark.slow
def test_demo_runs(capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("insightface", reason="the demo's sample images come with insightface (safeface[cpu])")
    assert main(["demo"]) == 0
    out = capsys.readouterr().out
    assert "6 faces in t1.jpg" in out
    assert "-> same" in out and "no match" in out
