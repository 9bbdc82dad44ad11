"""The trained classifiers of the vision checks (mask_detect.py: logistic; eye_cover.py: one
hidden layer of tanh units, then logistic): weights read from a JSON file shipped with safeface,
never pickled."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from ...errors import ModelError


@dataclass(frozen=True)
class Classifier:
    mean: np.ndarray
    scale: np.ndarray
    weights: np.ndarray
    bias: float
    threshold: float
    model_id: str  # names the weights, so caches of decisions never outlive them
    hidden_weights: Optional[np.ndarray] = None  # (inputs, units)
    hidden_bias: Optional[np.ndarray] = None

    def confidence(self, features: np.ndarray, what: str) -> np.ndarray:
        """The probability for each row of `features`; `what` names the check in an error."""
        x = np.atleast_2d(features)
        if x.shape[1] != self.mean.shape[0]:
            raise ModelError(f"the {what} weighs {self.mean.shape[0]} values per face, got {x.shape[1]}: "
                             "it was trained for the dlib engine's 128-value embeddings.")
        z = (x - self.mean) / self.scale
        if self.hidden_weights is not None and self.hidden_bias is not None:
            z = np.tanh(z @ self.hidden_weights + self.hidden_bias)
        return np.asarray(1.0 / (1.0 + np.exp(-np.clip(z @ self.weights + self.bias, -60, 60))))


def load_classifier(path: Path) -> Classifier:
    raw = path.read_bytes()
    doc = json.loads(raw)
    mean, scale, weights = (np.asarray(doc[k], dtype=np.float64) for k in ("mean", "scale", "weights"))
    hw = hb = None
    if "hidden_weights" in doc:
        hw, hb = np.asarray(doc["hidden_weights"], dtype=np.float64), np.asarray(doc["hidden_bias"], dtype=np.float64)
    inner = weights.shape[0] if hw is None else mean.shape[0]
    ok = (mean.ndim == 1 and mean.shape == scale.shape and weights.ndim == 1 and inner == mean.shape[0]
          and (hw is None or (hb is not None and hw.shape == (mean.shape[0], weights.shape[0])
                              and hb.shape == weights.shape)))
    if not ok:
        raise ModelError(f"{path} is damaged (its arrays do not fit together); reinstall safeface.")
    return Classifier(mean, scale, weights, float(doc["bias"]), float(doc["threshold"]),
                      hashlib.sha256(raw).hexdigest()[:12], hw, hb)
