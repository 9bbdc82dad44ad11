"""A pipeline for SDK tests that send the same in-memory image many times (a masked probe verified
against several thresholds): CachedPipeline embeds each image file once per session, this one
also each distinct array, keyed by its pixels. Results are the real pipeline's; the mask check and
the visible-region template still run at every call."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Optional

import numpy as np

from policy_support import PASSPHRASE, CachedPipeline, Clock

from safeface.sdk import SafeFace
from safeface.workspace.paths import WorkspacePaths

_EMBEDDED: dict[tuple[Any, ...], Any] = {}


class ArrayCachedPipeline(CachedPipeline):
    def embed(self, image: Any, *, count_all: bool = False) -> Any:
        if not isinstance(image, np.ndarray):
            return super().embed(image, count_all=count_all)
        key = (image.shape, image.dtype.str, hashlib.sha256(np.ascontiguousarray(image)).hexdigest(), count_all)
        if key not in _EMBEDDED:
            result = super().embed(image, count_all=count_all)
            for a in [result.embedding] + [f.landmarks for f in result.faces]:
                if isinstance(a, np.ndarray):
                    a.setflags(write=False)  # shared between calls: a change in place fails, not leaks
            _EMBEDDED[key] = result
        return _EMBEDDED[key]


def open_sf(paths: WorkspacePaths, clock: Optional[Clock] = None, role: Optional[str] = None,
            pipeline: Optional[CachedPipeline] = None) -> SafeFace:
    """policy_support.open_sf with an ArrayCachedPipeline (or `pipeline`)."""
    return SafeFace.open(Path(paths.root), PASSPHRASE, pipeline=pipeline or ArrayCachedPipeline(), clock=clock,
                         role=role)
