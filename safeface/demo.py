"""The sample images the demo runs on: those the insightface package ships."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from .errors import ConfigError

SAMPLE_IMAGES = ("t1.jpg", "Tom_Hanks_54745.png")


def sample_image_dir() -> Path:
    """insightface's data/images folder, found without importing insightface (which would pull
    in OpenCV and its attribute models)."""
    spec = importlib.util.find_spec("insightface")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(
            "the demo runs on the sample images of the insightface package, which is not installed; "
            "run: pip install 'safeface[cpu]'"
        )
    folder = Path(list(spec.submodule_search_locations)[0]) / "data" / "images"
    missing = [n for n in SAMPLE_IMAGES if not (folder / n).is_file()]
    if missing:
        raise ConfigError(f"insightface's sample images {missing} are missing from {folder}; reinstall insightface.")
    return folder
