"""Whether a host name or address names this machine only: plain HTTP is allowed there alone
(the service's listener, its client, a model mirror), since nothing then crosses a network."""

from __future__ import annotations

import ipaddress
import socket

_LOOPBACK_NAMES = ("localhost", "ip6-localhost", "ip6-loopback")


def is_loopback(host: str) -> bool:
    """Whether `host` names this machine only, as the resolver reads it (127.1 and an IPv4 address
    mapped into IPv6 included; brackets and a zone index allowed)."""
    name = host
    if host.startswith("[") and host.endswith("]"):
        # A zone index belongs to a bracketed IPv6 address only: cut from any name, it made
        # "127.0.0.1%25.evil.example", a name under another domain, read as 127.0.0.1.
        name = host[1:-1].split("%", 1)[0]
    try:
        ip = ipaddress.ip_address(name)
    except ValueError:
        # The short forms (127.1, 0x7f.1) in digits, hex and dots only: inet_aton reads what
        # comes before a space and ignores the rest ("127.0.0.1 .evil.example").
        if not name or name.strip("0123456789abcdefxABCDEFX.") or not name[0].isdigit():
            return name.lower().rstrip(".") in _LOOPBACK_NAMES
        try:
            ip = ipaddress.ip_address(socket.inet_aton(name))
        except OSError:
            return False
    mapped = getattr(ip, "ipv4_mapped", None)
    return bool(ip.is_loopback or (mapped is not None and mapped.is_loopback))


def is_loopback_everywhere(host: str) -> bool:
    """Whether a connection to `host` stays on this machine whatever resolver reads it and whatever
    a DNS server answers: a loopback address in its standard form (brackets allowed), or the name
    "localhost" in any case. Not the other spellings is_loopback accepts: "localhost." and
    ip6-localhost / ip6-loopback went to DNS where the hosts file lacks them (this one's does), and
    gRPC's resolver (Milvus) asks DNS about 127.1 and 0x7f.1 and reads 0177.0.0.1, 127.0.0.1 to
    inet_aton, as 177.0.0.1: whoever answered or sat there was sent the connection in the clear."""
    if host.lower() == "localhost":
        return True
    name = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    try:
        ip = ipaddress.ip_address(name)
    except ValueError:
        return False
    mapped = getattr(ip, "ipv4_mapped", None)
    return bool(ip.is_loopback or (mapped is not None and mapped.is_loopback))
