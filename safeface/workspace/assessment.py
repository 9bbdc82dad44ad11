"""The impact assessment as the audit log records it. `safeface assess` writes the assessment
into deployment.json without the keyring (it needs no passphrase), so the log, which only a
holder of the keys writes, names each assessment the first time a workspace reads it: the
workspace's creation (a demo workspace is created assessed) or an "assessment" entry."""

from __future__ import annotations

from typing import Any, Mapping

# The entries that name an assessment: the newest of them is the one the log has seen.
ASSESSMENT_OPERATIONS = ("assessment", "init")


def assessment_note(section: Mapping[str, Any]) -> str:
    """What an entry says of the assessment in deployment.json's "assessment" section: its
    reference, date and the configuration digest it covers."""
    reference = str(section.get("reference") or "")[:200]
    return f"impact assessment {reference!r} of {section.get('date')} covers configuration {section.get('covers')}"
