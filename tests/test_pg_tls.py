"""TLS to a PostgreSQL record store on another machine, from someone on the network path: libpq's
default (sslmode=prefer) asks for TLS and, when the answer is "no", carries on in the clear, so a
relay that declines reads the user and database names, then every pseudonym, sealed row and audit
note. A connection to another machine now insists on TLS; a DSN or $PGSSLMODE that settles for
less there is refused before anything is sent."""

from __future__ import annotations

import socket
import struct
import sys
import threading
from pathlib import Path
from typing import Iterator

import pytest

from safeface.errors import BackendError, ConfigError
from safeface.storage.pgtls import tls_mode
from safeface.storage.server import pg_connect

sys.path.insert(0, str(Path(__file__).resolve().parent))
from net_support import own_address  # noqa: E402

SSL_REQUEST = struct.pack("!ii", 8, 80877103)  # the first packet of a client asking for TLS


def _heard(got: list[bytes]) -> list[bytes]:
    """What the relay recorded, once it has: it records when the client hangs up (at most 5 s)."""
    for _ in range(50):
        if got:
            break
        threading.Event().wait(0.1)
    return got


@pytest.fixture
def declining_relay() -> Iterator[tuple[str, int, list[bytes]]]:
    """A server on this machine's network address that answers a TLS request with "N" (no TLS
    here) and keeps whatever the client sends next: what a relay on the path would read."""
    ip = own_address("another machine")
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.bind((ip, 0))
    srv.listen(4)
    srv.settimeout(0.2)  # so the loop sees `stop` soon after the test ends
    got: list[bytes] = []
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = srv.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            with conn:
                conn.settimeout(3)
                data = b""
                try:
                    data = conn.recv(8)
                    if data == SSL_REQUEST:
                        conn.sendall(b"N")
                        data += conn.recv(4096)
                except OSError:
                    pass
                got.append(data)

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    try:
        yield ip, int(srv.getsockname()[1]), got
    finally:
        stop.set()
        srv.close()
        t.join(timeout=10)


def test_a_relay_that_declines_tls_reads_nothing_of_the_connection(
        declining_relay: tuple[str, int, list[bytes]], monkeypatch: pytest.MonkeyPatch) -> None:
    """The relay said "no TLS": the client sent its start-up packet (user "svc_faces", database
    "faces") in the clear, and would have gone on with every statement. Now it stops after the
    TLS request."""
    monkeypatch.delenv("PGSSLMODE", raising=False)
    ip, port, got = declining_relay
    with pytest.raises(BackendError) as err:
        pg_connect(f"postgresql://svc_faces@{ip}:{port}/faces?connect_timeout=3", "S3cret-pw",
                   "the PostgreSQL record store")
    assert "S3cret-pw" not in str(err.value)
    assert _heard(got), "the client never reached the relay"
    assert all(packet == SSL_REQUEST for packet in got), got
    assert not any(b"svc_faces" in packet for packet in got)


@pytest.mark.parametrize("mode", ["disable", "allow", "prefer"])
def test_a_dsn_settling_for_less_than_tls_to_another_machine_is_refused_unsent(
        declining_relay: tuple[str, int, list[bytes]], monkeypatch: pytest.MonkeyPatch, mode: str) -> None:
    """An operator writes sslmode=prefer (or disable) into the DSN of a store on another machine:
    refused as a ConfigError naming the host and the mode, before a packet is sent."""
    monkeypatch.delenv("PGSSLMODE", raising=False)
    ip, port, got = declining_relay
    with pytest.raises(ConfigError, match=f"sslmode='{mode}'") as err:
        pg_connect(f"postgresql://svc_faces@{ip}:{port}/faces?sslmode={mode}", "S3cret-pw",
                   "the PostgreSQL record store")
    assert ip in str(err.value) and "S3cret-pw" not in str(err.value) and "svc_faces" not in str(err.value)
    assert got == []
    monkeypatch.setenv("PGSSLMODE", mode)  # the same through libpq's environment
    with pytest.raises(ConfigError, match=r"\$PGSSLMODE"):
        pg_connect(f"postgresql://svc_faces@{ip}:{port}/faces", None, "the PostgreSQL record store")
    assert got == []


@pytest.mark.parametrize("dsn, env, expected", [
    ("postgresql://u@db.example/faces", {}, "require"),
    ("postgresql://u@10.1.2.3:5432/faces", {}, "require"),
    ("host=127.0.0.1,db.example dbname=faces", {}, "require"),  # one far host in a list is enough
    ("host=localhost hostaddr=10.1.2.3 dbname=faces", {}, "require"),  # libpq connects to hostaddr
    ("dbname=faces", {"PGHOST": "db.example"}, "require"),  # the host from libpq's environment
    ("postgresql://u@db.example/faces?sslmode=verify-full", {}, None),
    ("postgresql://u@db.example/faces?sslmode=require", {}, None),
    ("postgresql://u@db.example/faces", {"PGSSLMODE": "verify-ca"}, None),
    ("postgresql://u@127.0.0.1:5432/faces", {}, None),
    ("postgresql://u@localhost/faces?sslmode=disable", {}, None),
    ("postgresql://u@[::1]:5432/faces", {}, None),
    ("host=/var/run/postgresql dbname=faces", {}, None),
    ("dbname=faces", {}, None),  # libpq's default socket
    ("host=db.example hostaddr=127.0.0.1 dbname=faces sslmode=disable", {}, None),
])
def test_which_connections_must_use_tls(dsn: str, env: dict[str, str], expected: str) -> None:
    """Another machine by name, address, host list, hostaddr or $PGHOST gets sslmode=require;
    a socket or loopback address is left as written, and so is TLS the DSN already asks for."""
    assert tls_mode(dsn, env) == expected


def test_a_weak_mode_in_a_dsn_with_a_password_never_shows_the_password() -> None:
    """The refusal names the host and the mode; a password written in the DSN stays out of it."""
    with pytest.raises(ConfigError) as err:
        tls_mode("postgresql://svc:Hunter2@db.example/faces?sslmode=allow", {})
    assert "db.example" in str(err.value) and "Hunter2" not in str(err.value)


@pytest.mark.parametrize("name", ["localhost.", "ip6-localhost", "ip6-loopback"])
def test_a_loopback_name_the_resolver_asks_dns_about_gets_tls(
        declining_relay: tuple[str, int, list[bytes]], monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    """"localhost." (the trailing dot passes over the hosts file's "localhost") and ip6-localhost
    where the hosts file lacks it are asked of DNS, and were taken for this machine: whoever
    answered (someone on the path, here a resolver pointing at the relay) got the start-up packet
    in the clear. Such a name now gets sslmode=require like any other machine's."""
    import socket as socket_mod

    monkeypatch.delenv("PGSSLMODE", raising=False)
    ip, port, got = declining_relay
    real = socket_mod.getaddrinfo

    def answered_by_dns(host: object, *args: object, **kwargs: object) -> object:
        return real(ip if host == name else host, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(socket_mod, "getaddrinfo", answered_by_dns)
    assert tls_mode(f"postgresql://svc_faces@{name}:{port}/faces", {}) == "require"
    with pytest.raises(BackendError):
        pg_connect(f"postgresql://svc_faces@{name}:{port}/faces?connect_timeout=3", None, "the PostgreSQL record store")
    assert _heard(got), "the client never reached the relay"
    assert all(packet == SSL_REQUEST for packet in got), got


@pytest.mark.parametrize("host, expected", [
    ("localhost", None), ("LOCALHOST", None), ("127.0.0.1", None), ("::1", None), ("::ffff:127.0.0.1", None),
    ("localhost.", "require"), ("ip6-localhost", "require"), ("0177.0.0.1", "require"), ("127.1", "require"),
])
def test_only_a_loopback_address_or_localhost_is_left_without_tls(host: str, expected: str) -> None:
    """A loopback address in its standard form, or "localhost" (which the hosts file answers, in
    any case), stays as written; any other spelling that reads as loopback to some resolver gets
    TLS."""
    assert tls_mode(f"host={host} dbname=faces", {}) == expected
