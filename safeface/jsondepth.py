"""How deep a JSON text nests, counted before it is parsed: Python's parser stops at its stack,
whose free depth depends on how deep the caller already is, so one text read by two callers
could be a value for the first and a RecursionError for the second."""

from __future__ import annotations


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
