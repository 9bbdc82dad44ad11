"""Working days, for deadlines counted in them (CN-17: file within 30 working days)."""

from __future__ import annotations

import datetime as dt


def working_days_after(start: dt.date, days: int) -> dt.date:
    """The date `days` working days (Monday to Friday) after `start`. Public holidays are not
    known to the SDK; the report says so."""
    d = start
    left = days
    while left > 0:
        d += dt.timedelta(days=1)
        if d.weekday() < 5:
            left -= 1
    return d
