"""`safeface assess` on a host whose local date is not the UTC date (Shanghai before 08:00,
Hawaii after 14:00): the guard judges the review date by the UTC calendar, so `assess` must too.

It compared the review date with the host's local date: a review dated by a host ahead of UTC
was recorded, then every call was refused until UTC caught up; one dated today in UTC, on a
host behind it, was refused at `assess` although the guard would have taken it."""

from __future__ import annotations

import datetime as dt
import sys
import time
from pathlib import Path
from typing import Iterator

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from policy_support import PASSPHRASE, consent, images, make_workspace, open_sf  # noqa: E402

from safeface.errors import InvalidArgument  # noqa: E402
from safeface.workspace.admin import record_assessment  # noqa: E402


@pytest.fixture()
def host_zone(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The host's time zone set to one whose date differs from UTC's right now: ahead of UTC
    ("Etc/GMT-14") from 10:00 UTC, behind it ("Etc/GMT+12") before 12:00 UTC."""
    ahead = dt.datetime.now(dt.timezone.utc).hour >= 10
    monkeypatch.setenv("TZ", "Etc/GMT-14" if ahead else "Etc/GMT+12")
    time.tzset()
    if dt.date.today() == dt.datetime.now(dt.timezone.utc).date():
        pytest.skip("this host's C library does not know the Etc time zones")
    yield "ahead" if ahead else "behind"
    monkeypatch.undo()
    time.tzset()


def test_a_review_date_is_judged_by_the_calendar_the_guard_uses(tmp_path: Path, host_zone: str) -> None:
    """The operator records a review dated by the host's calendar (ahead of UTC), or by UTC's
    (host behind it): refused at `assess` with the UTC date, or recorded and then processing."""
    ws = make_workspace(tmp_path / "ws")
    utc_today = dt.datetime.now(dt.timezone.utc).date()
    if host_zone == "ahead":  # local date is tomorrow in UTC: the guard would refuse every call
        with pytest.raises(InvalidArgument, match="UTC"):
            record_assessment(ws.root, "PIA-2", utc_today.isoformat(), passphrase=PASSPHRASE,
                              reviewed=dt.date.today().isoformat(), accept_changes=True)
        return
    record_assessment(ws.root, "PIA-2", (utc_today - dt.timedelta(days=1)).isoformat(), passphrase=PASSPHRASE,
                      reviewed=utc_today.isoformat(), accept_changes=True)
    with open_sf(ws) as sf:
        assert sf.enroll(images() / "obama.jpg", "alice", "demo", consent(ws, "alice"))
