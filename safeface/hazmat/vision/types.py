"""Values the vision pipeline hands out."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Optional, Protocol, Sequence, runtime_checkable

import numpy as np


@dataclass(frozen=True)
class Face:
    """One detected face. `box` is (x1, y1, x2, y2) in pixels of the decoded image, clipped to it;
    `landmarks` are five (x, y) points: eye corners and the base of the nose, dlib's order."""

    box: tuple[float, float, float, float]
    score: float
    landmarks: np.ndarray = field(repr=False)
    detector: str = "hog"

    @property
    def area(self) -> float:
        x1, y1, x2, y2 = self.box
        return max(0.0, x2 - x1) * max(0.0, y2 - y1)

    def to_dict(self) -> dict[str, object]:
        return {
            "box": [round(float(v), 2) for v in self.box],
            "score": round(float(self.score), 4),
            "landmarks": [[round(float(x), 2), round(float(y), 2)] for x, y in self.landmarks],
        }


class Outcome(enum.Enum):
    """What looking for one face in an image found."""

    FOUND = "found"
    NO_FACE = "no_face"
    SEVERAL_FACES = "several_faces"


@dataclass(frozen=True)
class FaceEmbedding:
    """The result of embedding the face of an image. `embedding` is a float32 unit vector, or None
    when no face was found. With several faces, the subject is embedded (the pipeline's pick
    rule) and `outcome` says so."""

    outcome: Outcome
    faces: tuple[Face, ...]
    face: Optional[Face]
    embedding: Optional[np.ndarray] = field(default=None, repr=False)

    @property
    def found(self) -> bool:
        return self.embedding is not None


@runtime_checkable
class Engine(Protocol):
    """A recognition engine: detector, 5-point landmarks, aligned chips and descriptors."""

    name: str
    embedding_dim: int
    chip_size: int

    def detect(self, image: np.ndarray, detector: str = "hog", upsample: int = 1) -> list[Face]: ...

    def chips(self, image: np.ndarray, faces: Sequence[Face]) -> np.ndarray: ...

    def embed_chips(self, chips: np.ndarray) -> np.ndarray: ...
