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

from fractions import Fraction
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
# A rate far below speech's is none a recorder writes: a PCM track claiming 1 Hz made each of its
# samples a second, resampled 7,350 times over for AAC (1.6 GB from 17 KB).
MAX_AUDIO_CHANNELS = 8
MAX_AUDIO_RATE = 192_000
MIN_AUDIO_RATE = 8_000
# What one audio packet to be decoded may hold, checked before it is: a recorder's packets hold
# a fraction of a second. Decoded, a packet takes a few times its size at most.
MAX_AUDIO_PACKET_BYTES = 1 << 20
MAX_AUDIO_PACKET_S = 10.0
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
    up whatever the container says) at MIN_AUDIO_RATE to MAX_AUDIO_RATE Hz (FLAC's STREAMINFO and
    AAC's configuration too), no AAC USAC. A track that fails is neither decoded nor
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
    rate = lowest = int(ctx.sample_rate or 0)
    if name == "flac":  # its decoder runs at STREAMINFO's rate and channels, whatever the container says
        info = extra[8:] if extra[:4] == b"fLaC" else extra
        if len(info) >= 13:
            claimed = (info[10] << 12) | (info[11] << 4) | (info[12] >> 4)
            rate, lowest = max(rate, claimed), min(lowest, claimed)
            channels = max(channels, ((info[12] >> 1) & 7) + 1)
    if name in ("aac", "aac_fixed") and extra and _aac_object_type(extra) != _AAC_USAC:
        config = aac_config(extra)  # its decoder runs at the configuration's rate
        if config is not None:
            rate, lowest = max(rate, config[1]), min(lowest, config[1])
    if channels > MAX_AUDIO_CHANNELS or rate > MAX_AUDIO_RATE or lowest < MIN_AUDIO_RATE:
        return (f"its header claims {channels} channels at {lowest if lowest < MIN_AUDIO_RATE else rate} Hz; "
                f"safeface takes at most {MAX_AUDIO_CHANNELS} channels at {MIN_AUDIO_RATE} to {MAX_AUDIO_RATE} Hz")
    if name in ("aac", "aac_fixed") and extra and _aac_object_type(extra) == _AAC_USAC:
        return "it is AAC USAC, which safeface does not take"
    return None


def audio_packet_problem(packet: Any) -> Optional[str]:
    """Why an audio `packet` of a track to be decoded is not, or None: more than
    MAX_AUDIO_PACKET_BYTES, or a duration of more than MAX_AUDIO_PACKET_S. Checked before it is
    decoded: how far re-encoded audio has run is known only between packets."""
    size = int(packet.size)
    seconds = float(packet.duration * packet.time_base) if packet.duration and packet.time_base else 0.0
    if size > MAX_AUDIO_PACKET_BYTES or seconds > MAX_AUDIO_PACKET_S:
        return (f"a packet of {size} bytes and {seconds:.0f} s is larger than the {MAX_AUDIO_PACKET_BYTES} bytes and "
                f"{MAX_AUDIO_PACKET_S:.0f} s safeface decodes at once")
    return None


# The sample rates an AudioSpecificConfig names by index (ISO/IEC 14496-3, 1.6.3.4).
_AAC_RATES = (96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000, 7350)


def aac_config(asc: bytes) -> Optional[tuple[int, int]]:
    """(its length in bits, its output rate) of the AudioSpecificConfig `asc` opens with, for
    the kinds encoders write: AAC Main, LC, SSR or LTP, with SBR or PS signalled before or after
    it, on channel configuration 1 to 7. None for any other (a program config element, configuration
    0, carries a free comment)."""
    value, total, at = int.from_bytes(asc, "big"), 8 * len(asc), 0

    def read(width: int) -> int:
        nonlocal at
        if at + width > total:
            raise ValueError("short")
        at += width
        return (value >> (total - at)) & ((1 << width) - 1)

    def object_type() -> int:
        first = read(5)
        return 32 + read(6) if first == 31 else first

    def sample_rate() -> int:
        index = read(4)
        return read(24) if index == 15 else _AAC_RATES[index] if index < len(_AAC_RATES) else 0

    try:
        kind, rate, channels = object_type(), sample_rate(), read(4)
        if kind in (5, 29):  # SBR, PS: the output rate, then the core's object type
            rate, kind = sample_rate(), object_type()
        if kind not in (1, 2, 3, 4) or not 1 <= channels <= 7 or rate <= 0:
            return None
        read(1)  # frameLengthFlag
        if read(1):  # dependsOnCoreCoder
            read(14)
        if read(1):  # extensionFlag: none for these object types
            return None
    except ValueError:
        return None
    end = at
    try:  # SBR signalled after it (FFmpeg's encoder writes "none"), kept when whole
        if total - at >= 16 and read(11) == 0x2B7 and object_type() == 5:
            if read(1):
                rate = sample_rate()
            end = at
            if total - at >= 12 and read(11) == 0x548:
                read(1)  # psPresentFlag
                end = at
    except ValueError:
        pass
    return (end, rate) if rate > 0 else None


def copied_extradata(stream: Any) -> Optional[bytes]:
    """The codec extradata to write for the audio `stream` copied as it is: what its decoder needs,
    rebuilt from the header, never bytes past it. A header may carry more: a Vorbis comment
    header holds tags and cover art, and bytes after an AAC configuration are read by no
    decoder yet were written out whole. b"" for codecs that need none (MP3, AC-3, PCM); None
    when the track is not to be copied (Vorbis and any codec not known here)."""
    ctx = stream.codec_context
    if ctx is None:
        return None
    name, extra = str(ctx.name), bytes(ctx.extradata or b"")
    if name in ("mp3", "mp2", "ac3", "eac3") or name.startswith("pcm_"):
        return b""
    if name == "aac":
        if not extra:
            return b""
        config = aac_config(extra)
        if config is None:
            return None
        kept = bytearray(extra[:(config[0] + 7) // 8])
        kept[-1] &= (0xFF << (-config[0] % 8)) & 0xFF  # the padding bits after it, zero
        return bytes(kept)
    if name == "opus" and extra[:8] == b"OpusHead" and len(extra) >= 19:
        # OpusHead: 19 bytes, and for a mapping family other than 0 the streams, coupled
        # streams and one byte a channel. Its tags (OpusTags) are never in the extradata.
        size = 19 if extra[18] == 0 else 21 + extra[9]
        return extra[:size] if len(extra) >= size else None
    if name == "flac":
        # STREAMINFO alone (34 bytes); its other metadata blocks hold tags and pictures.
        if extra[:4] == b"fLaC":
            extra = extra[8:42] if extra[4] & 0x7F == 0 and extra[5:8] == b"\x00\x00\x22" else b""
        return extra[:34] if len(extra) >= 34 else None
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


def pixel_aspect(stream: Any, label: str) -> Fraction:
    """The shape of the video `stream`'s pixels as players show them (its sample aspect ratio: 3
    for pixels shown three times as wide as tall), 1 when unset. Frames stored squeezed 3:1 show
    a normal face that the squeezed pixels hide from the search. ImageError when the container's
    and the codec's (which a sequence header part way may change) disagree: players differ in
    which they follow. Read again after each frame decoded."""
    ratios = {Fraction(r) for r in (stream.sample_aspect_ratio, stream.codec_context.sample_aspect_ratio)
              if r is not None and r > 0}
    if len(ratios) > 1:
        raise ImageError(f"{label}: its container and its video give different pixel shapes ("
                         f"{', '.join(str(r) for r in sorted(ratios))}), or its pixel shape changes part way; "
                         "players show it either way. Re-encode it with square pixels (ffmpeg -i IN -vf "
                         "scale=iw*sar:ih,setsar=1 OUT.mp4).")
    return ratios.pop() if ratios else Fraction(1)


def shown_size(width: int, height: int, aspect: Fraction) -> tuple[int, int]:
    """`width`x`height` stored pixels of shape `aspect` as square pixels: stretched, never
    squeezed, so a face keeps every pixel it was stored with."""
    if aspect > 1:
        return max(1, round(width * aspect)), height
    if aspect < 1:
        return width, max(1, round(height / aspect))
    return width, height


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
