"""Real faces for tests and benchmarks: aligned chips from an LFW-style folder."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from safeface.imageio import load_image


def lfw_face_chips(engine: Any, root: Path, n: int) -> np.ndarray:
    """Aligned chips of the first `n` images under `root` (one folder per person, in name order)
    where HOG without upsampling finds a face; fewer if the folder holds fewer."""
    chips = []
    for person in sorted(p for p in root.iterdir() if p.is_dir()):
        for path in sorted(person.glob("*.jpg")):
            image = load_image(path)
            faces = engine.detect(image, "hog", upsample=0)
            if faces:
                chips.append(engine.chips(image, faces[:1])[0])
            if len(chips) == n:
                return np.stack(chips)
    return np.stack(chips) if chips else np.zeros((0, 150, 150, 3), np.uint8)


def jpeg_640(path: Path) -> bytes:
    """The image scaled and padded to 640x480, as JPEG bytes in memory (what a gate camera sends)."""
    import io

    from PIL import Image

    im = Image.open(path).convert("RGB")
    im.thumbnail((640, 480))
    canvas = Image.new("RGB", (640, 480), (128, 128, 128))
    canvas.paste(im, ((640 - im.width) // 2, (480 - im.height) // 2))
    buf = io.BytesIO()
    canvas.save(buf, "JPEG", quality=90)
    return buf.getvalue()
