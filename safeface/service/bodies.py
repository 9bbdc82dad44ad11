"""What the service accepts of a request body before parsing it: the media type and its
charset, and a bound on a JSON body's containers. Both are checked before any parser runs,
because parsing is where a small body turns into a large cost: a multipart field is decoded
in whatever charset the request names (Python's punycode decoder takes time growing with the
square of its input: 320 KB held a worker's event loop for 7 s), and a JSON list of empty
objects takes about 24 times its bytes in memory."""

from __future__ import annotations

import codecs
from typing import Any, Iterable

from python_multipart.multipart import parse_options_header
from starlette.requests import Request

from ..errors import InvalidArgument

# The service's JSON bodies are one object of strings and numbers, with at most a list of
# attribute names: a handful of containers. Brackets inside strings count too; no field the
# service reads (ids, purposes, tokens, base64) needs many.
MAX_JSON_CONTAINERS = 64
# Members and items: a call has a few fields and a short list. One object of 845,000 short keys
# (8 MiB, one container) held a worker's event loop for 0.9 s in json.loads; commas and colons
# inside strings count too (a recipient "Acme, Inc.: HR" spends three).
MAX_JSON_MEMBERS = 256
_UTF8 = ("utf-8", "utf8")


def media_type(request: Request) -> str:
    """The request's media type, lower case ("" when it names none). InvalidArgument for a
    charset other than UTF-8 (read by the parser that decodes the parts): every part of a body
    is decoded in it, so only one is taken."""
    kind, params = parse_options_header(request.headers.get("content-type", ""))
    charset = params.get(b"charset")
    if charset is not None:
        try:
            name = codecs.lookup(charset.decode("latin-1")).name
        except LookupError:
            name = ""
        if name != "utf-8":
            raise InvalidArgument("the body's charset must be UTF-8 (send it without a charset, or with "
                                  "charset=utf-8).")
    return str(kind.decode("latin-1")).lower()


def check_json_size(raw: bytes) -> None:
    """InvalidArgument for a JSON body with more containers or members than any call needs,
    before parsing."""
    if raw.count(b"{") + raw.count(b"[") > MAX_JSON_CONTAINERS:
        raise InvalidArgument(f"the JSON body must be one object of fields, with at most {MAX_JSON_CONTAINERS} "
                              "objects and lists in all.")
    if raw.count(b",") + raw.count(b":") > MAX_JSON_MEMBERS:
        raise InvalidArgument(f"the JSON body must be one object of a few fields: at most {MAX_JSON_MEMBERS} commas "
                              "and colons in all, strings included.")


def once_each(pairs: Iterable[tuple[str, Any]], where: str) -> dict[str, Any]:
    """The (name, value) pairs of a JSON object or a form, each name once: a gateway, a log or a
    reviewer reading the first of two "subject"s sees one person, a parser keeping the last acts
    on another. InvalidArgument for a name given twice."""
    out: dict[str, Any] = {}
    for name, value in pairs:
        if name in out:
            raise InvalidArgument(f"{where} gives {str(name)[:40]!r} twice; send each field once.")
        out[name] = value
    return out
