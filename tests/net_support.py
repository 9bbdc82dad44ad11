"""This machine's own network address, for tests that play another machine (a relay, a proxy)
on it without any packet leaving the machine."""

from __future__ import annotations

import socket

import pytest


def own_address(playing: str) -> str:
    """This machine's address on its network (no packet is sent: a datagram socket's connect only
    picks the route); the test is skipped where there is none but loopback to play `playing` with."""
    why = f"this machine has no address but loopback to play {playing} with"
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("192.0.2.1", 9))
        except OSError:
            pytest.skip(why)
        ip = str(s.getsockname()[0])
    if ip.startswith("127.") or ip == "0.0.0.0":
        pytest.skip(why)
    return ip
