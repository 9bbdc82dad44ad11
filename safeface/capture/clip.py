"""A short clip for a liveness check, decoded in memory: a video file or its bytes, a folder of
frames, or a sequence of RGB arrays. Nothing is written anywhere; the clip's SHA-256 (of the file,
or of the frames' pixels) binds the evidence to exactly what was checked."""

from __future__ import annotations

import hashlib
import io
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence, Union, cast

import numpy as np

from ..errors import ImageError, InvalidArgument
from ..imageio import load_image, load_image_hashed
from ..regularfile import read_regular
from ..videoio import open_video

ClipInput = Union[str, "os.PathLike[str]", bytes, Sequence[np.ndarray]]

MAX_SECONDS = 5.0  # a check takes 1-3 s; a little slack for the recorder
MAX_BYTES = 64 * 1024 * 1024
MAX_WIDTH = 640  # frames are reduced to this width: landmarks need no more
MAX_HEIGHT = 960  # and to this height (a portrait phone clip, 9:16, keeps 540 x 960)
# A video clip's frames are decoded whole before they are reduced: at most a 4K frame (DCI's
# 4096 x 2160, either way up). A few kilobytes can claim 16384 x 16384, 400 MB a frame decoded.
MAX_CLIP_FRAME_PIXELS = 4096 * 2160
KEEP_FPS = 60.0  # frames closer together than this are not kept (and frames are declared at most this rate)
MAX_DECODED = int(MAX_SECONDS * 240)  # frames decoded at most, kept or not: a 240 fps clip's 5 s
FRAME_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
BURST_FPS = 10.0  # a folder or list of frames without timing is taken as a 10 fps burst


@dataclass(frozen=True)
class Clip:
    frames: tuple[np.ndarray, ...] = field(repr=False)  # RGB uint8, at most MAX_WIDTH wide
    times: tuple[float, ...]  # seconds from the first frame
    sha256: str

    @property
    def duration(self) -> float:
        return self.times[-1] - self.times[0] if len(self.times) > 1 else 0.0


def _fitted(w: int, h: int) -> tuple[int, int]:
    """The size a w x h frame is reduced to (never enlarged)."""
    scale = min(1.0, MAX_WIDTH / max(w, 1), MAX_HEIGHT / max(h, 1))
    return max(1, int(round(w * scale))), max(1, int(round(h * scale)))


def _shrink(frame: np.ndarray) -> np.ndarray:
    h, w = frame.shape[:2]
    nw, nh = _fitted(w, h)
    if (nw, nh) == (w, h):
        return np.ascontiguousarray(frame)
    import cv2

    return cast(np.ndarray, cv2.resize(frame, (nw, nh), interpolation=cv2.INTER_AREA))


def _decode_video(data: bytes, label: str) -> tuple[list[np.ndarray], list[float]]:
    """The frames at most KEEP_FPS apart in time, each reduced in the decoder (a huge frame is
    never held whole), with their times. The container's times are not trusted to bound the
    work: frames are counted too, and a frame not later than the one kept before is skipped."""
    import av

    frames: list[np.ndarray] = []
    times: list[float] = []
    try:
        with open_video(io.BytesIO(data), label, MAX_CLIP_FRAME_PIXELS) as container:
            stream = container.streams.video[0]
            w, h = int(stream.codec_context.width), int(stream.codec_context.height)
            if w * h > MAX_CLIP_FRAME_PIXELS:
                raise InvalidArgument(f"{label} has frames of {w}x{h} pixels; a liveness check takes frames of at "
                                      f"most {MAX_CLIP_FRAME_PIXELS} pixels (4K). Record the clip at 1080p or less.")
            base = None
            for n, frame in enumerate(container.decode(stream)):
                if n >= MAX_DECODED:
                    raise InvalidArgument(f"{label} holds more than {MAX_DECODED} frames; a liveness check takes a "
                                          "1-3 s clip.")
                t = float(frame.time) if frame.time is not None else n / float(stream.average_rate or 30)
                base = t if base is None else base
                if t - base > MAX_SECONDS:
                    raise InvalidArgument(f"{label} is longer than {MAX_SECONDS:g} s; a liveness check takes a "
                                          "1-3 s clip.")
                if times and t - base < times[-1] + 1.0 / KEEP_FPS:
                    continue
                w, h = _fitted(frame.width, frame.height)
                frames.append(np.ascontiguousarray(frame.reformat(width=w, height=h, format="rgb24").to_ndarray()))
                times.append(t - base)
    except InvalidArgument:
        raise
    except (av.error.FFmpegError, IndexError, ValueError) as exc:  # type: ignore[attr-defined,unused-ignore]
        raise ImageError(f"{label} is not a readable video ({type(exc).__name__}; frames much larger than its "
                         "header says are refused undecoded).") from None
    return frames, times


def read_clip(source: Any, fps: float = BURST_FPS) -> Clip:
    """Decode a clip. `fps` times a folder or a list of frames (a video carries its own timing),
    at most KEEP_FPS, the most frames a second a video keeps: every frame given is followed, at
    any rate declared (track.py). Raises ImageError when unreadable, InvalidArgument when too
    long or empty."""
    if not (isinstance(fps, (int, float)) and not isinstance(fps, bool) and 1 <= fps <= KEEP_FPS):
        raise InvalidArgument(f"fps must be between 1 and {KEEP_FPS:g} (the most frames a second a clip keeps), "
                              f"got {fps!r}.")
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if path.is_dir():
            files = sorted(p for p in path.iterdir() if p.suffix.lower() in FRAME_SUFFIXES)
            if len(files) > MAX_SECONDS * fps + 1:
                raise InvalidArgument(f"{path} holds {len(files)} frames; a liveness check takes a 1-3 s burst.")
            h = hashlib.sha256()
            arrays = []
            for p in files:
                # Through the image reader: a FIFO, a device or a link to one named 0.jpg is
                # refused unread, and no frame is read past the image size limit.
                digest, image = load_image_hashed(p)
                h.update(bytes.fromhex(digest))
                arrays.append(_shrink(image))
            return _clip(arrays, [i / fps for i in range(len(arrays))], h.hexdigest(), str(path))
        data = read_regular(path, str(path), MAX_BYTES)
        if len(data) > MAX_BYTES:
            raise InvalidArgument(f"{path} is larger than {MAX_BYTES // 2**20} MiB; a liveness check takes a 1-3 s clip.")
        frames, times = _decode_video(data, str(path))
        return _clip(frames, times, hashlib.sha256(data).hexdigest(), str(path))
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        if len(data) > MAX_BYTES:
            raise InvalidArgument(f"the clip is larger than {MAX_BYTES // 2**20} MiB.")
        frames, times = _decode_video(data, "the clip")
        return _clip(frames, times, hashlib.sha256(data).hexdigest(), "the clip")
    if isinstance(source, Sequence) and not isinstance(source, str):
        # Counted before any frame is decoded, as a folder's files are: 10,000 paths were each
        # read, decoded and kept before the count refused them.
        if len(source) > MAX_SECONDS * fps + 1:
            raise InvalidArgument(f"{len(source)} frames at {fps:g} fps is longer than {MAX_SECONDS:g} s; a liveness "
                                  "check takes a 1-3 s clip.")
        h = hashlib.sha256()
        arrays = []
        for a in source:
            img = load_image(a)
            # The frame's size with its pixels: the same bytes read at another size are another clip.
            h.update(hashlib.sha256(("%dx%dx%d:" % img.shape).encode() + img.tobytes()).digest())
            arrays.append(_shrink(img))
        return _clip(arrays, [i / fps for i in range(len(arrays))], h.hexdigest(), "the frames")
    raise InvalidArgument(f"a clip is a video path, its bytes, a folder of frames or a list of frames, not "
                          f"{type(source).__name__}.")


def _clip(frames: list[np.ndarray], times: list[float], digest: str, label: str) -> Clip:
    if len(frames) < 2:
        raise InvalidArgument(f"{label} holds {len(frames)} frame(s); a liveness check needs a 1-3 s clip.")
    # Points are followed from frame to frame: a clip whose frames change size cannot be judged.
    first = frames[0].shape[:2]
    changed = next((i for i, f in enumerate(frames) if f.shape[:2] != first), None)
    if changed is not None:
        raise InvalidArgument(f"frame {changed} of {label} is {frames[changed].shape[1]}x{frames[changed].shape[0]} "
                              f"but the first is {first[1]}x{first[0]}; record the clip at one resolution.")
    return Clip(tuple(frames), tuple(times), digest)
