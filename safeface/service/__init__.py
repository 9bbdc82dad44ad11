"""`safeface serve`: the HTTP API (/v1), /metrics and the operator console, on FastAPI and uvicorn.

The service is one more caller of the same guard: each request runs one SafeFace call as the
(role, key id) of its API key. Needs the `service` extra: ``pip install 'safeface[service]'``.
"""

from __future__ import annotations

from .runtime import ServiceConfig

__all__ = ["ServiceConfig", "create_app"]


def create_app(config: ServiceConfig):  # type: ignore[no-untyped-def]
    from .app import create_app as _create

    return _create(config)
