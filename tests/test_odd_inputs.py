"""Inputs of odd size or shape through the public entry points give a result or a typed
SafeFaceError, never a crash (a signal), a hang or an untyped exception. Each case was found by
a hostile review: before its fix, dlib's MMOD corrupted the heap on a 500x1 image, a one-row
image turned a quarter reached dlib with strides it refused, a 1-pixel video and an audio-only
file raised IndexError, and a thin strip of 21 megapixels kept detection busy for minutes.

Every risky call runs in a child process (RLIMIT_AS 6 GiB, a wall-clock timeout), so a crash
fails the test instead of killing the run."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from fractions import Fraction
from pathlib import Path
from typing import Optional

import av
import numpy as np

from child_process import child_env
from video_fixtures import synthetic_video

_CHILD = r'''
import resource, sys, traceback
resource.setrlimit(resource.RLIMIT_AS, (6 << 30, 6 << 30))
from safeface.errors import SafeFaceError
try:
    exec(compile(sys.argv[1], "<case>", "exec"))
    print("RESULT OK", flush=True)
except SafeFaceError as e:
    print("RESULT TYPED", type(e).__name__, flush=True)
except BaseException as e:
    where = [f"{f.filename}:{f.lineno}" for f in traceback.extract_tb(e.__traceback__) if "safeface" in f.filename]
    print("RESULT UNTYPED", type(e).__module__ + "." + type(e).__name__, str(e)[:200].replace("\n", " "), where[-2:],
          flush=True)
'''


def _in_child(code: str, tmp_path: Path, timeout: float = 55) -> str:
    """'OK', 'TYPED <name>', 'UNTYPED ...', 'SIGNAL n' or 'HANG'."""
    try:
        p = subprocess.run([sys.executable, "-c", _CHILD, textwrap.dedent(code)], capture_output=True, text=True,
                           timeout=timeout, env=child_env(), cwd=str(tmp_path))
    except subprocess.TimeoutExpired:
        return f"HANG (still running after {timeout:g} s)"
    if p.returncode < 0:
        return f"SIGNAL {-p.returncode}: {p.stderr[-300:]}"
    lines = [ln for ln in p.stdout.splitlines() if ln.startswith("RESULT ")]
    return lines[-1][len("RESULT "):] if lines else f"rc={p.returncode}: {p.stderr[-500:]}"


def _no_crash(result: str) -> None:
    assert result == "OK" or result.startswith("TYPED "), (
        f"an odd-sized input must give a result or a SafeFaceError with a sentence to act on; got {result}")


def _video(path: Path, w: int, h: int, n: int = 3, codec: str = "libx264", pix_fmt: str = "yuv420p",
           rotation: Optional[int] = None) -> Path:
    rng = np.random.default_rng(0)
    return synthetic_video(path, w, h, frames=n, frame=lambda i: rng.integers(0, 256, (h, w, 3), dtype=np.uint8),
                           codec=codec, pix_fmt=pix_fmt, rotation=rotation)


def _audio_only(path: Path) -> Path:
    with av.open(str(path), "w") as out:
        a = out.add_stream("aac", rate=44100)
        a.layout = "mono"
        for k in range(0, 44100, 1024):
            af = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
            af.sample_rate, af.pts, af.time_base = 44100, k, Fraction(1, 44100)
            for p in a.encode(af):
                out.mux(p)
        for p in a.encode(None):
            out.mux(p)
    return path


# -- dlib's MMOD (detector="mmod") on thin or tiny pixels: SIGSEGV / SIGABRT / SIGBUS -----------

def test_mmod_anonymize_thin_image_does_not_crash(tmp_path: Path) -> None:
    """anonymize_image(500x1 px, detector="mmod"): dlib's cnn_face_detection_model_v1 corrupts the
    heap (SIGSEGV, or glibc's abort 'corrupted size vs. prev_size') on an image a few px wide."""
    _no_crash(_in_child("""
        import numpy as np
        from safeface.anonymize import anonymize_image
        anonymize_image(np.zeros((500, 1, 3), np.uint8), detector="mmod")
    """, tmp_path))


def test_mmod_anonymize_tiny_image_is_typed(tmp_path: Path) -> None:
    """anonymize_image(2x2 px, detector="mmod"): dlib's RuntimeError ('Filter window ...') escapes."""
    _no_crash(_in_child("""
        import numpy as np
        from safeface.anonymize import anonymize_image
        anonymize_image(np.zeros((2, 2, 3), np.uint8), detector="mmod")
    """, tmp_path))


def test_mmod_anonymize_tiny_video_does_not_crash(tmp_path: Path) -> None:
    """A 2x2 H.264 MP4 anonymized with --detector mmod: SIGBUS or an untyped dlib RuntimeError (varies by
    run); 2x200: SIGSEGV."""
    src = _video(tmp_path / "tiny.mp4", 2, 2)
    _no_crash(_in_child(f"""
        from safeface.anonymize import anonymize_file, VideoOptions
        anonymize_file({str(src)!r}, {str(tmp_path / 'out.mp4')!r}, detector="mmod",
                       video=VideoOptions(progress=False))
    """, tmp_path))


# -- arrays whose size-1 axis has an odd stride (C-contiguous to NumPy, not to dlib) -----------

def test_anonymize_transposed_single_row_is_typed(tmp_path: Path) -> None:
    """A (500, 1, 3) view of a one-row image (np.transpose / np.rot90) passes np.ascontiguousarray
    unchanged (a size-1 axis's stride is ignored by NumPy), and dlib raises an untyped RuntimeError:
    'The stride of the 2nd dimension (the columns dimension) of the numpy array must be 3'."""
    _no_crash(_in_child("""
        import numpy as np
        from safeface.anonymize import anonymize_image
        anonymize_image(np.zeros((1, 500, 3), np.uint8).transpose(1, 0, 2))
    """, tmp_path))


def test_anonymize_one_row_photo_views_are_typed(tmp_path: Path) -> None:
    """A plain 1x500 photo: its quarter-turned view (views.py, np.rot90 k=3) hits the same dlib
    stride RuntimeError (with the masked search off, which otherwise fails first, typed)."""
    _no_crash(_in_child("""
        import numpy as np
        from safeface.anonymize import anonymize_image, FaceFinder
        anonymize_image(np.zeros((1, 500, 3), np.uint8), finder=FaceFinder("hog", masked=False))
    """, tmp_path))


def test_liveness_transposed_frames_are_typed(tmp_path: Path) -> None:
    """check_liveness on a list of (30, 1, 3) transposed frames: the same dlib RuntimeError."""
    _no_crash(_in_child("""
        import numpy as np
        from safeface.capture.liveness import check_liveness
        rng = np.random.default_rng(0)
        check_liveness([rng.integers(0, 256, (1, 30, 3), dtype=np.uint8).transpose(1, 0, 2) for _ in range(12)])
    """, tmp_path))


def test_anonymize_video_1px_turned_quarter_is_typed(tmp_path: Path) -> None:
    """A 200x1 raw video with a -90 degree display matrix: the turned frame is a (200, 1, 3) view and
    DetectionEngine's np.ascontiguousarray leaves its stride: dlib's RuntimeError escapes."""
    src = _video(tmp_path / "turned.mov", 200, 1, codec="rawvideo", pix_fmt="bgr24", rotation=-90)
    _no_crash(_in_child(f"""
        from safeface.anonymize import anonymize_file, VideoOptions
        anonymize_file({str(src)!r}, {str(tmp_path / 'out.mov')!r}, video=VideoOptions(progress=False))
    """, tmp_path))


# -- video frames one pixel wide or high --------------------------------------------------------

def test_anonymize_video_one_pixel_wide_is_typed(tmp_path: Path) -> None:
    """A 1x200 raw AVI: the encoder's even size is 0x200, and av.VideoFrame.from_ndarray of the
    empty slice raises an untyped IndexError (anonymize/video.py, emit)."""
    src = _video(tmp_path / "thin.avi", 1, 200, codec="rawvideo", pix_fmt="bgr24")
    _no_crash(_in_child(f"""
        from safeface.anonymize import anonymize_file, VideoOptions
        anonymize_file({str(src)!r}, {str(tmp_path / 'out.avi')!r}, video=VideoOptions(progress=False))
    """, tmp_path))


def test_track_video_one_pixel_high_is_typed(tmp_path: Path) -> None:
    """track_video (motion detector, the default) on a 200x1 AVI: MotionDetector's
    cv2.resize(rgb, (w // 2, h // 2)) raises cv2.error ('inv_scale_x > 0') untyped."""
    src = _video(tmp_path / "flat.avi", 200, 1, codec="rawvideo", pix_fmt="bgr24")
    _no_crash(_in_child(f"""
        from safeface.tracking import track_video
        track_video({str(src)!r}, {str(tmp_path / 'out.avi')!r})
    """, tmp_path))


# -- a file with no video stream ----------------------------------------------------------------

def test_anonymize_audio_only_mp4_is_typed(tmp_path: Path) -> None:
    """An AAC-only .mp4: _display_turn's probe.decode(video=0) raises IndexError before the
    'holds no video stream' check is reached."""
    src = _audio_only(tmp_path / "sound.mp4")
    _no_crash(_in_child(f"""
        from safeface.anonymize import anonymize_file, VideoOptions
        anonymize_file({str(src)!r}, {str(tmp_path / 'out.mp4')!r}, video=VideoOptions(progress=False))
    """, tmp_path))


def test_detectable_frames_audio_only_is_typed(tmp_path: Path) -> None:
    """detectable_frames on an AAC-only .mp4: c.decode(video=0) raises IndexError (not caught)."""
    src = _audio_only(tmp_path / "sound.mp4")
    _no_crash(_in_child(f"""
        from pathlib import Path
        from safeface.anonymize import detectable_frames, Search
        detectable_frames(Path({str(src)!r}), Search())
    """, tmp_path))


def test_cli_anonymize_audio_only_exits_cleanly(tmp_path: Path) -> None:
    """`safeface anonymize sound.mp4 out.mp4` ends in a traceback (exit 1 from the interpreter, not
    the CLI's 'safeface: error: ...' line)."""
    src = _audio_only(tmp_path / "sound.mp4")
    p = subprocess.run([sys.executable, "-m", "safeface.cli", "anonymize", str(src), str(tmp_path / "out.mp4")],
                       capture_output=True, text=True, timeout=55, env=child_env(), cwd=str(tmp_path))
    assert "Traceback" not in p.stderr and "safeface: error:" in p.stderr, p.stderr[-800:]


# -- a thin strip of allowed size: minutes in a pure-Python NMS ----------------------------------

def test_pipeline_detect_thin_strip_finishes(tmp_path: Path) -> None:
    """A 21x1,000,000 black image (21 megapixels, under the 50-megapixel limit; a few KB as a PNG):
    Pipeline.detect (the SDK's enroll/verify/identify path, ONNX engine) spends minutes in
    mmod_decode.decode's quadratic non-maximum suppression of weak (-1.0) MMOD windows."""
    _no_crash(_in_child("""
        import numpy as np
        from safeface.hazmat.vision import Pipeline, get_engine
        Pipeline(get_engine("onnx")).detect(np.zeros((1_000_000, 21, 3), np.uint8), count_all=True)
    """, tmp_path, timeout=50))


# -- an ndarray subclass ---------------------------------------------------------------------------

def test_load_image_matrix_is_typed(tmp_path: Path) -> None:
    """np.matrix is an ndarray: load_image's out[:, :, None] raises ValueError('shape too large to
    be a matrix')."""
    _no_crash(_in_child("""
        import numpy as np
        from safeface.imageio import load_image
        load_image(np.matrix(np.zeros((10, 10), np.uint8)))
    """, tmp_path))
