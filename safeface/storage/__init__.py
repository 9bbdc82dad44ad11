"""The template store behind the guard.

Internal: the SDK is its only caller. A row written here directly skips consent and audit, and
``safeface audit verify`` names it (no "enroll allowed" entry, no valid sealed token)."""
