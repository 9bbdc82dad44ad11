"""Exit codes and messages of the track, eval and models commands on wrong input."""

from __future__ import annotations

from pathlib import Path

import pytest
from datasets_path import datasets
from input_file_support import fifo_at, sparse_file

from safeface.cli import main
from tests.test_packs import fake_arcface, fake_scrfd, run_cli

PAIRS = datasets() / "lfw-dev" / "pairsDevTest.txt"
LFW_ROOT = datasets() / "lfw-dev"


@pytest.fixture(autouse=True)
def _home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SAFEFACE_HOME", str(tmp_path / "home"))


def test_track_search_refuses_a_bad_description_before_reading_the_video(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A description outside the vocabulary is refused before the video is opened."""
    video = tmp_path / "not-a-video.mp4"
    video.write_bytes(b"this is not a video at all")
    assert main(["track", "search", str(video), "--describe", "blue eyes"]) == 1
    err = capsys.readouterr().err
    assert "eyes" in err and str(video) not in err


@pytest.mark.parametrize("argv", [
    ["track", "search", "a.mp4", "b.mp4", "--describe", "blue trousers"],
    ["track", "a.mp4", "b.mp4", "c.mp4"],
])
def test_track_with_the_wrong_number_of_paths_is_a_usage_error(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, argv: list[str]) -> None:
    """Extra paths are a usage error, not a run on the first ones (no output written)."""
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 1
    assert "usage: safeface track" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == [tmp_path / "home"] or list(tmp_path.iterdir()) == []


def test_track_in_a_workspace_needs_a_purpose_before_the_workspace_is_opened(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`track --workspace` without --purpose is refused with a message naming --purpose."""
    video = tmp_path / "v.mp4"
    video.write_bytes(b"x")
    code = main(["track", str(video), str(tmp_path / "out.mp4"), "--workspace", str(tmp_path / "no-such-ws")])
    assert code == 1 and "--purpose" in capsys.readouterr().err
    assert not (tmp_path / "out.mp4").exists()


@pytest.mark.skipif(not PAIRS.is_file(), reason="LFW dev pairs not found")
def test_eval_refuses_a_negative_jitter(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--jitter below 0 is refused before anything is embedded or written."""
    out = tmp_path / "report"
    argv = ["eval", "verify", "--pairs", str(PAIRS), "--root", str(LFW_ROOT), "--out", str(out),
            "--no-flip", "--no-progress", "--limit", "2", "--jitter", "-1"]
    assert main(argv) == 1
    assert "--jitter must be >= 0 and --limit >= 1" in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.parametrize("option", ["--pairs", "--groups"])
def test_eval_reads_a_list_it_is_given_only_as_a_bounded_regular_file(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], option: str) -> None:
    """`eval verify --pairs` and `eval demographics --groups` waited for ever on a FIFO and read a
    device or a huge file whole: each is an error (exit 1) naming the file, before any image is
    read or anything written."""
    out = tmp_path / "report"
    pairs = tmp_path / "pairs.txt"
    pairs.write_text("1 1\n")

    def command(path: Path) -> list[str]:
        if option == "--pairs":
            return ["eval", "verify", "--pairs", str(path), "--root", str(tmp_path), "--out", str(out)]
        return ["eval", "demographics", "--groups", str(path), "--pairs", str(pairs), "--root", str(tmp_path),
                "--out", str(out)]

    with fifo_at(tmp_path / "pipe") as fifo:
        code = main(command(fifo))
    err = capsys.readouterr().err
    assert code == 1 and "not a regular file" in err and str(fifo) in err, err
    huge = sparse_file(tmp_path / "huge.txt", 65 << 20)
    code = main(command(huge))
    err = capsys.readouterr().err
    assert code == 1 and "larger than" in err and str(huge) in err, err
    assert not out.exists()


def test_models_verify_without_json_exits_4_on_an_altered_file(tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    """`models verify` (plain text) exits 4 and names the pack when an installed file fails its
    hash."""
    det, rec = tmp_path / "d.onnx", tmp_path / "r.onnx"
    det.write_bytes(fake_scrfd())
    rec.write_bytes(fake_arcface())
    dest = tmp_path / "packs"
    assert run_cli(["models", "add-custom", "--detector", str(det), "--recognizer", str(rec),
                    "--dest", str(dest), "--name", "mine"]) == 0
    assert run_cli(["models", "verify", "--dest", str(dest)]) == 0
    capsys.readouterr()
    victim = next(p for p in (dest / "mine").iterdir() if p.suffix == ".onnx")
    victim.write_bytes(b"swapped")
    assert run_cli(["models", "verify", "--dest", str(dest)]) == 4
    out = capsys.readouterr()
    assert "failed verification" in out.err and "mine" in out.err
