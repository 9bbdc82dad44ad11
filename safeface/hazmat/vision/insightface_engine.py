"""An engine on an installed insightface model pack, run with ONNX Runtime: the pack's SCRFD
detector (boxes and five points), ArcFace alignment to 112x112 chips, and its ArcFace recognizer.
Only those two files are ever loaded, each after its SHA-256 matches the pack record; attribute
models (gender/age) are never loaded.

Note on landmarks: SCRFD's five points are the eye centres, the nose tip and the mouth corners
(insightface's order), not dlib's eye corners and nose base."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Optional, Sequence, Union

import numpy as np

from ...errors import ModelError
from ...hashing import read_verified
from ...modelstore import packs
from . import scrfd
from .arcface_align import CHIP_SIZE, norm_crop
from .arrays import check_chips, check_rgb_image, l2_normalize
from .ort_session import default_providers, new_session
from .types import Face

DEFAULT_DET_SIZE = (640, 640)
DETECTORS = ("scrfd",)
_MIN_EMBEDDING_DIM = 64  # below this an output is a classifier (gender/age gives 3), not an embedding


def _resolve_dir(pack: Union[str, os.PathLike[str]], dest_dir: Optional[Path]) -> Path:
    if isinstance(pack, os.PathLike) or (isinstance(pack, str) and (os.sep in pack or "/" in pack)):
        return Path(pack)
    return packs.pack_dir(str(pack), dest_dir)


def _read_verified(path: Path, expected: str) -> bytes:
    # The bytes handed to ONNX Runtime are the bytes hashed: a file swapped between the check
    # and the load cannot slip through.
    return read_verified(path, expected, f"pack file {path} changed while it was being loaded; it is not loaded.")


def _arcface_normalization(model_bytes: bytes) -> tuple[float, float]:
    """(mean, std) for the recognizer's input. Models converted from MXNet subtract and scale
    inside the graph (their first nodes are Sub and Mul); the others expect (x - 127.5) / 127.5."""
    try:
        import onnx
    except ImportError:  # pragma: no cover - onnx is a hard dependency
        return 127.5, 127.5
    graph = onnx.load_model_from_string(model_bytes).graph
    names = [n.name for n in graph.node[:8]]
    has_sub = any(n.startswith(("Sub", "_minus")) for n in names)
    has_mul = any(n.startswith(("Mul", "_mul")) for n in names)
    return (0.0, 1.0) if has_sub and has_mul else (127.5, 127.5)


def _dim(v: Any) -> Optional[int]:
    return v if isinstance(v, int) and v > 0 else None


class InsightFaceEngine:
    """insightface pack on ONNX Runtime. `pack` is an installed pack's name (looked up in
    `dest_dir` or the packs directory) or the path of a pack directory."""

    name = "insightface"
    chip_size = CHIP_SIZE

    def __init__(
        self,
        pack: Union[str, os.PathLike[str]] = "buffalo_l",
        dest_dir: Optional[Path] = None,
        providers: Optional[Sequence[str]] = None,
        det_size: tuple[int, int] = DEFAULT_DET_SIZE,
        det_threshold: float = 0.5,
        nms_threshold: float = 0.4,
    ) -> None:
        verified = packs.verify_pack(_resolve_dir(pack, dest_dir))
        self.pack_dir = verified.directory
        self.pack_name = verified.record.name
        self.licence = verified.record.licence
        self.det_threshold = float(det_threshold)
        self.nms_threshold = float(nms_threshold)
        self._providers = list(providers) if providers else default_providers()
        det_bytes = _read_verified(verified.detector, verified.record.detector.sha256)
        rec_bytes = _read_verified(verified.recognizer, verified.record.recognizer.sha256)
        self._det = new_session(det_bytes, f"the detector of the pack at {self.pack_dir}", self._providers)
        self._rec = new_session(rec_bytes, f"the recognizer of the pack at {self.pack_dir}", self._providers)
        self._setup_detector(det_size)
        self._setup_recognizer(rec_bytes)
        self.providers = list(self._det.get_providers())

    # -- model introspection -------------------------------------------------------------------
    def _setup_detector(self, det_size: tuple[int, int]) -> None:
        inputs = self._det.get_inputs()
        if len(inputs) != 1 or len(inputs[0].shape) != 4:
            raise ModelError(f"{self.pack_dir}: the detector does not take one NCHW image; it is not an SCRFD model.")
        self._det_input = inputs[0].name
        shape = inputs[0].shape
        h, w = _dim(shape[2]), _dim(shape[3])
        # A model with a fixed input size is run at that size; a dynamic one at det_size.
        self.det_size = (w, h) if h and w else (int(det_size[0]), int(det_size[1]))
        if self.det_size[0] % 32 or self.det_size[1] % 32:
            raise ValueError(f"det_size {self.det_size} must be multiples of 32.")
        n_out = len(self._det.get_outputs())
        if n_out not in (9, 15):
            raise ModelError(
                f"{self.pack_dir}: the detector has {n_out} outputs; safeface needs an SCRFD model with "
                "five-point landmarks (9 or 15 outputs)."
            )

    def _setup_recognizer(self, rec_bytes: bytes) -> None:
        inputs = self._rec.get_inputs()
        outputs = self._rec.get_outputs()
        if len(inputs) != 1 or len(inputs[0].shape) != 4 or len(outputs) != 1:
            raise ModelError(f"{self.pack_dir}: the recognizer does not take one NCHW image to one embedding.")
        shape = inputs[0].shape
        if (_dim(shape[2]) or CHIP_SIZE) != CHIP_SIZE or (_dim(shape[3]) or CHIP_SIZE) != CHIP_SIZE:
            raise ModelError(f"{self.pack_dir}: the recognizer takes {shape[2]}x{shape[3]} input; ArcFace takes 112x112.")
        self._rec_input = inputs[0].name
        self._rec_batch = _dim(shape[0])  # None: any batch size
        self.input_mean, self.input_std = _arcface_normalization(rec_bytes)
        dim = _dim(outputs[0].shape[-1]) if outputs[0].shape else None
        if dim is None:
            probe = self._run_rec(np.zeros((1, CHIP_SIZE, CHIP_SIZE, 3), dtype=np.uint8))
            dim = int(probe.shape[-1])
        if dim < _MIN_EMBEDDING_DIM:
            raise ModelError(
                f"{self.pack_dir}: the recognizer gives {dim} values per face, which is a classifier "
                "(an attribute model?), not a face embedding; it is not used."
            )
        self.embedding_dim = int(dim)

    # -- detection -----------------------------------------------------------------------------
    def detect(self, image: np.ndarray, detector: str = "scrfd", upsample: int = 1) -> list[Face]:
        """Faces in an RGB image, best score first. `upsample` is accepted for the Engine
        protocol; SCRFD runs at its input size (det_size) and ignores it."""
        image = check_rgb_image(image)
        if detector not in DETECTORS:
            raise ValueError(f"the insightface engine has one detector, 'scrfd'; got {detector!r}.")
        lb = scrfd.letterbox(image, self.det_size)
        outs = self._det.run(None, {self._det_input: lb.blob})
        dets = scrfd.decode(outs, self.det_size, self.det_threshold)
        if dets.scores.size == 0:
            return []
        boxes = dets.boxes / lb.scale
        kps = dets.kps / lb.scale
        keep = scrfd.nms(boxes, dets.scores, self.nms_threshold)
        h, w = image.shape[:2]
        faces = []
        for i in keep:
            x1, y1, x2, y2 = (float(v) for v in boxes[i])
            box = (max(x1, 0.0), max(y1, 0.0), min(x2, float(w)), min(y2, float(h)))
            if box[2] <= box[0] or box[3] <= box[1]:
                continue
            faces.append(Face(box=box, score=float(dets.scores[i]), landmarks=kps[i].astype(np.float32), detector="scrfd"))
        return faces

    # -- alignment and embedding ---------------------------------------------------------------
    def chips(self, image: np.ndarray, faces: Sequence[Face]) -> np.ndarray:
        """Aligned (N, 112, 112, 3) uint8 RGB chips (ArcFace 5-point similarity transform)."""
        image = check_rgb_image(image)
        out = np.empty((len(faces), CHIP_SIZE, CHIP_SIZE, 3), dtype=np.uint8)
        for i, face in enumerate(faces):
            lm = np.asarray(face.landmarks, dtype=np.float64)
            if lm.shape != (5, 2):
                raise ValueError(f"face {i} has landmarks of shape {lm.shape}; five (x, y) points are needed.")
            out[i] = norm_crop(image, lm, CHIP_SIZE)
        return out

    def _run_rec(self, chips: np.ndarray) -> np.ndarray:
        # Chips are RGB already: insightface swaps its BGR images to RGB before this model.
        x = (chips.astype(np.float32) - self.input_mean) / self.input_std
        x = np.ascontiguousarray(x.transpose(0, 3, 1, 2))
        if self._rec_batch is None or self._rec_batch == len(x):
            return np.asarray(self._rec.run(None, {self._rec_input: x})[0])
        parts = [np.asarray(self._rec.run(None, {self._rec_input: x[i:i + 1]})[0]) for i in range(len(x))]
        return np.concatenate(parts)

    def raw_embeddings(self, chips: np.ndarray) -> np.ndarray:
        """The recognizer's outputs as it gives them (not unit length): (N, d) float32."""
        chips = check_chips(chips, CHIP_SIZE)
        if len(chips) == 0:
            return np.zeros((0, self.embedding_dim), dtype=np.float32)
        return self._run_rec(chips).reshape(len(chips), -1).astype(np.float32)

    def embed_chips(self, chips: np.ndarray) -> np.ndarray:
        """(N, d) float32 unit vectors from (N, 112, 112, 3) uint8 RGB chips."""
        return l2_normalize(self.raw_embeddings(chips))

