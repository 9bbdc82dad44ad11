"""An optional passive PAD model: an ONNX file the user supplies, pinned by SHA-256 with its
licence recorded. Off by default; no such model ships or is downloaded (none that is commercially
usable can be installed offline).

Configured in deployment.json:

    "liveness_model": {"file": "models/pad.onnx", "sha256": "<64 hex>", "licence": "...",
                       "input_size": 80, "crop_scale": 1.5, "live_index": 1, "threshold": 0.5,
                       "scale": 0.00392156862745098, "mean": 0.0, "bgr": false}

`file` is relative to the workspace. The model takes N x 3 x S x S float32 face crops (the
tracked face box grown by `crop_scale`, resized to S, (pixel * scale) - mean, RGB unless `bgr`)
and returns N x C logits or probabilities; class `live_index` is "live".

Combination rule: the model can only veto. A clip is live when the physics check, the replay
cues and the challenge say live AND the model's mean live probability over three tracked frames
reaches `threshold`; otherwise the decision is "attack" and the score is capped below 0.5. A
model never turns a planar or inconclusive clip into a live one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from ..errors import ConfigError
from ..hashing import read_verified
from ..hazmat.vision.ort_session import new_session


@dataclass(frozen=True)
class PadModelSpec:
    file: Path
    sha256: str
    licence: str
    input_size: int = 80
    crop_scale: float = 1.5
    live_index: int = 1
    threshold: float = 0.5
    scale: float = 1.0 / 255.0
    mean: float = 0.0
    bgr: bool = False

    @classmethod
    def from_mapping(cls, raw: Mapping[str, Any], base: Path) -> "PadModelSpec":
        if not isinstance(raw, Mapping):
            raise ConfigError("liveness_model must be an object: file, sha256, licence, ...")
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(raw) - known)
        if unknown:
            raise ConfigError(f"liveness_model: unknown keys {unknown}; known: {', '.join(sorted(known))}.")
        sha = str(raw.get("sha256") or "").lower()
        if len(sha) != 64 or any(c not in "0123456789abcdef" for c in sha):
            raise ConfigError("liveness_model.sha256 must be the file's SHA-256 (64 hex digits): the model is pinned.")
        licence = str(raw.get("licence") or "").strip()
        if not licence:
            raise ConfigError("liveness_model.licence must name the model's licence; it is recorded with every check.")
        if not str(raw.get("file") or "").strip():
            raise ConfigError("liveness_model.file must name the ONNX file (relative to the workspace).")
        try:
            spec = cls(file=(base / str(raw["file"])).resolve(), sha256=sha, licence=licence,
                       input_size=int(raw.get("input_size", 80)), crop_scale=float(raw.get("crop_scale", 1.5)),
                       live_index=int(raw.get("live_index", 1)), threshold=float(raw.get("threshold", 0.5)),
                       scale=float(raw.get("scale", 1.0 / 255.0)), mean=float(raw.get("mean", 0.0)),
                       bgr=bool(raw.get("bgr", False)))
        except (TypeError, ValueError, OverflowError):  # float() of a 400-digit whole number overflows
            raise ConfigError("liveness_model: input_size, live_index are whole numbers; crop_scale, threshold, "
                              "scale, mean are numbers.") from None
        if not (16 <= spec.input_size <= 512 and 0 <= spec.threshold <= 1 and spec.live_index >= 0
                and 1.0 <= spec.crop_scale <= 4.0 and math.isfinite(spec.scale) and math.isfinite(spec.mean)):
            raise ConfigError("liveness_model: input_size 16-512, threshold 0-1, crop_scale 1-4, live_index >= 0.")
        return spec


class PadModel:
    def __init__(self, spec: PadModelSpec) -> None:
        if not spec.file.is_file():
            raise ConfigError(f"the PAD model {spec.file} named by liveness_model.file is missing.")
        data = read_verified(spec.file, spec.sha256, f"the PAD model {spec.file} does not match its pinned SHA-256; "
                             "it was changed or replaced. Restore it or pin the new file deliberately.")
        self.spec = spec
        self._session = new_session(data, f"the PAD model {spec.file.name}")
        self._input = self._session.get_inputs()[0].name

    def _crop(self, frame: np.ndarray, box: Sequence[float]) -> np.ndarray:
        import cv2

        s = self.spec
        x1, y1, x2, y2 = box
        cx, cy, side = (x1 + x2) / 2, (y1 + y2) / 2, max(x2 - x1, y2 - y1) * s.crop_scale
        # Outside the frame is black, as the models in use expect of a face near the border.
        k = s.input_size / side
        m = np.array([[k, 0, s.input_size / 2 - cx * k], [0, k, s.input_size / 2 - cy * k]], dtype=np.float32)
        crop = cv2.warpAffine(frame, m, (s.input_size, s.input_size), flags=cv2.INTER_LINEAR)
        if s.bgr:
            crop = crop[..., ::-1]
        out: np.ndarray = (crop.astype(np.float32) * s.scale - s.mean).transpose(2, 0, 1)
        return out

    def live_probability(self, frames: Sequence[np.ndarray], boxes: Sequence[Sequence[float]]) -> float:
        batch = np.stack([self._crop(f, b) for f, b in zip(frames, boxes)]).astype(np.float32)
        out = np.asarray(self._session.run(None, {self._input: batch})[0], dtype=np.float64).reshape(len(batch), -1)
        if self.spec.live_index >= out.shape[1]:
            raise ConfigError(f"liveness_model.live_index {self.spec.live_index} but the model gives "
                              f"{out.shape[1]} classes.")
        if np.all((out >= 0) & (out <= 1)) and np.allclose(out.sum(axis=1), 1.0, atol=1e-3):
            probs = out
        else:
            e = np.exp(out - out.max(axis=1, keepdims=True))
            probs = e / e.sum(axis=1, keepdims=True)
        return float(probs[:, self.spec.live_index].mean())

    def describe(self) -> dict[str, Any]:
        return {"sha256": self.spec.sha256[:16], "licence": self.spec.licence, "threshold": self.spec.threshold}
