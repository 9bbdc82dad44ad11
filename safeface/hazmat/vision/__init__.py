"""Engines that detect, align and embed faces, and the pipeline that chains them.
This package knows nothing of consent, purposes or the gallery."""

from __future__ import annotations

import os
import threading
from typing import Any, Optional

from ...errors import ModelError
from .pipeline import DEFAULT_PICK, PICKS, Pipeline, PipelineConfig, cosine, euclidean_equivalent, pick_subject
from .types import Engine, Face, FaceEmbedding, Outcome

# Cosine score at or above which two faces of the dlib ResNet are the same person. Chosen on the
# LFW dev pairs (best single threshold 0.908-0.909 for plain and flip-averaged descriptors); it
# equals a Euclidean distance of about 0.59 on dlib's raw descriptors (norm ~1.387), next to the
# 0.6 that dlib and face_recognition use.
DEFAULT_THRESHOLD = 0.91
# The masked path's threshold: a probe the mask detector calls masked is matched, by its
# visible-region embedding, against the visible-region templates, whose impostor scores run
# higher. Set apart from the measured people (evaluate/masked.calibrate_on_trained_half): on every
# different-person pair of the LFW dev half the mask detector was trained on (749 images, 554,186
# masked-path impostor pairs, random synthetic masks drawn before detection, masked faces aligned
# on the masked-face shape model's landmarks), where masked-path impostors reach the FMR that
# DEFAULT_THRESHOLD gives bare impostors there (1.03%): 0.9531.
DEFAULT_MASKED_THRESHOLD = 0.953
# A masked probe against the visible-region template of a row whose enrolment image was masked
# too (its row is flagged inside the seal). Two masked strangers can look more alike than a masked
# stranger and a bare face: with the 5-point model's landmarks on masked faces, both-masked pairs
# reached an FMR of 1.4% at the masked threshold against 0.8% unmasked. Calibrated the same way on
# the same half (274,499 both-masked impostor pairs): 0.9531, the masked threshold's value since
# masked faces are aligned apart (visible.masked_landmarks); kept apart so that a deployment can
# calibrate it on its own captures.
DEFAULT_BOTH_MASKED_THRESHOLD = 0.953


def masked_default(default: float, plain: float) -> float:
    """A masked path's threshold where the deployment sets none, under the plain threshold
    `plain`. `default` (DEFAULT_MASKED_THRESHOLD or DEFAULT_BOTH_MASKED_THRESHOLD) was set where
    masked impostors reach the FMR of DEFAULT_THRESHOLD: kept under a plain threshold as loose or
    looser, and moved toward 1 in proportion to a stricter one (1 - t scaled alike), since a
    stranger sent down the masked path by a mask must not get the looser bar the operator raised
    the plain one past (at a plain 0.93, 0.953 let 18 times the plain FMR through; the scaled
    0.963 about 2.4 times, on 247 LFW dev people under random masks)."""
    if plain <= DEFAULT_THRESHOLD:
        return default
    return 1.0 - (1.0 - default) * (1.0 - plain) / (1.0 - DEFAULT_THRESHOLD)


def masked_thresholds(plain: float, masked: Optional[float] = None,
                      both_masked: Optional[float] = None) -> tuple[float, float]:
    """The masked and both-masked thresholds in force under the plain threshold `plain`, each the
    value set (`masked`, `both_masked`) or, where None, its default (`masked_default`); the
    SDK and the evaluation both take them from here, so a report measures the bars a deployment
    applies. An unset both-masked threshold is never looser than the masked one: two masked
    strangers look more alike than a masked stranger and a bare face, and left at its default under
    a masked threshold raised by hand, it let a masked stranger meet a masked enrolment at 0.953."""
    m = masked_default(DEFAULT_MASKED_THRESHOLD, plain) if masked is None else masked
    b = max(masked_default(DEFAULT_BOTH_MASKED_THRESHOLD, plain), m) if both_masked is None else both_masked
    return m, b

ENGINES = ("dlib", "onnx")
# The same networks as "dlib" with equal descriptors (max difference < 1e-6 on LFW) and equal
# MMOD boxes, 15-25x faster; converted from dlib's files on first use.
DEFAULT_ENGINE = "onnx"


# Engines made with no settings, one per name and process: an engine is thread-safe, and each
# holds dlib's models and ONNX Runtime sessions (about a second to load, and their memory), which
# every handle of a process opening its own made a service's or a test run's handles slow to
# start. Keyed by the process too: a forked child makes its own (ONNX Runtime's threads do not
# survive a fork).
_SHARED: dict[tuple[str, int], Engine] = {}
_SHARED_LOCK = threading.Lock()


def get_engine(name: str = DEFAULT_ENGINE, **kwargs: Any) -> Engine:
    """An engine by name: "dlib" (dlib on the CPU) or "onnx" (the same networks on ONNX Runtime).
    With no settings, the process's shared engine of that name; with settings, a new one."""
    if name not in ENGINES:
        raise ModelError(f"unknown engine {name!r}; choose one of: {', '.join(ENGINES)}.")
    if kwargs:
        return _new_engine(name, **kwargs)
    key = (name, os.getpid())
    with _SHARED_LOCK:
        engine = _SHARED.get(key)
        if engine is None:
            engine = _SHARED[key] = _new_engine(name)
        return engine


def _new_engine(name: str, **kwargs: Any) -> Engine:
    if name == "dlib":
        from .dlib_engine import DlibEngine

        return DlibEngine()
    try:
        from .onnx_engine import OnnxEngine
    except ImportError as exc:
        raise ModelError(
            f"the ONNX engine is unavailable ({exc}); install safeface[cpu] (or safeface[gpu]), "
            "or choose the dlib engine (--engine dlib)."
        ) from None
    engine: Engine = OnnxEngine(**kwargs)
    return engine


__all__ = [
    "DEFAULT_BOTH_MASKED_THRESHOLD",
    "DEFAULT_ENGINE",
    "DEFAULT_MASKED_THRESHOLD",
    "DEFAULT_THRESHOLD",
    "ENGINES",
    "Engine",
    "Face",
    "FaceEmbedding",
    "Outcome",
    "Pipeline",
    "PICKS",
    "DEFAULT_PICK",
    "pick_subject",
    "PipelineConfig",
    "cosine",
    "euclidean_equivalent",
    "get_engine",
    "masked_default",
    "masked_thresholds",
]
