"""The deployment: its model (model.py), its validation against the profiles (validation.py),
the floors that hold under every profile (floors.py), sample configurations (samples.py) and
working-day deadlines (calendar.py). The public names are re-exported here."""

from __future__ import annotations

from .calendar import working_days_after
from .floors import guardian_age, normalize_location, private_space, PRIVATE_SPACES
from .model import (ALL_OPERATIONS, DEFAULT_FILING_THRESHOLD, FORMAT, LOCATION_CLASSES, NOTICE_FIELDS, Deployment,
                    Purpose, new_deployment_id)
from .samples import blank_config, demo_config
from .validation import Finding

__all__ = ["Deployment", "Finding", "Purpose", "demo_config", "blank_config", "new_deployment_id", "working_days_after",
           "guardian_age", "private_space", "normalize_location", "PRIVATE_SPACES",
           "LOCATION_CLASSES", "NOTICE_FIELDS", "ALL_OPERATIONS", "DEFAULT_FILING_THRESHOLD", "FORMAT"]
