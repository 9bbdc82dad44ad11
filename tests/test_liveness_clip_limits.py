"""Clip decoding limits (capture/clip.py): rates, lengths and the digest that binds evidence to a clip."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from safeface.capture.clip import MAX_SECONDS, read_clip
from safeface.errors import InvalidArgument
from tests.test_liveness import _video


@pytest.mark.parametrize("fps", [0, 0.5, -10])
def test_a_declared_rate_under_one_frame_a_second_is_refused(fps: float) -> None:
    """A list of frames declared at under 1 fps is refused with a typed error, never a crash or a
    slowed clock."""
    frames = [np.zeros((48, 64, 3), np.uint8)] * 3
    with pytest.raises(InvalidArgument, match="between 1 and 60"):
        read_clip(frames, fps)


def test_a_list_of_frames_longer_than_five_seconds_is_refused() -> None:
    """52 frames at 10 fps is over 5 s: refused, the 51 of exactly 5 s are taken."""
    frame = np.zeros((48, 64, 3), np.uint8)
    assert len(read_clip([frame] * int(MAX_SECONDS * 10 + 1), 10).frames) == 51
    with pytest.raises(InvalidArgument, match="longer than 5 s"):
        read_clip([frame] * 52, 10)


def test_a_folder_of_frames_longer_than_five_seconds_is_refused(tmp_path: Path) -> None:
    """A folder of 52 frames read at 10 fps is over 5 s: refused by its count."""
    for i in range(52):
        Image.fromarray(np.full((8, 8, 3), i, np.uint8)).save(tmp_path / f"{i:03d}.png")
    with pytest.raises(InvalidArgument, match="holds 52 frames"):
        read_clip(tmp_path, 10)


def test_a_video_longer_than_five_seconds_is_refused() -> None:
    """A 6 s video (60 frames at 10 fps, well under the frame count limit) is refused by its
    duration."""
    with pytest.raises(InvalidArgument, match="longer than 5 s"):
        read_clip(_video(64, 48, 60, 10, seed=0))
    assert len(read_clip(_video(64, 48, 30, 10, seed=0)).frames) == 30


def test_a_videos_digest_is_that_of_all_its_bytes() -> None:
    """The evidence names a video by the SHA-256 of its whole bytes: two clips alike at the start
    differ."""
    a, b = _video(64, 48, 12, 10, seed=1), _video(64, 48, 12, 10, seed=2)
    ca, cb = read_clip(a), read_clip(b)
    assert ca.sha256 == hashlib.sha256(a).hexdigest()
    assert cb.sha256 == hashlib.sha256(b).hexdigest() and ca.sha256 != cb.sha256


def test_the_same_bytes_read_at_another_size_are_another_clip() -> None:
    """A frame list's digest names each frame's size with its pixels: 64x48 frames and the same
    bytes as 48x64 frames are two clips, so evidence bound to one never names the other."""
    a = np.random.default_rng(0).integers(0, 256, (48, 64, 3), dtype=np.uint8)
    b = a.reshape(64, 48, 3).copy()
    assert read_clip([a, a], 10).sha256 != read_clip([b, b], 10).sha256
    assert read_clip([a, a], 10).sha256 == read_clip([a.copy(), a.copy()], 10).sha256
