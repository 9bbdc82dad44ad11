"""Opening a video for reading, bounded: what FFmpeg may decode and allocate before safeface has
checked a frame's size. Used by anonymization, the no-face check and liveness clips.

FFmpeg decodes the first frames of every stream while it opens a file (its probe), before any
header can be checked: a few kilobytes of H.264 whose container claims ten streams of 64x64 and
whose frames are 8000x8000 took 2.8 GB there. So a file is opened only as one of the containers
safeface reads (whose demuxers name their streams, with their frame sizes, before the probe),
with a cap on the streams, and the probe decodes no frame (its decoders skip every frame, and
refuse any over the pixel cap): the frame size is the container's, and the decoder that reads
the frames afterwards is bounded by it (bound_video_decoder). Callers check the container's frame
size against their own limit, with their own error."""

from __future__ import annotations

from typing import IO, Any, Callable, Optional

from .errors import ImageError

# Streams a file may hold: a phone's clip holds a video, its audio and a few metadata tracks; a
# film its audio in several languages and subtitles. A file with more is refused: FFmpeg's cap
# drops the tracks past it, and a Matroska demuxer then stops at their first block, as if the
# file ended there (3 frames of 30 read, and reported as the whole video).
MAX_STREAMS = 16
# The decoders a file may have opened: the codecs that cameras, phones and browsers record, and
# their audio. No other is opened: a track in another codec is copied as it is, or left out, and
# a video in another codec is refused. Some decoders size their tables from what a header
# claims, not from the frame: TTA's buffer took 560 MB a track in the probe, FFV1's 1,024 slices
# of context tables 500 MB from 19 KB; ALAC's may take 512 MB.
VIDEO_DECODERS = frozenset((
    # In the probe none decodes a frame (skip_frame), and each is bounded by max_pixels.
    "h264,hevc,vp8,vp9,libdav1d,av1,mpeg4,msmpeg4v3,mjpeg,mpeg2video,mpeg1video,prores,h263,dvvideo,rawvideo"
).split(","))
# Audio decoders are never opened by the probe (its whitelist holds the video ones only): a
# 6 KB Matroska file of 15 Opus tracks claiming 255 channels each took 716 MB there, 15 AAC
# tracks of 64 USAC elements 531 MB from 3 KB. One is opened only for a track the caller
# re-encodes, once its header has passed allow_audio_decoding.
AUDIO_DECODERS = frozenset((
    "aac,aac_fixed,mp3float,mp3,mp2,mp2float,opus,libopus,ac3,ac3_fixed,eac3,flac,pcm_s8,pcm_u8,pcm_s16le,pcm_s16be,"
    "pcm_u16le,pcm_s24le,pcm_s24be,pcm_s32le,pcm_f32le,pcm_f32be,pcm_mulaw,pcm_alaw,adpcm_ima_qt,adpcm_ms,gsm,amrnb,"
    "amrwb").split(","))
DECODERS = VIDEO_DECODERS | AUDIO_DECODERS
# What an audio track to be decoded may claim: a layout the encoders write, a rate they take.
MAX_AUDIO_CHANNELS = 8
MAX_AUDIO_RATE = 192_000
_AAC_USAC = 42  # an AudioSpecificConfig's object type whose decoder sets up every element it names

# The demuxer for each container safeface reads, by the file's first bytes (not its name: a file
# named .mp4 may hold an MPEG transport stream, whose streams appear only during the probe).
_CONTAINERS: tuple[tuple[str, Callable[[bytes], bool]], ...] = (
    ("mp4", lambda h: h[4:8] in (b"ftyp", b"moov", b"mdat", b"wide", b"free", b"skip", b"pnot")),  # MP4, MOV
    ("matroska", lambda h: h[:4] == b"\x1aE\xdf\xa3"),  # MKV, WebM
    ("avi", lambda h: h[:4] == b"RIFF" and h[8:12] in (b"AVI ", b"AVIX")),
)


def open_video(fh: IO[bytes], label: str, max_pixels: int, max_streams: int = MAX_STREAMS) -> Any:
    """An input container over `fh` (seekable, read from its start) whose probe decodes no frame
    and opens no decoder outside VIDEO_DECODERS (audio: allow_audio_decoding), holding at most `max_streams` streams, its first video
    stream's decoder bounded (bound_video_decoder). ImageError for another container, more
    streams, or an unreadable file."""
    import av

    fh.seek(0)
    head = fh.read(16)
    fh.seek(0)
    fmt = next((name for name, test in _CONTAINERS if test(head)), None)
    if fmt is None:
        raise ImageError(f"{label}: not a video safeface can read: not an MP4, MOV, Matroska (MKV, WebM) or AVI "
                         "file, the containers it reads. Remux it (ffmpeg -i IN -c copy OUT.mp4).")
    allowed = ",".join(sorted(VIDEO_DECODERS))
    try:
        container = av.open(fh, "r", format=fmt, options={"max_streams": str(max_streams + 1),
                                                          "codec_whitelist": allowed},
                            stream_options=[{"max_pixels": str(max_pixels), "skip_frame": "all"}] * (max_streams + 1))
    except (av.error.FFmpegError, OSError, ValueError) as exc:  # type: ignore[attr-defined,unused-ignore]
        raise ImageError(f"{label}: not a video safeface can read ({exc}); it may hold more than {max_streams} "
                         f"streams, or frames over {max_pixels} pixels.") from None
    if len(container.streams) > max_streams:
        container.close()
        raise ImageError(f"{label} holds more than {max_streams} streams; safeface reads videos of at most "
                         f"{max_streams}. Remux it with the streams it needs (ffmpeg -i IN -map 0:v:0 -map 0:a? -c copy "
                         "OUT.mp4).")
    for stream in container.streams:
        if stream.codec_context is not None:  # decoders opened later are held to the same list
            stream.codec_context.options = {**dict(stream.codec_context.options), "codec_whitelist": allowed}
    video = container.streams.video
    if video and video[0].codec_context is not None:  # the stream safeface decodes
        if video[0].codec_context.name not in VIDEO_DECODERS:
            name = video[0].codec_context.name
            container.close()
            raise ImageError(f"{label}: its video is in {name}, which safeface does not decode. Convert it "
                             "(ffmpeg -i IN -c:v libx264 -c:a copy OUT.mp4).")
        bound_video_decoder(video[0], max_pixels)
    return container


def audio_header_problem(stream: Any) -> Optional[str]:
    """Why the audio `stream`'s header is out of bounds, or None: at most MAX_AUDIO_CHANNELS
    channels (an Opus header's own counts of channels and streams too, which its decoder sets
    up whatever the container says) at most MAX_AUDIO_RATE Hz (FLAC's STREAMINFO too), no AAC
    USAC. A track that fails is neither decoded nor
    copied (a player of the output would meet it too)."""
    ctx = stream.codec_context
    if ctx is None:
        return "it has no codec parameters"
    name = str(ctx.name)
    extra = bytes(ctx.extradata or b"")
    channels = int(ctx.channels or 0)
    if name in ("opus", "libopus") and len(extra) > 9:
        # OpusHead: byte 9 the channels; past a mapping family other than 0 (byte 18), byte 19
        # the streams, each of which the decoder sets up (2 channels in 255 streams: 57 MB).
        channels = max(channels, extra[9], extra[19] if len(extra) > 19 and extra[18] else 0)
    rate = int(ctx.sample_rate or 0)
    if name == "flac":  # its decoder runs at STREAMINFO's rate and channels, whatever the container says
        info = extra[8:] if extra[:4] == b"fLaC" else extra
        if len(info) >= 13:
            rate = max(rate, (info[10] << 12) | (info[11] << 4) | (info[12] >> 4))
            channels = max(channels, ((info[12] >> 1) & 7) + 1)
    if channels > MAX_AUDIO_CHANNELS or rate > MAX_AUDIO_RATE:
        return (f"its header claims {channels} channels at {rate} Hz; safeface takes at most {MAX_AUDIO_CHANNELS} "
                f"channels at {MAX_AUDIO_RATE} Hz")
    if name in ("aac", "aac_fixed") and extra and _aac_object_type(extra) == _AAC_USAC:
        return "it is AAC USAC, which safeface does not take"
    return None


def allow_audio_decoding(stream: Any) -> Optional[str]:
    """Let the audio `stream` of a container open_video opened be decoded, when its decoder is
    one of AUDIO_DECODERS and its header is within bounds (audio_header_problem). Returns None
    when allowed, else why not (the track is then to be left out)."""
    name = str(stream.codec_context.name) if stream.codec_context is not None else "?"
    if name not in AUDIO_DECODERS:
        return f"safeface does not decode {name}"
    problem = audio_header_problem(stream)
    if problem is None:
        ctx = stream.codec_context
        ctx.options = {**dict(ctx.options), "codec_whitelist": ",".join(sorted(AUDIO_DECODERS))}
    return problem


def _aac_object_type(asc: bytes) -> int:
    """The audio object type an AudioSpecificConfig opens with (5 bits; 31 escapes to 32 + 6 more)."""
    first = asc[0] >> 3
    if first != 31 or len(asc) < 2:
        return first
    return 32 + (((asc[0] & 0x07) << 3) | (asc[1] >> 5))


def bound_video_decoder(stream: Any, limit: int) -> None:
    """Have FFmpeg refuse, before it allocates one, any frame of the video `stream` much larger
    than its header's size (which the caller has checked against `limit`), or than `limit` when
    the header gives none. A sequence header part way through a stream switches the decoder to
    another frame size: without the bound, a header claiming 64x64 over frames of 50 megapixels
    was found out only once such a frame was held. The margin covers FFmpeg's own rounding (it
    checks a buffer's width rounded up to its stride alignment; codecs code whole macroblocks,
    1088 rows for 1080) and its scratch buffers (MPEG-4's decoder asks 54k pixels for a 64x64
    frame): the bound is never under a megapixel, whose frame is no threat. Slice threads only:
    with frame threads, a frame refused near the end of the stream ended the decode early with
    no error, and the frames still in flight were silently dropped."""
    ctx = stream.codec_context
    w, h = int(ctx.width), int(ctx.height)
    cap = max((w + 128) * (h + 128), 1 << 20) if w > 0 and h > 0 else int(limit)
    ctx.options = {**dict(ctx.options), "max_pixels": str(cap)}
    stream.thread_type = "SLICE"
