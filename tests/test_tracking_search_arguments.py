"""Odd arguments to a track search are typed refusals, never a bare Python error."""

from __future__ import annotations

import numpy as np
import pytest

from safeface.errors import InvalidArgument
from safeface.tracking.run import Person, TrackResult
from safeface.tracking.search import Looks


def _result() -> TrackResult:
    flat = np.full(11, 1 / 11, np.float32)
    person = Person("ab12cd34", list(range(6)), [(0.0, 0.0, 10.0, 20.0)] * 6, ["grey"], ["grey"], 1.0, None)
    return TrackResult((person,), 10.0, 6, 64, 64, None, "motion", Looks([flat], [flat], [6], [1.0]))  # type: ignore[arg-type]


@pytest.mark.parametrize("top_k", [float("nan"), float("inf"), None, "3", 2.5, True])
def test_a_hit_count_that_is_no_whole_number_is_refused(top_k: object) -> None:
    """An app asks for NaN, infinity, None or text hits: a bare ValueError, OverflowError or
    TypeError escaped (text was read as a number); each is InvalidArgument."""
    with pytest.raises(InvalidArgument):
        _result().search("red top", top_k)  # type: ignore[arg-type]
