"""The impact assessment as the audit log records it. Only `safeface assess`, which needs the
passphrase, or a demo workspace's creation names an assessment in the log; a workspace
processes only under the assessment its log names last, so one written into deployment.json
by hand, or restored with an older copy of the file, processes nothing."""

from __future__ import annotations

from typing import Any, Mapping

# The entries that name an assessment: the newest of them is the one in force.
ASSESSMENT_OPERATIONS = ("assessment", "init")


def assessment_note(section: Mapping[str, Any]) -> str:
    """What an entry says of the assessment in deployment.json's "assessment" section: its
    reference, date, the configuration digest it covers and, once reviewed, the review's date."""
    reference = str(section.get("reference") or "")[:200]
    note = f"impact assessment {reference!r} of {section.get('date')} covers configuration {section.get('covers')}"
    reviewed = section.get("reviewed")
    return f"{note}; reviewed {str(reviewed)[:40]}" if reviewed else note


def assessment_recorded(section: Mapping[str, Any], newest_note: str | None) -> bool:
    """Whether the newest note naming an assessment names this one (the demo's creation entry
    names it after the workspace's own description, hence the suffix)."""
    return bool(newest_note) and str(newest_note).endswith(assessment_note(section))
