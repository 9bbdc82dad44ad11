"""`safeface serve` and `safeface apikey new|revoke|list`."""

from __future__ import annotations

import argparse
import datetime as dt
import inspect
import json
import os
from pathlib import Path
from typing import Any

from ..errors import ConfigError, InvalidArgument
from ..netaddr import is_loopback
from .common import EXIT_OK, print_json, say
from .policy_cmds import _open, _ws


def register(sub: Any) -> None:
    p = sub.add_parser("serve", help="serve the workspace over HTTP: the /v1 API, /metrics and the operator console")
    p.add_argument("workspace")
    p.add_argument("--passphrase-file", type=Path, default=None)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8080)
    p.add_argument("--workers", type=int, default=1, help="worker processes sharing the workspace (default 1)")
    p.add_argument("--threads", type=int, default=2, help="calls run at once per worker (default 2)")
    p.add_argument("--queue", type=int, default=8,
                   help="calls that may wait per worker; beyond threads + queue the answer is 503 (default 8)")
    p.add_argument("--max-body", type=int, default=8 * 1024 * 1024, help="largest request body in bytes (default 8 MiB)")
    p.add_argument("--tls-cert", type=Path, default=None)
    p.add_argument("--tls-key", type=Path, default=None)
    p.add_argument("--tls-key-passphrase-file", type=Path, default=None,
                   help="a file (private to this account) holding the TLS key's passphrase, if it is encrypted")
    p.add_argument("--plain-http", action="store_true",
                   help="serve a host other than loopback without TLS (behind a proxy that terminates it)")
    p.set_defaults(func=_serve)

    p = sub.add_parser("apikey", help="API keys for the service: each key carries the caller's role")
    ks = p.add_subparsers(dest="apikey_command", metavar="ACTION")
    k = ks.add_parser("new", help="issue a key for a role; the key is printed once and stored only as a keyed hash")
    _ws(k)
    k.add_argument("--label", default="")
    k.add_argument("--expires", default=None, help="YYYY-MM-DD: the last day the key works (UTC)")
    k.add_argument("--rate", type=float, default=None, help="requests per second per worker (default 20)")
    k.add_argument("--json", action="store_true")
    k.set_defaults(func=_apikey_new)
    k = ks.add_parser("revoke", help="revoke a key at once (it can never work again)")
    _ws(k)
    k.add_argument("key_id")
    k.set_defaults(func=_apikey_revoke)
    k = ks.add_parser("list", help="the keys, without secrets")
    _ws(k)
    k.set_defaults(func=_apikey_list)


def _apikey_new(args: argparse.Namespace) -> int:
    role = args.role  # here --role is the role of the key being issued; the issuer acts in the default role
    if not role:
        raise InvalidArgument("apikey new needs --role ROLE: the role the key's holder acts in.")
    expires = None
    if args.expires:
        try:
            expires = dt.date.fromisoformat(args.expires)
        except ValueError:
            raise InvalidArgument(f"--expires must be a date YYYY-MM-DD, got {args.expires!r}.") from None
    with _open(argparse.Namespace(workspace=args.workspace, passphrase_file=args.passphrase_file, role=None)) as sf:
        info, key = sf.issue_api_key(role, label=args.label, expires=expires, rate=args.rate)
    if args.json:
        print_json({"key": key, **info.to_dict()})
    else:
        say(f"API key {info.key_id} for role {info.role}; it is shown only now, store it safely:")
        print(key, flush=True)
    return EXIT_OK


def _apikey_revoke(args: argparse.Namespace) -> int:
    with _open(args) as sf:
        info = sf.revoke_api_key(args.key_id)
    print_json(info.to_dict())
    return EXIT_OK


def _apikey_list(args: argparse.Namespace) -> int:
    with _open(args) as sf:
        print_json([k.to_dict() for k in sf.api_keys()])
    return EXIT_OK


def _serve(args: argparse.Namespace) -> int:
    try:
        import uvicorn
    except ImportError:
        raise ConfigError("safeface serve needs the service extra: pip install 'safeface[service]'.") from None
    from ..service.app import CONFIG_ENV
    from ..service.tls import CheckedTls

    if (args.tls_cert is None) != (args.tls_key is None):
        raise InvalidArgument("--tls-cert and --tls-key go together.")
    if args.tls_key_passphrase_file is not None and args.tls_key is None:
        raise InvalidArgument("--tls-key-passphrase-file is the passphrase of --tls-key: give both.")
    # Read and checked once; the server is given these bytes, never the names to open again.
    tls = (CheckedTls.read(args.tls_cert, args.tls_key, args.tls_key_passphrase_file)
           if args.tls_cert is not None else None)
    if tls is not None and "ssl_context_factory" not in inspect.signature(uvicorn.Config).parameters:
        raise ConfigError("serving TLS needs uvicorn 0.47 or later (its ssl_context_factory): "
                          "pip install 'uvicorn>=0.47'.")
    if args.tls_cert is None and not args.plain_http and not is_loopback(args.host):
        # Faces, API keys, consent tokens and console cookies would cross the network in the clear.
        raise InvalidArgument(f"serving {args.host} without TLS would send faces, API keys and consent tokens in "
                              "the clear: give --tls-cert and --tls-key, or --plain-http when a proxy in front "
                              "terminates TLS.")
    if args.workers < 1 or args.threads < 1 or args.queue < 0 or args.max_body < 1024:
        raise InvalidArgument("--workers and --threads must be at least 1, --queue at least 0, --max-body >= 1024.")
    ws = Path(args.workspace).resolve()
    # Fail here, once, on a wrong passphrase or a damaged workspace, not in every worker.
    with _open(argparse.Namespace(workspace=ws, passphrase_file=args.passphrase_file, role=None)):
        pass
    os.environ[CONFIG_ENV] = json.dumps({
        "workspace": str(ws), "passphrase_file": str(args.passphrase_file.resolve()) if args.passphrase_file else None,
        "threads": args.threads, "queue": args.queue, "max_body": args.max_body})
    say(f"safeface serving {ws} on {'https' if args.tls_cert else 'http'}://{args.host}:{args.port} "
        f"({args.workers} worker(s) x {args.threads} thread(s))")
    uvicorn.run("safeface.service.app:app_from_env", factory=True, host=args.host, port=args.port,
                workers=args.workers, **({"ssl_context_factory": tls} if tls is not None else {}), log_level="warning",
                server_header=False, timeout_graceful_shutdown=10)
    return EXIT_OK
