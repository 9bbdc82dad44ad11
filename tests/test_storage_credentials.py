"""Credentials of the server backends, from a hostile or careless operator: a Milvus URI whose
user information hides behind characters the URL parser drops, and password or token files and
values that are no small UTF-8 text."""

from __future__ import annotations

from pathlib import Path

import pytest

from safeface.errors import ConfigError
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
        assert MilvusVectors.connect(f"milvus:{ok}", Path("."), "c", 4, token="Tok", wait=False).where.startswith("Milvus")
