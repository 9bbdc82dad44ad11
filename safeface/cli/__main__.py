"""`python -m safeface.cli`: the same as the `safeface` command."""

from . import entry

entry()
