"""A liveness check that fails inside the pipeline (not with one of safeface's errors) is
recorded as failed and raised as BackendError."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from policy_support import last_call, open_sf  # noqa: E402
from test_liveness import _liveness_ws  # noqa: E402

from safeface.errors import BackendError  # noqa: E402


def test_a_pipeline_failure_is_recorded_and_typed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import safeface.capture.liveness as liveness

    def broken(*a: object, **k: object) -> None:
        raise RuntimeError("library fault")

    monkeypatch.setattr(liveness, "check_clip", broken)
    ws = _liveness_ws(tmp_path)
    with open_sf(ws) as sf:
        ch = sf.liveness_challenge()
        with pytest.raises(BackendError, match="inside the pipeline"):
            sf.liveness_check([np.zeros((48, 64, 3), np.uint8)] * 10, ch.nonce)
        entry = last_call(sf)
        assert entry.operation == "liveness" and entry.decision == "failed", entry
