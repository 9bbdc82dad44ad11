"""Credentials of the server backends, from a hostile or careless operator: a Milvus URI whose
user information hides behind characters the URL parser drops, and password or token files and
values that are no small UTF-8 text."""

from __future__ import annotations

from pathlib import Path

import pytest

from safeface.errors import ConfigError, IndexUnavailable
from safeface.storage.factory import StorageConfig, secret_from_env
from safeface.storage.vectors import MilvusVectors

PG = "postgresql://u@h/db"


@pytest.mark.parametrize("vectors", ["milvus:http:\t//root:MilvusPw@m:19530", "milvus:http:/\n/root:MilvusPw@m:19530",
                                     "milvus:https:/\r/root:MilvusPw@m:19530"])
def test_a_milvus_password_hidden_by_a_tab_or_newline_in_its_uri_is_refused(vectors: str) -> None:
    """An operator hides a Milvus password in deployment.json behind a tab or newline in "://",
    which Python's URL parser (so pymilvus) drops: it was sent, and every error, log line, audit
    note and HTTP 503 body naming Milvus showed it. Refused now, the password not shown back."""
    from urllib.parse import urlsplit

    assert urlsplit(vectors[len("milvus:"):]).password is not None  # pymilvus would send it
    with pytest.raises(ConfigError, match="user information") as err:
        StorageConfig.from_section({"records": PG, "vectors": vectors})
    assert "MilvusPw" not in str(err.value)
    with pytest.raises(ConfigError, match="user information") as err:  # nor sent, nor named, by a direct connect
        MilvusVectors.connect(vectors, Path("."), "c", 4, wait=False)
    assert "MilvusPw" not in str(err.value)


def test_a_password_file_that_is_no_small_utf8_text_is_a_config_error(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """An operator points SAFEFACE_PG_PASSWORD_FILE at a photo, a folder or a huge file: a
    ConfigError naming the variable, not a raw UnicodeDecodeError or a read without end."""
    monkeypatch.delenv("SAFEFACE_PG_PASSWORD", raising=False)
    photo = tmp_path / "photo.jpg"
    photo.write_bytes(b"\xff\xd8\xff\xe0" + bytes(range(256)))
    big = tmp_path / "big"
    with open(big, "wb") as f:
        f.truncate(64 * 1024 * 1024)  # sparse: a read of it all is what must not happen
    for path in (photo, big):
        monkeypatch.setenv("SAFEFACE_PG_PASSWORD_FILE", str(path))
        with pytest.raises(ConfigError, match="SAFEFACE_PG_PASSWORD_FILE"):
            secret_from_env("SAFEFACE_PG_PASSWORD")


def test_a_password_that_is_not_utf8_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """An environment holding a password in another encoding (a lone surrogate in Python) made the
    connection raise a bare UnicodeEncodeError: a ConfigError naming the variable, value unshown."""
    monkeypatch.setenv("SAFEFACE_PG_PASSWORD", "s3cr\udce9t")
    with pytest.raises(ConfigError, match="SAFEFACE_PG_PASSWORD") as err:
        secret_from_env("SAFEFACE_PG_PASSWORD")
    assert "s3cr" not in str(err.value)


@pytest.mark.parametrize("vectors", ["milvus:http://milvus.internal:19530", "milvus:tcp://10.1.2.3:19530",
                                     "milvus:HTTP://milvus.internal:19530", "milvus:http:\t//milvus.internal:19530"])
def test_a_milvus_token_is_never_sent_in_the_clear_to_another_machine(vectors: str) -> None:
    """SAFEFACE_MILVUS_TOKEN went to a Milvus named http:// (or tcp://) on another machine, in the
    clear for anyone on the path to take (and read, change or drop the collection with), while
    the service and its client refuse plain http there for API keys. Refused before anything is
    sent; TLS, this machine, or no token (nothing secret to send) are taken as before."""
    with pytest.raises(ConfigError, match="without TLS.*https://") as err:
        MilvusVectors.connect(vectors, Path("."), "c", 4, token="Tok-S3cret", wait=False)
    assert "Tok-S3cret" not in str(err.value)
    for target, token in (("milvus:https://milvus.internal:443", "Tok-S3cret"),
                          ("milvus:http://127.0.0.1:19530", "Tok-S3cret"), ("milvus:http://localhost:19530", "Tok"),
                          (vectors, None), (vectors, "")):
        assert MilvusVectors.connect(target, Path("."), "c", 4, token=token, wait=False).where.startswith("Milvus at")


@pytest.mark.parametrize("host", ["0177.0.0.1", "127.1", "0x7f.1", "localhost.", "ip6-localhost"])
def test_a_milvus_token_goes_in_the_clear_only_to_a_host_every_resolver_reads_as_this_machine(host: str) -> None:
    """is_loopback read these as this machine, but gRPC (which pymilvus connects through) reads
    0177.0.0.1 as 177.0.0.1, another machine, and asks DNS about 127.1, 0x7f.1, "localhost." and
    ip6-localhost (where the hosts file lacks it): the token went in the clear to whoever was there
    or answered. Refused now, as for any other machine; the standard forms and "localhost" are not."""
    with pytest.raises(ConfigError, match="without TLS") as err:
        MilvusVectors.connect(f"milvus:http://{host}:19530", Path("."), "c", 4, token="Tok-S3cret", wait=False)
    assert "Tok-S3cret" not in str(err.value)
    for ok in ("http://LOCALHOST:19530", "http://[::1]:19530", "tcp://[::ffff:127.0.0.1]:19530"):
        opened = MilvusVectors.connect(f"milvus:{ok}", Path("."), "c", 4, token="Tok", wait=False)
        assert opened.where.startswith("Milvus")


def test_a_milvus_on_this_machine_is_reached_directly_whatever_proxy_the_environment_names(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """gRPC sends a plain channel through $http_proxy or $grpc_proxy even to 127.0.0.1: the token
    and every vector crossed the network to the proxy in the clear (the proxy, a listener on this
    machine's network address here, was asked to CONNECT and then read the plain HTTP/2 stream).
    A Milvus on this machine is now reached directly; the proxy hears nothing."""
    import socket
    import threading

    from net_support import own_address

    ip = own_address("a proxy")
    proxy = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    proxy.bind((ip, 0))
    proxy.listen(4)
    proxy.settimeout(0.2)
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as closed:  # a port nothing listens on
        closed.bind(("127.0.0.1", 0))
        milvus_port = closed.getsockname()[1]
    heard: list[bytes] = []
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = proxy.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            with conn:
                conn.settimeout(2)
                try:
                    heard.append(conn.recv(4096))
                except OSError:
                    heard.append(b"")

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    for var in ("no_proxy", "NO_PROXY", "https_proxy", "HTTPS_PROXY", "grpc_proxy"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("http_proxy", f"http://{ip}:{proxy.getsockname()[1]}")
    try:
        with pytest.raises(IndexUnavailable):
            MilvusVectors.connect(f"milvus:http://127.0.0.1:{milvus_port}", Path("."), "c", 4, token="Tok-S3cret",
                                  timeout=1)
    finally:
        stop.set()
        proxy.close()
        t.join(timeout=10)
    assert heard == [], heard


@pytest.mark.parametrize("uri", ["http://127.0.0.1:19530/global-cluster", "tcp://localhost:19530/x?Global-Cluster"])
def test_a_milvus_token_is_not_sent_through_a_plain_global_cluster_topology(uri: str) -> None:
    """A URI holding "global-cluster" anywhere is pymilvus's global cluster: it sent the token as
    "Authorization: Bearer" in a plain HTTP request for the topology (read in full by an
    $http_proxy on another machine, even for 127.0.0.1), then to whichever primary the answer
    named, plain as well. Refused with a token, as another machine's plain URI is; over https the
    topology and the primary use TLS and it is taken as before."""
    with pytest.raises(ConfigError, match="global-cluster") as err:
        MilvusVectors.connect(f"milvus:{uri}", Path("."), "c", 4, token="Tok-S3cret", wait=False)
    assert "Tok-S3cret" not in str(err.value)
    opened = MilvusVectors.connect("milvus:https://eu.global-cluster.example", Path("."), "c", 4, token="Tok",
                                   wait=False)
    assert opened.where.startswith("Milvus")
