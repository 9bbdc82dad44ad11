"""What counts as a number in a JSON setting a person wrote (deployment.json and its sections)."""

from __future__ import annotations

import math
from typing import Any


def finite_number(value: Any) -> bool:
    """A JSON number a float can hold: no bool, NaN or infinity, and no whole number too large for
    a float (400 digits), on which math.isfinite and float() raise OverflowError: a bare error
    at every load of the file, which stopped an open workspace's erasures, `safeface assess` and
    the report."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:
        return False
