"""The masked path's thresholds follow a stricter plain one: an operator who raises
`matching.threshold` for fewer false matches is not undone by a stranger who puts on a mask."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from policy_support import consent, datasets, make_workspace, open_sf  # noqa: E402
from policy_support import masked_image as masked  # noqa: E402

from safeface.hazmat.vision import DEFAULT_BOTH_MASKED_THRESHOLD, DEFAULT_MASKED_THRESHOLD  # noqa: E402

# Two LFW dev strangers: bare they score 0.915, under a stricter plain threshold of 0.95; with
# a mask drawn on the second, its visible region scores 0.965 against the first's template.
ENROLLED = "Albert_Costa/Albert_Costa_0002.jpg"
STRANGER = "Ahmed_Ghazi/Ahmed_Ghazi_0001.jpg"


def test_a_stranger_in_a_mask_does_not_pass_a_stricter_plain_threshold(tmp_path: Path) -> None:
    """A deployment raises matching.threshold to 0.95; a stranger refused bare puts on a mask and
    is sent down the masked path: its thresholds must be as strict, so he is refused there too."""
    lfw = datasets() / "lfw-dev" / "images"
    ws = make_workspace(tmp_path / "ws", edit=lambda c: c["matching"].update(threshold=0.95))
    with open_sf(ws) as sf:
        assert sf.threshold == 0.95
        assert sf.masked_threshold > DEFAULT_MASKED_THRESHOLD
        assert sf.both_masked_threshold > DEFAULT_BOTH_MASKED_THRESHOLD
        t = consent(ws, "albert")
        sf.enroll(lfw / ENROLLED, "albert", "demo", t)
        assert not sf.verify(lfw / STRANGER, "albert", "demo", t).match
        v = sf.verify(masked(lfw / STRANGER), "albert", "demo", t)
        assert v.masked and v.score is not None and v.score >= DEFAULT_MASKED_THRESHOLD
        assert not v.match and v.threshold == sf.masked_threshold
        assert sf.identify(masked(lfw / STRANGER), "demo", consent(ws, "walk-in")) == []


def test_a_both_masked_threshold_left_unset_is_never_looser_than_a_stricter_masked_one(tmp_path: Path) -> None:
    """An operator tightens matching.masked_threshold to 0.98 and leaves both_masked_threshold
    unset: a masked stranger met a masked enrolment at the default 0.953, though two masked
    strangers look more alike than one. The both-masked bar must be at least the masked one."""
    ws = make_workspace(tmp_path / "ws", edit=lambda c: c["matching"].update(masked_threshold=0.98))
    with open_sf(ws) as sf:
        assert sf.masked_threshold == 0.98
        assert sf.both_masked_threshold >= sf.masked_threshold
