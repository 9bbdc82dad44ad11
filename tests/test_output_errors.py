"""EXIF orientations that mirror, output paths that cannot be replaced or followed, and key
exports through a link into the workspace: each turned the right way, or a typed error."""
from __future__ import annotations

import errno
import io
import os
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from policy_support import PASSPHRASE, make_workspace  # noqa: E402

from safeface.errors import ConfigError  # noqa: E402
from safeface.imageio import load_image  # noqa: E402


def _corner() -> np.ndarray:
    a = np.zeros((40, 60, 3), np.uint8)
    a[:10, :10] = (255, 0, 0)  # top-left red
    a[-5:, -20:] = (0, 0, 255)  # bottom-right blue: tells a transpose from a transverse
    return a


UPRIGHT = {2: lambda a: a[:, ::-1], 4: lambda a: a[::-1], 5: lambda a: a.transpose(1, 0, 2),
           7: lambda a: np.rot90(a, 2).transpose(1, 0, 2)}


@pytest.mark.parametrize("orientation", sorted(UPRIGHT))
def test_mirrored_exif_orientations_turn_the_right_way(orientation: int) -> None:
    exif = Image.Exif()
    exif[0x0112] = orientation
    buf = io.BytesIO()
    Image.fromarray(_corner()).save(buf, format="PNG", exif=exif.tobytes())
    assert np.array_equal(load_image(buf.getvalue()), UPRIGHT[orientation](_corner()))


def test_a_failed_rename_is_a_typed_error_and_leaves_no_temporary(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    import safeface.atomicfile as af

    def refuse(*a: object, **k: object) -> None:
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(af.os, "replace", refuse)
    with pytest.raises(ConfigError, match="could not be replaced"):
        with af.atomic_path(tmp_path / "out.bin") as p:
            p.write_bytes(b"x")
    assert os.listdir(tmp_path) == []


def test_an_export_through_a_linked_folder_or_a_relative_path_does_not_replace_the_keyring(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from safeface.workspace.admin import keys_export

    monkeypatch.setenv("SAFEFACE_PASSPHRASE", PASSPHRASE)
    ws = make_workspace(tmp_path / "ws")
    keyring = (ws.root / "keys" / "keyring.json").read_bytes()
    (tmp_path / "alias").symlink_to(ws.root)
    monkeypatch.chdir(tmp_path)
    for out in (tmp_path / "alias" / "keys" / "keyring.json", Path("ws") / "keys" / "keyring.json"):
        with pytest.raises(ConfigError, match="inside the workspace"):
            keys_export(ws.root, "consent-issuer", out)
    assert (ws.root / "keys" / "keyring.json").read_bytes() == keyring


def test_an_output_path_through_a_link_loop_is_a_typed_error(tmp_path: Path) -> None:
    from safeface.atomicfile import write_atomic

    (tmp_path / "l1.json").symlink_to(tmp_path / "l2.json")
    (tmp_path / "l2.json").symlink_to(tmp_path / "l1.json")
    with pytest.raises(ConfigError, match="cannot be written"):
        write_atomic(tmp_path / "l1.json", b"{}")
