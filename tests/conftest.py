"""Shared fixtures: the real images in ../shared/datasets, and one engine per test session."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any, Iterator

# Each xdist worker (-n 3 on two cores) computing with two BLAS threads of its own oversubscribes
# the machine, and OpenBLAS's waiting threads then slow a 128x128 QR from 1 ms to hundreds: one
# thread per worker, set before NumPy loads OpenBLAS. A caller's own setting is kept.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import pytest  # noqa: E402

# The tests' own helper modules (datasets_path, policy_support, child_process, ...) import by name.
sys.path.insert(0, str(Path(__file__).resolve().parent))
from datasets_path import datasets as datasets_root  # noqa: E402


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Files holding slow tests run first, each file's tests kept together and in order: on
    several workers (-n 3), the run then ends on quick tests instead of one worker finishing a
    minute-long video test while the other waits."""
    slow_files = {item.path for item in items if item.get_closest_marker("slow") is not None}
    items.sort(key=lambda item: item.path not in slow_files)


@pytest.fixture(scope="session", autouse=True)
def _isolated_home(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Converted models and fetched packs go to a temporary folder, never the user's home."""
    os.environ["SAFEFACE_HOME"] = str(tmp_path_factory.mktemp("safeface-home"))


@pytest.fixture(scope="session", autouse=True)
def _light_keyrings() -> Iterator[None]:
    """Workspaces created in this process derive their passphrase key with scrypt at n=2**10, not
    the interactive-login n=2**15: every create and open derives it, about 0.1 s each at full
    strength, which was a fifth of the suite's time. Keyrings record their settings, so opening
    one made at full strength still derives at full strength; children started by the tests
    (the CLI, the service) keep the full default."""
    from safeface.hazmat.templates import keyring

    full = keyring.DEFAULT_SCRYPT
    keyring.DEFAULT_SCRYPT = keyring.ScryptParams(n=2**10, r=full.r, p=full.p)
    yield
    keyring.DEFAULT_SCRYPT = full


@pytest.fixture(scope="session")
def datasets() -> Path:
    root = datasets_root()
    if not root.is_dir():
        pytest.skip(f"real face images not found at {root} (set SAFEFACE_DATASETS to the shared datasets folder)")
    return root


@pytest.fixture(scope="session")
def fr_images(datasets: Path) -> Path:
    return datasets / "face_recognition"


@pytest.fixture(scope="session")
def dlib_engine():  # type: ignore[no-untyped-def]
    from safeface.hazmat.vision.dlib_engine import DlibEngine

    return DlibEngine()


@pytest.fixture(scope="session")
def pg() -> Iterator[Any]:
    """A real PostgreSQL cluster for the session (server_support.py), shared by every test file
    that uses the server backends."""
    from server_support import pg_fixture

    yield from pg_fixture()


@pytest.fixture(scope="session")
def milvus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """One Milvus Lite server for the session's server-store tests."""
    from server_support import server_modules, start_milvus

    server_modules()
    srv = start_milvus(tmp_path_factory.mktemp("milvus") / "data")
    yield srv
    srv.kill()


@pytest.fixture(scope="session")
def masked_performer(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, int, list[int]]:
    """video_fixtures.masked_performer_clip, made once for the session (the anonymizer's and the
    tracker's tests read it, neither writes it): its path, its frame count, and the frames the
    masked video search finds a face in (the check that the masked face is there to find)."""
    from safeface.anonymize import VideoOptions, detectable_frames
    from video_fixtures import masked_performer_clip

    src, count = masked_performer_clip(tmp_path_factory.mktemp("masked-performer") / "masked.mp4")
    return src, count, detectable_frames(src, VideoOptions(masked=True).search)
