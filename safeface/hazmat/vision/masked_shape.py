"""Landmarks for masked faces: a 5-point shape model of dlib's kind (a cascade of regression trees)
trained by benches/masked_landmarks.py on faces wearing the synthetic masks of masks.py over LFW
dev images of the half of the people mask_detect.trained_on names; the other half measures it.

dlib's 5-point model was trained on bare faces. Under a mask it guesses the base of the nose and
pulls the eye corners after it: on the held-out half (the evaluation's masks) its eye points lie
0.073 eye distances from where it puts them on the bare face (mean; 0.136 at the 90th percentile)
and its nose 0.248. This model starts from a box set by those first landmarks and was taught the
bare face's landmarks as the answer: 0.038 for the eyes (0.062) and 0.066 for the nose. The
masked path aligns a masked face with it (visible.masked_landmarks). Its file is listed in the
model manifest with its SHA-256 like every model safeface loads: an altered or swapped file is
refused.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np

from ...modelstore import registry
from .arrays import check_rgb_image
from .masks import FaceFrame

MODEL_NAME = "safeface-masked-landmarks"
# Where benches/masked_landmarks.py --write puts it (the manifest names it there).
MODEL_FILE = Path(__file__).with_name("masked_landmarks.dat")
# The box the model reads a face in, from the face's first landmarks: a square BOX_SIDE eye
# distances wide, centred BOX_DOWN eye distances below the point between the eyes. Training and
# use must agree on it.
BOX_SIDE = 2.4
BOX_DOWN = 0.45


def frame_box(landmarks: np.ndarray) -> tuple[int, int, int, int]:
    """(left, top, right, bottom) in whole pixels: the box the model reads the face of these
    landmarks in."""
    frame = FaceFrame.from_landmarks(landmarks)
    cx, cy = frame.origin + BOX_DOWN * frame.unit * frame.uy
    half = BOX_SIDE * frame.unit / 2
    return int(round(cx - half)), int(round(cy - half)), int(round(cx + half)), int(round(cy + half))


class MaskedShapeModel:
    """dlib's shape predictor keeps no state between calls: one instance serves every thread."""

    def __init__(self) -> None:
        import dlib

        self._dlib = dlib
        self._model = dlib.shape_predictor(str(registry.verified_path(MODEL_NAME)))

    def landmarks(self, image: np.ndarray, first: np.ndarray) -> np.ndarray:
        """(5, 2) float32: the masked face's landmarks, in the 5-point model's order, read in the
        box that `first` (the 5-point model's landmarks of the same face) sets."""
        image = check_rgb_image(image)
        shape = self._model(image, self._dlib.rectangle(*frame_box(first)))
        return np.array([[shape.part(i).x, shape.part(i).y] for i in range(shape.num_parts)], dtype=np.float32)


@lru_cache(maxsize=1)
def shared_model() -> MaskedShapeModel:
    """The process's one model, built on first use."""
    return MaskedShapeModel()
