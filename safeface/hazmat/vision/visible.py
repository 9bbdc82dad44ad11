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
from .masked_shape import shared_model
from .masks import MASK_KINDS, draw_mask
from .types import Face

if TYPE_CHECKING:
    from .pipeline import Pipeline

# One fixed seed: the same enrolment image always gives the same template.
VISIBLE_SEED = 0


def masked_landmarks(image: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    """The 5 landmarks of a masked face: dlib's 5-point model misplaces them under a mask (the
    base of the nose most, the eyes after it); the masked-face shape model (masked_shape.py) reads
    them again in the box the first ones set."""
    return shared_model().landmarks(image, landmarks)


def visible_region_embedding(pipeline: "Pipeline", image: ImageInput, face: Face, *, masked: bool = False) -> np.ndarray:
    """Unit float32 embedding of `face` of `image` under each synthetic mask kind, averaged. The
    chips keep the face's own landmarks, so the alignment is the image's own; with `masked` (the
    face wears a mask), the landmarks of masked_landmarks."""
    img = load_image(image)
    if masked:
        face = replace(face, landmarks=masked_landmarks(img, face.landmarks))
    chips = np.concatenate([pipeline.engine.chips(draw_mask(img, face.landmarks, face.box, kind, VISIBLE_SEED), [face])
                            for kind in MASK_KINDS])
    vecs = pipeline.embed_chips(chips)
    out: np.ndarray = l2_normalize(vecs.mean(axis=0, keepdims=True))[0].astype(np.float32)
    return out
