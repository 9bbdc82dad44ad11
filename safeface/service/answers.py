"""What a remote caller learns from a match or a liveness check: the decision, what a person can
act on, and no measurement that would guide an attack one request at a time.

In process the host holds the keys anyway, and the SDK's results carry every figure. Over the
network the caller may be anyone holding a key of a role that may verify or check liveness:
- a verify's score on a miss would let them climb toward the subject's template, an image at a
  time (identify names only candidates over the threshold already); its path and threshold on a
  miss would tell them whether the subject enrolled masked;
- the mask detector's confidence would let them tune a covering the detector does not call
  masked (a probe it misses is met whole), or one it does (so a masked enrolment's looser
  visible-region path meets it);
- a liveness check's cue measurements (the surface's share of points off one plane, the motion,
  the replay cues, the PAD model's probability, the similarity of the face that turned to the
  frontal one) would let them tune a print, a screen or an accomplice, a clip at a time.
Those stay in the service's log, under the clip's hash (the audit entry names it too).
"""

from __future__ import annotations

import json
import logging
from typing import Any

from ..sdk.results import LivenessCheck, Verification

_log = logging.getLogger("safeface.service")

NOT_LIVE = ("the clip did not pass the liveness checks: the person presented must make the moves asked, "
            "themselves, in front of the camera")


def verify_answer(r: Verification) -> dict[str, Any]:
    _log.info("verify of %s: %s", r.pseudonym[:16], json.dumps(r.to_dict(), sort_keys=True))
    out = {**r.to_dict(), "subject": r.pseudonym, "mask_confidence": None}
    if not r.match:
        out.update(score=None, threshold=None, path=None)
    return out


def liveness_answer(r: LivenessCheck) -> dict[str, Any]:
    # An attack is the operator's business (a warning reaches the log by default); the rest is routine.
    _log.log(logging.WARNING if r.decision == "attack" else logging.INFO, "liveness check of clip %s: %s %s",
             r.clip_sha256[:16], r.decision, json.dumps(r.checks, sort_keys=True, default=str))
    # An inconclusive clip's reason is capture advice (turn more, more light); an attack's names
    # the cue that caught it, which is what a spoof's maker wants to know.
    reason = {"live": "live", "attack": NOT_LIVE}.get(r.decision, str(r.checks.get("reason", "")))
    out: dict[str, Any] = {"live": r.live, "decision": r.decision, "score": None, "checks": {"reason": reason},
                           "clip_sha256": r.clip_sha256}
    if r.evidence is not None:
        out["evidence"] = r.evidence
        out["expires_at"] = r.expires_at.isoformat(timespec="seconds") if r.expires_at else None
    return out
