"""Whether a host name or address names this machine only: plain HTTP is allowed there alone
(the service's listener, its client, a model mirror), since nothing then crosses a network."""

from __future__ import annotations

import ipaddress
import socket

_LOOPBACK_NAMES = ("localhost", "ip6-localhost", "ip6-loopback")


def is_loopback(host: str) -> bool:
    """Whether `host` names this machine only, as the resolver reads it (127.1 and an IPv4 address
    mapped into IPv6 included; brackets and a zone index allowed)."""
    name = host.strip("[]").split("%", 1)[0]
    try:
        ip = ipaddress.ip_address(name)
    except ValueError:
        try:
            ip = ipaddress.ip_address(socket.inet_aton(name))  # the short forms, 127.1
        except OSError:
            return name.lower().rstrip(".") in _LOOPBACK_NAMES
    mapped = getattr(ip, "ipv4_mapped", None)
    return bool(ip.is_loopback or (mapped is not None and mapped.is_loopback))
