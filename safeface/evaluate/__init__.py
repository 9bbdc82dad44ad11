"""Evaluation and assessment: accuracy (ISO/IEC 19795-1), demographic differentials (NIST FRTE
style) and template protection (ISO/IEC 30136), with plots and HTML/JSON reports."""

from __future__ import annotations
