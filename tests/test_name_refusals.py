"""Names an operator reads, refused: a location with a control character, two roles the same
but for case (also where their look-alike readings differ), a purpose name with a space at
either end or over 128 characters. Pairs of purposes that print alike are in
test_deployment_validation.py."""

from __future__ import annotations

import datetime as dt
import sys
from pathlib import Path
from typing import Any, Callable, Optional

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from policy_support import demo_deployment  # noqa: E402

from safeface.errors import ConfigError  # noqa: E402
from safeface.policy.deployment import Deployment  # noqa: E402

TODAY = dt.date(2026, 6, 15)


def deployment(edit: Optional[Callable[[dict[str, Any]], None]] = None) -> Deployment:
    return demo_deployment(TODAY - dt.timedelta(days=10), ("cn-2025",), edit, True, deployment_id="names-test")


@pytest.mark.parametrize("name", ["Lobby\x1b[8m", "Lob\x08by", "Lobby\x00"])
def test_a_location_name_with_a_control_character_is_refused(name: str) -> None:
    dep = deployment(edit=lambda r: r["location"].__setitem__("kind", name))
    found = {f.rule: f.message for f in dep.problems(TODAY)}
    assert "CN-15" in found and "changes how it prints" in found["CN-15"], found.get("CN-15")


def test_two_roles_that_differ_only_by_case_fold_are_refused() -> None:
    def add(raw: dict[str, Any]) -> None:
        raw["roles"] = {"Straße": ["report"], "STRASSE": ["enroll", "verify", "identify", "erase", "report"]}

    with pytest.raises(ConfigError, match="print alike"):
        deployment(edit=add)


@pytest.mark.parametrize("name", [" door", "door ", "\u00a0door"])
def test_a_purpose_name_with_a_space_at_either_end_is_refused_alone(name: str) -> None:
    def add(raw: dict[str, Any]) -> None:
        raw["purposes"][name] = dict(raw["purposes"]["demo"])

    with pytest.raises(ConfigError, match="no spaces at either end|invisible"):
        deployment(edit=add)


def test_a_purpose_name_over_128_characters_is_refused() -> None:
    def add(raw: dict[str, Any]) -> None:
        raw["purposes"]["p" * 129] = dict(raw["purposes"]["demo"])

    with pytest.raises(ConfigError, match="1-128 characters"):
        deployment(edit=add)
