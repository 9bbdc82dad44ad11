"""`safeface serve` on a host other than loopback wants TLS (or a proxy that terminates it)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from policy_support import make_workspace  # noqa: E402

from safeface.cli import main  # noqa: E402


@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.1.20", "::", "gate.example"])
def test_serving_the_network_in_the_clear_is_refused(tmp_path: Path, capsys: Any, host: str) -> None:
    """`--host 0.0.0.0` without TLS sent faces, API keys, consent tokens and console cookies
    over the network in the clear, with nothing said."""
    pytest.importorskip("uvicorn")
    ws = make_workspace(tmp_path / "ws")
    try:
        rc = main(["serve", str(ws.root), "--host", host, "--port", "1"])
    except SystemExit as exc:
        rc = int(exc.code or 0)
    assert rc != 0 and "without TLS" in capsys.readouterr().err


def test_every_spelling_of_this_machine_counts_as_loopback() -> None:
    from safeface.netaddr import is_loopback

    assert all(is_loopback(h) for h in ("127.0.0.1", "127.1", "::1", "[::1]", "::ffff:127.0.0.1", "localhost",
                                      "localhost.", "ip6-localhost"))
    assert not any(is_loopback(h) for h in ("0.0.0.0", "0", "::", "10.1", "192.168.1.2", "gate.example", "fe80::1%eth0"))
