"""A pack fetched from a mirror whose URL carries credentials (a user and token before '@', which
requests sends as Basic auth, or a signed link's query): the download uses them, and no message,
result or registry file repeats them (a real loopback HTTP server, real zip files, the real
model registry)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from safeface.cli import main
from safeface.errors import ModelFetchError
from safeface.modelstore import fetch
from tests.test_packs import Server, good_pack, home, make_zip, models, server, sha  # noqa: F401 (fixtures)

PASSWORD = "Pw-S3cret-7731"
SIGNATURE = "Sig-S3cret-0456"
SECRETS = (PASSWORD, SIGNATURE)


def _with_credentials(url: str, query: str = f"X-Amz-Signature={SIGNATURE}") -> str:
    """`url` (http://127.0.0.1:PORT/path) with a user and password, and a signed query."""
    scheme, rest = url.split("://", 1)
    return f"{scheme}://mirror:{PASSWORD}@{rest}?{query}"


def _files_text(*folders: Path) -> str:
    return "".join(p.read_text(errors="replace") for f in folders if f.exists() for p in f.rglob("*")
                   if p.is_file() and p.suffix != ".onnx")


def test_a_mirror_urls_credentials_are_used_but_never_recorded_or_shown(
        server: Server, models: dict[str, bytes], tmp_path: Path, home: Path,  # noqa: F811
        capsys: pytest.CaptureFixture[str]) -> None:
    data = good_pack(models, prefix="tinypack/")
    path = f"/tinypack.zip?X-Amz-Signature={SIGNATURE}"
    server.add(path, data)
    url = _with_credentials(server.add("/tinypack.zip", b"not this one"))
    dest = tmp_path / "packs"
    result = fetch.fetch_pack("tinypack", dest_dir=dest, url=url, sha256=sha(data))
    assert server.requests == [path]  # downloaded with its signed query
    assert result.archive_sha256 == sha(data)
    shown = json.dumps(result.to_dict())
    assert not any(s in shown for s in SECRETS), shown
    assert result.url == url.replace(f"mirror:{PASSWORD}@", "").split("?")[0] + "?..."
    # The registry (its record of the pack and of each file) and the pack folder hold neither.
    text = _files_text(home, dest)
    assert "tinypack" in text and not any(s in text for s in SECRETS)
    # Nor does `models list`, which reads the registry back, or the same fetch run again.
    capsys.readouterr()
    for argv in (["list", "--dest", str(dest), "--json"],
                 ["fetch", "tinypack", "--url", url, "--sha256", sha(data), "--dest", str(dest), "--json"]):
        assert main(["models", *argv]) == 0
        out = capsys.readouterr()
        assert "tinypack" in out.out and not any(s in out.out + out.err for s in SECRETS), out


@pytest.mark.parametrize("kind", ["missing", "wrong hash", "too large", "refused connection", "plain http",
                                  "redirect to plain http", "not a zip"])
def test_a_failed_fetch_never_repeats_the_urls_credentials(server: Server, tmp_path: Path, kind: str,  # noqa: F811
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    data = make_zip({"det_10g.onnx": b"d" * 64, "w600k_r50.onnx": b"r" * 64})
    want = sha(data)
    if kind == "missing":
        url = _with_credentials(server.add("/gone.zip", b"")).replace("/gone.zip", "/absent.zip")
    elif kind == "wrong hash":
        url = _with_credentials(server.add(f"/p.zip?X-Amz-Signature={SIGNATURE}", data + b"x"))
        url = url.split("?")[0] + f"?X-Amz-Signature={SIGNATURE}"
    elif kind == "too large":
        server.add(f"/big.zip?X-Amz-Signature={SIGNATURE}", data)
        url = _with_credentials(f"http://127.0.0.1:{server.httpd.server_address[1]}/big.zip")
        monkeypatch.setattr(fetch, "MAX_ARCHIVE_BYTES", 16)
    elif kind == "refused connection":
        from tests.server_support import free_port

        url = _with_credentials(f"http://127.0.0.1:{free_port()}/p.zip")
    elif kind == "plain http":
        url = f"http://mirror:{PASSWORD}@mirror.example/p.zip?token={SIGNATURE}"
    elif kind == "redirect to plain http":
        # A signed link an HTTPS host redirects to (as GitHub's release assets are) is a credential too.
        url = server.add("/moved.zip", f"http://objects.example/p.zip?X-Amz-Signature={SIGNATURE}", kind="redirect")
    else:
        url = _with_credentials(f"http://127.0.0.1:{server.httpd.server_address[1]}/bad.zip")
        server.add(f"/bad.zip?X-Amz-Signature={SIGNATURE}", b"PK not a zip at all")
        want = sha(b"PK not a zip at all")
    with pytest.raises(ModelFetchError) as err:
        fetch.fetch_pack("tinypack", dest_dir=tmp_path / "packs", url=url, sha256=want, timeout=10)
    assert "127.0.0.1" in str(err.value) or "example" in str(err.value), str(err.value)  # it still says where
    shown: list[str] = []
    exc: BaseException | None = err.value
    while exc is not None and len(shown) < 10:  # the message, and any chained cause a traceback prints
        shown.append(str(exc))
        exc = exc.__cause__ or (None if exc.__suppress_context__ else exc.__context__)
    assert not any(s in t for t in shown for s in SECRETS), shown


def test_the_shown_url_keeps_where_and_drops_credentials() -> None:
    assert fetch.shown_url("https://u:p@h.example:8443/a/b.zip?sig=x#f") == "https://h.example:8443/a/b.zip?..."
    assert fetch.shown_url("https://h.example/a.zip") == "https://h.example/a.zip"
    assert fetch.shown_url("https://tok@h.example/a.zip") == "https://h.example/a.zip"
    assert fetch._scrubbed("HTTPConnectionPool(host='h', port=1): Max retries exceeded with url: /p.zip?token=abc "
                           "(Caused by x). Is it running? see https://u:pw@h/x?y=1") == (
        "HTTPConnectionPool(host='h', port=1): Max retries exceeded with url: /p.zip?... "
        "(Caused by x). Is it running? see https://h/x?...")
