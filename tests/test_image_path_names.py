"""Image and clip paths no file can have: a NUL inside, a lone surrogate, an os.PathLike that
gives bytes. The system refuses each with a bare ValueError or TypeError; safeface's entry
points must refuse them with ImageError, saying which path, and an audited call must record
them as the caller's image problem rather than a backend failure."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from policy_support import PASSPHRASE, consent, make_workspace  # noqa: E402

from safeface.anonymize.api import anonymize_file  # noqa: E402
from safeface.capture.clip import read_clip  # noqa: E402
from safeface.errors import ImageError  # noqa: E402
from safeface.imageio import load_image  # noqa: E402
from safeface.sdk import SafeFace  # noqa: E402


class BytesPath:
    """An os.PathLike whose path is bytes."""

    def __fspath__(self) -> bytes:
        return b"/etc/hostname"


BAD_NAMES: list[Any] = ["photo\x00.jpg", "\ud800.jpg", BytesPath()]


@pytest.mark.parametrize("name", BAD_NAMES)
def test_an_image_path_no_file_can_have_is_an_image_error(name: Any) -> None:
    """A caller passes a NUL, a lone surrogate or a bytes path-like as the image: ImageError."""
    with pytest.raises(ImageError, match="path"):
        load_image(name)


def test_a_clip_or_anonymize_path_with_a_nul_is_an_image_error(tmp_path: Path) -> None:
    """A caller names a clip, or an anonymizer's output, with a NUL inside: ImageError, not a
    bare ValueError from the system."""
    for clip in ("clip\x00.mp4", "\ud800.mp4"):
        with pytest.raises(ImageError, match="NUL"):
            read_clip(clip)
    src = tmp_path / "in.png"
    src.write_bytes(b"not read")
    with pytest.raises(ImageError, match="NUL"):
        anonymize_file(src, str(tmp_path / "out\x00.png"))


def test_an_audited_call_records_a_nul_path_as_an_image_error(tmp_path: Path) -> None:
    """An app passes a path with a NUL to verify: an ImageError on record, not a BackendError
    blaming the pipeline or the store."""
    ws = make_workspace(tmp_path / "ws")
    with SafeFace.open(ws.root, PASSPHRASE) as sf:
        with pytest.raises(ImageError, match="NUL"):
            sf.verify("face\x00.jpg", "alice", "demo", consent(ws, "alice"))
        assert sf.facts()["audit"]["by_operation"]["verify"]["failed"] == 1
