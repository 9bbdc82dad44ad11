"""Where the shared real-image datasets are, for every test: $SAFEFACE_DATASETS, else
../shared/datasets beside the checkout. Tests that need them skip with a reason when absent."""

from __future__ import annotations

import os
from pathlib import Path


def datasets() -> Path:
    env = os.environ.get("SAFEFACE_DATASETS")
    return Path(env) if env else Path(__file__).resolve().parents[1].parent / "shared" / "datasets"
