"""The visible-region template: what the recognizer makes of a face once a mask hides its lower
half. Made by drawing each kind of synthetic mask over the face and averaging the embeddings: at
enrolment from the bare image, and for a masked probe from the probe itself, whose own mask the
synthetic ones then cover. Both sides wear the same four masks, whatever mask the probe wore
(on LFW dev this beat matching the masked probe's plain embedding: benches/masked_repr.py)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ...imageio import ImageInput, load_image
from .arrays import l2_normalize
from .masks import MASK_KINDS, draw_mask
from .types import Face

if TYPE_CHECKING:
    from .pipeline import Pipeline

# One fixed seed: the same enrolment image always gives the same template.
VISIBLE_SEED = 0


def visible_region_embedding(pipeline: "Pipeline", image: ImageInput, face: Face) -> np.ndarray:
    """Unit float32 embedding of `face` of `image` under each synthetic mask kind, averaged. The
    chips keep the face's own landmarks, so the alignment is the image's own."""
    img = load_image(image)
    chips = np.concatenate([pipeline.engine.chips(draw_mask(img, face.landmarks, face.box, kind, VISIBLE_SEED), [face])
                            for kind in MASK_KINDS])
    vecs = pipeline.embed_chips(chips)
    out: np.ndarray = l2_normalize(vecs.mean(axis=0, keepdims=True))[0].astype(np.float32)
    return out
