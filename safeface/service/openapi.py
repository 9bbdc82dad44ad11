"""Print the service's OpenAPI schema (kept in safeface/service/openapi.json, checked by the tests):

    python -m safeface.service.openapi > safeface/service/openapi.json
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path
from typing import Any


def schema() -> dict[str, Any]:
    """The schema of an app on a throwaway demo workspace (routes do not depend on the workspace)."""
    from ..workspace.init import init_workspace
    from .app import create_app
    from .runtime import ServiceConfig

    with tempfile.TemporaryDirectory(prefix="safeface-openapi-") as d:
        init_workspace(Path(d) / "ws", demo=True)
        app = create_app(ServiceConfig(workspace=Path(d) / "ws"))
        try:
            return dict(app.openapi())
        finally:
            app.state.runtime.close()


def main() -> None:
    sys.stdout.write(json.dumps(schema(), indent=2, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
