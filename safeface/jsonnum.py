"""What counts as a number in a value a person or another program wrote: deployment.json, a
token's claims, a setting passed in code."""

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


def finite_json(value: Any) -> Any:
    """`value` (dicts, lists and scalars) with each float no JSON reader takes, NaN or an
    infinity, as None: Python's json writes them as bare NaN and Infinity, so a report holding one
    read from a hand-edited file was no JSON for any other program."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): finite_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite_json(v) for v in value]
    return value
