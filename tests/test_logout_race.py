"""Two worker processes logging out one console session at once record it ended once."""

from __future__ import annotations

import sys
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from policy_support import open_sf  # noqa: E402
from service_support import keyed_client  # noqa: E402


def test_two_logouts_of_one_session_racing_record_it_ended_once(tmp_path: Path) -> None:
    """A double click through a balancer (or a thief's copy of the cookie) logs one session out on
    two workers at once: however they interleave, the log has exactly one "ended" entry for it."""
    from safeface.workspace.apikeys import session_ref
    from safeface.workspace.storecheck import session_ended_note

    _, ws, (op,) = keyed_client(tmp_path, "operator", rate=1000)
    a, b = open_sf(ws), open_sf(ws)
    try:
        cookies = [a.open_session(op)[1] for _ in range(12)]
        for cookie in cookies:
            gate = threading.Barrier(2)

            def out(sf: object, cookie: str = cookie, gate: threading.Barrier = gate) -> None:
                gate.wait()
                sf.end_session(cookie)  # type: ignore[attr-defined]

            ts = [threading.Thread(target=out, args=(h,)) for h in (a, b)]
            for t in ts:
                t.start()
            for t in ts:
                t.join()
        notes = [e.note for e in a.audit_entries() if e.operation == "apikey"]
    finally:
        a.close()
        b.close()
    counts = [notes.count(session_ended_note(session_ref(c))) for c in cookies]
    assert counts == [1] * len(cookies), f"times each session was recorded ended: {counts}"
