"""Template protection as ISO/IEC 30136 asks it to be measured.

1. Performance: verification scores of raw and of protected templates (one key) must agree,
   since the keyed transform keeps inner products.
2. Unlinkability: templates of the same test set protected under two deployments' keys are
   compared across the keys; D_sys (Gomez-Barrero et al., 2018) says how far an attacker can
   tell mated from non-mated pairs from those linkage scores (0: not at all, 1: always).
   The same measure between raw templates is reported as the baseline without protection.
Keys are drawn fresh for each run and never leave this process."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Mapping, Optional, Protocol, Sequence

import numpy as np

from ..errors import ConfigError
from . import metrics
from .datasets import Pair
from .embedcache import Record


class Transform(Protocol):
    def apply(self, x: np.ndarray) -> np.ndarray: ...


TransformFactory = Callable[[bytes, int], Transform]


def default_factory() -> TransformFactory:
    """The deployment transform of safeface.hazmat.templates (`TemplateTransform.from_key(key, dim)`)."""
    try:
        from ..hazmat.templates.transform import TemplateTransform
    except ImportError:
        raise ConfigError("template protection is not part of this build (safeface.hazmat.templates.transform is "
                          "missing); install a safeface with protected templates to run this evaluation.") from None
    factory: TransformFactory = TemplateTransform.from_key
    return factory


def _cos(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    out: np.ndarray = np.sum(a * b, axis=1)
    return out


def protection_metrics(pairs: Sequence[Pair], records: Mapping[Path, Record], dim: int,
                       factory: Optional[TransformFactory] = None, bins: Optional[int] = None,
                       keys: Optional[tuple[bytes, bytes]] = None) -> tuple[dict[str, object], dict[str, metrics.Unlinkability], dict[str, np.ndarray]]:
    """(figures, {"protected", "raw"} unlinkability, linkage scores) on the acquired pairs."""
    factory = factory or default_factory()
    usable = [p for p in pairs if records[p.image1].embedding is not None and records[p.image2].embedding is not None]
    if not any(p.same for p in usable) or all(p.same for p in usable):
        raise ConfigError("protection needs mated and non-mated pairs where both images gave a face.")
    a = np.stack([records[p.image1].embedding for p in usable]).astype(np.float32)  # type: ignore[misc]
    b = np.stack([records[p.image2].embedding for p in usable]).astype(np.float32)  # type: ignore[misc]
    same = np.array([p.same for p in usable])
    k1, k2 = keys or (os.urandom(32), os.urandom(32))
    t1, t2 = factory(k1, dim), factory(k2, dim)
    raw = _cos(a, b)
    prot = _cos(np.asarray(t1.apply(a), dtype=np.float64), np.asarray(t1.apply(b), dtype=np.float64))
    cross = _cos(np.asarray(t1.apply(a), dtype=np.float64), np.asarray(t2.apply(b), dtype=np.float64))
    thr_raw, acc_raw = metrics.best_threshold(raw, same)
    thr_prot, acc_prot = metrics.best_threshold(prot, same)
    u_prot = metrics.unlinkability(cross[same], cross[~same], bins=bins)
    u_raw = metrics.unlinkability(raw[same], raw[~same], bins=bins)
    eer_raw, _ = metrics.eer(raw[same], raw[~same])
    eer_prot, _ = metrics.eer(prot[same], prot[~same])
    figures: dict[str, object] = {
        "pairs_used": int(len(usable)),
        "accuracy_raw": acc_raw, "accuracy_protected": acc_prot,
        "threshold_raw": thr_raw, "threshold_protected": thr_prot,
        "eer_raw": eer_raw, "eer_protected": eer_prot,
        "max_score_difference": float(np.max(np.abs(raw - prot))),
        "scores_agree": bool(np.max(np.abs(raw - prot)) < 1e-4),
        "dsys_across_keys": u_prot.dsys,
        "dsys_raw_baseline": u_raw.dsys,
        "bins": int(len(u_prot.local)),
    }
    return figures, {"protected": u_prot, "raw": u_raw}, {"cross_mated": cross[same], "cross_nonmated": cross[~same],
                                                         "raw_mated": raw[same], "raw_nonmated": raw[~same]}
