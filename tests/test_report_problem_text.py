"""What a failed audit check says names entries and, on a server workspace, the record store's
host, user and database: the service's report gives its caller a reference, as /v1/audit/verify
and the console's audit page do, and the service's log the cause under it."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))


def test_the_services_report_names_a_failed_audit_check_by_reference_only(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """/v1/report (JSON and HTML) and the console's report page quoted the check's text."""
    from fastapi.testclient import TestClient
    from service_support import console_login, console_report, edited_audit_entry, in_process_app

    ws, key, cause = edited_audit_entry(tmp_path, "auditor")
    with TestClient(in_process_app(ws.root, tmp_path), base_url="https://testserver") as c, \
            caplog.at_level("ERROR", logger="safeface.service"):
        for fmt in ("json", "html"):
            r = c.get(f"/v1/report?format={fmt}", headers={"X-API-Key": key})
            assert r.status_code == 200 and "reference" in r.text, r.text[:300]
            assert cause not in r.text and "entry 2" not in r.text
        console_login(c, key)
        assert console_report(c).status_code == 303
        for page in ("/report", "/report/compliance.json"):
            text = c.get(page).text
            assert "THE RECORDS FAIL" in text or '"records_verified": false' in text, page
            assert cause not in text and "entry 2" not in text, page
    assert cause in caplog.text  # the operator's to read
