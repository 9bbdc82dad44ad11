"""What every `safeface` subcommand shares: exit codes and output."""

from __future__ import annotations

import json
import sys
from typing import Any

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_POLICY = 3
EXIT_INTEGRITY = 4


def print_json(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj, indent=2, sort_keys=False) + "\n")
    sys.stdout.flush()


def say(*parts: object) -> None:
    """Progress and notes for a person: stderr, so stdout stays machine-readable."""
    print(*parts, file=sys.stderr, flush=True)
