"""How deep a JSON text nests, counted before it is parsed: Python's parser stops at its stack,
whose free depth depends on how deep the caller already is, so one text read by two callers
could be a value for the first and a RecursionError for the second."""

from __future__ import annotations

import json
from typing import Any, Union


class TooDeep(ValueError):
    """A JSON text nesting past its reader's limit: refused as any other text that is no value
    of the file it claims to be (a ValueError, so callers that refuse bad JSON refuse it too)."""


def nests_deeper_than(text: str, limit: int) -> bool:
    """Whether `text`, read as JSON, opens more than `limit` arrays or objects one inside another.
    Brackets inside strings do not count. Text that is no JSON at all is left to the parser."""
    depth = 0
    in_string = escaped = False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            if depth > limit:
                return True
        elif ch in "]}":
            depth -= 1
    return False


def loads(data: Union[str, bytes], limit: int, **kw: Any) -> Any:
    """`json.loads(data, **kw)` (bytes read as UTF-8), once `data` is shown to nest no deeper than
    `limit`: TooDeep otherwise, whatever the caller's own depth. A UnicodeDecodeError or
    JSONDecodeError is a ValueError, as TooDeep is."""
    text = data.decode("utf-8") if isinstance(data, (bytes, bytearray)) else data
    if nests_deeper_than(text, limit):
        raise TooDeep(f"nested more than {limit} levels deep")
    return json.loads(text, **kw)
