"""Sample configurations: a blank one for an operator to fill in, and a complete demo."""

from __future__ import annotations

import datetime as dt
from typing import Any, Optional

from ..rules import DEFAULT_PROFILE
from .floors import GUARDIAN_AGES
from .model import ALL_OPERATIONS, DEFAULT_FILING_THRESHOLD, FORMAT, NOTICE_FIELDS, Deployment, new_deployment_id


def demo_config(today: dt.date, profiles: tuple[str, ...] = (DEFAULT_PROFILE,),
                deployment_id: Optional[str] = None) -> dict[str, Any]:
    """A complete sample deployment with the purpose `demo`, valid under every profile."""
    raw: dict[str, Any] = {
        "format": FORMAT,
        "id": deployment_id or new_deployment_id(),
        "name": "safeface demo deployment (sample data, not for production)",
        "profiles": list(profiles),
        "go_live": today.isoformat(),
        "controller": {"name": "Demo Operator Ltd.", "contact": "privacy@demo.example",
                       "address": "1 Example Road", "dpo": "Data Protection Officer, dpo@demo.example"},
        "purposes": {
            "demo": {
                "description": "try safeface on sample photographs",
                "necessity": "demonstrates the SDK on consenting sample subjects; no other method shows it",
                "retention_days": 30,
                "public_safety": False,
                "alternatives": ["PIN code at the counter", "identity check by staff"],
            }
        },
        "location": {"class": "premises", "description": "a developer's workstation", "capture_area": "",
                     "signage_attested": False},
        "notice": {
            "version": "demo-1",
            "controller": "Demo Operator Ltd., privacy@demo.example",
            "purpose": "demo: trying safeface on sample photographs",
            "method": "a photo of your face is turned into a protected template and compared with templates you enrolled",
            "retention": "30 days from enrolment, or until you withdraw consent",
            "necessity": "the demonstration needs a face to show enrolment and matching",
            "effects": "a wrong match or non-match is possible; the PIN alternative is always available",
            "rights": "withdraw consent, erase your data, see your records: privacy@demo.example",
            "text": "We use face recognition for the demo. You can refuse and use a PIN instead.",
        },
        "accessibility": {"attested": True, "note": "staff assist elderly and disabled people; PIN alternative"},
        "identity_service": {"name": "none (demo)", "note": "CN-12: national identity authentication not used"},
        "filing": {"threshold": DEFAULT_FILING_THRESHOLD, "reference": None},
        "matching": {"engine": None, "method": "dlib-resnet-128", "threshold": None},
        "minors": {"eu_guardian_age": GUARDIAN_AGES["eu"]},
        "roles": {"operator": list(ALL_OPERATIONS), "kiosk": ["verify", "identify"], "auditor": ["report"]},
        "default_role": "operator",
        "bipa": {"retention_schedule_url": "https://demo.example/biometric-retention", "texas": False,
                 "grace_days_after_purpose": 0},
        "consent_screen": {"version": "demo-screen-1"},
        "assessment": {"reference": "PIA-DEMO-1", "date": today.isoformat(), "reviewed": None, "covers": None},
    }
    dep = Deployment.from_dict(raw)
    raw["assessment"]["covers"] = dep.config_digest()
    return raw


def blank_config(profiles: tuple[str, ...] = (DEFAULT_PROFILE,)) -> dict[str, Any]:
    """A configuration for an operator to fill in; it refuses every call until it is complete."""
    return {
        "format": FORMAT,
        "id": new_deployment_id(),
        "name": "",
        "profiles": list(profiles),
        "go_live": None,
        "controller": {"name": "", "contact": "", "address": "", "dpo": ""},
        "purposes": {
            "PURPOSE-NAME": {"description": "", "necessity": "", "retention_days": 0, "end_date": None,
                             "public_safety": False, "alternatives": [], "mandatory_by_law": None,
                             "liveness": "none", "capture_quality": "none"}
        },
        "location": {"class": "premises|personal-device|public-place", "kind": "", "description": "",
                     "capture_area": "", "signage_attested": False},
        "notice": {f: "" for f in ("version", *NOTICE_FIELDS, "text")},
        "accessibility": {"attested": False, "note": ""},
        "identity_service": {"name": "", "note": ""},
        "filing": {"threshold": DEFAULT_FILING_THRESHOLD, "reference": None},
        "matching": {"engine": None, "method": "dlib-resnet-128", "threshold": None},
        "minors": {"eu_guardian_age": GUARDIAN_AGES["eu"]},
        "roles": {"operator": list(ALL_OPERATIONS)},
        "default_role": "operator",
        "bipa": {"retention_schedule_url": "", "texas": False, "grace_days_after_purpose": 0},
        "consent_screen": {"version": ""},
        "assessment": {"reference": "", "date": None, "reviewed": None, "covers": None},
    }
