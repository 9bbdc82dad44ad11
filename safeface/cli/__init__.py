"""The `safeface` command. Each group of subcommands lives in its own module with a
`register(subparsers)` function; handlers return an exit code (see common.py)."""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from typing import NoReturn, Optional, Sequence

from ..errors import IntegrityError, PolicyViolation, SafeFaceError
from .common import EXIT_ERROR, EXIT_INTEGRITY, EXIT_POLICY, EXIT_USAGE

# Modules that add subcommands, in the order their commands appear in --help.
COMMAND_MODULES = (
    "vision_cmds",
    "models_cmds",
    "policy_cmds",
    "demo_cmd",
    "eval_cmds",
    "anonymize_cmd",
    "liveness_cmd",
    "storage_cmds",
    "service_cmds",
    "track_cmd",
)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        sys.stderr.write(f"{self.prog}: error: {message}\n")
        raise SystemExit(EXIT_USAGE)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="safeface", description="Face recognition with compliance guardrails.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name in COMMAND_MODULES:
        module = importlib.import_module(f"{__name__}.{name}")
        module.register(sub)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    try:
        code: int = args.func(args)
        return code
    except PolicyViolation as exc:
        sys.stderr.write(json.dumps(exc.to_dict()) + "\n")
        return EXIT_POLICY
    except IntegrityError as exc:
        sys.stderr.write(json.dumps({"error": "IntegrityError", "message": str(exc)}) + "\n")
        return EXIT_INTEGRITY
    except SafeFaceError as exc:
        sys.stderr.write(f"safeface: error: {exc}\n")
        return EXIT_ERROR
    except KeyboardInterrupt:
        sys.stderr.write("safeface: interrupted\n")
        return 130


def entry() -> None:
    sys.exit(main())
