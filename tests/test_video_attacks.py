"""Attacks on the video anonymizer through what it writes or decodes besides the frames: the codec
headers of copied audio, forged audio rates, and pixels that are not square."""

from __future__ import annotations

import base64
import io
import subprocess
import sys
import textwrap
from pathlib import Path

import av
import numpy as np
import pytest
from child_process import child_env
from datasets_path import datasets
from PIL import Image

from safeface.anonymize import FaceFinder, VideoOptions, detectable_frames
from safeface.anonymize.video import anonymize_video_file
from safeface.hazmat.vision.dlib_engine import DlibEngine
from safeface.imageio import load_image
from tests.video_fixtures import (adpcm_rate_avi, anamorphic_video, anonymize_peak_kib, codec_private_rewritten, flac_picture_block,
                                  low_rate_pcm_video, tone_video, vorbis_tagged_video)

FACE = datasets() / "face_recognition" / "test_images" / "obama.jpg"
MARK = b"PLANTED-LOCATION=+38.8977-077.0365"
OPTS = VideoOptions(progress=False, masked=False)

needs_face = pytest.mark.skipif(not FACE.is_file(), reason=f"{FACE} not found (set SAFEFACE_DATASETS)")


@pytest.fixture(scope="module")
def face() -> tuple[np.ndarray, bytes]:
    """A face photo and its JPEG: what a header planted in the input carries."""
    if not FACE.is_file():
        pytest.skip(f"{FACE} not found (set SAFEFACE_DATASETS)")
    rgb = load_image(FACE)
    jpg = io.BytesIO()
    Image.fromarray(rgb).save(jpg, "JPEG", quality=85)
    return rgb, jpg.getvalue()


def _audio_heard(path: Path) -> tuple[str, int, bytes]:
    """The output's first audio track: its codec, how many samples decode, its extradata."""
    with av.open(str(path)) as c:
        a = c.streams.audio[0]
        return str(a.codec_context.name), sum(f.samples for f in c.decode(a)), bytes(a.codec_context.extradata or b"")


def test_a_vorbis_comment_header_with_tags_and_a_face_is_not_written_out(tmp_path: Path,
                                                                           face: tuple[np.ndarray, bytes]) -> None:
    """A Vorbis track's CodecPrivate holds its comment header: tags and a picture
    (METADATA_BLOCK_PICTURE). Copied into an .mkv output with add_stream_from_template, whose
    extradata is the input's byte for byte, the face's JPEG came out whole (the recogniser
    matched it at 0.998). Vorbis headers are not copied now; the track is left out."""
    rgb, jpeg = face
    picture = base64.b64encode(flac_picture_block(jpeg, rgb.shape[1], rgb.shape[0]))
    src = vorbis_tagged_video(tmp_path / "in.mkv", [MARK, b"METADATA_BLOCK_PICTURE=" + picture])
    assert MARK in src.read_bytes() and picture in src.read_bytes()
    out = tmp_path / "out.mkv"
    report = anonymize_video_file(src, out, options=OPTS)
    data = out.read_bytes()
    assert MARK not in data and picture[:64] not in data and b"\xff\xd8\xff" not in data
    assert report.frames == 10 and report.audio_streams == 0
    assert any("(vorbis) left out: safeface copies no vorbis header" in n for n in report.notes), report.notes


@pytest.mark.parametrize("suffix", [".mp4", ".mkv", ".mov"])
def test_bytes_after_an_aac_configuration_are_not_written_out(tmp_path: Path, face: tuple[np.ndarray, bytes],
                                                              suffix: str) -> None:
    """An AAC track's AudioSpecificConfig followed by a face's JPEG: no decoder reads past the
    configuration, and the copy wrote it all into the output's esds or CodecPrivate. Only the
    configuration, to its last bit, is written now, and the track still plays."""
    _, jpeg = face
    src = tone_video(tmp_path / "in.mkv", "aac")
    _, samples, config = _audio_heard(src)
    codec_private_rewritten(src, lambda value: value + jpeg + MARK)
    out = tmp_path / f"out{suffix}"
    report = anonymize_video_file(src, out, options=OPTS)
    data = out.read_bytes()
    assert jpeg[:256] not in data and MARK not in data
    assert report.audio_streams == 1 and not report.notes, report.notes
    name, heard, written = _audio_heard(out)
    assert name == "aac" and written == config and heard >= samples - 2048, (heard, samples)


@pytest.mark.parametrize("kind", ["opus-mkv", "flac", "opus-mp4"])
def test_flac_metadata_blocks_and_bytes_after_an_opus_header_are_not_written_out(
        tmp_path: Path, face: tuple[np.ndarray, bytes], kind: str) -> None:
    """An OpusHead in a Matroska CodecPrivate with a face's JPEG after it was copied whole into
    an .mkv output. Only the OpusHead itself is written now, and the track still plays. A FLAC
    CodecPrivate may hold every metadata block of a FLAC file (tags, pictures): FFmpeg's
    muxers wrote only STREAMINFO of it, and an MP4's dOps only the OpusHead's fields, already;
    copied_extradata keeps both so whatever the muxer."""
    rgb, jpeg = face
    codec = "flac" if kind == "flac" else "libopus"
    src = tone_video(tmp_path / "in.mkv", codec)
    _, samples, _ = _audio_heard(src)
    if kind == "flac":
        picture = flac_picture_block(jpeg, rgb.shape[1], rgb.shape[0]) + MARK
        codec_private_rewritten(src, lambda v: (b"fLaC\x00\x00\x00\x22" + v[-34:] + bytes([0x86])
                                                + len(picture).to_bytes(3, "big") + picture))
    else:
        codec_private_rewritten(src, lambda v: v + jpeg + MARK)
    assert MARK in src.read_bytes()
    out = tmp_path / ("out.mp4" if kind == "opus-mp4" else "out.mkv")
    report = anonymize_video_file(src, out, options=OPTS)
    data = out.read_bytes()
    assert jpeg[:256] not in data and MARK not in data
    assert report.audio_streams == 1 and not report.notes, report.notes
    name, heard, _ = _audio_heard(out)
    assert name == ("flac" if kind == "flac" else "opus") and heard >= samples - 2048, (heard, samples)


@pytest.mark.parametrize("codec, made, written, heard_as", [
    ("aac", ".mkv", ".mp4", "aac"), ("aac", ".mp4", ".mov", "aac"), ("libopus", ".mkv", ".mkv", "opus"),
    ("libopus", ".mkv", ".mp4", "opus"), ("flac", ".mkv", ".mp4", "flac"), ("pcm_s16le", ".mov", ".mov", "pcm_s16le"),
    ("pcm_s16le", ".mkv", ".mkv", "pcm_s16le"), ("pcm_s16le", ".mkv", ".mp4", "aac"), ("aac", ".mkv", ".avi", "aac"),
    ("libopus", ".mkv", ".avi", "mp3float"),
])
def test_honest_audio_tracks_still_come_through_and_play(tmp_path: Path, codec: str, made: str, written: str,
                                                         heard_as: str) -> None:
    """The control: ordinary AAC, Opus, FLAC and PCM tracks are copied (or re-encoded where the
    container cannot hold them) and decode from the output, near whole."""
    src = tone_video(tmp_path / f"in{made}", codec, 48000 if codec != "aac" else 44100)
    _, samples, _ = _audio_heard(src)
    out = tmp_path / f"out{written}"
    report = anonymize_video_file(src, out, options=OPTS)
    assert report.frames == 10 and report.audio_streams == 1
    assert not [n for n in report.notes if "left out" in n or "stopped" in n], report.notes
    name, heard, _ = _audio_heard(out)
    assert name == heard_as and heard >= samples - 4096, (name, heard, samples)


@pytest.mark.parametrize("kind", ["pcm-mkv", "adpcm-avi"])
def test_an_audio_track_claiming_a_rate_of_1_hz_is_left_out_in_bounded_memory(tmp_path: Path, kind: str) -> None:
    """A track claiming 1 sample a second: each sample became a second, one packet was decoded
    whole however many seconds it held, and the re-encode for AAC resampled it 7,350 times over.
    A 17 KB Matroska file of PCM peaked at 1.6 GB, a 51 KB AVI of MS-ADPCM at 3.1 GB, and both
    then raised an untyped av.error.ArgumentError. Audio under 8 kHz is neither decoded nor
    copied now. Measured in a fresh child process (VmHWM)."""
    src = (low_rate_pcm_video(tmp_path / "in.mkv") if kind == "pcm-mkv" else adpcm_rate_avi(tmp_path / "in.avi"))
    assert src.stat().st_size < 60_000
    grew, what = anonymize_peak_kib(src, tmp_path / "out.mp4", timeout=300)
    assert grew < 700 * 1024, (grew, what)
    assert what.startswith("0 ") and "left out: its header claims 1 channels at 1 Hz" in what, what


def test_an_audio_packet_is_decoded_only_when_it_is_small(tmp_path: Path) -> None:
    """How far re-encoded audio runs past the video is checked between packets, and a packet
    was decoded whole: one Matroska block of 75 s of 8 kHz PCM was decoded and re-encoded at
    once. A packet of more than 1 MiB or 10 s stops the track now, before it is decoded."""
    src = low_rate_pcm_video(tmp_path / "in.mkv", rate=8000, samples=600_000)
    report = anonymize_video_file(src, tmp_path / "out.mp4", options=OPTS)
    assert report.frames == 10
    assert any("stopped part way: a packet of 1200000 bytes" in n for n in report.notes), report.notes


@pytest.mark.slow
@needs_face
def test_a_face_stored_squeezed_is_searched_covered_and_checked_as_shown(tmp_path: Path) -> None:
    """Frames stored squeezed 3:1 with a sample aspect ratio of 3:1 show a normal face in every
    player; the squeezed pixels were searched, nothing was covered, the output was written
    squeezed without its aspect ratio, and the no-face check passed it (the face, stretched
    back, matched its photo at 0.99). Frames are searched, covered, written and checked in
    square pixels now, as they are shown."""
    photo = load_image(FACE)
    photo = np.asarray(Image.fromarray(photo).resize((photo.shape[1] // 2, photo.shape[0] // 2)))
    src = anamorphic_video(tmp_path / "in.mp4", photo, frames=2)  # the pixels' shape is tested, not the length
    finder = FaceFinder("hog", engine=DlibEngine())
    search = OPTS.search
    assert detectable_frames(src, search, finder) == list(range(2))  # as a player shows it
    out = tmp_path / "out.mp4"
    report = anonymize_video_file(src, out, options=OPTS, finder=finder)
    assert (report.width, report.height) == (960, 640) and report.frames_with_faces == 2
    with av.open(str(out)) as c:
        v = c.streams.video[0]
        assert (v.codec_context.width, v.codec_context.height) == (960, 640)
        assert v.sample_aspect_ratio in (None, 0, 1)
    assert detectable_frames(out, search, finder) == []


def test_pixel_shapes_are_stretched_never_squeezed() -> None:
    from fractions import Fraction

    from safeface.videoio import shown_size

    assert shown_size(320, 640, Fraction(3)) == (960, 640)
    assert shown_size(640, 240, Fraction(1, 2)) == (640, 480)
    assert shown_size(720, 576, Fraction(1)) == (720, 576)
