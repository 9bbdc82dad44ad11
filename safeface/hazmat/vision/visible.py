"""The visible-region template: what the recognizer makes of a face once a mask hides its lower
half. Made by drawing each kind of synthetic mask over the face and averaging the embeddings: at
enrolment from the bare image, and for a masked probe from the probe itself, whose own mask the
synthetic ones then cover. Both sides wear the same four masks, whatever mask the probe wore
(on LFW dev this beat matching the masked probe's plain embedding: benches/masked_repr.py)."""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

import numpy as np

from ...imageio import ImageInput, load_image
from .arrays import l2_normalize
from .masks import MASK_KINDS, FaceFrame, draw_mask
from .types import Face

if TYPE_CHECKING:
    from .pipeline import Pipeline

# One fixed seed: the same enrolment image always gives the same template.
VISIBLE_SEED = 0
# Under a mask the 5-point model guesses where the base of the nose is. On LFW dev (held-out half,
# the evaluation's masks) its guess lay 0.20 eye distances from where it sits on the bare face,
# mostly up or down (0.17); the depth below the eyes that bare faces of the training half have on
# average (benches/masked_face_detector.py prints it) misses by 0.14. A masked face keeps the
# model's nose across the face (which follows a turned head) and takes this depth.
MASKED_NOSE_DEPTH = 0.756


def masked_landmarks(landmarks: np.ndarray) -> np.ndarray:
    """The 5 landmarks of a masked face with the base of the nose put MASKED_NOSE_DEPTH eye
    distances below the eyes (along the face)."""
    frame = FaceFrame.from_landmarks(landmarks)
    out = np.array(landmarks, dtype=np.float32).reshape(5, 2)
    across = float(np.dot(out[4] - frame.origin, frame.ux)) / frame.unit
    out[4] = frame.to_image(np.array([across, MASKED_NOSE_DEPTH]))
    return out


def visible_region_embedding(pipeline: "Pipeline", image: ImageInput, face: Face, *, masked: bool = False) -> np.ndarray:
    """Unit float32 embedding of `face` of `image` under each synthetic mask kind, averaged. The
    chips keep the face's own landmarks, so the alignment is the image's own; with `masked` (the
    face wears a mask), the nose's depth from masked_landmarks."""
    img = load_image(image)
    if masked:
        face = replace(face, landmarks=masked_landmarks(face.landmarks))
    chips = np.concatenate([pipeline.engine.chips(draw_mask(img, face.landmarks, face.box, kind, VISIBLE_SEED), [face])
                            for kind in MASK_KINDS])
    vecs = pipeline.embed_chips(chips)
    out: np.ndarray = l2_normalize(vecs.mean(axis=0, keepdims=True))[0].astype(np.float32)
    return out
