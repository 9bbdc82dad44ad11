"""The FastAPI application: the /v1 API, /metrics, and the operator console at /.

Errors become status codes here, once: 401 no valid key, 403 a refusal by the guard (a role that
may not, or any compliance rule) with the CLI's JSON ``{"error","rule","message"}``, 422 malformed
input or an unusable image, 413 a body over the limit, 429 a key over its rate, 503 a full work
queue, a vector index (Milvus) that cannot be asked now, a workspace database another process
holds for long, a workspace disk that is full, read-only or failing reads, or a process still
starting (each with Retry-After), or a right the service's database role lacks (naming the GRANT),
409 a failed integrity check. Every response carries a
strict Content-Security-Policy; there is no interactive docs page (it would need outside
scripts), only /openapi.json.
"""

from __future__ import annotations

import json
import math
import os
import threading
import time
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, AsyncIterator

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.requests import ClientDisconnect

from ..errors import (AuthenticationError, BackendError, ConfigError, ImageError, IndexUnavailable, IntegrityError,
                      InvalidArgument, PolicyViolation, ReplacedFile, SafeFaceError, SchemaOwnerNeeded, ServiceBusy,
                      StoreConnectionLost, WorkspaceBusy, WorkspaceUnwritable)
from .failures import told
from .runtime import RateLimited, Runtime, ServiceConfig

CONFIG_ENV = "SAFEFACE_SERVICE_CONFIG"
CSP = ("default-src 'none'; img-src 'self'; style-src 'self'; form-action 'self'; frame-ancestors 'none'; "
       "base-uri 'none'")
_SECURITY_HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cache-control", b"no-store"),
]


class Edge:
    """The outermost layer (plain ASGI): 413 for a body over the limit, whether announced by
    Content-Length or streamed; 503 for a body whose bytes would take those held by all requests
    in this worker past `held_bytes`; the security headers on every response; the request
    metrics."""

    def __init__(self, app: Any, limit: int, metrics: Any, held_bytes: int) -> None:
        self.app = app
        self.limit = limit
        self.metrics = metrics
        # Bodies are read before a call is admitted (Runtime.call): without a bound on what they
        # hold together, clients holding back the last bytes of many bodies would keep them all
        # in memory. Bytes, not requests: a connection that sends nothing holds nothing.
        self.held_bytes = held_bytes
        self._held = 0  # one event loop a process: no lock needed

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        t0 = time.perf_counter()
        status = [500]
        started = False

        async def tracking_send(msg: Any) -> None:
            nonlocal started
            if msg["type"] == "http.response.start":
                started = True
                status[0] = int(msg["status"])
                names = {k.lower() for k, _ in msg.get("headers", [])}
                msg = {**msg, "headers": [*msg.get("headers", []),
                                          *[(k, v) for k, v in _SECURITY_HEADERS if k not in names]]}
            await send(msg)

        seen = 0
        try:
            if self._announced_too_big(scope):
                raise _TooLarge()

            async def limited() -> Any:
                nonlocal seen
                msg = await receive()
                if msg["type"] == "http.request":
                    n = len(msg.get("body", b""))
                    if seen + n > self.limit:
                        raise _TooLarge()
                    if self._held + n > self.held_bytes:
                        raise _Busy()
                    seen += n
                    self._held += n
                return msg

            await self.app(scope, limited, tracking_send)
        except _TooLarge:
            if started:
                raise
            status[0] = 413
            await _refuse(send, 413, "PayloadTooLarge", f"the request body is over {self.limit} bytes.")
        except _Busy:
            if started:
                raise
            status[0] = 503
            self.metrics.count("safeface_overload_total")
            await _refuse(send, 503, "ServiceBusy", "the service is at capacity; nothing was done. Retry shortly.",
                          (b"retry-after", b"1"))
        finally:
            self._held -= seen
            path = getattr(scope.get("route"), "path", "unmatched")
            self.metrics.count("safeface_requests_total", {"route": path, "status": str(status[0])})
            self.metrics.observe(path, time.perf_counter() - t0)

    def _announced_too_big(self, scope: Any) -> bool:
        for k, v in scope.get("headers", []):
            if k == b"content-length":
                try:
                    return int(v) > self.limit
                except ValueError:
                    return True
        return False


class _TooLarge(Exception):
    pass


class _Busy(Exception):
    pass


async def _refuse(send: Any, status: int, error: str, message: str, *extra: tuple[bytes, bytes]) -> None:
    """An answer the edge gives before the app has read the body, closing the connection."""
    body = json.dumps({"error": error, "message": message}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            *extra, (b"connection", b"close"), *_SECURITY_HEADERS]})
    await send({"type": "http.response.body", "body": body})


def _error(status: int, exc: Exception, headers: dict[str, str] | None = None) -> JSONResponse:
    if isinstance(exc, PolicyViolation):
        body = exc.to_dict()
    else:
        message, ref = told(exc)
        body = {"error": type(exc).__name__, "message": message, **({"reference": ref} if ref else {})}
    return JSONResponse(body, status_code=status, headers=headers)


def create_app(config: ServiceConfig) -> FastAPI:
    from .api import build_router, metrics_route
    from .console import build_console

    rt = Runtime(config)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        threading.Thread(target=rt.warm, name="safeface-warm", daemon=True).start()
        try:
            yield
        finally:
            rt.close()

    app = FastAPI(title="safeface", version="1", lifespan=lifespan, docs_url=None, redoc_url=None,
                  description="Face recognition with compliance guardrails, as a service. Every call passes the "
                              "same guard as the SDK; the caller's role comes from its API key.")
    app.state.runtime = rt

    @app.exception_handler(PolicyViolation)
    async def _policy(request: Request, exc: PolicyViolation) -> JSONResponse:
        return _error(403, exc)

    @app.exception_handler(AuthenticationError)
    async def _auth(request: Request, exc: AuthenticationError) -> JSONResponse:
        rt.metrics.count("safeface_auth_failures_total")
        return _error(401, exc, {"WWW-Authenticate": 'Bearer realm="safeface"'})

    @app.exception_handler(ServiceBusy)
    async def _busy(request: Request, exc: ServiceBusy) -> JSONResponse:
        status = 429 if isinstance(exc, RateLimited) else 503
        return _error(status, exc, {"Retry-After": str(max(1, math.ceil(exc.retry_after)))})

    @app.exception_handler(IndexUnavailable)
    async def _index_down(request: Request, exc: IndexUnavailable) -> JSONResponse:
        # Milvus is down or hung: the records are intact and the call can be made again once it
        # answers; a load balancer or client retries a 503, not a 500.
        rt.metrics.count("safeface_index_unavailable_total")
        return _error(503, exc, {"Retry-After": str(max(1, math.ceil(exc.retry_after)))})

    @app.exception_handler(StoreConnectionLost)
    async def _connection_lost(request: Request, exc: StoreConnectionLost) -> JSONResponse:
        # The record store's connection ended mid-call (a restart, a failover): the call was
        # rolled back and the next one reconnects, so a client or balancer retries a 503.
        return _error(503, exc, {"Retry-After": str(max(1, math.ceil(exc.retry_after)))})

    @app.exception_handler(WorkspaceBusy)
    async def _workspace_busy(request: Request, exc: WorkspaceBusy) -> JSONResponse:
        # Another process's long write (a rekey, a large erasure): nothing was done and the same
        # call succeeds once it ends, so a client or balancer retries a 503, not a 500.
        return _error(503, exc, {"Retry-After": str(max(1, math.ceil(exc.retry_after)))})

    @app.exception_handler(WorkspaceUnwritable)
    async def _unwritable(request: Request, exc: WorkspaceUnwritable) -> JSONResponse:
        # The workspace's disk is full, went read-only or failed a read (WorkspaceDiskFailed): no
        # fault of the call's, and it works once the disk does again. /v1/ready answers 503 until
        # a write works there (and the file that failed a read reads again).
        rt.refused_disk(exc.folder, getattr(exc, "path", None))
        return _error(503, exc, {"Retry-After": str(max(1, math.ceil(exc.retry_after)))})

    @app.exception_handler(SchemaOwnerNeeded)
    async def _right_missing(request: Request, exc: SchemaOwnerNeeded) -> JSONResponse:
        # A right revoked from the service's database role, or a table it may not create: the
        # records are intact and the call works once the schema's owner has run the statement the
        # message names; a 503 to retry, not a 500 (nor a 409 advising a restore from backup).
        return _error(503, exc, {"Retry-After": "60"})

    @app.exception_handler(InvalidArgument)
    @app.exception_handler(ImageError)
    async def _invalid(request: Request, exc: SafeFaceError) -> JSONResponse:
        return _error(422, exc)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        where = "; ".join(f"{'.'.join(str(x) for x in e.get('loc', ()))}: {e.get('msg')}" for e in exc.errors()[:3])
        return JSONResponse({"error": "InvalidArgument", "message": f"malformed request ({where})."}, status_code=422)

    @app.exception_handler(IntegrityError)
    async def _integrity(request: Request, exc: IntegrityError) -> JSONResponse:
        if isinstance(exc, ReplacedFile):
            rt.files_replaced = True  # /v1/ready answers 503 from now on
        return _error(409, exc)

    @app.exception_handler(ClientDisconnect)
    async def _gone(request: Request, exc: ClientDisconnect) -> Response:
        # The client hung up before its body was in: nobody reads an answer, and a traceback in
        # the log for each one would let anyone fill the disk with a few bytes a connection.
        rt.metrics.count("safeface_client_disconnects_total")
        return Response(status_code=400)

    @app.exception_handler(SafeFaceError)
    async def _other(request: Request, exc: SafeFaceError) -> JSONResponse:
        return _error(500 if isinstance(exc, (BackendError, ConfigError)) else 400, exc)

    app.include_router(build_router(rt))
    app.add_api_route("/metrics", metrics_route(rt), methods=["GET"], include_in_schema=True,
                      summary="Prometheus metrics of this process")
    app.include_router(build_console(rt))
    # Full bodies for twice the calls that can be admitted, and four more: room for bodies
    # arriving while the admitted calls run.
    app.add_middleware(Edge, limit=config.max_body, metrics=rt.metrics,
                       held_bytes=(2 * (config.threads + config.queue) + 4) * config.max_body)
    return app


def config_from_env() -> ServiceConfig:
    raw = json.loads(os.environ[CONFIG_ENV])
    return ServiceConfig(workspace=Path(raw["workspace"]),
                         passphrase_file=Path(raw["passphrase_file"]) if raw.get("passphrase_file") else None,
                         threads=int(raw["threads"]), queue=int(raw["queue"]), max_body=int(raw["max_body"]))


def app_from_env() -> FastAPI:
    """The factory uvicorn calls in each worker process (`safeface serve` sets the environment)."""
    return create_app(config_from_env())
