"""Anonymizing a video with PyAV: frames are decoded, covered and encoded one by one (only the
few frames of look-ahead are held), audio packets are copied unchanged under a codec header
rebuilt to what their decoder needs, and nothing of the input container's metadata is written."""

from __future__ import annotations

import hmac
import io
import os
import sys
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from fractions import Fraction
from pathlib import Path
from typing import IO, Any, Callable, Optional

import numpy as np

from ..errors import ImageError, InvalidArgument
from .cover import DEFAULT_MARGIN, DEFAULT_MODE, apply_cover, check_margin, check_mode, region_for_box
from .detect import DEFAULT_DETECTOR, DEFAULT_MIN_FACE, DetectionEngine, FaceFinder, Search
from ..hashing import sha256_file, sha256_open_file
from ..imageio import MAX_PIXELS, c_order
from ..videoio import (MAX_AUDIO_RATE, MIN_AUDIO_RATE, allow_audio_decoding, audio_header_problem, audio_packet_problem,
                       copied_extradata, open_video, pixel_aspect, shown_size)
from ..regularfile import SizedReader, open_regular
from ..workers import worker_count
from ..atomicfile import atomic_path
from .files import VIDEO_EXTENSIONS
from .report import AnonymizeReport
from .track import FaceTracker


FrameHook = Callable[[int, np.ndarray], np.ndarray]

# The largest video file taken (VideoOptions.max_bytes): the whole file is hashed before a frame
# is read, so without a cap a sparse file of a terabyte is read for hours. An hour of 4K footage
# at 40 Mbit/s is about 18 GB.
MAX_VIDEO_BYTES = 32 * 1024 ** 3
# Frames larger than a photo may be are refused (8K is 33 megapixels): a header claiming a huge
# frame would have each of the few frames held in flight take gigabytes.
MAX_FRAME_PIXELS = MAX_PIXELS


@dataclass(frozen=True)
class VideoOptions:
    """How frames are searched. Detection runs every `detect_every` frames on a copy scaled down
    to `detect_max_side`, or less far where faces `min_face` px wide would be lost (HOG with
    `upsample`; 1 finds faces down to about 40 px at that scale, 0 down to about 80 px):
    `search`, which is also what the output is verified with (detectable_frames). A frame
    larger than 1280x720 therefore costs more by default; raise `min_face` to trade faces for
    time. `hold` frames of look-ahead and memory let a cover bridge missed
    detections and the frames between detections; it is raised to at least `detect_every`.
    `threads` frames are searched at once (0: one per core, at most 4); the detector releases
    the GIL, so on two cores two threads nearly double the rate. `masked` (on by default): also
    search for faces whose nose and mouth a mask hides (Search.masked; so does the check made
    with `search`). It about halves the default setting's rate (benches/anonymize.py); off, a
    masked face can be left uncovered, and for anonymization a missed face costs far more than
    time. A file larger than `max_bytes` is refused before it is read."""

    detect_max_side: int = 640
    upsample: int = 1
    detect_every: int = 1
    hold: int = 5
    crf: int = 20
    progress: bool = True
    threads: int = 0
    masked: bool = True
    min_face: float = DEFAULT_MIN_FACE
    max_bytes: int = MAX_VIDEO_BYTES

    def __post_init__(self) -> None:
        _ = self.search  # a bad size or upsampling is refused where the options are made
        if isinstance(self.max_bytes, bool) or not isinstance(self.max_bytes, int) or self.max_bytes < 1:
            raise InvalidArgument(f"VideoOptions.max_bytes must be a positive whole number of bytes, got "
                                  f"{self.max_bytes!r}.")

    @property
    def search(self) -> Search:
        return Search(self.detect_max_side, self.upsample, self.masked, self.min_face)

    @classmethod
    def fast(cls, progress: bool = True) -> "VideoOptions":
        """The real-time setting: HOG without upsampling on every other frame (faces from about
        80 px at 640 px frame width, 160 px in larger frames), the gaps bridged by the tracker."""
        return cls(detect_max_side=640, upsample=0, detect_every=2, hold=4, progress=progress,
                   min_face=2 * DEFAULT_MIN_FACE)


def detectable_frames(path: Path, search: Search, finder: Optional[FaceFinder] = None) -> list[int]:
    """The no-face check of a video: the indices of the frames of `path` in which `search` finds
    a face at dlib's own bar (FaceFinder.detectable). The output of a run that searched every
    frame with `search` (VideoOptions.search, detect_every 1) is verified this way
    (benches/tracking.py, tests): the run searched each frame at a lower bar than this."""
    finder = finder or FaceFinder("hog", engine=DetectionEngine())
    av = _av()
    found: list[int] = []
    try:
        with open_regular(path, str(path)) as fh, open_video(fh, str(path), MAX_FRAME_PIXELS) as c:
            stream = _video_stream(c, path)
            _check_frame_size(int(stream.codec_context.width), int(stream.codec_context.height), path)
            # Judged as shown: frames of pixels that are not square, stretched to square ones.
            sw, sh = shown_size(int(stream.codec_context.width), int(stream.codec_context.height),
                                pixel_aspect(stream, str(path)))
            _check_frame_size(sw, sh, path)
            for i, frame in enumerate(c.decode(video=0)):
                if finder.detectable(frame.to_ndarray(format="rgb24", width=sw, height=sh), search):
                    found.append(i)
    except (av.error.FFmpegError, OSError, ValueError) as exc:
        raise ImageError(f"{path}: not a video safeface can read ({exc}); frames much larger than its header "
                         "says are refused undecoded.") from None
    return found


def _av() -> Any:
    import av

    return av


def _codec_for(fmt: str) -> tuple[str, dict[str, str]]:
    if fmt == "null":
        return "rawvideo", {}  # no output asked for: nothing is compressed, nothing written
    if fmt == "avi":
        # AVI has no B-frame-safe timestamps for H.264 in every player; MPEG-4 Part 2 is its native.
        return "mpeg4", {"qscale": "3"}
    return "libx264", {"preset": "veryfast"}


# Audio codecs each container takes as they are; other audio is re-encoded (AAC, or MP3 in AVI).
_COPYABLE = {
    "mp4": {"aac", "mp3", "alac", "opus", "ac3", "eac3", "flac"},
    "mov": {"aac", "mp3", "alac", "ac3", "eac3", "pcm_s16le", "pcm_s16be", "pcm_s24le", "pcm_f32le"},
    "avi": {"mp3", "mp2", "ac3", "aac", "pcm_s16le", "pcm_u8"},
}
_REENCODE = {"avi": "libmp3lame"}
MAX_REENCODED = 2  # audio streams re-encoded (each holds a decoder and an encoder); others are left out
AUDIO_AHEAD_S = 10.0  # how far re-encoded audio may run past the video decoded so far
_LAYOUTS = {1: "mono", 2: "stereo", 3: "2.1", 4: "quad", 5: "5.0", 6: "5.1", 7: "6.1", 8: "7.1"}


def _encoder_rate(encoder: Any, rate: int) -> int:
    """`rate`, or the nearest the audio `encoder` takes below it (LAME at most 48 kHz, FFmpeg's
    AAC 96 kHz), or its lowest."""
    rates = sorted(int(r) for r in (encoder.audio_rates or ()))
    if not rates or rate in rates:
        return rate
    below = [r for r in rates if r <= rate]
    return below[-1] if below else rates[0]


def _quarter_turns(frame: Any, in_path: Path) -> int:
    """How many quarter turns (np.rot90's sense) show a decoded frame as players do."""
    degrees = int(round(float(getattr(frame, "rotation", 0) or 0)))
    if degrees % 90:
        raise ImageError(f"{in_path}: its display rotation is {degrees} degrees; safeface anonymizes videos shown "
                         "upright or turned by quarter turns only.")
    return (degrees // 90) % 4


def _video_stream(container: Any, path: Path) -> Any:
    """The container's first video stream; ImageError when it holds none (an audio-only file)."""
    if not container.streams.video:
        raise ImageError(f"{path}: the file holds no video stream.")
    return container.streams.video[0]


def _check_frame_size(width: int, height: int, in_path: Path) -> None:
    if width * height > MAX_FRAME_PIXELS:
        raise ImageError(f"{in_path}: its frames of {width}x{height} pixels exceed the {MAX_FRAME_PIXELS}-pixel "
                         "limit; scale the video down first.")


def _display_turn(fh: IO[bytes], in_path: Path) -> int:
    """The first frame's quarter turns (the output's size depends on it before any frame is
    read; every later frame is checked against it)."""
    av = _av()
    try:
        with open_video(fh, str(in_path), MAX_FRAME_PIXELS) as probe:
            # Refused before FFmpeg allocates a first frame of that size.
            stream = _video_stream(probe, in_path)
            _check_frame_size(int(stream.codec_context.width), int(stream.codec_context.height), in_path)
            for frame in probe.decode(video=0):
                return _quarter_turns(frame, in_path)
    except (av.error.FFmpegError, OSError, ValueError) as exc:
        raise ImageError(f"{in_path}: not a video safeface can read ({exc}); frames much larger than its "
                         "header says are refused undecoded.") from None
    return 0


def anonymize_video_file(
    in_path: Path, out_path: Optional[Path], mode: str = DEFAULT_MODE, margin: float = DEFAULT_MARGIN,
    detector: str = DEFAULT_DETECTOR, *, options: Optional[VideoOptions] = None,
    finder: Optional[FaceFinder] = None, on_frame: Optional[FrameHook] = None,
) -> AnonymizeReport:
    """Cover every face in every frame of `in_path` and write `out_path` (MP4, MKV, MOV, AVI).
    Paths are checked by the caller. `on_frame(index, rgb)` sees each frame, in order, only
    after its faces are covered, and returns the frame to encode (tracking draws on it).
    Without `out_path` the covered frames reach only `on_frame`: no file is written, not even
    a temporary one (FFmpeg's null muxer takes the stream)."""
    check_mode(mode)
    margin = check_margin(margin)
    opts = options or VideoOptions()
    finder = finder or FaceFinder(detector)
    av = _av()
    # One descriptor for everything: the hash, the rotation probe and the frames all read the
    # same file, and the hash is taken again at the end. A path pointed at another file between
    # steps, or a file rewritten while it is read, cannot have one file's hash named on another
    # file's covered frames; no output is written then.
    with open_regular(in_path, str(in_path)) as raw:
        before = _file_state(raw)
        if before[1] > opts.max_bytes:
            raise ImageError(f"{in_path}: {before[1]} bytes is larger than the {opts.max_bytes}-byte limit for a "
                             "video; nothing was read. Split it, or raise the limit (VideoOptions.max_bytes, "
                             "--max-video-bytes) if the file is meant to be that large.")
        # No read past the size checked: a file grown meanwhile is refused at the end.
        fh = io.BufferedReader(SizedReader(raw, before[1]), 1 << 16)
        digest = sha256_open_file(fh)
        turn = _display_turn(fh, in_path)
        inp = open_video(fh, str(in_path), MAX_FRAME_PIXELS)
        out_digest: Optional[str] = None
        try:
            _video_stream(inp, in_path)
            if out_path is None:
                stats = _transcode(inp, turn, Path(os.devnull), "null", finder, mode, margin, opts, in_path, on_frame)
                _same_input(raw, fh, before, digest, in_path)
            else:
                with atomic_path(out_path) as tmp:
                    stats = _transcode(inp, turn, tmp, VIDEO_EXTENSIONS[out_path.suffix.lower()], finder, mode,
                                       margin, opts, in_path, on_frame)
                    _same_input(raw, fh, before, digest, in_path)
                    out_digest = sha256_file(tmp)  # the bytes renamed into place, not what the path holds later
        finally:
            inp.close()
    report = AnonymizeReport(
        kind="video", input_sha256=digest, face_count=stats["tracks"], mode=mode, margin=margin,
        detector=finder.detector, width=stats["width"], height=stats["height"], passes=1,
        frames=stats["frames"], frames_with_faces=stats["frames_with_faces"],
        detections=stats["detections"], audio_streams=stats["audio"], notes=tuple(stats["notes"]),
        smallest_face=round(opts.search.smallest_face(stats["width"], stats["height"]), 1), fps=stats["fps"],
    )
    if out_path is None:
        return report
    return replace(report, output_path=str(out_path), output_sha256=out_digest)


def _file_state(fh: IO[bytes]) -> tuple[int, int, int, int]:
    st = os.fstat(fh.fileno())
    return st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns


def _same_input(raw: IO[bytes], fh: IO[bytes], before: tuple[int, int, int, int], digest: str,
                in_path: Path) -> None:
    """The file read is the file hashed: its content (`fh`, the sized view read) hashes the same
    at the end, and nothing wrote to it meanwhile (`raw`'s state: a write moves its change time,
    which only root can set back; a file grown past the view changes its size), so a rewrite put
    back before the end is caught too."""
    if _file_state(raw) != before or not hmac.compare_digest(sha256_open_file(fh), digest):
        raise ImageError(f"{in_path}: the file changed while it was being anonymized; nothing was written. "
                         "Anonymize a copy that nothing else writes to.")


def _transcode(inp: Any, turn: int, tmp: Path, fmt: str, finder: FaceFinder, mode: str, margin: float,
               opts: VideoOptions, in_path: Path, on_frame: Optional[FrameHook] = None) -> dict[str, Any]:
    av = _av()
    from tqdm import tqdm

    vin = inp.streams.video[0]
    ain = list(inp.streams.audio)
    width = int(vin.codec_context.width)
    height = int(vin.codec_context.height)
    if width <= 0 or height <= 0:
        raise ImageError(f"{in_path}: the video stream has no frame size.")
    _check_frame_size(width, height, in_path)  # and open_video bounded the decoder by it
    stored = (width, height)
    # Pixels shown wider or taller than they are stored (a sample aspect ratio) are stretched
    # square before the search: a face stored squeezed 3:1 was found in none of its frames. The
    # output is written in square pixels.
    aspect = pixel_aspect(vin, str(in_path))
    width, height = shown = shown_size(width, height, aspect)
    _check_frame_size(width, height, in_path)
    # A phone stores a portrait video turned a quarter, with a display matrix players apply:
    # faces are searched, covered and written upright, as they are shown (no matrix is written).
    if turn % 2:
        width, height = height, width
    # 4:2:0 encoders need even sides; the odd last row or column is dropped.
    ew, eh = width - width % 2, height - height % 2
    if ew == 0 or eh == 0:
        raise ImageError(f"{in_path}: its frames of {width}x{height} pixels are too small to encode (both sides "
                         "must be at least 2); no face fits in them.")
    rate = vin.average_rate or vin.guessed_rate or Fraction(30)
    codec, codec_opts = _codec_for(fmt)
    notes: list[str] = []
    stats: dict[str, Any] = {"frames": 0, "frames_with_faces": 0, "detections": 0, "audio": 0,
                             "tracks": 0, "width": width, "height": height, "notes": notes, "fps": float(rate)}
    out = av.open(str(tmp), "w", format=fmt)
    try:
        vout = out.add_stream(codec, rate=rate, options=dict(codec_opts, **({"crf": str(opts.crf)} if codec == "libx264" else {})))
        vout.width, vout.height, vout.pix_fmt = ew, eh, "yuv420p"
        amap: dict[int, Any] = {}
        reencode: dict[int, Any] = {}
        for a in ain:
            name = a.codec_context.name
            try:
                # Copied, a track keeps only the codec header its decoder needs, rebuilt
                # (copied_extradata): a Vorbis header carried tags and a face's picture into the output.
                header = copied_extradata(a) if fmt not in _COPYABLE or name in _COPYABLE[fmt] else None
                why = (f"the container cannot hold {name}" if header is None and fmt in _COPYABLE
                       and name not in _COPYABLE[fmt] else f"safeface copies no {name} header as it is")
                refused = audio_header_problem(a)  # neither copied nor decoded then
                if refused is not None:
                    notes.append(f"audio stream {a.index} ({name}) left out: {refused}")
                    continue
                if header is None:
                    refused = (f"safeface re-encodes at most {MAX_REENCODED} audio streams"
                               if len(reencode) >= MAX_REENCODED else allow_audio_decoding(a))
                    if refused is not None:
                        notes.append(f"audio stream {a.index} ({name}) left out: {why}, and {refused}")
                        continue
                    encoder = av.Codec(_REENCODE.get(fmt, "aac"), "w")
                    s = out.add_stream(encoder.name, rate=_encoder_rate(encoder, a.codec_context.sample_rate or 48000))
                    # The channel count's default layout (an unordered source layout is refused),
                    # within what the encoder takes: LAME writes mono or stereo, and the rest is
                    # mixed down by PyAV's resampler.
                    channels = int(a.codec_context.channels or 2)
                    if encoder.name == "libmp3lame":
                        channels = min(channels, 2)
                    s.layout = _LAYOUTS.get(channels, "stereo")
                    s.format = encoder.audio_formats[0].name
                    reencode[a.index] = s
                    notes.append(f"audio stream {a.index} ({name}) re-encoded as {s.codec_context.name}: {why}")
                else:
                    s = out.add_stream_from_template(a)
                    s.metadata.clear()
                    s.codec_context.extradata = header or None
                    amap[a.index] = s
            except (av.error.FFmpegError, ValueError) as exc:
                notes.append(f"audio stream {a.index} ({name}) left out: {exc}")
        stats["audio"] = len(amap) + len(reencode)
        every = max(1, int(opts.detect_every))
        tracker = FaceTracker(max(opts.hold, every))
        pending: deque[tuple[int, np.ndarray]] = deque()
        total = vin.frames or None
        bar = tqdm(total=total, unit="frame", file=sys.stderr, disable=not opts.progress, desc="anonymize")

        def emit(upto: int) -> None:
            while pending and pending[0][0] <= upto:
                idx, rgb = pending.popleft()
                boxes = tracker.boxes_at(idx)
                if boxes:
                    stats["frames_with_faces"] += 1
                    rgb = apply_cover(rgb, [region_for_box(b, margin, width, height) for b in boxes], mode)
                if on_frame is not None:
                    rgb = on_frame(idx, rgb)
                frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb[:eh, :ew]), format="rgb24")
                frame.pts = idx
                frame.time_base = Fraction(1) / Fraction(rate)
                for packet in vout.encode(frame):
                    out.mux(packet)
                tracker.forget_before(idx + 1)
                bar.update(1)

        # Frames are searched by a pool of threads, a few frames ahead of the one being encoded;
        # their results reach the tracker in frame order.
        workers = worker_count(int(opts.threads))
        search = opts.search
        searching: deque[tuple[int, np.ndarray, Optional[Future[list[Any]]]]] = deque()

        def settle(keep: int) -> None:
            while len(searching) > keep:
                idx, rgb, job = searching.popleft()
                if job is not None:
                    found = job.result()
                    stats["detections"] += len(found)
                    tracker.observe(idx, found)
                pending.append((idx, rgb))
                emit(idx - tracker.hold)

        decoded: dict[int, float] = {}  # seconds of each re-encoded audio stream decoded so far
        cut: set[int] = set()
        pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="safeface-detect")
        try:
            for packet in inp.demux(vin, *ain):
                if packet.stream.index == vin.index:
                    for frame in packet.decode():
                        idx = stats["frames"]
                        stats["frames"] += 1
                        if _quarter_turns(frame, in_path) != turn:
                            raise ImageError(f"{in_path}: its frames change their display rotation part way; "
                                             "safeface anonymizes only videos shown one way throughout.")
                        if (frame.width, frame.height) != stored:
                            # Searched at the first frame's scale and cut to its size, a larger
                            # frame's faces were searched too coarsely, or cut off uncovered.
                            # Checked before the frame is converted: it may also be a huge one.
                            raise ImageError(f"{in_path}: its frames change size part way ({stored[0]}x{stored[1]} "
                                             f"to {frame.width}x{frame.height}); safeface anonymizes only videos "
                                             "whose frames keep one size. Split it where the size changes.")
                        if pixel_aspect(vin, str(in_path)) != aspect:  # a sequence header part way may change it
                            raise ImageError(f"{in_path}: its pixel shape changes part way; safeface anonymizes "
                                             "only videos whose pixels keep one shape.")
                        rgb = frame.to_ndarray(format="rgb24", width=shown[0], height=shown[1])
                        if turn:
                            rgb = c_order(np.rot90(rgb, turn))
                        job = (pool.submit(finder.search, rgb, search)
                               if idx % every == 0 else None)
                        searching.append((idx, rgb, job))
                        settle(2 * workers)
                elif packet.stream.index in amap and packet.dts is not None:
                    packet.stream = amap[packet.stream.index]
                    out.mux(packet)
                elif packet.stream.index in reencode and packet.stream.index not in cut:
                    # No further than the video has come, and AUDIO_AHEAD_S: a few KB of FLAC
                    # silence decode to hours of samples, each one re-encoded (17 s from 33 KB).
                    # A frame counts for at most a second, whatever rate the file claims (ten
                    # frames claiming to be 100 s apart stretched the cut past 1,000 s).
                    heard = decoded.setdefault(packet.stream.index, 0.0)
                    if heard > stats["frames"] * min(1.0, 1.0 / float(rate)) + AUDIO_AHEAD_S:
                        cut.add(packet.stream.index)
                        notes.append(f"audio stream {packet.stream.index} cut where it runs more than "
                                     f"{AUDIO_AHEAD_S:.0f} s past the video")
                        continue
                    # A packet is decoded whole: one claiming hours at 1 Hz is stopped before.
                    too_large = audio_packet_problem(packet)
                    if too_large is not None:
                        cut.add(packet.stream.index)
                        notes.append(f"audio stream {packet.stream.index} stopped part way: {too_large}")
                        continue
                    enc = reencode[packet.stream.index]
                    try:
                        for aframe in packet.decode():
                            if not MIN_AUDIO_RATE <= int(aframe.sample_rate or 0) <= MAX_AUDIO_RATE:
                                # The header's rate was checked; a decoder may still run at another.
                                raise ValueError(f"a frame at {aframe.sample_rate} Hz")
                            decoded[packet.stream.index] += aframe.samples / max(1, int(aframe.sample_rate or 1))
                            aframe.pts = None  # the encoder numbers samples itself
                            for p in enc.encode(aframe):
                                out.mux(p)
                    except (av.error.FFmpegError, ValueError) as exc:
                        # The audio alone (a track whose frames change rate part way, which
                        # PyAV's resampler refuses): the video goes on without the rest of it.
                        cut.add(packet.stream.index)
                        notes.append(f"audio stream {packet.stream.index} stopped part way: it could not be "
                                     f"re-encoded ({exc})")
            settle(0)
        except av.error.FFmpegError as exc:
            # A frame larger than the header says (bound_video_decoder) fails here too: FFmpeg
            # reports it as ENOMEM, or as EINVAL from a frame thread.
            raise ImageError(f"{in_path}: the video could not be decoded or re-encoded ({exc}); nothing was written. "
                             f"Frames much larger than its header's {stored[0]}x{stored[1]} are refused "
                             "undecoded.") from None
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
        emit(stats["frames"])
        bar.close()
        if stats["frames"] == 0:
            raise ImageError(f"{in_path}: the video has no frames.")
        for packet in vout.encode(None):
            out.mux(packet)
        for index, enc in reencode.items():
            try:
                for packet in enc.encode(None):
                    out.mux(packet)
            except (av.error.FFmpegError, ValueError) as exc:  # the audio alone, as above
                notes.append(f"audio stream {index} stopped at its end: it could not be re-encoded ({exc})")
        stats["tracks"] = tracker.track_count
    finally:
        out.close()
    return stats
