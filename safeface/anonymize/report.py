"""What one anonymization did, for the caller and for an audit record (hash and count only)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Optional


@dataclass(frozen=True)
class AnonymizeReport:
    """`input_sha256` is the hash of the input file's bytes (or of the array's type, shape and
    bytes when an array was given); `face_count` the faces covered (for video: distinct face tracks).
    `regions` are the covered rectangles [x1, y1, x2, y2] (image only). Nothing here can be
    used to recognise anyone. `smallest_face` (video only): about the narrowest face, in px of
    the frame, that every frame was searched for; narrower faces may be left uncovered. `fps`
    (video only): the frame rate read from the stream the frames came from."""

    kind: str
    input_sha256: str
    face_count: int
    mode: str
    margin: float
    detector: str
    width: int
    height: int
    regions: tuple[tuple[int, int, int, int], ...] = ()
    passes: int = 1
    frames: int = 1
    frames_with_faces: int = 0
    detections: int = 0
    audio_streams: int = 0
    output_path: Optional[str] = None
    output_sha256: Optional[str] = None
    notes: tuple[str, ...] = field(default=())
    smallest_face: Optional[float] = None
    fps: Optional[float] = None

    def to_dict(self) -> dict[str, object]:
        d = asdict(self)
        d["regions"] = [list(r) for r in self.regions]
        d["notes"] = list(self.notes)
        return d
