"""Builds test videos from real photos with PyAV: faces pasted on a canvas that move a little
from frame to frame, with a sine-tone audio track."""

from __future__ import annotations

import struct
import subprocess
import sys
import textwrap
from fractions import Fraction
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import av
import numpy as np

from safeface.imageio import load_image


def build_face_video(path: Path, photos: Sequence[Path], frames: int, size: tuple[int, int] = (640, 480),
                     fps: int = 30, audio: bool = True, codec: str = "libx264", per_photo: int = 6,
                     metadata: Optional[dict[str, str]] = None, dim: Optional[int] = None,
                     paint: Optional[Callable[[np.ndarray, tuple[int, int, int, int]], np.ndarray]] = None) -> None:
    """`frames` frames of `size`; each photo is shown for `per_photo` frames, drifting 2 px per
    frame; with `audio`, a 440 Hz AAC (or MP3 in AVI) tone as long as the video. `dim`: every
    frame's values squeezed into 0..dim (an underexposed video). `paint(canvas, (x, y, w, h))`
    changes each frame last, given where its photo lies."""
    w, h = size
    faces = [load_image(p) for p in photos]
    with av.open(str(path), "w") as out:
        for key, value in (metadata or {}).items():
            out.metadata[key] = value
        vs = out.add_stream(codec, rate=fps)
        vs.width, vs.height, vs.pix_fmt = w, h, "yuv420p"
        sr = 44100
        as_ = out.add_stream("aac" if path.suffix != ".avi" else "libmp3lame", rate=sr) if audio else None
        if as_ is not None:
            as_.layout = "mono"
        for i in range(frames):
            canvas = np.full((h, w, 3), 90, np.uint8)
            canvas[:, :, 2] = 140
            img = faces[(i // per_photo) % len(faces)]
            ih, iw = img.shape[:2]
            x = min(w - iw, 40 + 2 * (i % per_photo) + (i // per_photo) % 3 * 120)
            y = min(h - ih, 60 + (i // per_photo) % 2 * 80)
            canvas[y:y + ih, x:x + iw] = img
            if dim is not None:
                canvas = (canvas.astype(np.uint16) * dim // 255).astype(np.uint8)
            if paint is not None:
                canvas = paint(canvas, (x, y, iw, ih))
            frame = av.VideoFrame.from_ndarray(canvas, format="rgb24")
            frame.pts = i
            frame.time_base = Fraction(1, fps)
            for p in vs.encode(frame):
                out.mux(p)
        for p in vs.encode(None):
            out.mux(p)
        if as_ is not None:
            samples = int(sr * frames / fps)
            t = np.arange(samples) / sr
            tone = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
            step = 1024
            for k in range(0, samples, step):
                chunk = tone[k:k + step]
                af = av.AudioFrame.from_ndarray(chunk[None, :], format="fltp", layout="mono")
                af.sample_rate = sr
                af.pts = k
                af.time_base = Fraction(1, sr)
                for p in as_.encode(af):
                    out.mux(p)
            for p in as_.encode(None):
                out.mux(p)


def cut(src: Path, dst: Path, start: int, count: int, metadata: Optional[dict[str, str]] = None) -> Path:
    """Frames [start, start + count) of `src` re-encoded as an MP4 at its frame rate."""
    with av.open(str(src)) as inp, av.open(str(dst), "w") as out:
        for k, v in (metadata or {}).items():
            out.metadata[k] = v
        vin = inp.streams.video[0]
        rate = vin.average_rate or Fraction(10)
        vs = out.add_stream("libx264", rate=rate)
        vs.width, vs.height, vs.pix_fmt = vin.codec_context.width, vin.codec_context.height, "yuv420p"
        for i, frame in enumerate(inp.decode(vin)):
            if i >= start + count:
                break
            if i >= start:
                f = av.VideoFrame.from_ndarray(frame.to_ndarray(format="rgb24"), format="rgb24")
                f.pts, f.time_base = i - start, Fraction(1) / Fraction(rate)
                for p in vs.encode(f):
                    out.mux(p)
        for p in vs.encode(None):
            out.mux(p)
    return dst


def reencode(src: Path, dst: Path, frames: Optional[int] = None, options: Optional[dict[str, str]] = None) -> None:
    """`src`'s video (its first `frames` frames) decoded and encoded again as H.264 at 30 fps,
    without audio: a real clip cut for a test or a bench, or the ceiling a transcoder can reach."""
    with av.open(str(src)) as inp, av.open(str(dst), "w") as out:
        vin = inp.streams.video[0]
        vs = out.add_stream("libx264", rate=30, options=options or {})
        vs.width, vs.height, vs.pix_fmt = vin.codec_context.width, vin.codec_context.height, "yuv420p"
        for i, frame in enumerate(inp.decode(vin)):
            if i == frames:
                break
            g = av.VideoFrame.from_ndarray(frame.to_ndarray(format="rgb24"), format="rgb24")
            g.pts, g.time_base = i, Fraction(1, 30)
            for packet in vs.encode(g):
                out.mux(packet)
        for packet in vs.encode(None):
            out.mux(packet)


def masked_performer_clip(out: Path) -> tuple[Path, int]:
    """Eight frames of one shot of the face_recognition library's Hamilton clip (frames 88-95,
    the performer facing the camera) with an N95 mask drawn on the performer's face from its
    landmarks, written to `out`; and the frame count. Skips the test where the clip is absent."""
    import pytest
    from datasets_path import datasets

    from safeface.evaluate.pad import write_clip
    from safeface.hazmat.vision import Pipeline, get_engine, pick_subject
    from safeface.hazmat.vision.masks import draw_mask

    clip = datasets() / "face_recognition" / "examples" / "short_hamilton_clip.mp4"
    if not clip.is_file():
        pytest.skip("the Hamilton example clip is absent")
    pipe = Pipeline(get_engine("onnx"))
    frames = []
    with av.open(str(clip)) as c:
        for i, f in zip(range(96), c.decode(video=0)):
            if i >= 88:
                rgb = f.to_ndarray(format="rgb24")
                face = pick_subject(pipe.detect(rgb), rgb.shape)
                assert face is not None
                frames.append(draw_mask(rgb, face.landmarks, face.box, "n95", seed=3))
    return write_clip(frames, out, fps=29.97), len(frames)


def synthetic_video(path: Path, width: int, height: int, frames: int = 3, rate: int = 10,
                    frame: Optional[Callable[[int], np.ndarray]] = None, codec: str = "libx264",
                    pix_fmt: str = "yuv420p", rotation: Optional[int] = None) -> Path:
    """`frames` frames of `width` x `height` at `rate` (frame(i), an RGB array, is frame i; flat
    grey 100 by default), with a display rotation when given; no audio."""
    with av.open(str(path), "w") as out:
        vs = out.add_stream(codec, rate=rate)
        vs.width, vs.height, vs.pix_fmt = width, height, pix_fmt
        if rotation is not None:
            vs.set_display_rotation(rotation)
        for i in range(frames):
            rgb = frame(i) if frame is not None else np.full((height, width, 3), 100, np.uint8)
            f = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format=pix_fmt)
            f.pts, f.time_base = i, Fraction(1, rate)
            for packet in vs.encode(f):
                out.mux(packet)
        for packet in vs.encode(None):
            out.mux(packet)
    return path


def spliced_video(path: Path, sizes: Sequence[tuple[int, int]], frames: Sequence[int], codec: str = "mpeg4",
                   container: str = "avi") -> Path:
    """One video stream whose header says sizes[0], made of len(sizes) encodings back to back,
    frames[i] flat frames of sizes[i] each, every one behind its own sequence header: the decoder
    switches size part way (a spliced clip), which no header check before decoding can see."""

    def packets(width: int, height: int, count: int) -> list[av.Packet]:
        enc = av.CodecContext.create(codec, "w")
        enc.width, enc.height, enc.pix_fmt, enc.time_base = width, height, "yuv420p", Fraction(1, 10)
        enc.open()
        got: list[av.Packet] = []
        for i in range(count):
            f = av.VideoFrame.from_ndarray(np.full((height, width, 3), 90, np.uint8), format="rgb24")
            f = f.reformat(format="yuv420p")
            f.pts = i
            got += enc.encode(f)
        return got + list(enc.encode(None))

    with av.open(str(path), "w", format=container) as out:
        vs = out.add_stream(codec, rate=10)
        vs.width, vs.height, vs.pix_fmt = sizes[0][0], sizes[0][1], "yuv420p"
        for i, p in enumerate(p for size, n in zip(sizes, frames) for p in packets(*size, n)):
            p.stream, p.pts, p.dts, p.time_base = vs, i, i, Fraction(1, 10)
            out.mux(p)
    return path


def header_lies_video(path: Path, claimed: tuple[int, int], real: tuple[int, int], small_frames: int = 2) -> Path:
    """A header (and first `small_frames` frames) of `claimed`, then one frame of `real` size."""
    return spliced_video(path, (claimed, real), (small_frames, 1))


def ten_black_frames(out: Any, vs: Any) -> None:
    """Ten black 64x64 frames on the video stream `vs` of `out`, flushed."""
    vs.width, vs.height, vs.pix_fmt = 64, 64, "yuv420p"
    for _ in range(10):
        for packet in vs.encode(av.VideoFrame.from_ndarray(np.zeros((64, 64, 3), np.uint8), format="rgb24")):
            out.mux(packet)
    for packet in vs.encode(None):
        out.mux(packet)


def tta_audio_video(path: Path, rate: float, channels: int) -> Path:
    """A Matroska file of ten 64x64 H.264 frames and a TTA audio track whose header is then
    edited to claim `rate` samples a second and `channels` channels: FFmpeg's TTA decoder sizes
    its buffer from those when it is opened, before any audio is read."""
    with av.open(str(path), "w", format="matroska") as out:
        vs = out.add_stream("libx264", rate=30)
        aus = out.add_stream("tta", rate=48000, layout="stereo")
        ten_black_frames(out, vs)
        size = aus.codec_context.frame_size or 1024
        for _ in range(3):
            frame = av.AudioFrame.from_ndarray(np.zeros((1, size * 2), np.int16), format="s16", layout="stereo")
            frame.sample_rate = 48000
            for packet in aus.encode(frame):
                out.mux(packet)
        for packet in aus.encode(None):
            out.mux(packet)
    data = bytearray(path.read_bytes())
    at = data.find(b"\xb5\x88")  # SamplingFrequency, an 8-byte float
    data[at + 2:at + 10] = struct.pack(">d", rate)
    at = data.find(b"\x9f\x81\x02")  # Channels, one byte: 2
    data[at + 2] = channels
    path.write_bytes(bytes(data))
    return path


def many_tracks_video(path: Path, tracks: int) -> Path:
    """A Matroska file of 30 64x64 H.264 frames and `tracks` short AAC audio tracks."""
    with av.open(str(path), "w", format="matroska") as out:
        vs = out.add_stream("libx264", rate=30)
        vs.width, vs.height, vs.pix_fmt = 64, 64, "yuv420p"
        audio = [out.add_stream("aac", rate=48000, layout="mono") for _ in range(tracks)]
        for i in range(30):
            for packet in vs.encode(av.VideoFrame.from_ndarray(np.full((64, 64, 3), i, np.uint8), format="rgb24")):
                out.mux(packet)
            for s in audio:
                frame = av.AudioFrame.from_ndarray(np.zeros((1, 1600), np.float32), format="fltp", layout="mono")
                frame.sample_rate, frame.pts = 48000, i * 1600
                for packet in s.encode(frame):
                    out.mux(packet)
        for s in [vs, *audio]:
            for packet in s.encode(None):
                out.mux(packet)
    return path


def _ebml_number(data: bytes, at: int, keep_marker: bool) -> tuple[int, int]:
    """An EBML variable-length number at `at`: (value, length); an element id keeps its marker bit."""
    length = next(n for n in range(1, 9) if data[at] & (0x80 >> (n - 1)))
    value = data[at] if keep_marker else data[at] & (0xFF >> length)
    for b in data[at + 1:at + length]:
        value = (value << 8) | b
    return value, length


def matroska_rewritten(data: bytes, fix: Callable[[int, bytes], bytes], start: int = 0,
                        end: Optional[int] = None) -> bytes:
    """`data` (Matroska) element by element, every leaf's value through `fix(id, value)`, every
    size written again (8 bytes): the Segment, Tracks and TrackEntry masters are rebuilt around
    what changed. Enough for FFmpeg's demuxer, which reads on when a seek entry is off."""
    masters = {0x18538067, 0x1654AE6B, 0xAE}
    out = bytearray()
    at, stop = start, len(data) if end is None else end
    while at < stop:
        eid, a = _ebml_number(data, at, keep_marker=True)
        size, b = _ebml_number(data, at + a, keep_marker=False)
        body = at + a + b
        value = (matroska_rewritten(data, fix, body, body + size) if eid in masters
                 else fix(eid, bytes(data[body:body + size])))
        out += data[at:at + a] + b"\x01" + len(value).to_bytes(7, "big") + value
        at = body + size
    return bytes(out)


def _black_with_quiet_tracks(path: Path, codec: str, tracks: int, samples: int) -> None:
    """A Matroska file of ten 64x64 H.264 frames and `tracks` stereo tracks in `codec`, each one
    frame of `samples` silent samples at 48 kHz."""
    with av.open(str(path), "w", format="matroska") as out:
        vs = out.add_stream("libx264", rate=30)
        audio = [out.add_stream(codec, rate=48000, layout="stereo") for _ in range(tracks)]
        ten_black_frames(out, vs)
        for s in audio:
            frame = av.AudioFrame.from_ndarray(np.zeros((2, samples), np.float32), format="fltp", layout="stereo")
            frame.sample_rate = 48000
            for packet in list(s.encode(frame)) + list(s.encode(None)):
                out.mux(packet)


def opus_channels_video(path: Path, tracks: int, channels: int = 255) -> Path:
    """A Matroska file of ten 64x64 H.264 frames and `tracks` Opus tracks whose headers
    (OpusHead, in CodecPrivate) claim `channels` channels in as many streams: FFmpeg's Opus
    decoder sets up every one of them when it is opened, about 50 MB a track at 255."""
    _black_with_quiet_tracks(path, "libopus", tracks, 960)
    head = (b"OpusHead" + struct.pack("<BBHIhB", 1, channels, 312, 48000, 0, 255) + bytes([channels, 0])
            + bytes(range(channels)))
    path.write_bytes(matroska_rewritten(path.read_bytes(), lambda eid, value: head if eid == 0x63A2
                                         and value.startswith(b"OpusHead") else value))
    return path


def long_silence_video(path: Path, seconds: float) -> Path:
    """A Matroska file of ten 64x64 H.264 frames (a third of a second) and a FLAC track of
    `seconds` of silence, a few bytes a frame."""
    with av.open(str(path), "w", format="matroska") as out:
        vs = out.add_stream("libx264", rate=30)
        aus = out.add_stream("flac", rate=48000, layout="stereo")
        ten_black_frames(out, vs)
        step = 4608
        for i in range(int(seconds * 48000) // step):
            frame = av.AudioFrame.from_ndarray(np.zeros((1, 2 * step), np.int16), format="s16", layout="stereo")
            frame.sample_rate, frame.pts = 48000, i * step
            for packet in aus.encode(frame):
                out.mux(packet)
        for packet in aus.encode(None):
            out.mux(packet)
    return path


def _usac_config(elements: int) -> bytes:
    """An AudioSpecificConfig of AAC USAC (object type 42, 48 kHz) naming `elements` single
    channel elements on as many output channels (ISO/IEC 23003-3's UsacConfig, bit by bit)."""
    bits: list[int] = []

    def put(value: int, width: int) -> None:
        bits.extend((value >> (width - 1 - i)) & 1 for i in range(width))

    def escaped(value: int, *widths: int) -> None:  # escapedValue(nBits1, nBits2, ...)
        for width in widths:
            top = (1 << width) - 1
            put(min(value, top), width)
            if value < top:
                return
            value -= top

    put(31, 5), put(42 - 32, 6), put(3, 4), put(0, 4)  # object type (escaped), 48 kHz, channel config 0
    put(3, 5), put(1, 3), put(0, 5)  # usacSamplingFrequencyIndex, coreSbrFrameLengthIndex, channel config 0
    escaped(elements, 5, 8, 16)
    for i in range(elements):
        put(i % 32, 5)  # bsOutputChannelPos
    escaped(elements - 1, 4, 8, 16)
    for _ in range(elements):
        put(0, 2), put(0, 1), put(0, 1)  # an SCE: usacElementType, tw_mdct, noiseFilling
    put(0, 1)  # no config extension
    bits.extend([0] * (-len(bits) % 8))
    return bytes(int("".join(map(str, bits[i:i + 8])), 2) for i in range(0, len(bits), 8))


def usac_audio_video(path: Path, tracks: int, elements: int = 64) -> Path:
    """A Matroska file of ten 64x64 H.264 frames and `tracks` AAC tracks whose configuration is
    AAC USAC with `elements` channel elements: FFmpeg's decoder sets up every one of them when
    it is opened, about 36 MB a track at 64."""
    _black_with_quiet_tracks(path, "aac", tracks, 1024)
    config = _usac_config(elements)
    # The AAC tracks' CodecPrivate, not the video's (an avcC record, which opens with version 1).
    path.write_bytes(matroska_rewritten(path.read_bytes(), lambda eid, value: config if eid == 0x63A2
                                        and value[:1] != b"\x01" else value))
    return path


def _xiph_split(private: bytes) -> list[bytes]:
    """The packets of a Xiph-laced CodecPrivate (Vorbis: identification, comment, setup)."""
    count, at, sizes = private[0] + 1, 1, []
    for _ in range(count - 1):
        size = 0
        while private[at] == 255:
            size, at = size + 255, at + 1
        size, at = size + private[at], at + 1
        sizes.append(size)
    packets, rest = [], private[at:]
    for size in sizes:
        packets.append(rest[:size])
        rest = rest[size:]
    return packets + [rest]


def _xiph_lace(size: int) -> bytes:
    return b"\xff" * (size // 255) + bytes([size % 255])


def tone_video(path: Path, codec: str, rate: int = 48000, channels: int = 2, frames: int = 20,
               fmt: Optional[str] = None, options: Optional[dict[str, str]] = None) -> Path:
    """Ten black 64x64 frames and `frames` frames of a 440 Hz tone in `codec` (container `fmt`,
    else the suffix's)."""
    layout = "mono" if channels == 1 else "stereo"
    with av.open(str(path), "w", format=fmt) as out:
        vs = out.add_stream("libx264" if path.suffix != ".avi" else "mpeg4", rate=10)
        aus = out.add_stream(codec, rate=rate, layout=layout)
        if options:
            aus.codec_context.options = options
        ten_black_frames(out, vs)
        size = aus.codec_context.frame_size or 1024
        for k in range(frames):  # PyAV converts the frames to the encoder's sample format
            t = (np.arange(size) + k * size) / rate
            tone = np.tile(0.3 * np.sin(2 * np.pi * 440 * t), (channels, 1)).astype(np.float32)
            frame = av.AudioFrame.from_ndarray(tone, format="fltp", layout=layout)
            frame.sample_rate, frame.pts = rate, k * size
            for packet in aus.encode(frame):
                out.mux(packet)
        for packet in aus.encode(None):
            out.mux(packet)
    return path


def codec_private_rewritten(path: Path, fix: Callable[[bytes], bytes]) -> Path:
    """The Matroska file `path` with its audio track's CodecPrivate through `fix` (the video's,
    an avcC record, opens with version 1 and is left as it is)."""
    path.write_bytes(matroska_rewritten(path.read_bytes(), lambda eid, value: fix(value) if eid == 0x63A2
                                        and value[:1] != b"\x01" else value))
    return path


def vorbis_tagged_video(path: Path, tags: Sequence[bytes]) -> Path:
    """A Matroska file of ten black frames and a Vorbis track whose comment header (in its
    CodecPrivate) holds `tags` (b"KEY=value", a picture as METADATA_BLOCK_PICTURE=base64)."""
    tone_video(path, "vorbis", 44100, options={"strict": "experimental"}, fmt="matroska")
    comment = b"\x03vorbis" + struct.pack("<I", 5) + b"forge" + struct.pack("<I", len(tags))
    comment += b"".join(struct.pack("<I", len(t)) + t for t in tags) + b"\x01"

    def fix(value: bytes) -> bytes:
        if b"vorbis" not in value[:40]:
            return value
        ident, _, setup = _xiph_split(value)
        return b"\x02" + _xiph_lace(len(ident)) + _xiph_lace(len(comment)) + ident + comment + setup

    return codec_private_rewritten(path, fix)


def flac_picture_block(jpeg: bytes, width: int, height: int) -> bytes:
    """A FLAC PICTURE block's body (also a Vorbis comment's METADATA_BLOCK_PICTURE): a front cover."""
    return (struct.pack(">II", 3, 10) + b"image/jpeg" + struct.pack(">I", 0)
            + struct.pack(">IIII", width, height, 24, 0) + struct.pack(">I", len(jpeg)) + jpeg)


def low_rate_pcm_video(path: Path, rate: int = 1, samples: int = 8000) -> Path:
    """A Matroska file of ten black frames and one PCM block of `samples` samples whose track
    claims `rate` samples a second: at 1 Hz, 8,000 "seconds" in 16 KB."""
    with av.open(str(path), "w", format="matroska") as out:
        vs = out.add_stream("libx264", rate=10)
        aus = out.add_stream("pcm_s16le", rate=rate, layout="mono")
        ten_black_frames(out, vs)
        frame = av.AudioFrame.from_ndarray(np.random.default_rng(0).integers(-3000, 3000, (1, samples))
                                           .astype(np.int16), format="s16", layout="mono")
        frame.sample_rate, frame.pts = rate, 0
        for packet in list(aus.encode(frame)) + list(aus.encode(None)):
            out.mux(packet)
    return path


def adpcm_rate_avi(path: Path, rate: int = 1) -> Path:
    """An AVI of ten black MPEG-4 frames and an MS-ADPCM track (8,192-byte blocks) whose
    WAVEFORMATEX then claims `rate` samples a second: 51 KB."""
    with av.open(str(path), "w", format="avi") as out:
        vs = out.add_stream("mpeg4", rate=10)
        aus = out.add_stream("adpcm_ms", rate=8000, layout="mono")
        aus.codec_context.options = {"block_size": "8192"}
        ten_black_frames(out, vs)
        frame = av.AudioFrame.from_ndarray(np.random.default_rng(0).integers(-3000, 3000, (1, 65536))
                                           .astype(np.int16), format="s16", layout="mono")
        frame.sample_rate, frame.pts = 8000, 0
        for packet in list(aus.encode(frame)) + list(aus.encode(None)):
            out.mux(packet)
    data = bytearray(path.read_bytes())
    at = data.find(b"strf", data.find(b"auds"))
    data[at + 12:at + 16] = struct.pack("<I", rate)  # WAVEFORMATEX.nSamplesPerSec
    path.write_bytes(bytes(data))
    return path


def anamorphic_video(path: Path, face: np.ndarray, squeeze: int = 3, size: tuple[int, int] = (320, 640),
                     frames: int = 10) -> Path:
    """An H.264 MP4 whose frames hold `face` stored squeezed `squeeze` times in width, with a
    sample aspect ratio of `squeeze`:1 that players stretch it back by."""
    from PIL import Image

    w, h = size
    thin = np.asarray(Image.fromarray(face).resize((face.shape[1] // squeeze, face.shape[0])))
    with av.open(str(path), "w") as out:
        vs = out.add_stream("libx264", rate=10)
        vs.width, vs.height, vs.pix_fmt = w, h, "yuv420p"
        vs.codec_context.sample_aspect_ratio = Fraction(squeeze, 1)
        for i in range(frames):
            canvas = np.full((h, w, 3), 100, np.uint8)
            canvas[30:30 + thin.shape[0], 40:40 + thin.shape[1]] = thin
            frame = av.VideoFrame.from_ndarray(canvas, format="rgb24")
            frame.pts, frame.time_base = i, Fraction(1, 10)
            for packet in vs.encode(frame):
                out.mux(packet)
        for packet in vs.encode(None):
            out.mux(packet)
    return path


def anonymize_peak_kib(src: Path, out: Path, timeout: float = 120) -> tuple[int, str]:
    """Anonymize `src` to `out` in a fresh child process: how far its peak memory (VmHWM) grew,
    in KiB, and the report's audio streams and notes (or the error's type and message)."""
    from child_process import child_env

    code = textwrap.dedent(f"""
        import re
        from pathlib import Path
        from safeface.anonymize.video import VideoOptions, anonymize_video_file
        def peak():
            return int(re.search(r"VmHWM:\\s+(\\d+)", open("/proc/self/status").read()).group(1))
        import av, numpy, safeface.anonymize.detect
        before = peak()
        try:
            r = anonymize_video_file(Path({str(src)!r}), Path({str(out)!r}),
                                     options=VideoOptions(progress=False, masked=False))
            what = f"{{r.audio_streams}} {{r.notes}}"
        except Exception as exc:
            what = f"{{type(exc).__name__}}: {{exc}}"
        print(peak() - before, what)
    """)
    r = subprocess.run([sys.executable, "-c", code], env=child_env(), capture_output=True, text=True, timeout=timeout,
                       cwd=out.parent)
    assert r.returncode == 0, r.stderr[-2000:]
    grew, what = r.stdout.strip().splitlines()[-1].split(" ", 1)
    return int(grew), what
